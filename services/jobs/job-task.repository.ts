import { sql, type Kysely, type Transaction } from "kysely";
import { newId } from "../common/ids.js";
import type { Database } from "../db/schema.js";
import { progressEvents, recordJobEvents } from "../webhooks/events.js";
import { chunkedJobProgress } from "./chunk-progress.js";
import { endJob } from "./job-end.js";
import type { Lease } from "./job-run.repository.js";
import { isTerminal, type JobStatusName } from "./job.types.js";
import { leaseTakeovers } from "../observability/metrics.js";

type Db = Kysely<Database>;
type Trx = Transaction<Database>;

export type TaskKind = "chunk" | "assemble";

/** What a chunk task encodes: its frames of the input, for the one output of the job. */
export interface ChunkSpec {
  outputId: string;
  index: number;
  startFrame: number;
  seekUs: number;
  frames: number;
  startSeconds: number;
  durationSeconds: number;
  /** Container extension of the chunk file (the output's). */
  extension: string;
}

/** Where a finished chunk lies: an object path in the job's output origin (staging). */
export interface ChunkResult {
  path: string;
  bytes: number;
}

/** A worker's hold on one task; `token` is the task's `attempt` when it was claimed. */
export interface TaskLease {
  taskId: string;
  jobId: string;
  organizationId: string;
  workerId: string;
  token: number;
}

export interface TaskRow {
  id: string;
  jobId: string;
  kind: TaskKind;
  position: number;
  status: string;
  claims: number;
  spec: Record<string, unknown>;
  result: Record<string, unknown> | null;
}

export type TaskClaim =
  | { kind: "claimed"; lease: TaskLease; claims: number; lastError: string; spec: Record<string, unknown> }
  /** Nothing to do: the task or its job has ended, or the job is not running. */
  | { kind: "done" }
  /** Another worker holds the task; `leaseRemainingMs` until its lease lapses. */
  | { kind: "held"; leaseRemainingMs: number }
  /** The job already has its maximum of chunks running. */
  | { kind: "busy" };

const UNFINISHED = ["pending", "running"] as const;

/**
 * The rows of a chunked job's work (job_tasks): written by the planning worker, each claimed and
 * written under its own lease (`attempt` is the token). Every write locks the job row first and
 * checks the job is still processing, so a Cancel (which bumps every task's token in endJob)
 * either waits for the write or is seen by it.
 */
export class JobTaskRepository {
  constructor(private readonly db: Db) {}

