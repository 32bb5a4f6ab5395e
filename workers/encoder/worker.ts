import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { JobRunRepository, Lease } from "../../services/jobs/job-run.repository.js";
import { isTerminal } from "../../services/jobs/job.types.js";
import type { Delivery, WorkQueue } from "../../services/queue/work-queue.js";
import { describeError, PermanentFailure } from "./failure.js";
import { JobRun, LeaseLostError, type JobRunDeps } from "./job-run.js";
import type { ChunkSpec, TaskLease } from "../../services/jobs/job-task.repository.js";
import type { WorkStage } from "../../services/queue/work-queue.js";
import { ChunkInputCache, jobOfCacheDir } from "./chunk-input.js";
import { AssembleRun, ChunkRun, type ChunkRunDeps } from "./chunk-run.js";

export interface EncoderSettings {
  /** Jobs this process encodes at once; each slot pulls one message at a time. */
  concurrency: number;
  /** Lease length (and the queue's ack wait); renewed every third of it while work runs. */
  leaseMs: number;
  /** Times a job may be taken by a worker before it fails with RETRIES_EXHAUSTED. */
  maxAttempts: number;
  /** The queue's MaxDeliver: the delivery at which a transient failure is final. */
  maxDeliver: number;
  /** Parent of each job's private temp directory. */
  tmpDir: string;
  /** Chunks of one job encoding at once over all workers (RENDITION_CHUNK_MAX_CONCURRENT). */
  maxConcurrentChunks?: number;
}

export interface EncoderDeps extends JobRunDeps {
  queue: WorkQueue;
  runs: JobRunRepository;
}

/** A task lease or the job lease: what the heartbeat renews while work runs. */
interface Renewable {
  jobId: string;
  renew(): Promise<boolean>;
}

const SWEEP_EVERY_MS = 5 * 60_000;

/** Redelivery delay after a transient failure: 2 s, 4 s, 8 s ... capped at 60 s. */
function backoffMs(deliveryCount: number): number {
  return Math.min(60_000, 1000 * 2 ** Math.max(1, deliveryCount));
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function newWorkerId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
}

/**
 * The encoder: `concurrency` slots, each taking one message at a time from the queue and
 * running the job it names under a lease. Messages only say "look at job X": the job row decides
 * what happens, so duplicates and late redeliveries do nothing.
 */
export class EncoderWorker {
  readonly workerId = newWorkerId();
  /** Aborted first on stop: no more work is taken. */
  private readonly draining = new AbortController();
  /** Aborted when the grace period is over: what still runs is stopped and handed back. */
  private readonly stopping = new AbortController();
  private readonly running = new Set<AbortController>();
  private slots: Promise<void>[] = [];
  private sweeper: NodeJS.Timeout | undefined;
  private readonly cache: ChunkInputCache;
  /** What each stage of message runs: the job (JobRun), a chunk (ChunkRun), an assembly (AssembleRun). */
  private readonly handlers: Record<WorkStage, (delivery: Delivery) => Promise<void>> = {
    probe: (d) => this.handleJob(d),
    encode: (d) => this.handleJob(d),
    chunk: (d) => this.handleChunk(d),
    assemble: (d) => this.handleAssemble(d),
  };

  constructor(
    private readonly deps: EncoderDeps,
    private readonly settings: EncoderSettings,
  ) {
    this.cache = new ChunkInputCache(deps, settings.tmpDir);
  }

  private chunkDeps(): ChunkRunDeps {
    if (!this.deps.tasks) throw new Error("chunk and assemble messages need the task repository");
    return { ...this.deps, tasks: this.deps.tasks, cache: this.cache };
  }

  /** Prepares the temp directory (removing what dead workers left there) and starts the slots. */
  async start(): Promise<void> {
    await mkdir(this.settings.tmpDir, { recursive: true });
    await this.sweepTmp();
    // Again now and then: a worker killed beside this one leaves its directory behind too.
    this.sweeper = setInterval(() => void this.sweepTmp().catch((err) => this.deps.log("worker: sweeping the temp directory failed", err)), SWEEP_EVERY_MS);
    this.sweeper.unref();
    for (let i = 0; i < this.settings.concurrency; i++) this.slots.push(this.slot());
  }

