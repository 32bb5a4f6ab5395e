/**
 * Authentication (API key + X-Organization-ID on every RPC), tenant isolation across every RPC
 * that takes an id, and how API keys are stored.
 */
import { createHash, randomBytes } from "node:crypto";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, realpathSync, symlinkSync } from "node:fs";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { JobStatus, OutputType, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobService } from "../../gen/rendition/v1/job_pb.js";
import { OriginPermission, OriginService, OriginStatus } from "../../gen/rendition/v1/origin_pb.js";
import { Container, PresetService } from "../../gen/rendition/v1/preset_pb.js";
import { authHeaders, startTestApi, type TestApi } from "../support/api-harness.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { connectError, violationsOf } from "../support/rpc.js";

let database: TestDatabase;
let api: TestApi;

beforeAll(async () => {
  database = await createTestDatabase(inject("databaseUrl"));
  api = await startTestApi(database.url);
});
afterAll(async () => {
  await api?.close();
  await database?.drop();
});

// ---------------------------------------------------------------------------------------------
// Helpers

interface Auth {
  apiKey: string;
  organizationId: string;
}

/** Clients for all three services with exactly the given headers (none of them if omitted). */
function clientsWithHeaders(headers: Record<string, string>) {
  const transport = createConnectTransport({
    baseUrl: api.baseUrl,
    httpVersion: "1.1",
    interceptors: [
      (next) => (req) => {
        for (const [name, value] of Object.entries(headers)) req.header.set(name, value);
        return next(req);
      },
    ],
  });
  return { jobs: createClient(JobService, transport), origins: createClient(OriginService, transport), presets: createClient(PresetService, transport) };
}

function clientsFor(auth: Auth) {
  const transport = createConnectTransport({ baseUrl: api.baseUrl, httpVersion: "1.1", interceptors: [authHeaders(auth)] });
  return { jobs: createClient(JobService, transport), origins: createClient(OriginService, transport), presets: createClient(PresetService, transport) };
}

/** Reads a server stream to its end; resolves with the messages or rejects with the stream's error. */
async function drain<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const messages: T[] = [];
  for await (const message of stream) messages.push(message);
  return messages;
}

function bootstrapAuth(): Auth {
  return { apiKey: api.credentials.api_key, organizationId: api.credentials.organization_id };
}

