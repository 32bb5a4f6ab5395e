/**
 * ApiKeyService and UsageService on a running server, on PostgreSQL and on embedded PGlite:
 * keys created, listed, revoked and rolled with the API while it serves requests, test keys
 * whose jobs are free, and usage totals of real jobs encoded by the in-process worker.
 */
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Code, type Client } from "@connectrpc/connect";
import { create, toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ApiKeyService, ApiKeyServiceListResponseSchema, UsageService, type Usage } from "../../gen/rendition/v1/account_pb.js";
import { JobStatus, OutputType, Priority, Quality, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobService, JobServiceCreateRequestSchema, OutputStatus, type Job, type JobServiceCreateRequest } from "../../gen/rendition/v1/job_pb.js";
import { startTestApi, type TestApi } from "../support/api-harness.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { generateClip } from "../support/media.js";
import { connectError, violationsOf } from "../support/rpc.js";

interface Auth {
  apiKey: string;
  organizationId: string;
}

const backends: Array<{ name: string; postgres: boolean }> = [
  { name: "PostgreSQL", postgres: true },
  { name: "embedded PGlite", postgres: false },
];

describe.each(backends)("API keys and usage on $name", ({ postgres }) => {
  let database: TestDatabase | undefined;
  let api: TestApi;
  let org: string;

  beforeAll(async () => {
    database = postgres ? await createTestDatabase(inject("databaseUrl")) : undefined;
    api = await startTestApi(database?.url, { RENDITION_LEASE_MS: "3000" }, { worker: true });
    org = api.credentials.organization_id;
  }, 120_000);
  afterAll(async () => {
    await api?.close();
    await database?.drop();
  });

  const keysAs = (auth: Auth): Client<typeof ApiKeyService> => api.client(ApiKeyService, auth);
  const jobsAs = (auth: Auth): Client<typeof JobService> => api.client(JobService, auth);
  const bootstrap = (): Auth => ({ apiKey: api.credentials.api_key, organizationId: org });

  /** Resolves with the code a JobService.List call answers with this key ("ok" when it works). */
  async function listWith(auth: Auth): Promise<"ok" | Code> {
    try {
      await jobsAs(auth).list({});
      return "ok";
    } catch (err) {
      return (await connectError(Promise.reject(err))).code;
    }
  }

  /** A fresh organization with one key, made the way the CLI does (the repository). */
  async function newOrganization(name: string): Promise<Auth & { keyId: string }> {
    const created = await api.app.auth.createOrganization(name);
    const key = await api.app.auth.createApiKey(created.id, "first");
    return { apiKey: key.key, organizationId: created.id, keyId: key.id };
  }

  describe("ApiKeyService", () => {
    it("creates a key that authenticates, lists it with its prefix and, after use, last_used_at, never the secret", async () => {
      const keys = keysAs(bootstrap());
      const { apiKey, secret } = await keys.create({ name: "ci deploy" });
      expect(secret).toMatch(/^rnd_live_[A-Za-z0-9_-]{43}$/);
      expect(apiKey).toMatchObject({ name: "ci deploy", displayPrefix: secret.slice(0, 13), test: false, active: true, current: false });
      expect(apiKey!.id).toMatch(/^ak_/);
      expect(apiKey!.lastUsedAt).toBeUndefined();
      expect(apiKey!.revokedAt).toBeUndefined();

      const auth = { apiKey: secret, organizationId: org };
      expect(await listWith(auth)).toBe("ok");

      // Use is recorded in the background of the call; wait for it (bounded) without timing it.
      let listed;
      for (let i = 0; i < 100; i++) {
        const page = await keys.list({ pagination: { limit: 100 } });
        listed = page;
        if (page.apiKeys.find((k) => k.id === apiKey!.id)?.lastUsedAt) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const mine = listed!.apiKeys.find((k) => k.id === apiKey!.id)!;
      expect(mine).toMatchObject({ name: "ci deploy", displayPrefix: secret.slice(0, 13), active: true, current: false });
      expect(mine.lastUsedAt, "last_used_at after the key was used").toBeDefined();
      expect(listed!.apiKeys.find((k) => k.current)?.name, "the caller's own key is marked current").toBe("bootstrap");

      const json = toJsonString(ApiKeyServiceListResponseSchema, listed!);
      expect(json).not.toContain(secret);
      expect(json).not.toContain(createHash("sha256").update(secret).digest("hex"));
      expect(json).not.toContain(api.credentials.api_key);
    });

    it("pages the list newest first", async () => {
      const keys = keysAs(bootstrap());
      for (const name of ["page a", "page b"]) await keys.create({ name });
      const first = await keys.list({ pagination: { limit: 1 } });
      expect(first.apiKeys.map((k) => k.name)).toEqual(["page b"]);
      expect(first.pagination!.totalCount).toBeGreaterThanOrEqual(3);
      const second = await keys.list({ pagination: { limit: 1, cursor: first.pagination!.nextCursor } });
      expect(second.apiKeys.map((k) => k.name)).toEqual(["page a"]);
    });

    it("revokes a key at once; revoking it again is failed_precondition", async () => {
      const keys = keysAs(bootstrap());
      const { apiKey, secret } = await keys.create({ name: "to revoke" });
      const auth = { apiKey: secret, organizationId: org };
      expect(await listWith(auth)).toBe("ok");
      const { apiKey: revoked } = await keys.revoke({ id: apiKey!.id });
      expect(revoked).toMatchObject({ id: apiKey!.id, active: false });
      expect(revoked!.revokedAt).toBeDefined();
      expect(await listWith(auth)).toBe(Code.Unauthenticated);
      expect((await connectError(keys.revoke({ id: apiKey!.id }))).code).toBe(Code.FailedPrecondition);
      expect((await connectError(keys.roll({ id: apiKey!.id }))).code).toBe(Code.FailedPrecondition);
    });

    it("rolls with grace 0: the old key stops at once, the new one (same name) works", async () => {
      const keys = keysAs(bootstrap());
      const { apiKey: old, secret: oldSecret } = await keys.create({ name: "rolled now" });
      const rolled = await keys.roll({ id: old!.id, gracePeriodSeconds: 0 });
      expect(rolled.secret).toMatch(/^rnd_live_/);
      expect(rolled.secret).not.toBe(oldSecret);
      expect(rolled.apiKey).toMatchObject({ name: "rolled now", active: true });
      expect(rolled.apiKey!.id).not.toBe(old!.id);
      expect(rolled.previous).toMatchObject({ id: old!.id, active: false });
      expect(rolled.previous!.revokedAt).toBeDefined();
      expect(await listWith({ apiKey: oldSecret, organizationId: org })).toBe(Code.Unauthenticated);
      expect(await listWith({ apiKey: rolled.secret, organizationId: org })).toBe("ok");
    });

    it("rolls with a grace period: both keys work until the old one's expires_at, then only the new one", async () => {
      const keys = keysAs(bootstrap());
      const { apiKey: old, secret: oldSecret } = await keys.create({ name: "rolled later" });
      const before = Date.now();
      const rolled = await keys.roll({ id: old!.id, gracePeriodSeconds: 3600 });
      const after = Date.now();
      expect(rolled.previous).toMatchObject({ id: old!.id, active: true });
      expect(rolled.previous!.revokedAt).toBeUndefined();
      const expires = timestampDate(rolled.previous!.expiresAt!).getTime();
      expect(expires).toBeGreaterThanOrEqual(before + 3_600_000 - 1);
      expect(expires).toBeLessThanOrEqual(after + 3_600_000 + 1);
      expect(await listWith({ apiKey: oldSecret, organizationId: org })).toBe("ok");
      expect(await listWith({ apiKey: rolled.secret, organizationId: org })).toBe("ok");

      // The grace period ends (moved into the past in the database rather than waited for).
      await api.app.database.db.updateTable("api_keys").set({ expires_at: new Date(Date.now() - 1000) }).where("id", "=", old!.id).execute();
      expect(await listWith({ apiKey: oldSecret, organizationId: org })).toBe(Code.Unauthenticated);
      expect(await listWith({ apiKey: rolled.secret, organizationId: org })).toBe("ok");
      const listed = (await keys.list({ pagination: { limit: 100 } })).apiKeys.find((k) => k.id === old!.id);
      expect(listed).toMatchObject({ active: false });
      expect(listed!.revokedAt).toBeUndefined();
      expect((await connectError(keys.revoke({ id: old!.id }))).message).toContain("expired");
      expect((await connectError(keys.roll({ id: old!.id }))).code).toBe(Code.FailedPrecondition);
    });

    it("answers not_found for another organization's key, and leaves that key working", async () => {
      const other = await newOrganization("other org");
      const keys = keysAs(bootstrap());
      expect((await connectError(keys.revoke({ id: other.keyId }))).code).toBe(Code.NotFound);
      expect((await connectError(keys.roll({ id: other.keyId }))).code).toBe(Code.NotFound);
      expect((await connectError(keys.revoke({ id: "ak_nope" }))).code).toBe(Code.NotFound);
      expect(await listWith(other)).toBe("ok");
      const theirs = await keysAs(other).list({});
      expect(theirs.apiKeys.map((k) => k.id)).toEqual([other.keyId]);
      expect(theirs.apiKeys[0]!.current).toBe(true);
    });

    it("refuses to revoke the organization's last active key without an expiry; with another key the caller may revoke its own", async () => {
      const solo = await newOrganization("solo");
      const keys = keysAs(solo);
      const refused = await connectError(keys.revoke({ id: solo.keyId }));
      expect(refused.code).toBe(Code.FailedPrecondition);
      expect(refused.message).toContain("last active key");
      expect(await listWith(solo)).toBe("ok");

      // Rolled with a grace period, the old key still works but expires: the new key is now the last one that does not.
      const rolled = await keys.roll({ id: solo.keyId, gracePeriodSeconds: 600 });
      const fresh = { apiKey: rolled.secret, organizationId: solo.organizationId };
      expect((await connectError(keys.revoke({ id: rolled.apiKey!.id }))).code).toBe(Code.FailedPrecondition);
      // The old (expiring) key may go: a non-expiring one remains. The caller revokes the key it calls with.
      const { apiKey: own } = await keys.revoke({ id: solo.keyId });
      expect(own).toMatchObject({ id: solo.keyId, current: true, active: false });
      expect(await listWith(solo)).toBe(Code.Unauthenticated);
      expect(await listWith(fresh)).toBe("ok");

      const second = await keysAs(fresh).create({ name: "second" });
      const { apiKey: revokedOwn } = await keysAs(fresh).revoke({ id: rolled.apiKey!.id });
      expect(revokedOwn!.current).toBe(true);
      expect(await listWith(fresh)).toBe(Code.Unauthenticated);
      expect(await listWith({ apiKey: second.secret, organizationId: solo.organizationId })).toBe("ok");
    });

    it("refuses bad requests with invalid_argument naming the field", async () => {
      const keys = keysAs(bootstrap());
      for (const grace of [-1, 604_801]) {
        const err = await connectError(keys.roll({ id: "ak_x", gracePeriodSeconds: grace }));
        expect(err.code).toBe(Code.InvalidArgument);
        expect(violationsOf(err).map((v) => v.field)).toEqual(["grace_period_seconds"]);
      }
      const err = await connectError(keys.create({ name: "x".repeat(129) }));
      expect(violationsOf(err).map((v) => v.field)).toEqual(["name"]);
      expect(violationsOf(await connectError(keys.revoke({ id: "" }))).map((v) => v.field)).toEqual(["id"]);
    });

    it("makes test keys (rnd_test_), and the CLI's repository path shares the records", async () => {
      const { apiKey, secret } = await keysAs(bootstrap()).create({ name: "sandbox", test: true });
      expect(secret).toMatch(/^rnd_test_[A-Za-z0-9_-]{43}$/);
      expect(apiKey).toMatchObject({ test: true, displayPrefix: secret.slice(0, 13) });
      const rolled = await keysAs(bootstrap()).roll({ id: apiKey!.id });
      expect(rolled.secret).toMatch(/^rnd_test_/);
      expect(rolled.apiKey!.test).toBe(true);
      // `npm start -- key revoke` (the operator's path) revokes through the same table.
      expect(await api.app.auth.revokeApiKey(rolled.apiKey!.id)).toBe(true);
      expect(await listWith({ apiKey: rolled.secret, organizationId: org })).toBe(Code.Unauthenticated);
    });
  });

  describe("UsageService", () => {
    const TERMINAL = new Set([JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.PARTIAL]);
    let started: Date;
    let ended: Date;
    let live: Job[];
    let testJob: Job;
    let failed: Job;
    let canceled: Job;

    function request(inputPath: string, init: Partial<Omit<MessageInitShape<typeof JobServiceCreateRequestSchema>, "$typeName">> = {}): JobServiceCreateRequest {
      return create(JobServiceCreateRequestSchema, {
        inputOriginId: api.credentials.local_origin_id,
        inputPath,
        outputOriginId: api.credentials.local_origin_id,
        outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 144, quality: Quality.ECONOMY }] }],
        ...init,
      });
    }

    async function waitFor(jobs: Client<typeof JobService>, id: string, done: (job: Job) => boolean): Promise<Job> {
      const deadline = Date.now() + 90_000;
      for (;;) {
        const { job } = await jobs.get({ id });
        if (done(job!)) return job!;
        if (Date.now() > deadline) throw new Error(`job ${id} still ${JobStatus[job!.status]}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }

    beforeAll(async () => {
      const storage = join(api.config.dataDir, "storage");
      mkdirSync(join(storage, "in"), { recursive: true });
      await generateClip(join(storage, "in/clip.mp4"), { durationS: 2, width: 320, height: 240, fps: 25, audio: false });
      writeFileSync(join(storage, "in/notes.txt"), "this is not a video\n".repeat(100));
      started = new Date(Date.now() - 1000);

      const jobs = api.jobs;
      const { secret } = await keysAs(bootstrap()).create({ name: "usage test key", test: true });
      const testJobs = jobsAs({ apiKey: secret, organizationId: org });
      const created = [
        (await jobs.create(
          request("in/clip.mp4", {
            outputs: [
              { type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_720P, quality: Quality.ECONOMY }] },
              { type: OutputType.WEBM, video: [{ codec: VideoCodec.VP9, width: 160, quality: Quality.ECONOMY }] },
            ],
          }),
        )).job!,
        (await jobs.create(
          request("in/clip.mp4", {
            priority: Priority.ECONOMY,
            outputs: [{ type: OutputType.HLS, video: [{ codec: VideoCodec.H264, height: 144, quality: Quality.ECONOMY }, { codec: VideoCodec.H264, height: 240, quality: Quality.ECONOMY }] }],
          }),
        )).job!,
      ];
      const createdTest = (await testJobs.create(request("in/clip.mp4"))).job!;
      expect(createdTest.test).toBe(true);
      expect(created.map((j) => j.test)).toEqual([false, false]);
      const createdFailed = (await jobs.create(request("in/notes.txt"))).job!;
      const paused = (await jobs.create(request("in/clip.mp4", { delayedStart: true }))).job!;

      live = [];
      for (const job of created) live.push(await waitFor(jobs, job.id, (j) => TERMINAL.has(j.status)));
      testJob = await waitFor(testJobs, createdTest.id, (j) => TERMINAL.has(j.status));
      failed = await waitFor(jobs, createdFailed.id, (j) => TERMINAL.has(j.status));
      await waitFor(jobs, paused.id, (j) => j.status === JobStatus.AWAITING_CONFIRMATION);
      canceled = (await jobs.cancel({ id: paused.id })).job!;
      ended = new Date(Date.now() + 1000);
    }, 240_000);

    const cents = (decimal: string) => Math.round(Number(decimal) * 100);
    const getUsage = (start: Date, end: Date) => api.client(UsageService).getUsage({ startTime: timestampFromDate(start), endTime: timestampFromDate(end) });

    it("makes test jobs free: estimated and actual costs are 0", () => {
      expect(testJob.status).toBe(JobStatus.COMPLETED);
      expect(testJob).toMatchObject({ test: true, totalEstimatedCost: "0.00", totalActualCost: "0.00" });
      expect(testJob.outputs.map((o) => [o.estimatedCost, o.actualCost])).toEqual([["0.00", "0.00"]]);
      expect(testJob.outputs[0]!.durationMs).toBeGreaterThan(0n);
      // The same spec on a live key costs something.
      expect(cents(live[0]!.totalActualCost)).toBeGreaterThan(0);
    });

    it("adds up the finished jobs: counts by status, outputs, minutes per codec/resolution/quality/priority, cost", async () => {
      expect(live.map((j) => j.status)).toEqual([JobStatus.COMPLETED, JobStatus.COMPLETED]);
      expect(failed.status).toBe(JobStatus.FAILED);
      expect(canceled.status).toBe(JobStatus.CANCELED);
      const [a, b] = live as [Job, Job];
      expect(a.outputs.map((o) => o.status)).toEqual([OutputStatus.COMPLETED, OutputStatus.COMPLETED]);
      const ms = (job: Job, i: number) => Number(job.outputs[i]!.durationMs);
      for (const d of [ms(a, 0), ms(a, 1), ms(b, 0)]) expect(d).toBeGreaterThan(0);

      const res = await getUsage(started, ended);
      expect(timestampDate(res.startTime!).getTime()).toBe(started.getTime());
      const usage = res.usage!;
      expect(usage).toMatchObject({ jobsCompleted: 2n, jobsPartial: 0n, jobsFailed: 1n, jobsCanceled: 1n, outputsCompleted: 3n, currency: "EUR" });
      expect(usage.minutes).toBeCloseTo((ms(a, 0) + ms(a, 1) + ms(b, 0)) / 60_000, 9);
      expect(cents(usage.totalActualCost)).toBe(cents(a.totalActualCost) + cents(b.totalActualCost));
      const lines = (u: Usage) =>
        u.lines.map((l) => ({ codec: l.codec, resolution: l.resolution, quality: l.quality, priority: l.priority, renditions: l.renditions, ms: Math.round(l.minutes * 60_000) }));
      // 720p asked for; 160 wide and 144/240 high from a 320x240 input are nearest the 480p tier.
      expect(lines(usage)).toEqual([
        { codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_480P, quality: Quality.ECONOMY, priority: Priority.ECONOMY, renditions: 2n, ms: 2 * ms(b, 0) },
        { codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_720P, quality: Quality.ECONOMY, priority: Priority.STANDARD, renditions: 1n, ms: ms(a, 0) },
        { codec: VideoCodec.VP9, resolution: Resolution.RESOLUTION_480P, quality: Quality.ECONOMY, priority: Priority.STANDARD, renditions: 1n, ms: ms(a, 1) },
      ]);

      const test = res.testUsage!;
      expect(test).toMatchObject({ jobsCompleted: 1n, jobsFailed: 0n, jobsCanceled: 0n, outputsCompleted: 1n, totalActualCost: "0.00" });
      expect(test.minutes).toBeCloseTo(ms(testJob, 0) / 60_000, 9);
      expect(lines(test)).toEqual([
        { codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_480P, quality: Quality.ECONOMY, priority: Priority.STANDARD, renditions: 1n, ms: ms(testJob, 0) },
      ]);
    });

    it("gives zeros for a range that excludes the jobs, and for another organization", async () => {
      const zero = { jobsCompleted: 0n, jobsPartial: 0n, jobsFailed: 0n, jobsCanceled: 0n, outputsCompleted: 0n, minutes: 0, lines: [], totalActualCost: "0.00" };
      const before = await getUsage(new Date(started.getTime() - 86_400_000), started);
      expect(before.usage).toMatchObject(zero);
      expect(before.testUsage).toMatchObject(zero);
      const later = await getUsage(ended, new Date(ended.getTime() + 86_400_000));
      expect(later.usage).toMatchObject(zero);
      const other = await newOrganization("usage elsewhere");
      const theirs = await api.client(UsageService, other).getUsage({ startTime: timestampFromDate(started), endTime: timestampFromDate(ended) });
      expect(theirs.usage).toMatchObject(zero);
    });

    it("refuses end_time not after start_time, a range over 366 days, and missing times with invalid_argument", async () => {
      const usage = api.client(UsageService);
      const now = new Date();
      for (const end of [now, new Date(now.getTime() - 1000)]) {
        const err = await connectError(getUsage(now, end));
        expect(err.code).toBe(Code.InvalidArgument);
        expect(violationsOf(err)).toMatchObject([{ field: "end_time", rule: "usage.end_after_start" }]);
      }
      const tooLong = await connectError(getUsage(now, new Date(now.getTime() + 367 * 86_400_000)));
      expect(violationsOf(tooLong)).toMatchObject([{ field: "end_time", rule: "usage.range_max" }]);
      await getUsage(now, new Date(now.getTime() + 366 * 86_400_000)); // the longest range allowed
      const missing = await connectError(usage.getUsage({}));
      expect(violationsOf(missing).map((v) => v.field).sort()).toEqual(["end_time", "start_time"]);
    });
  });
});
