/**
 * Per-organization limits (docs/api.md, Limits): the concurrent-job limit at Create, on
 * PostgreSQL (real concurrency: a pool of connections) and on PGlite, and the request rate limit
 * over Connect and gRPC. Both answer RESOURCE_EXHAUSTED naming the limit, with a retry hint in
 * the message, as google.rpc.RetryInfo and as Retry-After.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Duration } from "@bufbuild/protobuf/wkt";
import type { Message } from "@bufbuild/protobuf";
import { JobStatus } from "../../gen/rendition/v1/common_pb.js";
import { JobService } from "../../gen/rendition/v1/job_pb.js";
import { ErrorInfoSchema, RetryInfoSchema } from "../../services/api/resource-exhausted.js";
import { authHeaders, localJobRequest, startTestApi, type TestApi } from "../support/api-harness.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { connectError } from "../support/rpc.js";

type RetryInfo = Message & { retryDelay?: Duration };
type ErrorInfo = Message & { reason: string; domain: string; metadata: Record<string, string> };

function retryDelayMs(err: ConnectError): number {
  const [info] = err.findDetails(RetryInfoSchema) as RetryInfo[];
  expect(info?.retryDelay, "a google.rpc.RetryInfo detail").toBeDefined();
  return Number(info!.retryDelay!.seconds) * 1000 + info!.retryDelay!.nanos / 1e6;
}

function errorInfo(err: ConnectError): ErrorInfo {
  const [info] = err.findDetails(ErrorInfoSchema) as ErrorInfo[];
  expect(info, "a google.rpc.ErrorInfo detail").toBeDefined();
  return info!;
}

/** A read/write local origin of the organization (its own area under the local-origin root). */
function localOrigin(api: TestApi, organizationId: string) {
  return api.app.origins.create(organizationId, {
    name: "local",
    description: "",
    permissions: ["read", "write"],
    basePath: "",
    pathTemplate: "",
    httpHeaders: {},
    local: { rootDir: `${api.config.localOriginRoots[0]}/${organizationId}` },
  });
}

async function newOrganization(api: TestApi, name: string) {
  const organization = await api.app.auth.createOrganization(name);
  const key = await api.app.auth.createApiKey(organization.id, `${name} key`);
  return { apiKey: key.key, organizationId: organization.id };
}

const MAX_ACTIVE = 3;

