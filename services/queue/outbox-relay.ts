import { sql, type Kysely } from "kysely";
import { newId } from "../common/ids.js";
import { KickedLoop } from "../common/kicked-loop.js";
import type { Database } from "../db/schema.js";
import { JobTaskRepository } from "../jobs/job-task.repository.js";
import type { PriorityName } from "../pricing/pricing.js";
import type { WorkQueue, WorkStage } from "./work-queue.js";
import type { Log } from "../observability/log-context.js";

export interface OutboxRelayOptions {
  /** How often unsent rows are looked for when nobody kicks the relay. */
  pollMs: number;
  /** How often the reconciler looks for stuck jobs. */
  reconcileEveryMs: number;
  /** An unfinished job nobody holds and nothing was sent for in this long is queued again. */
  stuckAfterMs: number;
  log: Log;
}

/** Which stage a topic asks for; undefined: nothing for workers (they learn of cancels from the event bus and their lease). */
function stageOf(topic: string, payload: Record<string, unknown>): WorkStage | undefined {
  switch (topic) {
    case "job.created":
      return "probe";
    case "job.confirmed":
      return "encode";
    case "job.retry":
      return payload.stage === "encode" ? "encode" : "probe";
    // Chunked encoding (job_tasks): the row names its task.
    case "task.chunk":
      return typeof payload.task_id === "string" ? "chunk" : undefined;
    case "task.assemble":
      return typeof payload.task_id === "string" ? "assemble" : undefined;
    default:
      return undefined;
  }
}

/**
 * Moves outbox rows to the work queue: publish with the row id as the message id (so two relays
 * sending the same row store it once), then mark the row sent. A crash between the two re-sends
 * the row, which the queue drops as a duplicate. The reconciler is the backstop for work that
 * went missing anyway (a purged stream, a message past MaxDeliver): unfinished jobs that nobody
 * holds and that saw no change for `stuckAfterMs` get a fresh `job.retry` row.
 */
