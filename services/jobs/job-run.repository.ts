import { sql, type Kysely, type Transaction } from "kysely";
import type { Database, JobOutputsTable, JobRowUpdate, JobThumbnailsTable } from "../db/schema.js";
import type { Updateable } from "kysely";
import { progressEvents, recordJobEvents, type JobEvent } from "../webhooks/events.js";
import { endJob, failedRows, outputFailedEvents, type JobEnd, type OutputFailure } from "./job-end.js";
import type { JobStatusName } from "./job.types.js";
import { leaseTakeovers } from "../observability/metrics.js";

/**
 * A worker's hold on a job. `token` is the job's `attempt` when the lease was taken: every write
 * a worker makes is a compare-and-set on it, and anything that takes the job away (Cancel,
 * another worker taking over an expired lease) bumps `attempt`, so a late or duplicate worker
 * can never move the job backwards or finish it twice.
 */
export interface Lease {
  jobId: string;
  organizationId: string;
  workerId: string;
  token: number;
}

export interface LeaseState {
  status: JobStatusName;
  leaseOwner: string;
  /** Milliseconds until the current lease ends, by the database's clock; <= 0 when free. */
  leaseRemainingMs: number;
  claims: number;
  lastError: string;
}

type Db = Kysely<Database>;

/** The states a worker holds a job in; once a job leaves them, no lease write applies any more. */
const RUNNING: JobStatusName[] = ["pending", "probing", "processing"];
type Trx = Transaction<Database>;

/** The writes workers make to jobs, each guarded by the lease. */
export class JobRunRepository {
  constructor(private readonly db: Db) {}

  async leaseState(organizationId: string, jobId: string): Promise<LeaseState | undefined> {
    const row = await this.db
      .selectFrom("jobs")
      .select([
        "status",
        "lease_owner",
        "claims",
        "last_error",
        sql<number>`coalesce(extract(epoch from (lease_expires_at - now())) * 1000, 0)`.as("remaining"),
      ])
      .where("organization_id", "=", organizationId)
      .where("id", "=", jobId)
      .executeTakeFirst();
    if (!row) return undefined;
    return {
      status: row.status as JobStatusName,
      leaseOwner: row.lease_owner,
      leaseRemainingMs: Number(row.remaining),
      claims: row.claims,
      lastError: row.last_error,
    };
  }

  /**
   * Takes the job if it is in one of `statuses` and nobody holds a live lease on it. Counts the
   * claim (Execution.attempts). Undefined when the job is elsewhere or held.
   */
  async claim(organizationId: string, jobId: string, workerId: string, leaseMs: number, statuses: readonly JobStatusName[]): Promise<Lease | undefined> {
    const row = await this.db
      .updateTable("jobs")
      .set((eb) => ({
        attempt: eb("attempt", "+", 1),
        claims: eb("claims", "+", 1),
        lease_owner: workerId,
        lease_expires_at: sql<Date>`now() + ${leaseMs} * interval '1 millisecond'`,
      }))
      .where("organization_id", "=", organizationId)
      .where("id", "=", jobId)
      .where("status", "in", [...statuses])
      .where((eb) => eb.or([eb("lease_expires_at", "is", null), eb("lease_expires_at", "<=", sql<Date>`now()`)]))
      // A sub-select in RETURNING reads the statement's snapshot: the owner before this claim.
      .returning(["attempt", sql<string>`(SELECT previous.lease_owner FROM jobs AS previous WHERE previous.id = jobs.id)`.as("previous_owner")])
      .executeTakeFirst();
    // A lapsed lease of another worker's (a released or paused job has no owner).
    if (row?.previous_owner) leaseTakeovers.inc({ kind: "job" });
    return row ? { jobId, organizationId, workerId, token: row.attempt } : undefined;
  }

