/**
 * Leases, the outbox relay and the reconciler against a real PostgreSQL: the rules that keep a
 * job from running twice to completion or being lost between the database and the queue.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { sql } from "kysely";
import { create } from "@bufbuild/protobuf";
import { OutputType, Priority, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobServiceCreateRequestSchema } from "../../gen/rendition/v1/job_pb.js";
import { OutboxRelay } from "../../services/queue/outbox-relay.js";
import { createInProcessWorkQueue } from "../../services/queue/in-process-work-queue.js";
import type { WorkMessage, WorkQueue } from "../../services/queue/work-queue.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { startTestApi, type TestApi } from "../support/api-harness.js";

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

async function newJob(priority = Priority.STANDARD): Promise<string> {
  const { job } = await api.jobs.create(
    create(JobServiceCreateRequestSchema, {
      inputOriginId: api.credentials.local_origin_id,
      inputPath: "in.mp4",
      outputOriginId: api.credentials.local_origin_id,
      outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264 }] }],
      priority,
    }),
  );
  return job!.id;
}

const org = () => api.credentials.organization_id;

describe("job leases", () => {
  it("lets exactly one of two racing workers take a job", async () => {
    const id = await newJob();
    const claims = await Promise.all(["w1", "w2", "w3"].map((w) => api.app.runs.claim(org(), id, w, 10_000, ["pending"])));
    expect(claims.filter(Boolean)).toHaveLength(1);
    const state = await api.app.runs.leaseState(org(), id);
    expect(state!.claims).toBe(1);
    expect(state!.leaseRemainingMs).toBeGreaterThan(5_000);
  });

  it("lets another worker take over only after the lease lapses, and then fences the first one off", async () => {
    const id = await newJob();
    const first = (await api.app.runs.claim(org(), id, "w1", 300, ["pending"]))!;
    expect(await api.app.runs.claim(org(), id, "w2", 10_000, ["pending"])).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 400));
    const second = (await api.app.runs.claim(org(), id, "w2", 10_000, ["pending"]))!;
    expect(second.token).toBeGreaterThan(first.token);
    // The first worker wakes up late: every write and renewal it tries is refused.
    expect(await api.app.runs.renew(first, 10_000)).toBe(false);
    expect(await api.app.runs.update(first, { status: "completed" })).toBe(false);
    expect(await api.app.runs.fail(first, "X", "late")).toBeUndefined();
    expect(await api.app.runs.update(second, { status: "probing" })).toBe(true);
    expect((await api.app.runs.leaseState(org(), id))!.status).toBe("probing");
  });

  it("fences the worker off when the job is canceled", async () => {
    const id = await newJob();
    const lease = (await api.app.runs.claim(org(), id, "w1", 10_000, ["pending"]))!;
    await api.jobs.cancel({ id });
    expect(await api.app.runs.update(lease, { status: "completed", progress: 100 })).toBe(false);
    expect(await api.app.runs.progress(lease, 50, [])).toBe(false);
    expect((await api.jobs.get({ id })).job!.progress).toBe(0);
  });
});

describe("outbox relay and reconciler", () => {
  it("leaves exactly the rows whose publish failed unsent, and sends them on the next drain", async () => {
    const ids = [await newJob(), await newJob(), await newJob()];
    const real = createInProcessWorkQueue({ ackWaitMs: 60_000 });
    const failing: WorkQueue = {
      publish: (m: WorkMessage) => (m.jobId === ids[1] ? Promise.reject(new Error("NATS is away")) : real.publish(m)),
      take: (signal) => real.take(signal),
      close: () => real.close(),
    };
    const unsent = async () => (await database.db.selectFrom("outbox").select("job_id").where("sent_at", "is", null).execute()).map((r) => r.job_id);
    await expect(new OutboxRelay(database.db, failing, { pollMs: 60_000, reconcileEveryMs: 60_000, stuckAfterMs: 60_000, log: () => {} }).drain()).rejects.toThrow("NATS is away");
    expect(await unsent()).toEqual([ids[1]]);
    expect(await new OutboxRelay(database.db, real, { pollMs: 60_000, reconcileEveryMs: 60_000, stuckAfterMs: 60_000, log: () => {} }).drain()).toBe(1);
    expect(await unsent()).toEqual([]);
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 300);
    const taken: string[] = [];
    for (;;) {
      const delivery = await real.take(abort.signal);
      if (!delivery) break;
      taken.push(delivery.message.jobId);
      await delivery.ack();
    }
    // Each job's message once, in the order of its outbox row (the failed one after the retry).
    expect(taken.filter((id) => ids.includes(id))).toEqual([ids[0], ids[2], ids[1]]);
    await real.close();
  });

  it("publishes each unsent row once, with its id as the message id, then marks it sent", async () => {
    const queue = createInProcessWorkQueue({ ackWaitMs: 60_000 });
    const relay = new OutboxRelay(database.db, queue, { pollMs: 60_000, reconcileEveryMs: 60_000, stuckAfterMs: 60_000, log: () => {} });
    const id = await newJob(Priority.PREMIUM);
    await relay.drain();
    await database.db.updateTable("outbox").set({ sent_at: null }).where("job_id", "=", id).execute(); // as if we crashed before marking
    await relay.drain();
    const unsent = await database.db.selectFrom("outbox").select("id").where("sent_at", "is", null).execute();
    expect(unsent).toEqual([]);
    const row = await database.db.selectFrom("outbox").select("id").where("job_id", "=", id).executeTakeFirstOrThrow();
    const taken = [];
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 300);
    for (;;) {
      const delivery = await queue.take(abort.signal);
      if (!delivery) break;
      taken.push(delivery.message);
      await delivery.ack();
    }
    const mine = taken.filter((m) => m.jobId === id);
    expect(mine).toEqual([{ id: row.id, jobId: id, organizationId: org(), stage: "probe", priority: "premium" }]);
    await queue.close();
  });

  it("queues every unfinished job again when an in-process queue starts empty", async () => {
    const queue = createInProcessWorkQueue();
    const relay = new OutboxRelay(database.db, queue, { pollMs: 60_000, reconcileEveryMs: 60_000, stuckAfterMs: 60_000, log: () => {} });
    const waiting = await newJob();
    const canceled = await newJob();
    await api.jobs.cancel({ id: canceled });
    await relay.drain();
    await relay.requeueUnfinished();
    const retries = await database.db.selectFrom("outbox").select("job_id").where("topic", "=", "job.retry").where("job_id", "in", [waiting, canceled]).execute();
    expect(retries).toEqual([{ job_id: waiting }]);
    await queue.close();
  });

  it("queues a stuck job again, once, and leaves held and recent ones alone", async () => {
    const queue = createInProcessWorkQueue();
    const relay = new OutboxRelay(database.db, queue, { pollMs: 60_000, reconcileEveryMs: 60_000, stuckAfterMs: 1_000, log: () => {} });
    const stuck = await newJob();
    const held = await newJob();
    const recent = await newJob();
    await relay.drain();
    await api.app.runs.claim(org(), held, "w1", 60_000, ["pending"]);
    const past = sql<Date>`now() - interval '10 seconds'`;
    await database.db.updateTable("jobs").set({ updated_at: past }).where("id", "in", [stuck, held]).execute();
    await database.db.updateTable("outbox").set({ sent_at: past }).where("job_id", "in", [stuck, held]).execute();

    await relay.reconcile();
    await relay.reconcile(); // the second scan sees the first's unsent row and adds nothing
    const retries = await database.db.selectFrom("outbox").select(["job_id", "topic"]).where("topic", "=", "job.retry").execute();
    expect(retries.filter((r) => [stuck, held, recent].includes(r.job_id))).toEqual([{ job_id: stuck, topic: "job.retry" }]);

    // Rows sent more than a week ago are dropped by the next scan; recent ones stay.
    const old = await database.db.selectFrom("outbox").select("id").where("job_id", "=", recent).executeTakeFirstOrThrow();
    await database.db.updateTable("outbox").set({ sent_at: sql<Date>`now() - interval '8 days'` }).where("id", "=", old.id).execute();
    await relay.reconcile();
    expect(await database.db.selectFrom("outbox").select("id").where("id", "=", old.id).execute()).toEqual([]);
    expect((await database.db.selectFrom("outbox").select("id").where("job_id", "=", stuck).execute()).length).toBeGreaterThan(0);
    await queue.close();
  });
});
