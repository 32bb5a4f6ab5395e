import type { Transaction, Updateable } from "kysely";
import type { Database, JobOutputsTable } from "../db/schema.js";
import { recordJobEvents, terminalEventOf, type JobEvent } from "../webhooks/events.js";
import type { JobStatusName } from "./job.types.js";

type Trx = Transaction<Database>;
export type OutputFailure = [outputId: string, failure: { code: string; message: string }];

/** How a job ends. Every terminal write goes through `endJob`, so each one writes its events. */
export type JobEnd =
  /** The worker got through: its verdict, the outputs that failed alone, the cost of the rest. */
  | {
      kind: "finish";
      status: "completed" | "partial" | "failed";
      failedOutputs: OutputFailure[];
      actualCostMinor: number;
      execution: unknown;
      error?: { code: string; message: string };
      completedAt: Date;
      /** The input's metadata again, when the encode learnt more about it (decode errors). */
      inputMetadata?: unknown;
    }
  /** The job failed as a whole: what had not finished fails; delivered outputs are kept and charged (partial). */
  | { kind: "fail"; code: string; message: string }
  /** Canceled by its owner: what had not finished is canceled, and the lease token moves on. */
  | { kind: "cancel" };

export function failedRows(failures: readonly OutputFailure[]): Array<[string, Updateable<JobOutputsTable>]> {
  return failures.map(([id, f]) => [id, { status: "failed", error_code: f.code, error_message: f.message.slice(0, 2000), progress: 0 }]);
}

export function outputFailedEvents(outputIds: Iterable<string>): JobEvent[] {
  return [...outputIds].map((outputId) => ({ type: "output.failed", outputId }));
}

/**
 * The one terminal write: job status, outputs and thumbnails that had not finished, the lease
 * ended, and the events (output.failed for each output failed here, then job.<status>) in the
 * same transaction. The caller has locked the job row and checked it may end it.
 */
export async function endJob(trx: Trx, jobId: string, end: JobEnd): Promise<JobStatusName> {
  const now = new Date();
  const unfinished = ["pending", "processing"];
  let status: JobStatusName;
  let failedNow: string[] = [];
  let patch: Updateable<Database["jobs"]>;
  switch (end.kind) {
    case "finish": {
      for (const [id, row] of failedRows(end.failedOutputs)) {
        await trx.updateTable("job_outputs").set(row).where("job_id", "=", jobId).where("id", "=", id).execute();
      }
      failedNow = end.failedOutputs.map(([id]) => id);
      status = end.status;
      patch = {
        progress: 100,
        completed_at: end.completedAt,
        actual_cost_minor: end.actualCostMinor,
        execution: JSON.stringify(end.execution),
        error_code: end.error?.code ?? "",
        error_message: end.error?.message.slice(0, 2000) ?? "",
        ...(end.inputMetadata !== undefined ? { input_metadata: JSON.stringify(end.inputMetadata) } : {}),
      };
      break;
    }
    case "fail": {
      const error = { error_code: end.code, error_message: end.message.slice(0, 2000) };
      const failed = await trx
        .updateTable("job_outputs")
        .set({ ...error, status: "failed" })
        .where("job_id", "=", jobId)
        .where("status", "in", unfinished)
        .returning("id")
        .execute();
      failedNow = failed.map((r) => r.id);
      await trx.updateTable("job_thumbnails").set({ status: "failed", error_message: error.error_message }).where("job_id", "=", jobId).where("status", "in", unfinished).execute();
      const delivered = await trx
        .selectFrom("job_outputs")
        .select((eb) => [eb.fn.countAll<string>().as("n"), eb.fn.sum<string | null>("actual_cost_minor").as("cost")])
        .where("job_id", "=", jobId)
        .where("status", "=", "completed")
        .executeTakeFirstOrThrow();
      status = Number(delivered.n) > 0 ? "partial" : "failed";
      patch = { ...error, completed_at: now, actual_cost_minor: status === "partial" ? Number(delivered.cost ?? 0) : null };
      break;
    }
    case "cancel": {
      // Finished outputs are kept; anything not finished will not be.
      await trx.updateTable("job_outputs").set({ status: "canceled" }).where("job_id", "=", jobId).where("status", "in", unfinished).execute();
      await trx.updateTable("job_thumbnails").set({ status: "canceled" }).where("job_id", "=", jobId).where("status", "in", unfinished).execute();
      status = "canceled";
      patch = { completed_at: now };
      break;
    }
  }
  // A chunked job's tasks end with it: the assemble task of a finished job is done; anything else
  // unfinished is canceled or failed, and its token moves on, so a worker still encoding a chunk
  // loses its task lease at its next write or renewal.
  if (end.kind === "finish") {
    await trx.updateTable("job_tasks").set({ status: "completed", lease_owner: "", lease_expires_at: null, updated_at: now, completed_at: now }).where("job_id", "=", jobId).where("kind", "=", "assemble").where("status", "in", ["pending", "running"]).execute();
  }
  await trx
    .updateTable("job_tasks")
    .set((eb) => ({ status: end.kind === "cancel" ? "canceled" : "failed", attempt: eb("attempt", "+", 1), lease_owner: "", lease_expires_at: null, updated_at: now }))
    .where("job_id", "=", jobId)
    .where("status", "in", ["pending", "running"])
    .execute();
  await trx
    .updateTable("jobs")
    .set((eb) => ({
      ...patch,
      status,
      updated_at: now,
      lease_owner: "",
      lease_expires_at: null,
      // A worker still running a canceled job loses its lease at its next write or renewal.
      ...(end.kind === "cancel" ? { attempt: eb("attempt", "+", 1) } : {}),
    }))
    .where("id", "=", jobId)
    .execute();
  await recordJobEvents(trx, jobId, [...outputFailedEvents(failedNow), { type: terminalEventOf(status) }]);
  return status;
}
