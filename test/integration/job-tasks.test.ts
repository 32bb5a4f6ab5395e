/**
 * The task rows of chunked jobs against a real PostgreSQL: the hand-over from the planning
 * worker, claims (lease, takeover, the per-job limit), the last chunk queueing the assembly in
 * its own transaction, fencing by Cancel and by takeover, failing the job through endJob, and
 * the reconciler re-queueing stuck tasks instead of the job.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { sql } from "kysely";
import { create } from "@bufbuild/protobuf";
import { OutputType, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobServiceCreateRequestSchema } from "../../gen/rendition/v1/job_pb.js";
import { JobTaskRepository, type ChunkSpec, type TaskLease } from "../../services/jobs/job-task.repository.js";
import { OutboxRelay } from "../../services/queue/outbox-relay.js";
import { createInProcessWorkQueue } from "../../services/queue/in-process-work-queue.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { startTestApi, type TestApi } from "../support/api-harness.js";

let database: TestDatabase;
let api: TestApi;
let tasks: JobTaskRepository;

beforeAll(async () => {
  database = await createTestDatabase(inject("databaseUrl"));
  api = await startTestApi(database.url);
  tasks = new JobTaskRepository(database.db);
});
afterAll(async () => {
  await api?.close();
  await database?.drop();
});

const org = () => api.credentials.organization_id;

function specs(durations: number[]): ChunkSpec[] {
  let start = 0;
  return durations.map((durationSeconds, index) => {
    const spec = { outputId: "out_x", index, startFrame: start * 25, seekUs: start * 1_000_000, frames: durationSeconds * 25, startSeconds: start, durationSeconds, extension: "mp4" };
    start += durationSeconds;
    return spec;
  });
}

async function claimed(taskId: string, worker: string, leaseMs = 60_000, max = 4): Promise<TaskLease> {
  const claim = await tasks.claim(org(), taskId, worker, leaseMs, max);
  if (claim.kind !== "claimed") throw new Error(`task ${taskId}: ${claim.kind}`);
  return claim.lease;
}

describe("chunk tasks", () => {
  it("hands a job over as chunk tasks with one outbox row each, which the relay publishes naming the task", async () => {
    const { job } = await api.jobs.create(
      create(JobServiceCreateRequestSchema, {
        inputOriginId: api.credentials.local_origin_id,
        inputPath: "in.mp4",
        outputOriginId: api.credentials.local_origin_id,
        outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264 }] }],
      }),
    );
    const id = job!.id;
    const lease = (await api.app.runs.claim(org(), id, "planner", 60_000, ["pending"]))!;
    // Not while the job is still pending: chunks are for a job being encoded.
    expect(await tasks.startChunks(lease, specs([4, 4]), {})).toBe(false);
    expect(await api.app.runs.update(lease, { status: "processing" })).toBe(true);
    expect(await tasks.startChunks(lease, specs([4, 4]), {})).toBe(true);
    expect((await api.app.runs.leaseState(org(), id))!.leaseRemainingMs).toBeLessThanOrEqual(0);
    // Once: the lease it gave up does not write chunks a second time.
    expect(await tasks.startChunks(lease, specs([4, 4]), {})).toBe(false);
    const rows = await tasks.list(id);
    expect(rows.map((r) => [r.kind, r.position, r.status, r.claims])).toEqual([
      ["chunk", 0, "pending", 0],
      ["chunk", 1, "pending", 0],
    ]);
    expect(await tasks.hasTasks(id)).toBe(true);

    const queue = createInProcessWorkQueue({ ackWaitMs: 60_000 });
    const relay = new OutboxRelay(database.db, queue, { pollMs: 60_000, reconcileEveryMs: 60_000, stuckAfterMs: 60_000, log: () => {} });
    await relay.drain();
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 300);
    const taken = [];
    for (;;) {
      const delivery = await queue.take(abort.signal);
      if (!delivery) break;
      taken.push(delivery.message);
      await delivery.ack();
    }
    expect(taken.filter((m) => m.jobId === id).map((m) => [m.stage, m.taskId])).toEqual([
      ["probe", undefined],
      ["chunk", rows[0]!.id],
      ["chunk", rows[1]!.id],
    ]);
    await queue.close();
  });

  it("claims each chunk once, at most the limit at a time; a lapsed lease is taken over and its holder fenced off; the last chunk queues the assembly", async () => {
    const { id, taskIds } = await setUp([6, 3, 3]);
    const [t0, t1, t2] = taskIds as [string, string, string];
    const a = await claimed(t0, "w1");
    expect((await tasks.claim(org(), t0, "w2", 60_000, 2)).kind).toBe("held");
    const b = await claimed(t1, "w2", 300, 2);
    expect((await tasks.claim(org(), t2, "w3", 60_000, 2)).kind).toBe("busy");

    // Progress: each chunk weighted by its duration into 0..90 of the job.
    expect(await tasks.progress(a, 50)).toBe(Math.floor((3 / 12) * 90));
    expect((await api.jobs.get({ id })).job!.progress).toBe(22);
    // Never backwards.
    expect(await tasks.progress(a, 10)).toBe(22);

    // t2 was refused as busy: the freed slot sends it a fresh message.
    expect(await tasks.completeChunk(a, { path: ".rendition/x/chunk-0.mp4", bytes: 10 })).toEqual({ progress: 45, assembleQueued: false, nextQueued: t2 });
    const again = await database.db.selectFrom("outbox").select("payload").where("job_id", "=", id).where("topic", "=", "task.chunk").execute();
    expect(again.map((r) => r.payload.task_id)).toEqual([t0, t1, t2, t2]);
    await new Promise((resolve) => setTimeout(resolve, 400)); // b's lease lapses
    const b2 = await claimed(t1, "w3");
    expect(b2.token).toBeGreaterThan(b.token);
    expect(await tasks.renew(b, 60_000)).toBe(false);
    expect(await tasks.completeChunk(b, { path: "late", bytes: 1 })).toBeUndefined();
    expect(await tasks.progress(b, 99)).toBeUndefined();
    expect(await tasks.renew(b2, 60_000)).toBe(true);
    expect((await tasks.completeChunk(b2, { path: ".rendition/x/chunk-1.mp4", bytes: 10 }))!.assembleQueued).toBe(false);
    const c = await claimed(t2, "w1");
    expect(await tasks.completeChunk(c, { path: ".rendition/x/chunk-2.mp4", bytes: 10 })).toEqual({ progress: 90, assembleQueued: true, nextQueued: undefined });

    const rows = await tasks.list(id);
    expect(rows.map((r) => [r.kind, r.status, r.claims])).toEqual([
      ["chunk", "completed", 1],
      ["chunk", "completed", 2],
      ["chunk", "completed", 1],
      ["assemble", "pending", 0],
    ]);
    expect(rows[1]!.result).toEqual({ path: ".rendition/x/chunk-1.mp4", bytes: 10 });
    const assemble = await database.db.selectFrom("outbox").select(["topic", "payload"]).where("job_id", "=", id).where("topic", "=", "task.assemble").execute();
    expect(assemble).toEqual([{ topic: "task.assemble", payload: { job_id: id, task_id: rows[3]!.id } }]);
    // A completed chunk is not claimed again.
    expect((await tasks.claim(org(), t0, "w9", 60_000, 4)).kind).toBe("done");
  });

  it("fences every task off when the job is canceled, and marks them canceled", async () => {
    const { id, taskIds } = await setUp([4, 4, 4]);
    const running = await claimed(taskIds[0]!, "w1");
    const done = await claimed(taskIds[1]!, "w2");
    await tasks.completeChunk(done, { path: "p", bytes: 1 });
    await api.jobs.cancel({ id });
    expect(await tasks.renew(running, 60_000)).toBe(false);
    expect(await tasks.progress(running, 50)).toBeUndefined();
    expect(await tasks.completeChunk(running, { path: "p", bytes: 1 })).toBeUndefined();
    expect((await tasks.claim(org(), taskIds[2]!, "w3", 60_000, 4)).kind).toBe("done");
    expect((await tasks.list(id)).map((r) => r.status)).toEqual(["canceled", "completed", "canceled"]);
  });

  it("fails the job through endJob when a chunk fails for good: every unfinished task fails with it", async () => {
    const { id, taskIds } = await setUp([4, 4]);
    const lease = await claimed(taskIds[0]!, "w1");
    expect(await tasks.failJob(lease, "ENCODE_FAILED", "ffmpeg said no")).toBe("failed");
    const { job } = await api.jobs.get({ id });
    expect(job!.errorCode).toBe("ENCODE_FAILED");
    expect((await tasks.list(id)).map((r) => r.status)).toEqual(["failed", "failed"]);
    // Only once: the lease (and the job) is gone.
    expect(await tasks.failJob(lease, "ENCODE_FAILED", "again")).toBeUndefined();
  });

  it("gives a task back after a transient failure; the reconciler queues stuck tasks again, never the chunked job itself", async () => {
    const { id, taskIds } = await setUp([4, 4, 4]);
    const given = await claimed(taskIds[0]!, "w1");
    expect(await tasks.release(given, "storage hiccup")).toBe(true);
    const held = await claimed(taskIds[1]!, "w2");
    const queue = createInProcessWorkQueue();
    const relay = new OutboxRelay(database.db, queue, { pollMs: 60_000, reconcileEveryMs: 60_000, stuckAfterMs: 1_000, log: () => {} });
    await relay.drain();
    const past = sql<Date>`now() - interval '10 seconds'`;
    await database.db.updateTable("jobs").set({ updated_at: past }).where("id", "=", id).execute();
    await database.db.updateTable("job_tasks").set({ updated_at: past }).where("job_id", "=", id).execute();
    await database.db.updateTable("outbox").set({ sent_at: past }).where("job_id", "=", id).execute();
    await relay.reconcile();
    await relay.reconcile(); // the first scan's rows are unsent: nothing more
    const rows = await database.db.selectFrom("outbox").select(["topic", "payload"]).where("job_id", "=", id).where("sent_at", "is", null).orderBy("id").execute();
    expect(rows.map((r) => [r.topic, r.payload.task_id])).toEqual([
      ["task.chunk", taskIds[0]],
      ["task.chunk", taskIds[2]],
    ]);
    expect(held.taskId).toBe(taskIds[1]);
    const [first] = await tasks.list(id);
    expect(first).toMatchObject({ status: "pending", claims: 1 });
    await queue.close();
  });
});

/** A processing job with chunk tasks of these durations. */
async function setUp(durations: number[]): Promise<{ id: string; taskIds: string[] }> {
  const { job } = await api.jobs.create(
    create(JobServiceCreateRequestSchema, {
      inputOriginId: api.credentials.local_origin_id,
      inputPath: "in.mp4",
      outputOriginId: api.credentials.local_origin_id,
      outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264 }] }],
    }),
  );
  const lease = (await api.app.runs.claim(org(), job!.id, "planner", 60_000, ["pending"]))!;
  expect(await api.app.runs.update(lease, { status: "processing" })).toBe(true);
  expect(await tasks.startChunks(lease, specs(durations), {})).toBe(true);
  const rows = await tasks.list(job!.id);
  return { id: job!.id, taskIds: rows.map((r) => r.id) };
}
