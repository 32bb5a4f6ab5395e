import { fromJson } from "@bufbuild/protobuf";
import type { Kysely, Transaction } from "kysely";
import { OutputSpecSchema, ThumbnailSpecSchema } from "../../gen/rendition/v1/job_pb.js";
import type { Database, JobOutputRow, JobRow, JobThumbnailRow } from "../db/schema.js";
import type { JobOutputRecord, JobRecord, JobStatusName, JobThumbnailRecord } from "./job.types.js";

/** Rows to records: the one reading of a job that the API, workers and webhook payloads share. */

type Db = Kysely<Database> | Transaction<Database>;

function outputToRecord(row: JobOutputRow): JobOutputRecord {
  return {
    id: row.id,
    position: row.position,
    status: row.status as JobOutputRecord["status"],
    spec: fromJson(OutputSpecSchema, row.spec as never),
    presetId: row.preset_id,
    path: row.path,
    outputUrl: row.output_url,
    manifestUrls: row.manifest_urls ?? [],
    subtitleUrls: row.subtitle_urls ?? [],
    fileSizeBytes: row.file_size_bytes,
    durationMs: row.duration_ms,
    progress: row.progress,
    errorCode: row.error_code,
    errorMessage: row.error_message,
    estimatedCostMinor: row.estimated_cost_minor,
    actualCostMinor: row.actual_cost_minor,
  };
}

function thumbnailToRecord(row: JobThumbnailRow): JobThumbnailRecord {
  return {
    id: row.id,
    position: row.position,
    status: row.status as JobThumbnailRecord["status"],
    spec: fromJson(ThumbnailSpecSchema, row.spec as never),
    path: row.path,
    urls: row.urls,
    storyboardUrl: row.storyboard_url,
    errorMessage: row.error_message,
  };
}

function jobToRecord(row: JobRow, outputs: JobOutputRecord[], thumbnails: JobThumbnailRecord[]): JobRecord {
  return {
    id: row.id,
    organizationId: row.organization_id,
    status: row.status as JobStatusName,
    progress: row.progress,
    priority: row.priority as JobRecord["priority"],
    inputUrl: row.input_url,
    inputOriginId: row.input_origin_id,
    inputPath: row.input_path,
    inputOrigin: row.input_origin as JobRecord["inputOrigin"],
    outputOriginId: row.output_origin_id,
    outputOrigin: row.output_origin as JobRecord["outputOrigin"],
    inputMetadata: row.input_metadata,
    estimatedCostMinor: row.estimated_cost_minor,
    actualCostMinor: row.actual_cost_minor,
    currency: row.currency,
    errorCode: row.error_code,
    errorMessage: row.error_message,
    webhookUrl: row.webhook_url,
    metadata: row.metadata,
    delayedStart: row.delayed_start,
    execution: row.execution,
    idempotencyKey: row.idempotency_key,
    requestDigest: row.request_digest,
    attempt: row.attempt,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    probedAt: row.probed_at,
    startedAt: row.started_at,
    completedAt: row.completed_at,
    confirmedAt: row.confirmed_at,
    test: row.test,
    outputs,
    thumbnails,
  };
}

/** Jobs with their outputs and thumbnails, read through `db` (a transaction sees its own writes). */
export async function withChildren(db: Db, rows: JobRow[]): Promise<JobRecord[]> {
  if (rows.length === 0) return [];
  const ids = rows.map((r) => r.id);
  const [outputs, thumbnails] = await Promise.all([
    db.selectFrom("job_outputs").selectAll().where("job_id", "in", ids).orderBy("position").execute(),
    db.selectFrom("job_thumbnails").selectAll().where("job_id", "in", ids).orderBy("position").execute(),
  ]);
  return rows.map((row) =>
    jobToRecord(
      row,
      outputs.filter((o) => o.job_id === row.id).map(outputToRecord),
      thumbnails.filter((t) => t.job_id === row.id).map(thumbnailToRecord),
    ),
  );
}

/** One job as the API shows it, whatever organization it belongs to (callers scope it). */
export async function loadJob(db: Db, id: string): Promise<JobRecord | undefined> {
  const row = await db.selectFrom("jobs").selectAll().where("id", "=", id).executeTakeFirst();
  return row && (await withChildren(db, [row]))[0];
}