  /**
   * The planning worker's hand-over: one chunk task and one outbox row per chunk, and the job's
   * lease given up (the job stays processing), in one transaction under the job lease.
   */
  async startChunks(lease: Lease, chunks: readonly ChunkSpec[], execution: unknown): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const job = await trx.selectFrom("jobs").select(["attempt", "status", "lease_owner", "lease_expires_at"]).where("id", "=", lease.jobId).forUpdate().executeTakeFirst();
      // Only a lease still held: the hand-over gives it up, so it happens once.
      if (!job || job.attempt !== lease.token || job.status !== "processing" || job.lease_owner !== lease.workerId || !job.lease_expires_at) return false;
      for (const chunk of chunks) await insertTask(trx, lease.jobId, "chunk", chunk.index, chunk as unknown as Record<string, unknown>);
      await trx.updateTable("jobs").set({ lease_owner: "", lease_expires_at: null, updated_at: new Date(), execution: JSON.stringify(execution) }).where("id", "=", lease.jobId).execute();
      return true;
    });
  }

  async hasTasks(jobId: string): Promise<boolean> {
    const row = await this.db.selectFrom("job_tasks").select("id").where("job_id", "=", jobId).limit(1).executeTakeFirst();
    return row !== undefined;
  }

  async list(jobId: string): Promise<TaskRow[]> {
    const rows = await this.db.selectFrom("job_tasks").selectAll().where("job_id", "=", jobId).orderBy("kind", "desc").orderBy("position").execute();
    return rows.map((r) => ({ id: r.id, jobId: r.job_id, kind: r.kind, position: r.position, status: r.status, claims: r.claims, spec: r.spec, result: r.result }));
  }

  /**
   * Takes the task when it is unfinished, nobody holds a live lease on it and its job is
   * processing; a chunk also only while fewer than `maxConcurrent` chunks of its job run. The
   * job row is locked meanwhile, so two workers counting running chunks cannot both pass.
   */
  async claim(organizationId: string, taskId: string, workerId: string, leaseMs: number, maxConcurrent: number): Promise<TaskClaim> {
    return this.db.transaction().execute(async (trx): Promise<TaskClaim> => {
      const task = await trx.selectFrom("job_tasks").select(["job_id", "kind", "status"]).where("id", "=", taskId).executeTakeFirst();
      if (!task) return { kind: "done" };
      const job = await trx.selectFrom("jobs").select("status").where("id", "=", task.job_id).where("organization_id", "=", organizationId).forUpdate().executeTakeFirst();
      if (!job || job.status !== "processing") return { kind: "done" };
      const row = await trx
        .selectFrom("job_tasks")
        .select(["status", "kind", "lease_owner", sql<number>`coalesce(extract(epoch from (lease_expires_at - now())) * 1000, 0)`.as("remaining")])
        .where("id", "=", taskId)
        .forUpdate()
        .executeTakeFirstOrThrow();
      if (!UNFINISHED.includes(row.status as (typeof UNFINISHED)[number])) return { kind: "done" };
      if (Number(row.remaining) > 0) return { kind: "held", leaseRemainingMs: Number(row.remaining) };
      if (row.kind === "chunk") {
        const running = await trx
          .selectFrom("job_tasks")
          .select((eb) => eb.fn.countAll<string>().as("n"))
          .where("job_id", "=", task.job_id)
          .where("kind", "=", "chunk")
          .where("id", "!=", taskId)
          .where("status", "=", "running")
          .where("lease_expires_at", ">", sql<Date>`now()`)
          .executeTakeFirstOrThrow();
        if (Number(running.n) >= maxConcurrent) return { kind: "busy" };
      }
      const claimed = await trx
        .updateTable("job_tasks")
        .set((eb) => ({
          attempt: eb("attempt", "+", 1),
          claims: eb("claims", "+", 1),
          status: "running",
          lease_owner: workerId,
          lease_expires_at: sql<Date>`now() + ${leaseMs} * interval '1 millisecond'`,
          updated_at: new Date(),
        }))
        .where("id", "=", taskId)
        .returning(["attempt", "claims", "last_error", "spec"])
        .executeTakeFirstOrThrow();
      // A lapsed lease of another worker's (a released task has no owner).
      if (row.lease_owner) leaseTakeovers.inc({ kind: "task" });
      return {
        kind: "claimed",
        lease: { taskId, jobId: task.job_id, organizationId, workerId, token: claimed.attempt },
        claims: claimed.claims,
        lastError: claimed.last_error,
        spec: claimed.spec,
      };
    });
  }

  /** Extends the task's lease; false when it was lost (Cancel, the job ended, or another worker took it over). */
  async renew(lease: TaskLease, leaseMs: number): Promise<boolean> {
    const result = await this.db
      .updateTable("job_tasks")
      .set({ lease_expires_at: sql<Date>`now() + ${leaseMs} * interval '1 millisecond'` })
      .where("id", "=", lease.taskId)
      .where("attempt", "=", lease.token)
      .where("status", "=", "running")
      .where(({ exists, selectFrom }) => exists(selectFrom("jobs").select("jobs.id").where("jobs.id", "=", lease.jobId).where("jobs.status", "=", "processing")))
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Runs `write` while the task lease holds and its job is processing (job row locked first, as every job write does). */
  private async withTask<T>(lease: TaskLease, write: (trx: Trx) => Promise<T>): Promise<{ held: false } | { held: true; value: T }> {
    return this.db.transaction().execute(async (trx) => {
      const job = await trx.selectFrom("jobs").select("status").where("id", "=", lease.jobId).forUpdate().executeTakeFirst();
      if (!job || job.status !== "processing") return { held: false as const };
      const task = await trx.selectFrom("job_tasks").select(["attempt", "status"]).where("id", "=", lease.taskId).forUpdate().executeTakeFirst();
      if (!task || task.attempt !== lease.token || task.status !== "running") return { held: false as const };
      return { held: true as const, value: await write(trx) };
    });
  }

  /**
   * A chunk's progress (0..100) and the job's, weighted by chunk duration; the job's never moves
   * backwards. Returns the job's progress, or undefined when the lease was lost. No updated_at
   * bump (the reconciler's "no change for a while").
   */
  async progress(lease: TaskLease, progress: number): Promise<number | undefined> {
    const result = await this.withTask(lease, async (trx) => {
      await trx.updateTable("job_tasks").set({ progress }).where("id", "=", lease.taskId).execute();
      return this.recomputeJobProgress(trx, lease.jobId);
    });
    return result.held ? result.value : undefined;
  }

  private async recomputeJobProgress(trx: Trx, jobId: string): Promise<number> {
    const chunks = await trx.selectFrom("job_tasks").select(["spec", "progress"]).where("job_id", "=", jobId).where("kind", "=", "chunk").execute();
    const weighted = chunkedJobProgress(chunks.map((c) => ({ durationSeconds: Number((c.spec as { durationSeconds?: number }).durationSeconds ?? 0), progress: c.progress })));
    const job = await trx.selectFrom("jobs").select("progress").where("id", "=", jobId).executeTakeFirstOrThrow();
    if (weighted <= job.progress) return job.progress;
    await trx.updateTable("jobs").set({ progress: weighted }).where("id", "=", jobId).execute();
    await recordJobEvents(trx, jobId, progressEvents(job.progress, weighted));
    return weighted;
  }

  /**
   * The chunk is done (its file in staging). In the same transaction: was it the last one? Then
   * the assemble task and its outbox row are written. Undefined when the lease was lost.
   */
  async completeChunk(lease: TaskLease, result: ChunkResult): Promise<{ progress: number; assembleQueued: boolean; nextQueued?: string } | undefined> {
    const written = await this.withTask(lease, async (trx) => {
      const now = new Date();
      await trx
        .updateTable("job_tasks")
        .set({ status: "completed", result: JSON.stringify(result), progress: 100, lease_owner: "", lease_expires_at: null, updated_at: now, completed_at: now })
        .where("id", "=", lease.taskId)
        .execute();
      const progress = await this.recomputeJobProgress(trx, lease.jobId);
      const left = await trx
        .selectFrom("job_tasks")
        .select((eb) => eb.fn.countAll<string>().as("n"))
        .where("job_id", "=", lease.jobId)
        .where("kind", "=", "chunk")
        .where("status", "!=", "completed")
        .executeTakeFirstOrThrow();
      const last = Number(left.n) === 0;
      if (last) await insertTask(trx, lease.jobId, "assemble", 0, {});
      // A slot of the job's share is free now: the next waiting chunk gets a fresh message, in
      // case its own ran out of deliveries while the job was at its limit (a duplicate is harmless).
      const next = last
        ? undefined
        : await trx
            .selectFrom("job_tasks")
            .select("id")
            .where("job_id", "=", lease.jobId)
            .where("kind", "=", "chunk")
            .where("status", "=", "pending")
            .where("lease_expires_at", "is", null)
            .orderBy("position")
            .limit(1)
            .executeTakeFirst();
      if (next) await insertOutbox(trx, lease.jobId, "chunk", next.id);
      return { progress, assembleQueued: last, nextQueued: next?.id };
    });
    return written.held ? written.value : undefined;
  }

  /** Gives the task back after a transient failure (or a shutdown: `refundClaim`), remembering why. */
  async release(lease: TaskLease, lastError: string, options: { refundClaim?: boolean } = {}): Promise<boolean> {
    const written = await this.withTask(lease, async (trx) => {
      await trx
        .updateTable("job_tasks")
        .set((eb) => ({
          status: "pending",
          lease_owner: "",
          lease_expires_at: null,
          last_error: lastError.slice(0, 2000),
          claims: options.refundClaim ? eb("claims", "-", 1) : eb.ref("claims"),
        }))
        .where("id", "=", lease.taskId)
        .execute();
    });
    return written.held;
  }

  /** A chunk failed for good: the task and, through endJob, the job. Undefined when the lease was lost. */
  async failJob(lease: TaskLease, code: string, message: string): Promise<"failed" | "partial" | undefined> {
    const written = await this.withTask(lease, async (trx) => {
      await trx.updateTable("job_tasks").set({ status: "failed", last_error: message.slice(0, 2000), lease_owner: "", lease_expires_at: null }).where("id", "=", lease.taskId).execute();
      return (await endJob(trx, lease.jobId, { kind: "fail", code, message })) as "failed" | "partial";
    });
    return written.held ? written.value : undefined;
  }

  /** The assemble task is being run (by the holder of the job lease); counts its claims. */
  async startAssemble(jobLease: Lease, taskId: string): Promise<number | undefined> {
    return this.db.transaction().execute(async (trx) => {
      const job = await trx.selectFrom("jobs").select(["attempt", "status"]).where("id", "=", jobLease.jobId).forUpdate().executeTakeFirst();
      if (!job || job.attempt !== jobLease.token || job.status !== "processing") return undefined;
      const row = await trx
        .updateTable("job_tasks")
        .set((eb) => ({ attempt: eb("attempt", "+", 1), claims: eb("claims", "+", 1), status: "running", lease_owner: jobLease.workerId, updated_at: new Date() }))
        .where("id", "=", taskId)
        .where("status", "in", [...UNFINISHED])
        .returning("claims")
        .executeTakeFirst();
      return row?.claims;
    });
  }

  /** Whether a job is over (or gone): a worker's cached input and chunks of it may go. */
  async isJobFinished(jobId: string): Promise<boolean> {
    const row = await this.db.selectFrom("jobs").select("status").where("id", "=", jobId).executeTakeFirst();
    return !row || isTerminal(row.status as JobStatusName);
  }

  /** Ends every task lease (embedded start: the previous process's leases belong to nobody). */
  async releaseAll(): Promise<void> {
    await this.db.updateTable("job_tasks").set({ status: "pending", lease_owner: "", lease_expires_at: null }).where("status", "=", "running").execute();
  }

  /**
   * Queues again the unfinished tasks nobody holds that saw no change and had nothing sent for
   * `stuckAfterMs` (all of them with 0: the embedded start). Returns how many.
   */
  async requeueStuck(stuckAfterMs: number): Promise<string[]> {
    const stuckAfter = sql<Date>`now() - ${stuckAfterMs} * interval '1 millisecond'`;
    const stuck = await this.db
      .selectFrom("job_tasks")
      .innerJoin("jobs", "jobs.id", "job_tasks.job_id")
      .select(["job_tasks.id", "job_tasks.job_id", "job_tasks.kind"])
      .where("jobs.status", "=", "processing")
      .where("job_tasks.status", "in", [...UNFINISHED])
      .where("job_tasks.updated_at", "<=", stuckAfter)
      .where((eb) => eb.or([eb("job_tasks.lease_expires_at", "is", null), eb("job_tasks.lease_expires_at", "<=", stuckAfter)]))
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom("outbox")
              .select("outbox.id")
              .whereRef("outbox.job_id", "=", "job_tasks.job_id")
              .where(sql<boolean>`outbox.payload->>'task_id' = job_tasks.id`)
              .where((eb) => eb.or([eb("outbox.sent_at", "is", null), eb("outbox.sent_at", ">", stuckAfter)])),
          ),
        ),
      )
      .limit(500)
      .execute();
    if (stuck.length === 0) return [];
    await this.db
      .insertInto("outbox")
      .values(stuck.map((t) => ({ id: newId("evt"), job_id: t.job_id, topic: `task.${t.kind}`, payload: JSON.stringify({ job_id: t.job_id, task_id: t.id }) })))
      .execute();
    return stuck.map((t) => t.id);
  }
}

async function insertTask(trx: Trx, jobId: string, kind: TaskKind, position: number, spec: Record<string, unknown>): Promise<string> {
  const id = newId("tsk");
  await trx.insertInto("job_tasks").values({ id, job_id: jobId, kind, position, spec: JSON.stringify(spec) }).execute();
  await insertOutbox(trx, jobId, kind, id);
  return id;
}

async function insertOutbox(trx: Trx, jobId: string, kind: TaskKind, taskId: string): Promise<void> {
  await trx.insertInto("outbox").values({ id: newId("evt"), job_id: jobId, topic: `task.${kind}`, payload: JSON.stringify({ job_id: jobId, task_id: taskId }) }).execute();
}
