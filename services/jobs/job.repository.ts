import { toJson } from "@bufbuild/protobuf";
import type { Kysely, Transaction } from "kysely";
import { OutputType } from "../../gen/rendition/v1/common_pb.js";
import { OutputSpecSchema, ThumbnailSpecSchema } from "../../gen/rendition/v1/job_pb.js";
import type { PageRequest } from "../common/pagination.js";
import type { Database } from "../db/schema.js";
import { recordJobEvents } from "../webhooks/events.js";
import { endJob } from "./job-end.js";
import { withChildren } from "./job-rows.js";
import { ACTIVE_STATUSES, type JobRecord, type JobStatusName, type OutboxMessage } from "./job.types.js";

type Db = Kysely<Database> | Transaction<Database>;

export class JobRepository {
  constructor(private readonly db: Kysely<Database>) {}

  /**
   * Stores a new job with its outputs, thumbnails and the outbox message in one transaction.
   * "duplicate" (and nothing stored) when the idempotency key is already taken; "over_limit" when
   * the organization already has `maxActiveJobs` unfinished jobs (0: no limit).
   */
  async insert(job: JobRecord, message: OutboxMessage, limits: { maxActiveJobs?: number } = {}): Promise<"stored" | "duplicate" | "over_limit"> {
    return this.db.transaction().execute(async (trx) => {
      if (limits.maxActiveJobs && (await this.activeJobsAtLimit(trx, job, limits.maxActiveJobs))) {
        // A retry of a job stored meanwhile is answered as a retry, not refused.
        const taken = job.idempotencyKey && (await trx.selectFrom("jobs").select("id").where("organization_id", "=", job.organizationId).where("idempotency_key", "=", job.idempotencyKey).executeTakeFirst());
        return taken ? "duplicate" : "over_limit";
      }
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
      if (!inserted.numInsertedOrUpdatedRows) return "duplicate";
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
      await recordJobEvents(trx, job.id, [{ type: "job.created" }], { organization_id: job.organizationId, webhook_url: job.webhookUrl });
      return "stored";
    });
  }

  /**
   * Whether the organization has `max` unfinished jobs already. The organization's row is locked
   * first (FOR NO KEY UPDATE: it serializes this check between Creates of one organization, but
   * not the foreign-key checks of other writes), so two Creates cannot both see the last free slot:
   * the second counts after the first has committed.
   */
  private async activeJobsAtLimit(trx: Transaction<Database>, job: JobRecord, max: number): Promise<boolean> {
    await trx.selectFrom("organizations").select("id").where("id", "=", job.organizationId).forNoKeyUpdate().executeTakeFirst();
    const { n } = await trx
      .selectFrom("jobs")
      .select((eb) => eb.fn.countAll<string>().as("n"))
      .where("organization_id", "=", job.organizationId)
      .where("status", "in", ACTIVE_STATUSES)
      .executeTakeFirstOrThrow();
    return Number(n) >= max;
  }

  async get(organizationId: string, id: string): Promise<JobRecord | undefined> {
    const row = await this.db.selectFrom("jobs").selectAll().where("organization_id", "=", organizationId).where("id", "=", id).executeTakeFirst();
    if (!row) return undefined;
    return (await withChildren(this.db, [row]))[0];
  }

  async findByIdempotencyKey(organizationId: string, key: string): Promise<JobRecord | undefined> {
    const row = await this.db
      .selectFrom("jobs")
      .selectAll()
      .where("organization_id", "=", organizationId)
      .where("idempotency_key", "=", key)
      .executeTakeFirst();
    if (!row) return undefined;
    return (await withChildren(this.db, [row]))[0];
  }

  async list(organizationId: string, status: JobStatusName | undefined, page: PageRequest): Promise<{ rows: JobRecord[]; total: number }> {
    let query = this.db.selectFrom("jobs").where("organization_id", "=", organizationId);
    if (status) query = query.where("status", "=", status);
    const total = await query.select((eb) => eb.fn.countAll<string>().as("n")).executeTakeFirstOrThrow();
    let pageQuery = query.selectAll().orderBy("id", "desc").limit(page.limit + 1);
    if (page.beforeId) pageQuery = pageQuery.where("id", "<", page.beforeId);
    const rows = await pageQuery.execute();
    return { rows: await withChildren(this.db, rows), total: Number(total.n) };
  }

  /**
   * Cancels the job if it has not finished (compare-and-set on its status, under the row lock),
   * through the one terminal write, with `message` for the outbox. Undefined when it had finished
   * or does not exist in this organization.
   */
  async cancel(organizationId: string, id: string, message: OutboxMessage): Promise<JobRecord | undefined> {
    const canceled = await this.db.transaction().execute(async (trx) => {
      const row = await trx
        .selectFrom("jobs")
        .select("status")
        .where("organization_id", "=", organizationId)
        .where("id", "=", id)
        .forUpdate()
        .executeTakeFirst();
      if (!row || !ACTIVE_STATUSES.includes(row.status as JobStatusName)) return false;
      await endJob(trx, id, { kind: "cancel" });
      await this.enqueue(trx, message);
      return true;
    });
    return canceled ? this.get(organizationId, id) : undefined;
  }

  /**
   * Compare-and-set from awaiting_confirmation to processing, bumping the attempt token, with
   * `message` for the outbox. Undefined when the job was elsewhere (or is not this organization's).
   */
  async confirm(organizationId: string, id: string, message: OutboxMessage): Promise<JobRecord | undefined> {
    const now = new Date();
    const confirmed = await this.db.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable("jobs")
        // started_at is the worker's to set when encoding begins (queue wait = started_at - confirmed_at).
        .set((eb) => ({ status: "processing", updated_at: now, attempt: eb("attempt", "+", 1), confirmed_at: now }))
        .where("organization_id", "=", organizationId)
        .where("id", "=", id)
        .where("status", "=", "awaiting_confirmation")
        .returning("id")
        .executeTakeFirst();
      if (!row) return false;
      await this.enqueue(trx, message);
      return true;
    });
    return confirmed ? this.get(organizationId, id) : undefined;
  }

  private async enqueue(trx: Db, message: OutboxMessage): Promise<void> {
    await trx
      .insertInto("outbox")
      .values({ id: message.id, job_id: message.jobId, topic: message.topic, payload: JSON.stringify(message.payload) })
      .execute();
  }

}
