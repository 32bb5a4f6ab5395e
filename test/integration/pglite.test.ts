/**
 * Embedded mode: the same repositories and the whole API on PGlite (PostgreSQL compiled to WASM).
 * Each PGlite start takes seconds, so this file uses two instances: one in memory for the
 * repository layer and migrations, one behind startTestApi(undefined).
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { JobStatus, OutputType, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobServiceCreateRequestSchema, WatchEvent, type JobServiceCreateRequest } from "../../gen/rendition/v1/job_pb.js";
import { OriginPermission, OriginStatus } from "../../gen/rendition/v1/origin_pb.js";
import { Container, PresetSpecSchema } from "../../gen/rendition/v1/preset_pb.js";
import { AuthRepository } from "../../services/auth/auth.repository.js";
import { digestApiKey } from "../../services/auth/api-key.js";
import { connectPglite, type DatabaseHandle } from "../../services/db/connect.js";
import { MIGRATIONS, migrateDown, migrateToLatest } from "../../services/db/migrate.js";
import { JobRepository } from "../../services/jobs/job.repository.js";
import { JobManager } from "../../services/jobs/job.service.js";
import { CredentialCipher } from "../../services/origins/credential-cipher.js";
import { OriginRepository } from "../../services/origins/origin.repository.js";
import { OriginManager } from "../../services/origins/origin.service.js";
import { PresetRepository } from "../../services/presets/preset.repository.js";
import { PresetManager } from "../../services/presets/preset.service.js";
import { InProcessEventBus } from "../../services/queue/event-bus.js";
import { createStorageDriver } from "../../services/storage/storage-driver.js";
import { localJobRequest, startTestApi, type JobRequestInit, type TestApi } from "../support/api-harness.js";
import { connectError } from "../support/rpc.js";

const TABLES = ["api_keys", "job_outputs", "job_tasks", "job_thumbnails", "jobs", "organization_webhook_secrets", "organizations", "origins", "outbox", "presets", "uploads", "webhook_attempts", "webhook_deliveries", "webhook_endpoints", "webhook_events"];

async function publicTables(handle: DatabaseHandle): Promise<string[]> {
  const { rows } = await sql<{ table_name: string }>`
    SELECT table_name FROM information_schema.tables
    WHERE table_schema = 'public' AND table_name NOT LIKE 'kysely_%'
    ORDER BY table_name`.execute(handle.db);
  return rows.map((r) => r.table_name);
}

describe("repositories on in-memory PGlite", () => {
  let handle: DatabaseHandle;
  let storageRoot: string;
  let events: InProcessEventBus;
  let origins: OriginManager;
  let presets: PresetManager;
  let jobs: JobManager;
  let auth: AuthRepository;

  function wire(): void {
    origins = new OriginManager(
      new OriginRepository(handle.db),
      new CredentialCipher(randomBytes(32)),
      (config, basePath, permissions) => createStorageDriver(config).probe(basePath, permissions),
      { allowLocalOrigins: true, localOriginRoots: [storageRoot] },
    );
    presets = new PresetManager(new PresetRepository(handle.db));
    jobs = new JobManager(new JobRepository(handle.db), origins, presets, events);
    auth = new AuthRepository(handle.db);
  }

  beforeAll(async () => {
    storageRoot = mkdtempSync(join(tmpdir(), "rendition-pglite-"));
    handle = await connectPglite(); // no directory: in memory
    events = new InProcessEventBus();
    wire();
  });
  afterAll(async () => {
    await events?.close();
    await handle?.close();
    if (storageRoot) rmSync(storageRoot, { recursive: true, force: true });
  });

  it("migrates an empty database to the latest schema; a second run is a no-op", async () => {
    expect(handle.kind).toBe("pglite");
    expect(await publicTables(handle)).toEqual([]);
    expect(await migrateToLatest(handle.db)).toEqual(Object.keys(MIGRATIONS));
    expect(await publicTables(handle)).toEqual(TABLES);
    expect(await migrateToLatest(handle.db)).toEqual([]);
  });

  /** A local origin's input: `rootDir` as given. */
  function localInput(rootDir: string, name = "local") {
    return { name, description: "", permissions: ["read", "write"] as Array<"read" | "write">, basePath: "out", pathTemplate: "", local: { rootDir }, httpHeaders: {} };
  }

  /** An organization with a key and a local origin in its own area `<storageRoot>/<organization id>/media`. */
  async function seed() {
    const org = await auth.createOrganization("Embedded org");
    const key = await auth.createApiKey(org.id, "embedded");
    mkdirSync(join(storageRoot, org.id, "media"), { recursive: true });
    const origin = await origins.create(org.id, localInput(join(storageRoot, org.id, "media")));
    return { org, key, origin };
  }

  function jobRequest(originId: string, overrides: Partial<Omit<MessageInitShape<typeof JobServiceCreateRequestSchema>, "$typeName">> = {}): JobServiceCreateRequest {
    return create(JobServiceCreateRequestSchema, {
      inputOriginId: originId,
      inputPath: "in.mp4",
      outputOriginId: originId,
      outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_720P }] }],
      ...overrides,
    });
  }

  it("stores organizations, API keys and origins (jsonb, timestamps, booleans)", async () => {
    const { org, key, origin } = await seed();
    expect(await auth.countOrganizations()).toBe(1);
    expect(await auth.findActiveKey(digestApiKey(key.key))).toMatchObject({ id: key.id, organizationId: org.id });
    expect(await auth.revokeApiKey(key.id)).toBe(true);
    expect(await auth.revokeApiKey(key.id)).toBe(false);
    expect(await auth.findActiveKey(digestApiKey(key.key))).toBeUndefined();

    const stored = await origins.get(org.id, origin.id);
    expect(stored).toMatchObject({
      provider: "local",
      canRead: true,
      canWrite: true,
      status: "active",
      basePath: "out",
      location: { local: { rootDir: realpathSync(join(storageRoot, org.id, "media")) } },
    });
    expect(stored.createdAt).toBeInstanceOf(Date);
    expect(stored.createdAt.getTime()).toBe(origin.createdAt.getTime());

    const renamed = await origins.update(org.id, origin.id, { name: "renamed" });
    expect(renamed.name).toBe("renamed");
    expect(renamed.description).toBe("");
    const archived = await origins.archive(org.id, origin.id);
    expect(archived.status).toBe("archived");
    expect(archived.archivedAt).toBeInstanceOf(Date);
    const visible = await origins.list(org.id, { limit: 10 }, false);
    expect(visible.items.map((o) => o.id)).not.toContain(origin.id);
    const all = await origins.list(org.id, { limit: 10 }, true);
    expect(all.items.map((o) => o.id)).toContain(origin.id);
    expect(all.total).toBe(visible.total + 1);
  });

  it("OriginManager keeps callers' local origins in their organization's area; only a trusted origin may use the root", async () => {
    const org = await auth.createOrganization("Area org");
    const other = await auth.createOrganization("Other area org");
    mkdirSync(join(storageRoot, other.id), { recursive: true });
    const outside = { field: "local.root_dir", rule: "origin.local_root_outside", message: `must be inside this organization's directory: ${join(storageRoot, org.id)}` };
    for (const rootDir of [storageRoot, join(storageRoot, other.id)]) {
      await expect(origins.create(org.id, localInput(rootDir))).rejects.toMatchObject({ violations: [outside] });
    }
    await expect(origins.create(org.id, localInput("relative"))).rejects.toMatchObject({
      violations: [{ field: "local.root_dir", rule: "origin.local_root_absolute", message: "must be an absolute path" }],
    });
    // The area is created on first use; the origin's directory is not.
    const missing = join(storageRoot, org.id, "nope");
    await expect(origins.create(org.id, localInput(missing))).rejects.toMatchObject({
      violations: [{ field: "local.root_dir", rule: "origin.local_root_missing", message: `${missing} does not exist` }],
    });
    const own = await origins.create(org.id, localInput(join(storageRoot, org.id)));
    expect(own.location).toEqual({ local: { rootDir: realpathSync(join(storageRoot, org.id)) } });
    expect((await origins.list(org.id, { limit: 10 }, true)).items.map((o) => o.id)).toEqual([own.id]);

    // The server's own first-start origin (trusted) is the root itself, also when callers' local origins are disabled.
    const trusted = await origins.create(org.id, localInput(storageRoot, "first start"), { trusted: true });
    expect(trusted).toMatchObject({ status: "active", location: { local: { rootDir: storageRoot } } });
    const locked = new OriginManager(
      new OriginRepository(handle.db),
      new CredentialCipher(randomBytes(32)),
      (config, basePath, permissions) => createStorageDriver(config).probe(basePath, permissions),
      { allowLocalOrigins: false, localOriginRoots: [storageRoot] },
    );
    await expect(locked.create(org.id, localInput(join(storageRoot, org.id)))).rejects.toMatchObject({
      violations: [{ field: "local", rule: "origin.local_disabled", message: "local origins are disabled on this server (RENDITION_ALLOW_LOCAL_ORIGINS)" }],
    });
    expect((await locked.create(org.id, localInput(storageRoot, "first start again"), { trusted: true })).status).toBe("active");
  });

  it("stores presets: slug conflicts, lookup by id or slug, pagination past the system presets, update, delete", async () => {
    const org = await auth.createOrganization("Preset org");
    const spec = create(PresetSpecSchema, { container: Container.MKV, video: [{ codec: VideoCodec.H265, resolution: Resolution.RESOLUTION_720P }] });
    const first = await presets.create(org.id, { slug: "mkv_720", name: "MKV 720", description: "", spec });
    await expect(presets.create(org.id, { slug: "mkv_720", name: "again", description: "", spec })).rejects.toThrow(/already exists/);
    const second = await presets.create(org.id, { slug: "mkv_720_b", name: "MKV 720 b", description: "", spec });

    expect((await presets.get(org.id, first.id)).slug).toBe("mkv_720");
    expect((await presets.get(org.id, "mkv_720")).id).toBe(first.id);
    expect((await presets.get(org.id, "mkv_720")).spec).toEqual(spec);
    // Slugs may not start with pst_ (the id prefix), so a value says by its form whether it is an id or a slug.
    await expect(presets.create(org.id, { slug: first.id, name: "impostor", description: "", spec })).rejects.toMatchObject({
      violations: [{ field: "slug", rule: "preset.slug_reserved", message: "must not start with pst_, the prefix of preset ids" }],
    });
    expect((await presets.get(org.id, first.id)).name).toBe("MKV 720");

    const own = await presets.list(org.id, { limit: 1 }, true);
    expect(own.total).toBe(2);
    expect(own.items).toHaveLength(1);
    const all = await presets.list(org.id, { limit: 100 }, false);
    expect(all.items.slice(-2).map((p) => p.id).sort()).toEqual([first.id, second.id].sort());
    expect(all.items.filter((p) => p.system).length).toBe(all.total - 2);

    const updated = await presets.update(org.id, first.id, { name: "MKV 720 v2" });
    expect(updated).toMatchObject({ name: "MKV 720 v2", slug: "mkv_720" });
    await presets.delete(org.id, second.id);
    await expect(presets.get(org.id, second.id)).rejects.toThrow(/not found/);
    await expect(presets.delete(org.id, second.id)).rejects.toThrow(/not found/);
  });

  it("stores jobs in one transaction with their outbox message; idempotency and cancel work", async () => {
    const { org, origin } = await seed();
    const job = await jobs.create(org.id, jobRequest(origin.id, { idempotencyKey: "embedded-1", metadata: { k: "v" } }));
    expect(job.status).toBe("pending");
    const reread = await jobs.get(org.id, job.id);
    expect(reread).toMatchObject({ id: job.id, metadata: { k: "v" }, outputOrigin: { id: origin.id, provider: "local" } });
    expect(reread.outputs[0]!.spec.video[0]!.codec).toBe(VideoCodec.H264);
    expect(reread.createdAt).toBeInstanceOf(Date);

    // Same key and request: the original job; concurrent retries race to a single row.
    expect((await jobs.create(org.id, jobRequest(origin.id, { idempotencyKey: "embedded-1", metadata: { k: "v" } }))).id).toBe(job.id);
    await expect(jobs.create(org.id, jobRequest(origin.id, { idempotencyKey: "embedded-1" }))).rejects.toThrow(/idempotency|already/i);
    const raced = await Promise.all(Array.from({ length: 4 }, () => jobs.create(org.id, jobRequest(origin.id, { idempotencyKey: "embedded-race" }))));
    expect(new Set(raced.map((j) => j.id)).size).toBe(1);

    const canceled = await jobs.cancel(org.id, job.id);
    expect(canceled.status).toBe("canceled");
    expect(canceled.completedAt).toBeInstanceOf(Date);
    expect(canceled.outputs[0]!.status).toBe("canceled");
    await expect(jobs.cancel(org.id, job.id)).rejects.toThrow(/canceled/);

    const outbox = await handle.db.selectFrom("outbox").select("topic").where("job_id", "=", job.id).orderBy("id").execute();
    expect(outbox.map((o) => o.topic)).toEqual(["job.created", "job.canceled"]);
    const listed = await jobs.list(org.id, undefined, { limit: 2 });
    expect(listed.total).toBe(2);
    expect(listed.items.map((j) => j.id).sort()).toEqual([job.id, raced[0]!.id].sort());
  });

  it("migrates down (dropping every table) and up again to a working schema", async () => {
    for (const name of Object.keys(MIGRATIONS).reverse()) expect(await migrateDown(handle.db)).toEqual([name]);
    expect(await publicTables(handle)).toEqual([]);
    const { rows } = await sql<{ name: string }>`SELECT name FROM kysely_migration`.execute(handle.db);
    expect(rows).toEqual([]);

    expect(await migrateToLatest(handle.db)).toEqual(Object.keys(MIGRATIONS));
    expect(await publicTables(handle)).toEqual(TABLES);
    expect(await auth.countOrganizations()).toBe(0); // the old data went with the tables
    const { org, origin } = await seed();
    const job = await jobs.create(org.id, jobRequest(origin.id));
    expect((await jobs.get(org.id, job.id)).id).toBe(job.id);
  });
});