function sha256(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/** POSTs JSON with the real curl binary and returns the HTTP status and parsed body. */
function curlPost(path: string, body: unknown, headers: Record<string, string>): Promise<{ status: number; json: any }> {
  const marker = "\n--status--";
  const args = ["-sS", "--max-time", "15", "-X", "POST", "-H", "Content-Type: application/json", "--data-binary", JSON.stringify(body)];
  for (const [name, value] of Object.entries(headers)) args.push("-H", `${name}: ${value}`);
  args.push("-w", `${marker}%{http_code}`, `${api.baseUrl}${path}`);
  return new Promise((resolve, reject) => {
    execFile("curl", args, { timeout: 20_000 }, (err, stdout) => {
      if (err) return reject(err);
      const at = stdout.lastIndexOf(marker);
      resolve({ status: Number(stdout.slice(at + marker.length)), json: JSON.parse(stdout.slice(0, at)) });
    });
  });
}

const UNKNOWN_KEY = `rnd_live_${randomBytes(32).toString("base64url")}`;

// ---------------------------------------------------------------------------------------------
// Authentication

describe("authentication", () => {
  let otherOrganizationId: string;

  beforeAll(async () => {
    otherOrganizationId = (await api.app.auth.createOrganization("Someone else")).id;
  });

  it("answers UNAUTHENTICATED without an Authorization header", async () => {
    const { jobs, origins, presets } = clientsWithHeaders({ "X-Organization-ID": api.credentials.organization_id });
    const err = await connectError(jobs.list({}));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toContain("Authorization: Bearer");
    // Every service, and the server-streaming method too.
    expect((await connectError(origins.list({}))).code).toBe(Code.Unauthenticated);
    expect((await connectError(presets.get({ idOrSlug: "h264_1080p_standard" }))).code).toBe(Code.Unauthenticated);
    expect((await connectError(drain(jobs.watch({ id: "job_whatever" })))).code).toBe(Code.Unauthenticated);
  });

  it("answers UNAUTHENTICATED for a malformed Authorization header", async () => {
    for (const authorization of [`Basic ${api.credentials.api_key}`, "Bearer", `Bearer ${api.credentials.api_key} extra`, api.credentials.api_key]) {
      const { jobs } = clientsWithHeaders({ Authorization: authorization, "X-Organization-ID": api.credentials.organization_id });
      expect((await connectError(jobs.list({}))).code, authorization).toBe(Code.Unauthenticated);
    }
  });

  it("answers UNAUTHENTICATED for an unknown key", async () => {
    const { jobs } = clientsFor({ apiKey: UNKNOWN_KEY, organizationId: api.credentials.organization_id });
    const err = await connectError(jobs.list({}));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toMatch(/unknown or revoked/);
  });

  it("answers UNAUTHENTICATED for a revoked key, which worked before", async () => {
    const created = await api.app.auth.createApiKey(api.credentials.organization_id, "to be revoked");
    const { jobs } = clientsFor({ apiKey: created.key, organizationId: api.credentials.organization_id });
    await jobs.list({}); // works while active
    expect(await api.app.auth.revokeApiKey(created.id)).toBe(true);
    expect(await api.app.auth.revokeApiKey(created.id)).toBe(false);
    const err = await connectError(jobs.list({}));
    expect(err.code).toBe(Code.Unauthenticated);
    expect((await connectError(drain(jobs.watch({ id: "job_whatever" })))).code).toBe(Code.Unauthenticated);
    // Revoking one key leaves the organization's other keys working.
    await api.jobs.list({});
  });

  it("answers PERMISSION_DENIED for a valid key with another organization's X-Organization-ID", async () => {
    for (const organizationId of [otherOrganizationId, "org_doesnotexist"]) {
      const { jobs, presets } = clientsFor({ apiKey: api.credentials.api_key, organizationId });
      const err = await connectError(jobs.list({}));
      expect(err.code, organizationId).toBe(Code.PermissionDenied);
      expect((await connectError(presets.list({}))).code).toBe(Code.PermissionDenied);
      expect((await connectError(drain(jobs.watch({ id: "job_whatever" })))).code).toBe(Code.PermissionDenied);
    }
  });

  it("answers UNAUTHENTICATED for a valid key without X-Organization-ID (or a blank one)", async () => {
    const withoutOrganization: Array<Record<string, string>> = [
      { Authorization: `Bearer ${api.credentials.api_key}` },
      { Authorization: `Bearer ${api.credentials.api_key}`, "X-Organization-ID": "  " },
    ];
    for (const headers of withoutOrganization) {
      const { jobs } = clientsWithHeaders(headers);
      const err = await connectError(jobs.list({}));
      expect(err.code).toBe(Code.Unauthenticated);
      expect(err.rawMessage).toContain("X-Organization-ID");
    }
  });

  it("authenticates before validating: an invalid request without credentials is UNAUTHENTICATED", async () => {
    const { jobs } = clientsWithHeaders({});
    const err = await connectError(jobs.create({ outputOriginId: "", outputs: [] }));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.findDetails(ViolationsSchema)).toEqual([]);
  });

  it("answers HTTP 401 and 403 with the Connect error body over curl", async () => {
    const path = "/rendition.v1.JobService/List";
    const revoked = await api.app.auth.createApiKey(api.credentials.organization_id, "revoked for curl");
    await api.app.auth.revokeApiKey(revoked.id);
    const org = api.credentials.organization_id;
    const cases: Array<[string, Record<string, string>, number, string]> = [
      ["no Authorization", { "X-Organization-ID": org }, 401, "unauthenticated"],
      ["unknown key", { Authorization: `Bearer ${UNKNOWN_KEY}`, "X-Organization-ID": org }, 401, "unauthenticated"],
      ["revoked key", { Authorization: `Bearer ${revoked.key}`, "X-Organization-ID": org }, 401, "unauthenticated"],
      ["no X-Organization-ID", { Authorization: `Bearer ${api.credentials.api_key}` }, 401, "unauthenticated"],
      ["another organization", { Authorization: `Bearer ${api.credentials.api_key}`, "X-Organization-ID": otherOrganizationId }, 403, "permission_denied"],
      ["valid", { Authorization: `Bearer ${api.credentials.api_key}`, "X-Organization-ID": org }, 200, ""],
    ];
    for (const [name, headers, status, code] of cases) {
      const res = await curlPost(path, {}, headers);
      expect(res.status, name).toBe(status);
      if (code) {
        expect(res.json.code, name).toBe(code);
        expect(typeof res.json.message, name).toBe("string");
      } else {
        expect(res.json.pagination, name).toBeDefined();
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Tenancy

describe("tenant isolation", () => {
  /** Organization A is the bootstrap organization; B is created here with its own key and origin. */
  let a: ReturnType<typeof clientsFor>;
  let b: ReturnType<typeof clientsFor>;
  let orgB: Auth;
  let orgBOriginId: string;
  /** The server's first allowed local root (the bootstrap origin's directory) and the two organizations' areas in it. */
  let root: string;
  let aArea: string;
  let bArea: string;
  // Organization A's resources.
  let aJobId: string;
  let aConfirmableJobId: string;
  let aOriginId: string;
  let aPresetId: string;
  const aPresetSlug = "tenant_a_preset";
  const aIdempotencyKey = "tenant-shared-key";

  const presetSpec = { container: Container.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_720P }] };

  beforeAll(async () => {
    a = clientsFor(bootstrapAuth());

    const organization = await api.app.auth.createOrganization("Organization B");
    const key = await api.app.auth.createApiKey(organization.id, "org B key");
    orgB = { apiKey: key.key, organizationId: organization.id };
    b = clientsFor(orgB);

    // Org B's own local origin: its area <root>/<org B id> itself, which the server creates on first
    // use. (Org A's bootstrap origin is the root itself; every other local origin lives in its
    // organization's area.)
    root = api.config.localOriginRoots[0]!;
    bArea = join(root, orgB.organizationId);
    aArea = join(root, api.credentials.organization_id);
    expect(existsSync(bArea)).toBe(false);
    const bOrigin = await b.origins.create({
      name: "B storage",
      permissions: [OriginPermission.READ, OriginPermission.WRITE],
      local: { rootDir: bArea },
    });
    orgBOriginId = bOrigin.origin!.id;

    // Org A: a job (pending, so Cancel would succeed), a job awaiting confirmation (so Confirm
    // would succeed), an extra origin in its area and a preset.
    mkdirSync(join(aArea, "extra"), { recursive: true });
    aOriginId = (
      await a.origins.create({
        name: "A extra storage",
        description: "org A only",
        permissions: [OriginPermission.READ, OriginPermission.WRITE],
        local: { rootDir: join(aArea, "extra") },
      })
    ).origin!.id;
    aPresetId = (await a.presets.create({ slug: aPresetSlug, name: "A preset", spec: presetSpec })).preset!.id;
    aJobId = (
      await a.jobs.create({
        inputOriginId: aOriginId,
        inputPath: "in.mp4",
        outputOriginId: aOriginId,
        idempotencyKey: aIdempotencyKey,
        outputs: [{ preset: aPresetId }],
      })
    ).job!.id;
    aConfirmableJobId = (
      await a.jobs.create({
        inputUrl: "https://example.com/a.mp4",
        outputOriginId: api.credentials.local_origin_id,
        delayedStart: true,
        outputs: [{ preset: "h264_1080p_standard" }],
      })
    ).job!.id;
    // Stand in for the worker's probe stage, which parks delayed-start jobs here.
    await database.db.updateTable("jobs").set({ status: "awaiting_confirmation" }).where("id", "=", aConfirmableJobId).execute();
  });

  /** A valid job request for org B, writing to its own origin. */
  function bJobRequest() {
    return {
      inputOriginId: orgBOriginId,
      inputPath: "in.mp4",
      outputOriginId: orgBOriginId,
      outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264 }] }],
    };
  }

  describe("JobService", () => {
    it("Get, Cancel, Confirm and Watch of org A's jobs are NOT_FOUND for org B, and change nothing", async () => {
      for (const id of [aJobId, aConfirmableJobId]) {
        expect((await connectError(b.jobs.get({ id }))).code).toBe(Code.NotFound);
        expect((await connectError(b.jobs.cancel({ id }))).code).toBe(Code.NotFound);
        expect((await connectError(b.jobs.confirm({ id }))).code).toBe(Code.NotFound);
        expect((await connectError(drain(b.jobs.watch({ id })))).code).toBe(Code.NotFound);
      }
      expect((await a.jobs.get({ id: aJobId })).job!.status).toBe(JobStatus.PENDING);
      expect((await a.jobs.get({ id: aConfirmableJobId })).job!.status).toBe(JobStatus.AWAITING_CONFIRMATION);
      const outbox = await database.db.selectFrom("outbox").select("topic").where("job_id", "in", [aJobId, aConfirmableJobId]).execute();
      expect(outbox.map((o) => o.topic)).toEqual(["job.created", "job.created"]);
    });

    it("Create with org A's origin as input or output is NOT_FOUND, and stores nothing", async () => {
      const before = (await b.jobs.list({})).pagination!.totalCount;
      const asInput = await connectError(b.jobs.create({ ...bJobRequest(), inputOriginId: aOriginId }));
      expect(asInput.code).toBe(Code.NotFound);
      const asOutput = await connectError(b.jobs.create({ ...bJobRequest(), outputOriginId: aOriginId }));
      expect(asOutput.code).toBe(Code.NotFound);
      const bootstrapAsOutput = await connectError(
        b.jobs.create({ inputUrl: "https://example.com/b.mp4", outputOriginId: api.credentials.local_origin_id, outputs: bJobRequest().outputs }),
      );
      expect(bootstrapAsOutput.code).toBe(Code.NotFound);
      expect((await b.jobs.list({})).pagination!.totalCount).toBe(before);
    });

    it("Create with org A's preset (by id or slug) does not find it", async () => {
      for (const preset of [aPresetId, aPresetSlug]) {
        const err = await connectError(b.jobs.create({ ...bJobRequest(), outputs: [{ preset }] }));
        expect(err.code).toBe(Code.InvalidArgument);
        expect(err.findDetails(ViolationsSchema)[0]!.violations.map((v) => v.ruleId)).toEqual(["output.preset_not_found"]);
      }
    });

    it("an idempotency key used by org A starts a new job for org B, not a replay of A's", async () => {
      const { job } = await b.jobs.create({ ...bJobRequest(), idempotencyKey: aIdempotencyKey });
      expect(job!.id).not.toBe(aJobId);
      expect(job!.outputOrigin!.id).toBe(orgBOriginId);
      const again = await b.jobs.create({ ...bJobRequest(), idempotencyKey: aIdempotencyKey });
      expect(again.job!.id).toBe(job!.id);
    });

    it("List of org B contains only org B's jobs, and the other way round", async () => {
      const { job } = await b.jobs.create(bJobRequest());
      const bList = await b.jobs.list({ pagination: { limit: 100 } });
      const bIds = bList.jobs.map((j) => j.id);
      expect(bIds).toContain(job!.id);
      expect(bIds).not.toContain(aJobId);
      expect(bIds).not.toContain(aConfirmableJobId);
      const bRows = await database.db.selectFrom("jobs").select("id").where("organization_id", "=", orgB.organizationId).execute();
      expect(bList.pagination!.totalCount).toBe(bRows.length);
      expect(bIds.sort()).toEqual(bRows.map((r) => r.id).sort());

      const aIds = (await a.jobs.list({ pagination: { limit: 100 } })).jobs.map((j) => j.id);
      expect(aIds).toContain(aJobId);
      expect(aIds).not.toContain(job!.id);
      const awaitingB = await b.jobs.list({ status: JobStatus.AWAITING_CONFIRMATION });
      expect(awaitingB.jobs).toEqual([]);
    });
  });

  describe("OriginService", () => {
    it("Get, Update, Delete and Validate of org A's origins are NOT_FOUND for org B, and change nothing", async () => {
      for (const id of [aOriginId, api.credentials.local_origin_id]) {
        expect((await connectError(b.origins.get({ id }))).code).toBe(Code.NotFound);
        expect((await connectError(b.origins.update({ id, name: "taken over", pathTemplate: "{job_id}" }))).code).toBe(Code.NotFound);
        expect((await connectError(b.origins.delete({ id }))).code).toBe(Code.NotFound);
        expect((await connectError(b.origins.validate({ id }))).code).toBe(Code.NotFound);
      }
      const { origin } = await a.origins.get({ id: aOriginId });
      expect(origin!.name).toBe("A extra storage");
      expect(origin!.pathTemplate).toBe("");
      expect(origin!.status).toBe(OriginStatus.ACTIVE);
      expect(origin!.archivedAt).toBeUndefined();
      expect((await a.origins.get({ id: api.credentials.local_origin_id })).origin!.status).toBe(OriginStatus.ACTIVE);
    });

    it("List of org B contains only org B's origins, archived ones included", async () => {
      const bIds = (await b.origins.list({ includeArchived: true })).origins.map((o) => o.id);
      expect(bIds).toEqual([orgBOriginId]);
      const aIds = (await a.origins.list({ includeArchived: true })).origins.map((o) => o.id);
      expect(aIds).toContain(aOriginId);
      expect(aIds).toContain(api.credentials.local_origin_id);
      expect(aIds).not.toContain(orgBOriginId);
    });

    it("Create of a local origin in org A's area or on the bootstrap root is refused for org B (local.root_dir), and stores nothing", async () => {
      const { origin: bootstrap } = await a.origins.get({ id: api.credentials.local_origin_id });
      const storage = bootstrap!.local!.rootDir;
      // The default organization's first-start origin must not contain any organization's area,
      // or org A could read org B's files through it.
      expect(relative(storage, bArea).startsWith("..")).toBe(true);
      expect(relative(storage, root).startsWith("..")).toBe(true);
      const outside = { field: "local.root_dir", rule: "origin.local_root_outside", message: `must be inside this organization's directory: ${bArea}` };
      for (const rootDir of [
        storage, // the bootstrap origin's directory
        root, // the root holding every organization's area
        aArea,
        join(aArea, "extra"), // org A's existing origin
        `${bArea}/../${api.credentials.organization_id}`, // into A's area through '..'
        `${bArea}/../..`,
      ]) {
        const err = await connectError(b.origins.create({ name: "trespass", permissions: [OriginPermission.READ, OriginPermission.WRITE], local: { rootDir } }));
        expect(err.code, rootDir).toBe(Code.InvalidArgument);
        expect(violationsOf(err), rootDir).toEqual([outside]);
      }

      // Nor through a symbolic link in B's own area pointing into A's area or at the root.
      for (const [name, target] of [
        ["link-to-a", aArea],
        ["link-to-root", root],
      ] as const) {
        const link = join(bArea, name);
        symlinkSync(target, link, "dir");
        const err = await connectError(b.origins.create({ name: "trespass", permissions: [OriginPermission.READ], local: { rootDir: link } }));
        expect(err.code, link).toBe(Code.InvalidArgument);
        expect(violationsOf(err), link).toEqual([
          { field: "local.root_dir", rule: "origin.local_root_outside", message: `resolves (through a symbolic link) to ${realpathSync(target)}, outside ${bArea}` },
        ]);
      }

      expect((await b.origins.list({ includeArchived: true })).origins.map((o) => o.id)).toEqual([orgBOriginId]);
      const rows = await database.db.selectFrom("origins").select("id").where("name", "=", "trespass").execute();
      expect(rows).toEqual([]);
    });

    it("Create of a local origin under <root>/<org B id> works for org B, and the origin is B's only", async () => {
      // The one made in beforeAll: the area itself, created on first use.
      const { origin: own } = await b.origins.get({ id: orgBOriginId });
      expect(own).toMatchObject({ status: OriginStatus.ACTIVE, local: { rootDir: realpathSync(bArea) } });

      mkdirSync(join(bArea, "renders"), { recursive: true });
      const { origin } = await b.origins.create({ name: "B renders", permissions: [OriginPermission.READ, OriginPermission.WRITE], local: { rootDir: join(bArea, "renders") } });
      expect(origin).toMatchObject({ status: OriginStatus.ACTIVE, local: { rootDir: realpathSync(join(bArea, "renders")) } });
      expect((await connectError(a.origins.get({ id: origin!.id }))).code).toBe(Code.NotFound);
      // B can write its outputs there.
      const { job } = await b.jobs.create({ ...bJobRequest(), outputOriginId: origin!.id });
      expect(job!.outputOrigin!.id).toBe(origin!.id);
    });
  });

  describe("PresetService", () => {
    it("Get (by id and slug), Update and Delete of org A's preset are NOT_FOUND for org B, and change nothing", async () => {
      expect((await connectError(b.presets.get({ idOrSlug: aPresetId }))).code).toBe(Code.NotFound);
      expect((await connectError(b.presets.get({ idOrSlug: aPresetSlug }))).code).toBe(Code.NotFound);
      expect((await connectError(b.presets.update({ id: aPresetId, name: "taken over" }))).code).toBe(Code.NotFound);
      expect((await connectError(b.presets.delete({ id: aPresetId }))).code).toBe(Code.NotFound);
      const { preset } = await a.presets.get({ idOrSlug: aPresetId });
      expect(preset!.name).toBe("A preset");
      expect(preset!.slug).toBe(aPresetSlug);
    });

    it("slugs are per organization: org B can use org A's slug and gets its own preset", async () => {
      const { preset } = await b.presets.create({ slug: aPresetSlug, name: "B preset", spec: presetSpec });
      expect(preset!.id).not.toBe(aPresetId);
      expect((await b.presets.get({ idOrSlug: aPresetSlug })).preset!.id).toBe(preset!.id);
      expect((await a.presets.get({ idOrSlug: aPresetSlug })).preset!.id).toBe(aPresetId);
      const bOwn = (await b.presets.list({ excludeSystem: true })).presets.map((p) => p.id);
      expect(bOwn).toEqual([preset!.id]);
      const aOwn = (await a.presets.list({ excludeSystem: true })).presets.map((p) => p.id);
      expect(aOwn).toContain(aPresetId);
      expect(aOwn).not.toContain(preset!.id);
    });

    it("org B still sees and uses the system presets", async () => {
      const { preset } = await b.presets.get({ idOrSlug: "h264_1080p_standard" });
      expect(preset!.systemPreset).toBe(true);
      expect(preset!.id).toBe("pst_system_h264_1080p_standard");
      const listed = await b.presets.list({ pagination: { limit: 100 } });
      const ids = listed.presets.map((p) => p.id);
      expect(ids).toContain("pst_system_h264_1080p_standard");
      expect(ids).not.toContain(aPresetId);
      // System presets are read-only for every organization.
      expect((await connectError(b.presets.delete({ id: "pst_system_h264_1080p_standard" }))).code).toBe(Code.FailedPrecondition);
      const { job } = await b.jobs.create({ ...bJobRequest(), outputs: [{ preset: "h264_1080p_standard" }] });
      expect(job!.outputs[0]!.presetId).toBe("pst_system_h264_1080p_standard");
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Key storage

describe("API key storage", () => {
  it("stores only the SHA-256 digest: the plain key appears in no column", async () => {
    const org = await api.app.auth.createOrganization("Digest check");
    const created = await api.app.auth.createApiKey(org.id, "digest check");
    const keys = [
      { id: created.id, key: created.key },
      { id: (await api.app.auth.findActiveKey(sha256(api.credentials.api_key)))!.id, key: api.credentials.api_key },
    ];
    const rows = await database.db.selectFrom("api_keys").selectAll().execute();
    expect(rows.length).toBeGreaterThanOrEqual(2);
    const everything = JSON.stringify(rows);
    for (const { id, key } of keys) {
      expect(key).toMatch(/^rnd_live_[A-Za-z0-9_-]{43}$/);
      const secret = key.slice("rnd_live_".length);
      // Neither the key nor its random part is stored anywhere in the table.
      expect(everything).not.toContain(key);
      expect(everything).not.toContain(secret);
      const row = rows.find((r) => r.id === id)!;
      for (const [column, value] of Object.entries(row)) {
        expect(String(value), column).not.toContain(secret.slice(0, 16));
      }
      expect(row.key_digest).toBe(sha256(key));
      expect(row.key_digest).toMatch(/^[0-9a-f]{64}$/);
      // Only a short, non-secret prefix is kept for display.
      expect(key.startsWith(row.display_prefix)).toBe(true);
      expect(row.display_prefix.length).toBeLessThanOrEqual("rnd_live_".length + 4);
    }
  });
});