  /** Extends the lease; false when it was lost (canceled, or taken over). */
  async renew(lease: Lease, leaseMs: number): Promise<boolean> {
    // Only a lease still held: one given back (paused for Confirm, released after a failure)
    // must not come back to life through a heartbeat that was already on its way.
    const result = await this.db
      .updateTable("jobs")
      .set({ lease_expires_at: sql<Date>`now() + ${leaseMs} * interval '1 millisecond'` })
      .where("id", "=", lease.jobId)
      .where("attempt", "=", lease.token)
      .where("lease_owner", "=", lease.workerId)
      .where("lease_expires_at", "is not", null)
      .where("status", "in", RUNNING)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /**
   * Runs `write` in a transaction only while the lease holds (the job row is locked meanwhile,
   * so Cancel waits for the write or the write sees Cancel). False when the lease was lost.
   */
  async withLease(lease: Lease, write: (trx: Trx, locked: { progress: number }) => Promise<void>): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const row = await trx.selectFrom("jobs").select(["attempt", "status", "progress"]).where("id", "=", lease.jobId).forUpdate().executeTakeFirst();
      // Finished jobs take no more writes, even from the worker that finished them (a late progress write).
      if (!row || row.attempt !== lease.token || !RUNNING.includes(row.status as JobStatusName)) return false;
      await write(trx, { progress: row.progress });
      return true;
    });
  }

  /** Updates the job row (and optionally its outputs and thumbnails) under the lease; the named writes above are built on it. */
  async update(
    lease: Lease,
    job: JobRowUpdate,
    children: {
      outputs?: Array<[string, Updateable<JobOutputsTable>]>;
      thumbnails?: Array<[string, Updateable<JobThumbnailsTable>]>;
      /** This claim does not count as an attempt (the job paused for Confirm: nothing went wrong). */
      refundClaim?: boolean;
      /** Webhook events this change causes, written with it. */
      events?: JobEvent[];
    } = {},
  ): Promise<boolean> {
    return this.withLease(lease, async (trx, locked) => {
      const milestones = job.progress === undefined ? [] : progressEvents(locked.progress, Number(job.progress));
      await trx
        .updateTable("jobs")
        .set((eb) => ({ ...job, updated_at: new Date(), ...(children.refundClaim ? { claims: eb("claims", "-", 1) } : {}) }))
        .where("id", "=", lease.jobId)
        .execute();
      for (const [id, patch] of children.outputs ?? []) {
        await trx.updateTable("job_outputs").set(patch).where("job_id", "=", lease.jobId).where("id", "=", id).execute();
      }
      for (const [id, patch] of children.thumbnails ?? []) {
        await trx.updateTable("job_thumbnails").set(patch).where("job_id", "=", lease.jobId).where("id", "=", id).execute();
      }
      await recordJobEvents(trx, lease.jobId, [...milestones, ...(children.events ?? [])]);
    });
  }

  /** The worker started fetching and probing the input. */
  startProbe(lease: Lease, execution: unknown): Promise<boolean> {
    return this.update(lease, { status: "probing", execution: JSON.stringify(execution) });
  }

  /**
   * The probe's findings and estimate. Then either the job pauses for Confirm (the lease is
   * given back, and probing does not count as an attempt), or encoding starts with `encoding`.
   */
  recordProbe(
    lease: Lease,
    probe: {
      inputMetadata: unknown;
      estimatedCostMinor: number;
      outputCostsMinor: Array<[string, number]>;
      /** Outputs the plan refused (an encoder the build lacks, a setting not encoded yet): failed now, with why. */
      failedOutputs: OutputFailure[];
      execution: unknown;
      probedAt: Date;
    },
    next: { pause: true } | { pause: false; encoding: readonly string[] },
  ): Promise<boolean> {
    const encoding = new Set(next.pause ? [] : next.encoding);
    const job: JobRowUpdate = {
      input_metadata: JSON.stringify(probe.inputMetadata),
      estimated_cost_minor: probe.estimatedCostMinor,
      probed_at: probe.probedAt,
      execution: JSON.stringify(probe.execution),
      ...(next.pause ? { status: "awaiting_confirmation", lease_owner: "", lease_expires_at: null } : { status: "processing", started_at: probe.probedAt }),
    };
    const outputs = probe.outputCostsMinor.map(([id, cost]): [string, Updateable<JobOutputsTable>] => [id, { estimated_cost_minor: cost, ...(encoding.has(id) ? { status: "processing" } : {}) }]);
    const events: JobEvent[] = [
      ...outputFailedEvents(probe.failedOutputs.map(([id]) => id)),
      { type: "job.probed" },
      ...(next.pause ? [{ type: "job.awaiting_confirmation" } as const] : []),
    ];
    return this.update(lease, job, { outputs: [...outputs, ...failedRows(probe.failedOutputs)], refundClaim: next.pause, events });
  }

  /** A confirmed or resumed job: these outputs are being encoded (started_at set on the first start). */
  startEncoding(lease: Lease, outputIds: readonly string[], startedAt: Date | undefined, failedOutputs: OutputFailure[] = []): Promise<boolean> {
    return this.update(lease, startedAt ? { started_at: startedAt } : {}, {
      outputs: [...outputIds.map((id): [string, Updateable<JobOutputsTable>] => [id, { status: "processing" }]), ...failedRows(failedOutputs)],
      events: outputFailedEvents(failedOutputs.map(([id]) => id)),
    });
  }

  /** One output delivered: where, how big, how long, what it cost. */
  completeOutput(
    lease: Lease,
    outputId: string,
    result: { url: string; manifestUrls: readonly string[]; subtitleUrls: readonly string[]; bytes: number; durationMs: number; actualCostMinor: number },
    jobProgress: number,
  ): Promise<boolean> {
    return this.update(lease, { progress: jobProgress }, {
      outputs: [
        [
          outputId,
          {
            status: "completed",
            output_url: result.url,
            manifest_urls: JSON.stringify(result.manifestUrls),
            subtitle_urls: JSON.stringify(result.subtitleUrls),
            file_size_bytes: result.bytes,
            duration_ms: result.durationMs,
            progress: 100,
            actual_cost_minor: result.actualCostMinor,
            error_code: "",
            error_message: "",
          },
        ],
      ],
      events: [{ type: "output.completed", outputId }],
    });
  }

  completeThumbnail(lease: Lease, thumbnailId: string, result: { urls: readonly string[]; storyboardUrl: string }): Promise<boolean> {
    return this.update(lease, {}, { thumbnails: [[thumbnailId, { status: "completed", urls: JSON.stringify(result.urls), storyboard_url: result.storyboardUrl }]] });
  }

  failThumbnail(lease: Lease, thumbnailId: string, message: string): Promise<boolean> {
    return this.update(lease, {}, { thumbnails: [[thumbnailId, { status: "failed", error_message: message.slice(0, 2000) }]] });
  }

  /** What this attempt measured so far (kept when it fails). */
  saveExecution(lease: Lease, execution: unknown): Promise<boolean> {
    return this.update(lease, { execution: JSON.stringify(execution) });
  }

  /**
   * The end of a run that got through: the job's final status and cost, the outputs that failed
   * alone (with their codes), and the lease ended.
   */
  async finish(lease: Lease, result: Omit<Extract<JobEnd, { kind: "finish" }>, "kind">): Promise<boolean> {
    return this.withLease(lease, async (trx) => {
      await endJob(trx, lease.jobId, { kind: "finish", ...result });
    });
  }

  /** Progress only: no updated_at bump, so the reconciler's "no change for a while" still means stuck. */
  async progress(lease: Lease, progress: number, outputs: Array<[string, number]>): Promise<boolean> {
    return this.withLease(lease, async (trx, locked) => {
      const milestones = progressEvents(locked.progress, progress);
      await trx.updateTable("jobs").set({ progress }).where("id", "=", lease.jobId).execute();
      for (const [id, value] of outputs) {
        await trx.updateTable("job_outputs").set({ progress: value }).where("job_id", "=", lease.jobId).where("id", "=", id).execute();
      }
      await recordJobEvents(trx, lease.jobId, milestones);
    });
  }

  /**
   * Fails what had not finished, ending the lease. Outputs already delivered are kept and
   * charged, so a job with some of them ends partial rather than failed.
   */
  async fail(lease: Lease, code: string, message: string): Promise<"failed" | "partial" | undefined> {
    let status: JobStatusName | undefined;
    const held = await this.withLease(lease, async (trx) => {
      status = await endJob(trx, lease.jobId, { kind: "fail", code, message });
    });
    return held ? (status as "failed" | "partial") : undefined;
  }

  /**
   * Whether the job is one of ours that nobody works on any more (finished, or its lease lapsed):
   * its temp directory is a dead worker's leftover. A job this database does not know may belong
   * to another installation sharing the temp directory, so it is not abandoned.
   */
  async isAbandoned(jobId: string): Promise<boolean> {
    const row = await this.db
      .selectFrom("jobs")
      .select((eb) => eb.or([eb("status", "not in", RUNNING), eb("lease_expires_at", "is", null), eb("lease_expires_at", "<=", sql<Date>`now()`)]).as("abandoned"))
      .where("id", "=", jobId)
      .executeTakeFirst();
    return row?.abandoned === true;
  }

  /**
   * Ends every lease. Only for a database no other process can use (embedded PGlite): after a
   * crash, the previous run's leases belong to nobody.
   */
  async releaseAll(): Promise<void> {
    await this.db.updateTable("jobs").set({ lease_owner: "", lease_expires_at: null }).where("lease_expires_at", "is not", null).execute();
  }

  /**
   * Gives the job back after a transient failure so the next delivery (any worker) can take it at
   * once, remembering why.
   */
  async release(lease: Lease, lastError: string, options: { refundClaim?: boolean } = {}): Promise<boolean> {
    return this.withLease(lease, async (trx) => {
      await trx
        .updateTable("jobs")
        .set((eb) => ({
          lease_owner: "",
          lease_expires_at: null,
          last_error: lastError.slice(0, 2000),
          // A shutdown is not the job's fault: it should not use up one of its attempts.
          claims: options.refundClaim ? eb("claims", "-", 1) : eb.ref("claims"),
        }))
        .where("id", "=", lease.jobId)
        .execute();
    });
  }
}

