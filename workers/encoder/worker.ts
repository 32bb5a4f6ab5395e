import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { JobRunRepository, Lease } from "../../services/jobs/job-run.repository.js";
import { isTerminal } from "../../services/jobs/job.types.js";
import type { Delivery, WorkQueue } from "../../services/queue/work-queue.js";
import { describeError, PermanentFailure } from "./failure.js";
import { JobRun, LeaseLostError, type JobRunDeps } from "./job-run.js";

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
}

export interface EncoderDeps extends JobRunDeps {
  queue: WorkQueue;
  runs: JobRunRepository;
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
  private readonly stopping = new AbortController();
  private readonly running = new Set<AbortController>();
  private slots: Promise<void>[] = [];
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: EncoderDeps,
    private readonly settings: EncoderSettings,
  ) {}

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
      const jobId = /^rendition-(job_[0-9a-z]+)-/.exec(name)?.[1];
      if (!jobId || !(await this.deps.runs.isAbandoned(jobId))) continue;
      await rm(join(this.settings.tmpDir, name), { recursive: true, force: true });
      this.deps.log(`removed ${name} left in ${this.settings.tmpDir} by a worker that stopped mid-job`);
    }
  }

  /** Stops taking work and abandons running jobs (their leases lapse and another worker resumes them). */
  async stop(): Promise<void> {
    clearInterval(this.sweeper);
    this.stopping.abort();
    for (const job of this.running) job.abort(new Error("worker shutting down"));
    await Promise.all(this.slots);
  }

  private async slot(): Promise<void> {
    while (!this.stopping.signal.aborted) {
      let delivery: Delivery | undefined;
      try {
        delivery = await this.deps.queue.take(this.stopping.signal);
      } catch (err) {
        if (this.stopping.signal.aborted) return;
        this.deps.log("worker: taking work failed; retrying in 1 s", err);
        await new Promise((resolve) => setTimeout(resolve, 1000));
        continue;
      }
      if (!delivery) return;
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
    const { jobId, organizationId } = delivery.message;
    const { runs } = this.deps;
    const state = await runs.leaseState(organizationId, jobId);
    if (!state || isTerminal(state.status) || state.status === "awaiting_confirmation") {
      // Nothing to do: deleted, finished, or waiting for Confirm (which sends its own message).
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
    await this.runLeased(delivery, lease, claimedAt, state.claims);
  }

  private async runLeased(delivery: Delivery, lease: Lease, claimedAt: Date, previousClaims: number): Promise<void> {
    const { runs, events, log } = this.deps;
    const abort = new AbortController();
    // Shutdown reaches a job however early it is stopped.
    const signal = AbortSignal.any([abort.signal, this.stopping.signal]);
    this.running.add(abort);
    let heartbeat: NodeJS.Timeout | undefined;
    let unsubscribe: (() => void) | undefined;
    let tmp: string | undefined;
    let outcome: "done" | "settled" = "settled";
    try {
      tmp = await mkdtemp(join(this.settings.tmpDir, `rendition-${lease.jobId}-`));
      unsubscribe = await events.subscribe(lease.jobId, (event) => {
        if (event.kind === "status" && event.status === "canceled") abort.abort(new LeaseLostError("canceled"));
      });
      let lastRenewal = Date.now();
      heartbeat = setInterval(
        () => {
          // Cut off from the database for a whole lease: another worker may own the job by now.
          if (Date.now() - lastRenewal >= this.settings.leaseMs) abort.abort(new LeaseLostError("lease could not be renewed in time"));
          delivery.working();
          runs.renew(lease, this.settings.leaseMs).then(
            (held) => (held ? (lastRenewal = Date.now()) : abort.abort(new LeaseLostError("lease lost"))),
            (err) => log(`job ${lease.jobId}: lease renewal failed`, err),
          );
        },
        Math.min(5000, this.settings.leaseMs / 3),
      );
      await new JobRun(this.deps, lease, tmp, signal, previousClaims + 1).run(claimedAt);
      outcome = "done";
    } catch (err) {
      clearInterval(heartbeat);
      await this.settle(delivery, lease, err, signal, previousClaims);
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