describe.each([
  ["PostgreSQL", true],
  ["PGlite", false],
])("concurrent-job limit on %s", (_name, postgres) => {
  let database: TestDatabase | undefined;
  let api: TestApi;

  beforeAll(async () => {
    if (postgres) database = await createTestDatabase(inject("databaseUrl"));
    api = await startTestApi(database?.url, { RENDITION_MAX_ACTIVE_JOBS_PER_ORG: String(MAX_ACTIVE) });
  });
  afterAll(async () => {
    await api?.close();
    await database?.drop();
  });

  /** Unfinished jobs of the organization, as the database has them. */
  async function activeJobs(organizationId: string): Promise<number> {
    const rows = await api.app.database.db
      .selectFrom("jobs")
      .select("id")
      .where("organization_id", "=", organizationId)
      .where("status", "in", ["pending", "probing", "awaiting_confirmation", "processing"])
      .execute();
    return rows.length;
  }

  it("lets exactly the limit through when more Creates than free slots arrive at once, refusing the rest with the limit named", async () => {
    const organizationId = api.credentials.organization_id;
    const results = await Promise.allSettled(Array.from({ length: MAX_ACTIVE * 3 }, () => api.jobs.create(localJobRequest(api))));
    const created = results.filter((r) => r.status === "fulfilled");
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => r.reason as ConnectError);
    expect(created).toHaveLength(MAX_ACTIVE);
    expect(refused).toHaveLength(MAX_ACTIVE * 2);
    expect(await activeJobs(organizationId)).toBe(MAX_ACTIVE);
    for (const err of refused) {
      expect(err).toBeInstanceOf(ConnectError);
      expect(err.code).toBe(Code.ResourceExhausted);
      expect(err.rawMessage).toContain(`has ${MAX_ACTIVE} unfinished jobs, its concurrent job limit (RENDITION_MAX_ACTIVE_JOBS_PER_ORG=${MAX_ACTIVE}); retry after 30 s`);
      expect(retryDelayMs(err)).toBe(30_000);
      expect(errorInfo(err)).toMatchObject({ reason: "ACTIVE_JOB_LIMIT", domain: "rendition.v1", metadata: { limit: "RENDITION_MAX_ACTIVE_JOBS_PER_ORG", max_active_jobs: String(MAX_ACTIVE) } });
      expect(err.metadata.get("retry-after")).toBe("30");
    }
  });

  it("answers a retry of a stored job (same idempotency key) as a retry even at the limit", async () => {
    // The previous test left the organization at its limit; free one slot, take it with a key, retry.
    const { jobs } = await api.jobs.list({});
    const victim = jobs.find((j) => j.status === JobStatus.PENDING)!;
    await api.jobs.cancel({ id: victim.id });
    const request = localJobRequest(api, { idempotencyKey: "limit-retry" });
    const { job } = await api.jobs.create(request);
    expect(await activeJobs(api.credentials.organization_id)).toBe(MAX_ACTIVE);
    const retry = await api.jobs.create(request);
    expect(retry.job!.id).toBe(job!.id);
  });

  it("frees a slot when a job ends (canceled, or failed by the worker holding it)", async () => {
    const organizationId = api.credentials.organization_id;
    expect(await activeJobs(organizationId)).toBe(MAX_ACTIVE);
    expect((await connectError(api.jobs.create(localJobRequest(api)))).code).toBe(Code.ResourceExhausted);

    const { jobs } = await api.jobs.list({});
    const [first, second] = jobs.filter((j) => j.status === JobStatus.PENDING);
    await api.jobs.cancel({ id: first!.id });
    const { job: replacement } = await api.jobs.create(localJobRequest(api));
    expect(replacement!.status).toBe(JobStatus.PENDING);
    expect((await connectError(api.jobs.create(localJobRequest(api)))).code).toBe(Code.ResourceExhausted);

    // A worker's ending: the lease-guarded write the encoder makes for a permanent failure.
    const lease = await api.app.runs.claim(organizationId, second!.id, "test-worker", 60_000, ["pending"]);
    expect(lease).toBeDefined();
    expect(await api.app.runs.fail(lease!, "INPUT_NOT_FOUND", "the input is gone")).toBe("failed");
    expect((await api.jobs.create(localJobRequest(api))).job!.status).toBe(JobStatus.PENDING);
    expect(await activeJobs(organizationId)).toBe(MAX_ACTIVE);
  });

  it("counts each organization's jobs alone", async () => {
    expect((await connectError(api.jobs.create(localJobRequest(api)))).code).toBe(Code.ResourceExhausted);
    const other = await newOrganization(api, "Other org");
    const jobs = api.client(JobService, other);
    const origin = await localOrigin(api, other.organizationId);
    const request = { ...localJobRequest(api), inputOriginId: origin.id, outputOriginId: origin.id };
    const results = await Promise.allSettled(Array.from({ length: MAX_ACTIVE + 1 }, () => jobs.create(request)));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(MAX_ACTIVE);
    expect(results.filter((r) => r.status === "rejected").map((r) => ((r as PromiseRejectedResult).reason as ConnectError).code)).toEqual([Code.ResourceExhausted]);
    expect(await activeJobs(other.organizationId)).toBe(MAX_ACTIVE);
    expect(await activeJobs(api.credentials.organization_id)).toBe(MAX_ACTIVE);
  });
});