describe("the whole API on PGlite (startTestApi(undefined))", () => {
  let api: TestApi;

  beforeAll(async () => {
    api = await startTestApi(undefined);
  });
  afterAll(async () => {
    await api?.close();
  });

  function request(overrides: JobRequestInit = {}): JobServiceCreateRequest {
    return localJobRequest(api, overrides);
  }

  it("runs embedded: PGlite persisted in the data directory, bootstrap credentials work", async () => {
    expect(api.config.databaseUrl).toBeUndefined();
    expect(api.app.database.kind).toBe("pglite");
    const { origin } = await api.origins.get({ id: api.credentials.local_origin_id });
    expect(origin).toMatchObject({ status: OriginStatus.ACTIVE, permissions: [OriginPermission.READ, OriginPermission.WRITE] });
  });

  it("creates, gets, lists and cancels jobs", async () => {
    const { job } = await api.jobs.create(request({ metadata: { source: "pglite" } }));
    expect(job).toMatchObject({ status: JobStatus.PENDING, metadata: { source: "pglite" } });
    expect(job!.outputs[0]!.path).toBe(`${job!.id}/${job!.outputs[0]!.id}.mp4`);
    expect((await api.jobs.get({ id: job!.id })).job).toEqual(job);

    const { job: second } = await api.jobs.create(request());
    const first = await api.jobs.list({ pagination: { limit: 1 } });
    expect(first.jobs).toHaveLength(1);
    expect(first.pagination!.totalCount).toBeGreaterThanOrEqual(2);
    const rest = await api.jobs.list({ pagination: { limit: 100, cursor: first.pagination!.nextCursor } });
    const ids = [...first.jobs, ...rest.jobs].map((j) => j.id);
    expect(ids).toEqual(expect.arrayContaining([job!.id, second!.id]));
    expect(ids).toHaveLength(first.pagination!.totalCount);

    const canceled = await api.jobs.cancel({ id: job!.id });
    expect(canceled.job!.status).toBe(JobStatus.CANCELED);
    expect((await connectError(api.jobs.cancel({ id: job!.id }))).code).toBe(Code.FailedPrecondition);
    const onlyCanceled = await api.jobs.list({ status: JobStatus.CANCELED });
    expect(onlyCanceled.jobs.map((j) => j.id)).toEqual([job!.id]);
    expect((await connectError(api.jobs.get({ id: "job_missing" }))).code).toBe(Code.NotFound);
  });

  it("replays idempotent creates (also concurrent ones) and refuses a different request with the same key", async () => {
    const first = await api.jobs.create(request({ idempotencyKey: "pglite-42" }));
    const again = await api.jobs.create(request({ idempotencyKey: "pglite-42" }));
    expect(again.job!.id).toBe(first.job!.id);
    expect((await connectError(api.jobs.create(request({ idempotencyKey: "pglite-42", metadata: { other: "1" } })))).code).toBe(Code.AlreadyExists);
    const concurrent = await Promise.all(Array.from({ length: 5 }, () => api.jobs.create(request({ idempotencyKey: "pglite-race" }))));
    expect(new Set(concurrent.map((r) => r.job!.id)).size).toBe(1);
  });

  it("watches: snapshot, then completed after a cancel, then the stream ends", async () => {
    const { job } = await api.jobs.create(request());
    const events: Array<[WatchEvent, JobStatus]> = [];
    for await (const message of api.jobs.watch({ id: job!.id })) {
      events.push([message.event, message.job!.status]);
      if (message.event === WatchEvent.SNAPSHOT) await api.jobs.cancel({ id: job!.id });
    }
    expect(events).toEqual([
      [WatchEvent.SNAPSHOT, JobStatus.PENDING],
      [WatchEvent.COMPLETED, JobStatus.CANCELED],
    ]);
  });

  it("serves presets and origins too", async () => {
    const { preset } = await api.presets.create({ slug: "embedded_mkv", name: "Embedded MKV", spec: { container: Container.MKV, video: [{ codec: VideoCodec.H264 }] } });
    expect((await api.presets.get({ idOrSlug: "embedded_mkv" })).preset!.id).toBe(preset!.id);
    expect((await connectError(api.presets.create({ slug: "embedded_mkv", name: "dup", spec: { container: Container.MKV, video: [{ codec: VideoCodec.H264 }] } }))).code).toBe(
      Code.AlreadyExists,
    );
    const { job } = await api.jobs.create(request({ outputs: [{ preset: "embedded_mkv" }] }));
    expect(job!.outputs[0]).toMatchObject({ type: OutputType.MKV, presetId: preset!.id });

    // In the organization's own area <root>/<organization id>.
    const dir = join(api.config.localOriginRoots[0]!, api.credentials.organization_id, "second");
    mkdirSync(dir, { recursive: true });
    const { origin } = await api.origins.create({ name: "second", permissions: [OriginPermission.WRITE], local: { rootDir: dir } });
    expect(origin).toMatchObject({ status: OriginStatus.ACTIVE, local: { rootDir: realpathSync(dir) } });
    // The root itself is the bootstrap origin's, not for callers.
    const root = await connectError(api.origins.create({ name: "root", permissions: [OriginPermission.WRITE], local: { rootDir: api.config.localOriginRoots[0]! } }));
    expect(root.code).toBe(Code.InvalidArgument);
    expect(root.rawMessage).toContain("local.root_dir");
    const listed = await api.origins.list({});
    expect(listed.origins.map((o) => o.id).sort()).toEqual([api.credentials.local_origin_id, origin!.id].sort());
    expect(listed.pagination!.totalCount).toBe(2);
  });
});