export class OutboxRelay {
  private readonly loop: KickedLoop;
  private reconcileTimer: NodeJS.Timeout | undefined;
  private readonly tasks: JobTaskRepository;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly queue: WorkQueue,
    private readonly options: OutboxRelayOptions,
  ) {
    this.tasks = new JobTaskRepository(db);
    this.loop = new KickedLoop(() => this.drain(), options.pollMs, (err) => options.log("outbox relay: publish failed; will retry", err));
  }

  start(): void {
    this.loop.start();
    this.reconcileTimer = setInterval(() => {
      this.reconcile().then(
        (n) => n > 0 && this.kick(),
        (err) => this.options.log("reconciler: scan failed", err),
      );
    }, this.options.reconcileEveryMs);
    this.reconcileTimer.unref();
  }

  /** Relay now (after a commit that wrote outbox rows); concurrent kicks coalesce. */
  kick(): void {
    this.loop.kick();
  }

  async stop(): Promise<void> {
    clearInterval(this.reconcileTimer);
    await this.loop.stop();
  }

  /** Sends every unsent row, oldest first; returns how many were published. */
  async drain(): Promise<number> {
    let published = 0;
    for (;;) {
      const rows = await this.db
        .selectFrom("outbox")
        .innerJoin("jobs", "jobs.id", "outbox.job_id")
        .select(["outbox.id", "outbox.job_id", "outbox.topic", "outbox.payload", "jobs.organization_id", "jobs.priority"])
        .where("outbox.sent_at", "is", null)
        .orderBy("outbox.id")
        .limit(100)
        .execute();
      if (rows.length === 0) return published;
      // The batch is published at once (one connection keeps the order; each waits for its own
      // ack) and what was acked is marked sent in one statement: two round trips per batch
      // rather than two per row. A failed publish leaves its row unsent for the next drain.
      const outcomes = await Promise.allSettled(
        rows.map(async (row) => {
          const stage = stageOf(row.topic, row.payload);
          if (!stage) return false;
          await this.queue.publish({
            id: row.id,
            jobId: row.job_id,
            organizationId: row.organization_id,
            stage,
            priority: row.priority as PriorityName,
            ...(typeof row.payload.task_id === "string" ? { taskId: row.payload.task_id } : {}),
          });
          return true;
        }),
      );
      const sent = rows.filter((_, i) => outcomes[i]!.status === "fulfilled").map((row) => row.id);
      if (sent.length > 0) await this.db.updateTable("outbox").set({ sent_at: new Date() }).where("id", "in", sent).execute();
      published += outcomes.filter((o) => o.status === "fulfilled" && o.value).length;
      const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected");
      if (failed) {
        // One line per job left unsent (the loop logs the error itself once).
        rows.forEach((row, i) => {
          if (outcomes[i]!.status === "rejected") this.options.log(`outbox relay: ${row.topic} of ${row.job_id} not sent yet`, undefined, { job_id: row.job_id, organization_id: row.organization_id, level: "warn" });
        });
        throw failed.reason;
      }
    }
  }

  /**
   * Queues every unfinished job again. For the in-process queue at start: whatever it held died
   * with the previous process (whose leases the caller ends first when it can).
   */
  async requeueUnfinished(): Promise<number> {
    const unfinished = await this.db.selectFrom("jobs").select(["id", "status"]).where("status", "in", ["pending", "probing", "processing"]).execute();
    await this.queueRetries(unfinished);
    // A chunked job's tasks too (a job message for it is acked: its tasks carry it).
    const tasks = await this.tasks.requeueStuck(0);
    return unfinished.length + tasks.length;
  }

  /** Queues a `job.retry` for each stuck job (and drops long-sent rows); returns how many were queued. */
  async reconcile(): Promise<number> {
    // Sent rows are history after the queue's duplicate window; a week is plenty for debugging.
    await this.db.deleteFrom("outbox").where("sent_at", "<", sql<Date>`now() - interval '7 days'`).execute();
    const stuckAfter = sql<Date>`now() - ${this.options.stuckAfterMs} * interval '1 millisecond'`;
    const stuck = await this.db
      .selectFrom("jobs")
      .select(["id", "status"])
      .where("status", "in", ["pending", "probing", "processing"])
      .where("updated_at", "<", stuckAfter)
      .where((eb) => eb.or([eb("lease_expires_at", "is", null), eb("lease_expires_at", "<", stuckAfter)]))
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom("outbox")
              .select("outbox.id")
              .whereRef("outbox.job_id", "=", "jobs.id")
              .where((eb) => eb.or([eb("outbox.sent_at", "is", null), eb("outbox.sent_at", ">", stuckAfter)])),
          ),
        ),
      )
      // A chunked job is carried by its tasks (below), not by job messages.
      .where(({ not, exists, selectFrom }) => not(exists(selectFrom("job_tasks").select("job_tasks.id").whereRef("job_tasks.job_id", "=", "jobs.id"))))
      .limit(500)
      .execute();
    const tasks = await this.tasks.requeueStuck(this.options.stuckAfterMs);
    if (tasks.length > 0) this.options.log(`reconciler: queued ${tasks.length} stuck task(s) again: ${tasks.join(", ")}`);
    if (stuck.length === 0) return tasks.length;
    await this.queueRetries(stuck);
    this.options.log(`reconciler: queued ${stuck.length} stuck job(s) again: ${stuck.map((j) => j.id).join(", ")}`);
    return stuck.length + tasks.length;
  }

  private async queueRetries(jobs: Array<{ id: string; status: string }>): Promise<void> {
    if (jobs.length === 0) return;
    await this.db
      .insertInto("outbox")
      .values(
        jobs.map((job) => ({
          id: newId("evt"),
          job_id: job.id,
          topic: "job.retry",
          payload: JSON.stringify({ job_id: job.id, stage: job.status === "processing" ? "encode" : "probe" }),
        })),
      )
      .execute();
  }
}