describe("request rate limit", () => {
  const RPS = 1;
  const BURST = 5;
  let api: TestApi;

  beforeAll(async () => {
    api = await startTestApi(undefined, { RENDITION_RATE_LIMIT_RPS: String(RPS), RENDITION_RATE_LIMIT_BURST: String(BURST), RENDITION_WATCH_HEARTBEAT_MS: "100" });
  });
  afterAll(async () => {
    await api?.close();
  });

  /** Sends `n` List calls at once; the refused ones' errors. */
  async function burst(jobs: ReturnType<TestApi["client"]>, n: number) {
    const results = await Promise.allSettled(Array.from({ length: n }, () => (jobs as TestApi["jobs"]).list({})));
    return {
      ok: results.filter((r) => r.status === "fulfilled").length,
      refused: results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => r.reason as ConnectError),
    };
  }

  it("answers a burst over the rate with resource_exhausted and the wait, then serves again after it; other organizations are unaffected", async () => {
    const a = await newOrganization(api, "Busy org");
    const jobs = api.client(JobService, a);
    const { ok, refused } = await burst(jobs, BURST + 5);
    // Never fewer than the burst; more only if a token came back while the calls arrived (1 s each).
    expect(ok).toBeGreaterThanOrEqual(BURST);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    for (const err of refused) {
      expect(err.code).toBe(Code.ResourceExhausted);
      expect(err.rawMessage).toMatch(new RegExp(`^organization ${a.organizationId} is over its request rate limit of ${RPS} requests per second \\(burst ${BURST}\\); retry after \\d+\\.\\d{3} s$`));
      const delay = retryDelayMs(err);
      expect(delay).toBeGreaterThan(0);
      expect(delay).toBeLessThanOrEqual(1000 / RPS);
      expect(errorInfo(err)).toMatchObject({ reason: "RATE_LIMITED", metadata: { limit: "RENDITION_RATE_LIMIT_RPS", requests_per_second: String(RPS), burst: String(BURST) } });
      expect(err.metadata.get("retry-after")).toBe("1");
    }

    // Another organization has a bucket of its own.
    const b = await newOrganization(api, "Quiet org");
    expect((await api.client(JobService, b).list({})).jobs).toEqual([]);

    // The plain HTTP view of the same answer: 429 with Retry-After.
    const res = await fetch(`${api.baseUrl}/rendition.v1.JobService/List`, {
      method: "POST",
      headers: { authorization: `Bearer ${a.apiKey}`, "x-organization-id": a.organizationId, "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe("1");
    expect(await res.json()).toMatchObject({ code: "resource_exhausted" });

    // Waiting as long as the hint says is enough.
    const last = await connectError((jobs as TestApi["jobs"]).list({}));
    expect(last.code).toBe(Code.ResourceExhausted);
    await new Promise((resolve) => setTimeout(resolve, retryDelayMs(last) + 20));
    expect((await (jobs as TestApi["jobs"]).list({})).jobs).toEqual([]);
  });

  it("gives gRPC callers the same code, RetryInfo and a retry-after trailer", async () => {
    const a = await newOrganization(api, "gRPC org");
    const jobs = createClient(JobService, createGrpcTransport({ baseUrl: api.baseUrl, interceptors: [authHeaders(a)] }));
    const results = await Promise.allSettled(Array.from({ length: BURST + 3 }, () => jobs.list({})));
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => ConnectError.from(r.reason));
    expect(refused.length).toBeGreaterThanOrEqual(1);
    for (const err of refused) {
      expect(err.code).toBe(Code.ResourceExhausted);
      expect(retryDelayMs(err)).toBeGreaterThan(0);
      expect(errorInfo(err).reason).toBe("RATE_LIMITED");
      expect(err.metadata.get("retry-after")).toBe("1");
    }
  });

  it("counts a Watch once, when it opens, however many messages it streams", async () => {
    const a = await newOrganization(api, "Watching org");
    // A job of this organization to watch (written directly: Create would take a token too).
    const origin = await localOrigin(api, a.organizationId);
    const job = await api.app.jobs.create(a.organizationId, { ...localJobRequest(api), inputOriginId: origin.id, outputOriginId: origin.id });
    const jobs = api.client(JobService, a);
    const stop = new AbortController();
    let heartbeats = 0;
    let enough!: () => void;
    const threeHeartbeats = new Promise<void>((resolve) => (enough = resolve));
    const watching = (async () => {
      for await (const message of (jobs as TestApi["jobs"]).watch({ id: job.id }, { signal: stop.signal })) {
        if (message.job && ++heartbeats >= 4) enough();
      }
    })().catch((err: unknown) => (stop.signal.aborted ? undefined : err));
    await threeHeartbeats; // the snapshot and three heartbeats
    // Had each streamed message taken a token, 1 + 3 would be gone and at most ~2 calls pass.
    const { ok, refused } = await burst(jobs, BURST + 3);
    expect(ok).toBeGreaterThanOrEqual(BURST - 1);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    stop.abort();
    expect(await watching).toBeUndefined();
  });
});