  /** A job's temp dir outlives a worker killed mid-job; remove those whose job nobody holds now. */
  private async sweepTmp(): Promise<void> {
    for (const name of await readdir(this.settings.tmpDir)) {
      // A chunked job's cache stays while any worker may still run one of its tasks: until the job ends.
      const cachedJob = jobOfCacheDir(name);
      if (cachedJob) {
        if (this.deps.tasks && (await this.deps.tasks.isJobFinished(cachedJob))) await this.cache.remove(cachedJob);
        continue;
      }
      const jobId = /^rendition-(job_[0-9a-z]+)-/.exec(name)?.[1];
      if (!jobId || !(await this.deps.runs.isAbandoned(jobId))) continue;
      await rm(join(this.settings.tmpDir, name), { recursive: true, force: true });
      this.deps.log(`removed ${name} left in ${this.settings.tmpDir} by a worker that stopped mid-job`);
    }
  }

  /**
   * Stops taking work and gives running work `graceMs` to finish. What still runs then is stopped
   * (ffmpeg killed), its lease released with the attempt refunded and its message nak'ed for
   * immediate redelivery, so another worker takes it at once; nothing fails because of a
   * shutdown. Resolves when every slot has settled.
   */
  async stop(graceMs = 0): Promise<void> {
    clearInterval(this.sweeper);
    this.draining.abort();
    const slots = Promise.all(this.slots);
    if (graceMs > 0 && this.running.size > 0) {
      const them = this.running.size === 1 ? "it" : "them";
      this.deps.log(`worker: ${plural(this.running.size, "running job")}; waiting up to ${graceMs} ms for ${them} to finish before handing ${them} back`);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([slots, new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
      clearTimeout(timer);
    }
    if (this.running.size > 0) this.deps.log(`worker: handing back ${plural(this.running.size, "running job")} for another worker`);
    const reason = new Error("worker shutting down");
    this.stopping.abort(reason);
    for (const job of this.running) job.abort(reason);
    await slots;
  }

  private async slot(): Promise<void> {
    while (!this.draining.signal.aborted) {
      let delivery: Delivery | undefined;
      try {
        delivery = await this.deps.queue.take(this.draining.signal);
      } catch (err) {
        if (this.draining.signal.aborted) return;
        this.deps.log("worker: taking work failed; retrying in 1 s", err);
        await new Promise((resolve) => setTimeout(resolve, 1000));
        continue;
      }
      if (!delivery) return;
      if (this.draining.signal.aborted) {
        // Taken just as the shutdown began: straight back, for another worker.
        delivery.nak(0);
        return;
      }
      try {
        await this.handle(delivery);
      } catch (err) {
        // handle() settles every outcome itself; this is a bug or the database going away.
        this.deps.log(`worker: job ${delivery.message.jobId} failed unexpectedly; it will be redelivered`, err);
        delivery.nak(backoffMs(delivery.deliveryCount));
      }
    }
  }

  async handle(delivery: Delivery): Promise<void> {
    const handler = this.handlers[delivery.message.stage];
    if (!handler) {
      this.deps.log(`worker: a message of unknown stage ${JSON.stringify(delivery.message.stage)} was dropped`);
      delivery.term();
      return;
    }
    await handler(delivery);
  }

  private async handleJob(delivery: Delivery): Promise<void> {
    const { jobId, organizationId } = delivery.message;
    const { runs } = this.deps;
    const state = await runs.leaseState(organizationId, jobId);
    if (!state || isTerminal(state.status) || state.status === "awaiting_confirmation") {
      // Nothing to do: deleted, finished, or waiting for Confirm (which sends its own message).
      await delivery.ack();
      return;
    }
    // A chunked job is carried by its tasks, each with its own message.
    if (state.status === "processing" && (await this.deps.tasks?.hasTasks(jobId))) {
      await delivery.ack();
      return;
    }
    if (state.leaseRemainingMs > 0) {
      // Someone holds the job. A lease renewed recently belongs to a live worker that has its
      // own delivery: this one is a duplicate. One about to lapse may be a dead worker's: look
      // again right after it ends.
      if (state.leaseRemainingMs > this.settings.leaseMs / 2) await delivery.ack();
      else delivery.nak(Math.ceil(state.leaseRemainingMs) + 500);
      return;
    }
    const claimedAt = new Date();
    const lease = await runs.claim(organizationId, jobId, this.workerId, this.settings.leaseMs, ["pending", "probing", "processing"]);
    if (!lease) {
      delivery.nak(1000); // raced with another worker or a Cancel: the next look decides
      return;
    }
    if (state.leaseOwner) this.deps.log(`job ${jobId}: taking over from ${state.leaseOwner}, whose lease lapsed (attempt ${state.claims + 1})`);
    if (state.claims >= this.settings.maxAttempts) {
      await this.fail(lease, new PermanentFailure("RETRIES_EXHAUSTED", `gave up after ${plural(state.claims, "attempt")}; last error: ${state.lastError || "the worker running it stopped"}`));
      delivery.term();
      return;
    }
    await this.runLeased(delivery, lease, state.claims, (tmp, signal) => new JobRun(this.deps, lease, tmp, signal, state.claims + 1).run(claimedAt));
  }

  /** The assembly of a chunked job: under the job's lease, like a JobRun. */
  private async handleAssemble(delivery: Delivery): Promise<void> {
    const { jobId, organizationId, taskId } = delivery.message;
    const { runs } = this.deps;
    const state = await runs.leaseState(organizationId, jobId);
    if (!taskId || !state || state.status !== "processing") {
      if (state && isTerminal(state.status)) await this.cache.remove(jobId).catch(() => {});
      await delivery.ack();
      return;
    }
    if (state.leaseRemainingMs > 0) {
      if (state.leaseRemainingMs > this.settings.leaseMs / 2) await delivery.ack();
      else delivery.nak(Math.ceil(state.leaseRemainingMs) + 500);
      return;
    }
    const lease = await runs.claim(organizationId, jobId, this.workerId, this.settings.leaseMs, ["processing"]);
    if (!lease) {
      delivery.nak(1000);
      return;
    }
    const deps = this.chunkDeps();
    if ((await deps.tasks.startAssemble(lease, taskId)) === undefined) {
      // Already assembled (a late duplicate) or the job moved on: give the job back untouched.
      await runs.release(lease, state.lastError, { refundClaim: true });
      await delivery.ack();
      return;
    }
    if (state.claims >= this.settings.maxAttempts) {
      await this.fail(lease, new PermanentFailure("RETRIES_EXHAUSTED", `gave up after ${plural(state.claims, "attempt")}; last error: ${state.lastError || "the worker running it stopped"}`));
      delivery.term();
      return;
    }
    await this.runLeased(delivery, lease, state.claims, (tmp, signal) => new AssembleRun(deps, lease, tmp, signal, state.claims + 1).run());
  }

  /** One chunk of a chunked job, under the task's own lease. */
  private async handleChunk(delivery: Delivery): Promise<void> {
    const { jobId, organizationId, taskId } = delivery.message;
    const deps = this.chunkDeps();
    if (!taskId) {
      await delivery.ack();
      return;
    }
    const claim = await deps.tasks.claim(organizationId, taskId, this.workerId, this.settings.leaseMs, this.settings.maxConcurrentChunks ?? 4);
    switch (claim.kind) {
      case "done":
        if (await deps.tasks.isJobFinished(jobId)) await this.cache.remove(jobId).catch(() => {});
        await delivery.ack();
        return;
      case "held":
        if (claim.leaseRemainingMs > this.settings.leaseMs / 2) await delivery.ack();
        else delivery.nak(Math.ceil(claim.leaseRemainingMs) + 500);
        return;
      case "busy":
        // The job has its share of workers; look again shortly (other jobs' work goes first meanwhile).
        delivery.nak(2000);
        return;
    }
    const { lease, claims } = claim;
    if (claims > 1) this.deps.log(`task ${taskId} of ${jobId}: taken over (claim ${claims})`);
    if (claims > this.settings.maxAttempts) {
      await this.failTask(lease, new PermanentFailure("RETRIES_EXHAUSTED", `gave up on a chunk after ${plural(claims - 1, "attempt")}; last error: ${claim.lastError || "the worker running it stopped"}`));
      delivery.term();
      return;
    }
    const renewable: Renewable = { jobId, renew: () => deps.tasks.renew(lease, this.settings.leaseMs) };
    await this.runWithLease(delivery, renewable, false, (_tmp, signal) => new ChunkRun(deps, lease, claim.spec as unknown as ChunkSpec, signal).run(), async (err, signal) => {
      await this.settleTask(delivery, lease, claims, err, signal);
    });
  }

  private async settleTask(delivery: Delivery, lease: TaskLease, claims: number, err: unknown, signal: AbortSignal): Promise<void> {
    const { log } = this.deps;
    const tasks = this.chunkDeps().tasks;
    if (err instanceof LeaseLostError || (signal.aborted && signal.reason instanceof LeaseLostError)) {
      log(`task ${lease.taskId}: stopped (${describeError(signal.reason ?? err)})`);
      await delivery.ack();
      return;
    }
    if (this.stopping.signal.aborted) {
      await tasks.release(lease, "the worker running it shut down", { refundClaim: true }).catch(() => {});
      delivery.nak(0);
      return;
    }
    if (err instanceof PermanentFailure) {
      log(`task ${lease.taskId} of ${lease.jobId}: failed ${err.code}: ${err.message}`);
      await this.failTask(lease, err);
      delivery.term();
      return;
    }
    const message = describeError(err);
    if (delivery.deliveryCount >= this.settings.maxDeliver || claims >= this.settings.maxAttempts) {
      await this.failTask(lease, new PermanentFailure("RETRIES_EXHAUSTED", `gave up on a chunk after ${plural(claims, "attempt")}; last error: ${message}`));
      delivery.term();
      return;
    }
    log(`task ${lease.taskId}: attempt ${claims} failed (${message}); retrying in ${backoffMs(delivery.deliveryCount) / 1000} s`);
    await tasks.release(lease, message);
    delivery.nak(backoffMs(delivery.deliveryCount));
  }

  private async failTask(lease: TaskLease, failure: PermanentFailure): Promise<void> {
    const status = await this.chunkDeps().tasks.failJob(lease, failure.code, failure.message);
    if (!status) return;
    await this.deps.events.publish({ jobId: lease.jobId, organizationId: lease.organizationId, kind: "status", status, progress: 0 });
  }

  private async runLeased(delivery: Delivery, lease: Lease, previousClaims: number, body: (tmp: string, signal: AbortSignal) => Promise<void>): Promise<void> {
    const renewable: Renewable = { jobId: lease.jobId, renew: () => this.deps.runs.renew(lease, this.settings.leaseMs) };
    await this.runWithLease(delivery, renewable, true, body, (err, signal) => this.settle(delivery, lease, err, signal, previousClaims));
  }

  /**
   * Runs `body` in a fresh temp directory while the lease is renewed (with `working()` on the
   * message) every third of its length; a Cancel heard on the event bus, or a renewal refused,
   * aborts it. `settle` decides what a failure means.
   */
  private async runWithLease(
    delivery: Delivery,
    lease: Renewable,
    withTmp: boolean,
    body: (tmp: string, signal: AbortSignal) => Promise<void>,
    settle: (err: unknown, signal: AbortSignal) => Promise<void>,
  ): Promise<void> {
    const { events, log } = this.deps;
    const abort = new AbortController();
    // Shutdown reaches a job however early it is stopped.
    const signal = AbortSignal.any([abort.signal, this.stopping.signal]);
    this.running.add(abort);
    let heartbeat: NodeJS.Timeout | undefined;
    let unsubscribe: (() => void) | undefined;
    let tmp: string | undefined;
    let outcome: "done" | "settled" = "settled";
    try {
      // A chunk works in its job's cache directory (ChunkInputCache) instead.
      if (withTmp) tmp = await mkdtemp(join(this.settings.tmpDir, `rendition-${lease.jobId}-`));
      // A prompt stop on cancel; without the bus (NATS down) the lease renewal notices it instead.
      unsubscribe = await events
        .subscribe(lease.jobId, (event) => {
          if (event.kind !== "status") return;
          if (event.status === "canceled") abort.abort(new LeaseLostError("canceled"));
          // A chunk stops as soon as its job has ended elsewhere (another chunk failed it); the job
          // lease holder writes those statuses itself.
          else if (!withTmp && isTerminal(event.status)) abort.abort(new LeaseLostError(`the job ended ${event.status}`));
        })
        .catch((err: unknown) => {
          log(`job ${lease.jobId}: no cancel notifications (event bus unavailable); the lease renewal will notice a cancel`, err);
          return undefined;
        });
      let lastRenewal = Date.now();
      heartbeat = setInterval(
        () => {
          // Cut off from the database for a whole lease: another worker may own the job by now.
          if (Date.now() - lastRenewal >= this.settings.leaseMs) abort.abort(new LeaseLostError("lease could not be renewed in time"));
          delivery.working();
          lease.renew().then(
            (held) => (held ? (lastRenewal = Date.now()) : abort.abort(new LeaseLostError("lease lost"))),
            (err) => log(`job ${lease.jobId}: lease renewal failed`, err),
          );
        },
        Math.min(5000, this.settings.leaseMs / 3),
      );
      await body(tmp ?? this.settings.tmpDir, signal);
      outcome = "done";
    } catch (err) {
      clearInterval(heartbeat);
      await settle(err, signal);
    } finally {
      clearInterval(heartbeat);
      unsubscribe?.();
      this.running.delete(abort);
      if (tmp) await rm(tmp, { recursive: true, force: true }).catch((err) => log(`job ${lease.jobId}: removing ${tmp} failed`, err));
    }
    // Outside the run: a failed ack (NATS reconnecting) must not be mistaken for a failed job.
    // The job row is final already; a redelivery finds it terminal and is acked then.
    if (outcome === "done") await delivery.ack().catch((err) => log(`job ${lease.jobId}: ack failed; the redelivery will find the job finished`, err));
  }

  /** Decides what a failed run means: canceled, permanent, or worth another delivery. */
  private async settle(delivery: Delivery, lease: Lease, err: unknown, signal: AbortSignal, previousClaims: number): Promise<void> {
    const { log } = this.deps;
    if (err instanceof LeaseLostError || (signal.aborted && signal.reason instanceof LeaseLostError)) {
      log(`job ${lease.jobId}: stopped (${describeError(signal.reason ?? err)})`);
      await delivery.ack();
      return;
    }
    if (this.stopping.signal.aborted) {
      // Shutting down: give the job back (this attempt does not count) so another worker can
      // take it without waiting out the lease.
      await this.deps.runs.release(lease, "the worker running it shut down", { refundClaim: true }).catch(() => {});
      delivery.nak(0);
      return;
    }
    if (err instanceof PermanentFailure) {
      log(`job ${lease.jobId}: failed ${err.code}: ${err.message}`);
      await this.fail(lease, err);
      delivery.term();
      return;
    }
    const message = describeError(err);
    const attempts = previousClaims + 1;
    if (delivery.deliveryCount >= this.settings.maxDeliver || attempts >= this.settings.maxAttempts) {
      log(`job ${lease.jobId}: giving up after ${plural(attempts, "attempt")}`, err);
      await this.fail(lease, new PermanentFailure("RETRIES_EXHAUSTED", `gave up after ${plural(attempts, "attempt")}; last error: ${message}`));
      delivery.term();
      return;
    }
    log(`job ${lease.jobId}: attempt ${attempts} failed (${message}); retrying in ${backoffMs(delivery.deliveryCount) / 1000} s`);
    await this.deps.runs.release(lease, message);
    delivery.nak(backoffMs(delivery.deliveryCount));
  }

  private async fail(lease: Lease, failure: PermanentFailure): Promise<void> {
    const status = await this.deps.runs.fail(lease, failure.code, failure.message);
    if (!status) return;
    await this.deps.events.publish({ jobId: lease.jobId, organizationId: lease.organizationId, kind: "status", status, progress: 0 });
  }
}
