import { fromJson, toJson } from "@bufbuild/protobuf";
import type { Kysely, Transaction } from "kysely";
import { OutputType } from "../../gen/rendition/v1/common_pb.js";
import { OutputSpecSchema, ThumbnailSpecSchema } from "../../gen/rendition/v1/job_pb.js";
import type { PageRequest } from "../common/pagination.js";
import type { Database, JobOutputRow, JobRow, JobThumbnailRow } from "../db/schema.js";
import {
  type JobOutputRecord,
  type JobRecord,
  type JobStatusName,
  type JobThumbnailRecord,
  type OutboxMessage,
} from "./job.types.js";

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

export class JobRepository {
  constructor(private readonly db: Kysely<Database>) {}

  /**
   * Stores a new job with its outputs, thumbnails and the outbox message in one transaction.
   * Returns false (and stores nothing) when the idempotency key is already taken.
   */
  async insert(job: JobRecord, message: OutboxMessage): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const inserted = await trx
        .insertInto("jobs")
        .values({
          id: job.id,
          organization_id: job.organizationId,
          status: job.status,
          priority: job.priority,
          input_url: job.inputUrl,
          input_origin_id: job.inputOriginId,
          input_path: job.inputPath,
          input_origin: job.inputOrigin ? JSON.stringify(job.inputOrigin) : null,
          output_origin_id: job.outputOriginId,
          output_origin: JSON.stringify(job.outputOrigin),
          currency: job.currency,
          webhook_url: job.webhookUrl,
          metadata: JSON.stringify(job.metadata),
          delayed_start: job.delayedStart,
          idempotency_key: job.idempotencyKey,
          request_digest: job.requestDigest,
          test: job.test,
          created_at: job.createdAt,
          updated_at: job.updatedAt,
        })
        .onConflict((oc) => oc.columns(["organization_id", "idempotency_key"]).where("idempotency_key", "is not", null).doNothing())
        .executeTakeFirst();
      if (!inserted.numInsertedOrUpdatedRows) return false;
      if (job.outputs.length) {
        await trx
          .insertInto("job_outputs")
          .values(
            job.outputs.map((o) => ({
              id: o.id,
              job_id: job.id,
              position: o.position,
              type: OutputType[o.spec.type]!.toLowerCase(), // "mp4": readable in psql; the spec holds the enum
              status: o.status,
              spec: JSON.stringify(toJson(OutputSpecSchema, o.spec)),
              preset_id: o.presetId,
              path: o.path,
            })),
          )
          .execute();
      }
      if (job.thumbnails.length) {
        await trx
          .insertInto("job_thumbnails")
          .values(
            job.thumbnails.map((t) => ({
              id: t.id,
              job_id: job.id,
              position: t.position,
              status: t.status,
              spec: JSON.stringify(toJson(ThumbnailSpecSchema, t.spec)),
              path: t.path,
              urls: "[]",
            })),
          )
          .execute();
      }
      await this.enqueue(trx, message);
      return true;
    });
  }

  async get(organizationId: string, id: string): Promise<JobRecord | undefined> {
    const row = await this.db.selectFrom("jobs").selectAll().where("organization_id", "=", organizationId).where("id", "=", id).executeTakeFirst();
    if (!row) return undefined;
    return (await this.withChildren([row]))[0];
  }

  async findByIdempotencyKey(organizationId: string, key: string): Promise<JobRecord | undefined> {
    const row = await this.db
      .selectFrom("jobs")
      .selectAll()
      .where("organization_id", "=", organizationId)
      .where("idempotency_key", "=", key)
      .executeTakeFirst();
    if (!row) return undefined;
    return (await this.withChildren([row]))[0];
  }

  async list(organizationId: string, status: JobStatusName | undefined, page: PageRequest): Promise<{ rows: JobRecord[]; total: number }> {
    let query = this.db.selectFrom("jobs").where("organization_id", "=", organizationId);
    if (status) query = query.where("status", "=", status);
    const total = await query.select((eb) => eb.fn.countAll<string>().as("n")).executeTakeFirstOrThrow();
    let pageQuery = query.selectAll().orderBy("id", "desc").limit(page.limit + 1);
    if (page.beforeId) pageQuery = pageQuery.where("id", "<", page.beforeId);
    const rows = await pageQuery.execute();
    return { rows: await this.withChildren(rows), total: Number(total.n) };
  }

  /**
   * Compare-and-set: moves the job to `to` only if it is still in one of `from`, bumping the
   * attempt token so any worker holding the old token loses its lease. Returns the updated job,
   * or undefined when it was not in an allowed state (or does not exist in this organization).
   */
  async transition(
    organizationId: string,
    id: string,
    from: readonly JobStatusName[],
    to: JobStatusName,
    stamps: { confirmedAt?: Date; completedAt?: Date; startedAt?: Date },
    message: OutboxMessage,
  ): Promise<JobRecord | undefined> {
    const now = new Date();
    const updated = await this.db.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable("jobs")
        .set((eb) => ({
          status: to,
          updated_at: now,
          attempt: eb("attempt", "+", 1),
          confirmed_at: stamps.confirmedAt,
          completed_at: stamps.completedAt,
          started_at: stamps.startedAt,
        }))
        .where("organization_id", "=", organizationId)
        .where("id", "=", id)
        .where("status", "in", [...from])
        .returning("id")
        .executeTakeFirst();
      if (!row) return false;
      if (to === "canceled") {
        // Finished outputs are kept; anything not finished will not be.
        await trx
          .updateTable("job_outputs")
          .set({ status: "canceled" })
          .where("job_id", "=", id)
          .where("status", "in", ["pending", "processing"])
          .execute();
        await trx.updateTable("job_thumbnails").set({ status: "canceled" }).where("job_id", "=", id).where("status", "in", ["pending", "processing"]).execute();
      }
      await this.enqueue(trx, message);
      return true;
    });
    return updated ? this.get(organizationId, id) : undefined;
  }

  private async enqueue(trx: Db, message: OutboxMessage): Promise<void> {
    await trx
      .insertInto("outbox")
      .values({ id: message.id, job_id: message.jobId, topic: message.topic, payload: JSON.stringify(message.payload) })
      .execute();
  }

  private async withChildren(rows: JobRow[]): Promise<JobRecord[]> {
    if (rows.length === 0) return [];
    const ids = rows.map((r) => r.id);
    const [outputs, thumbnails] = await Promise.all([
      this.db.selectFrom("job_outputs").selectAll().where("job_id", "in", ids).orderBy("position").execute(),
      this.db.selectFrom("job_thumbnails").selectAll().where("job_id", "in", ids).orderBy("position").execute(),
    ]);
    return rows.map((row) =>
      jobToRecord(
        row,
        outputs.filter((o) => o.job_id === row.id).map(outputToRecord),
        thumbnails.filter((t) => t.job_id === row.id).map(thumbnailToRecord),
      ),
    );
  }
}
