import { sql, type Kysely, type Selectable } from "kysely";
import { newId } from "../common/ids.js";
import type { PageRequest } from "../common/pagination.js";
import type { Database, WebhookAttemptsTable, WebhookDeliveriesTable, WebhookEndpointsTable } from "../db/schema.js";
import { JOB_URL_TARGET } from "./events.js";

export type EndpointRow = Selectable<WebhookEndpointsTable>;
export type DeliveryRow = Selectable<WebhookDeliveriesTable> & { event_type: string };
export type AttemptRow = Selectable<WebhookAttemptsTable>;

/** A secret as stored: the current token and, while its grace period lasts, the previous one. */
export interface StoredSecrets {
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: Date | null;
}

/** A delivery the dispatcher took: what to send, where, and which attempt this is. */
export interface ClaimedDelivery {
  id: string;
  attemptId: string;
  eventId: string;
  organizationId: string;
  jobId: string | null;
  endpointId: string | null;
  target: string;
  url: string;
  payload: string;
  attemptCount: number;
}

export type AttemptOutcome =
  | { result: "delivered" }
  | { result: "retry"; nextAttemptAt: Date }
  /** Out of attempts. */
  | { result: "failed" }
  /** 410 Gone: the endpoint is disabled (a job URL gets nothing more for that job). */
  | { result: "gone" };

export interface AttemptRecord {
  responseStatus: number;
  latencyMs: number;
  responseSnippet: string;
  error: string;
}

const INTERRUPTED = "interrupted: the dispatcher stopped before an answer was recorded";

type Db = Kysely<Database>; // or a transaction

/** Endpoints, the organization secret, deliveries and attempts. */
export class WebhookRepository {
  constructor(private readonly db: Db) {}

  async createEndpoint(row: Omit<EndpointRow, "created_at" | "updated_at" | "disabled_reason" | "previous_secret" | "previous_secret_expires_at">): Promise<EndpointRow> {
    const now = new Date();
    return this.db
      .insertInto("webhook_endpoints")
      .values({ ...row, event_types: JSON.stringify(row.event_types), created_at: now, updated_at: now })
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  getEndpoint(organizationId: string, id: string): Promise<EndpointRow | undefined> {
    return this.db.selectFrom("webhook_endpoints").selectAll().where("organization_id", "=", organizationId).where("id", "=", id).executeTakeFirst();
  }

  async listEndpoints(organizationId: string, page: PageRequest): Promise<{ rows: EndpointRow[]; total: number }> {
    const base = this.db.selectFrom("webhook_endpoints").where("organization_id", "=", organizationId);
    const total = await base.select((eb) => eb.fn.countAll<string>().as("n")).executeTakeFirstOrThrow();
    let query = base.selectAll().orderBy("id", "desc").limit(page.limit + 1);
    if (page.beforeId) query = query.where("id", "<", page.beforeId);
    return { rows: await query.execute(), total: Number(total.n) };
  }

  /**
   * Changes an endpoint. Disabling it (by its owner or a 410) fails its pending deliveries with
   * the reason, in the same transaction, so nothing waits forever for an endpoint that is off.
   */
  async updateEndpoint(
    organizationId: string,
    id: string,
    patch: { url?: string; description?: string; eventTypes?: string[]; status?: "enabled" | "disabled"; disabledReason?: string },
  ): Promise<EndpointRow | undefined> {
    return this.db.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable("webhook_endpoints")
        .set({
          url: patch.url,
          description: patch.description,
          event_types: patch.eventTypes && JSON.stringify(patch.eventTypes),
          status: patch.status,
          disabled_reason: patch.status === "enabled" ? "" : patch.disabledReason,
          updated_at: new Date(),
        })
        .where("organization_id", "=", organizationId)
        .where("id", "=", id)
        .returningAll()
        .executeTakeFirst();
      if (row && patch.status === "disabled") {
        await trx.updateTable("webhook_deliveries").set({ status: "failed", lease_expires_at: null }).where("endpoint_id", "=", id).where("status", "=", "pending").execute();
      }
      return row;
    });
  }

  /** Deletes the endpoint; its pending deliveries fail (their history stays). */
  async deleteEndpoint(organizationId: string, id: string): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const deleted = await trx.deleteFrom("webhook_endpoints").where("organization_id", "=", organizationId).where("id", "=", id).executeTakeFirst();
      if (Number(deleted.numDeletedRows) === 0) return false;
      await trx.updateTable("webhook_deliveries").set({ status: "failed", lease_expires_at: null }).where("endpoint_id", "=", id).where("status", "=", "pending").execute();
      return true;
    });
  }

  /** Moves the current secret to `previous_*` (until `previousUntil`) and stores the new one. */
  async rotateEndpointSecret(organizationId: string, id: string, secret: string, prefix: string, previousUntil: Date | null): Promise<EndpointRow | undefined> {
    return this.db
      .updateTable("webhook_endpoints")
      .set((eb) => ({
        previous_secret: previousUntil ? eb.ref("secret") : null,
        previous_secret_expires_at: previousUntil,
        secret,
        secret_prefix: prefix,
        updated_at: new Date(),
      }))
      .where("organization_id", "=", organizationId)
      .where("id", "=", id)
      .returningAll()
      .executeTakeFirst();
  }

  organizationSecrets(organizationId: string): Promise<StoredSecrets | undefined> {
    return this.db
      .selectFrom("organization_webhook_secrets")
      .select(["secret", "previous_secret", "previous_secret_expires_at"])
      .where("organization_id", "=", organizationId)
      .executeTakeFirst();
  }

  /** Stores the organization's first secret unless one exists; returns whichever is stored. */
  async ensureOrganizationSecret(organizationId: string, secret: string, prefix: string): Promise<StoredSecrets> {
    await this.db
      .insertInto("organization_webhook_secrets")
      .values({ organization_id: organizationId, secret, secret_prefix: prefix })
      .onConflict((oc) => oc.column("organization_id").doNothing())
      .execute();
    return (await this.organizationSecrets(organizationId))!;
  }

  async rotateOrganizationSecret(organizationId: string, secret: string, prefix: string, previousUntil: Date | null): Promise<void> {
    await this.db
      .insertInto("organization_webhook_secrets")
      .values({ organization_id: organizationId, secret, secret_prefix: prefix })
      .onConflict((oc) =>
        oc.column("organization_id").doUpdateSet((eb) => ({
          previous_secret: previousUntil ? eb.ref("organization_webhook_secrets.secret") : null,
          previous_secret_expires_at: previousUntil,
          secret,
          secret_prefix: prefix,
          updated_at: new Date(),
        })),
      )
      .execute();
  }

  endpointSecrets(endpointId: string): Promise<StoredSecrets | undefined> {
    return this.db
      .selectFrom("webhook_endpoints")
      .select(["secret", "previous_secret", "previous_secret_expires_at"])
      .where("id", "=", endpointId)
      .executeTakeFirst();
  }

  /**
   * Takes up to `limit` due deliveries for `leaseMs` and opens an attempt for each. A delivery is
   * due when it is pending, its time has come, nobody holds it, and no earlier delivery of the
   * same job to the same target is still pending: a job's events reach each receiver in order.
   * An attempt a crashed dispatcher left open is closed as interrupted first, so the history
   * shows why the event goes out again.
   */
  async claimDue(limit: number, leaseMs: number): Promise<ClaimedDelivery[]> {
    return this.db.transaction().execute(async (trx) => {
      const claimed = await sql<{ id: string; event_id: string; organization_id: string; job_id: string | null; endpoint_id: string | null; target: string; url: string; attempt_count: number }>`
        UPDATE webhook_deliveries AS w
           SET lease_expires_at = now() + ${leaseMs} * interval '1 millisecond', attempt_count = attempt_count + 1,
               -- An endpoint's deliveries go to its current URL (its owner may have moved it since the event).
               url = COALESCE((SELECT e.url FROM webhook_endpoints e WHERE e.id = w.endpoint_id), w.url)
         WHERE id IN (
           SELECT d.id FROM webhook_deliveries d
            WHERE d.status = 'pending'
              AND d.next_attempt_at <= now()
              AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= now())
              AND NOT EXISTS (
                SELECT 1 FROM webhook_deliveries e
                 WHERE e.status = 'pending' AND e.job_id = d.job_id AND e.target = d.target AND e.seq < d.seq)
            ORDER BY d.next_attempt_at, d.seq
            LIMIT ${limit}
            FOR UPDATE SKIP LOCKED)
        RETURNING id, event_id, organization_id, job_id, endpoint_id, target, url, attempt_count`.execute(trx);
      if (claimed.rows.length === 0) return [];
      const ids = claimed.rows.map((r) => r.id);
      await trx
        .updateTable("webhook_attempts")
        .set({ state: "done", error: INTERRUPTED })
        .where("delivery_id", "in", ids)
        .where("state", "=", "sending")
        .execute();
      const attempts = await trx
        .insertInto("webhook_attempts")
        .values(ids.map((delivery_id) => ({ delivery_id })))
        .returning(["id", "delivery_id"])
        .execute();
      const events = await trx
        .selectFrom("webhook_events")
        .select(["id", "payload"])
        .where("id", "in", claimed.rows.map((r) => r.event_id))
        .execute();
      return claimed.rows.map((r) => ({
        id: r.id,
        attemptId: String(attempts.find((a) => a.delivery_id === r.id)!.id),
        eventId: r.event_id,
        organizationId: r.organization_id,
        jobId: r.job_id,
        endpointId: r.endpoint_id,
        target: r.target,
        url: r.url,
        payload: events.find((e) => e.id === r.event_id)!.payload,
        attemptCount: Number(r.attempt_count),
      }));
    });
  }

  /** Closes the attempt and moves the delivery on, in one transaction. */
  async recordAttempt(delivery: ClaimedDelivery, attempt: AttemptRecord, outcome: AttemptOutcome): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx
        .updateTable("webhook_attempts")
        .set({
          state: "done",
          response_status: attempt.responseStatus,
          latency_ms: Math.round(attempt.latencyMs),
          response_snippet: attempt.responseSnippet,
          error: attempt.error.slice(0, 1000),
        })
        .where("id", "=", delivery.attemptId)
        .execute();
      const now = new Date();
      switch (outcome.result) {
        case "delivered":
          await trx.updateTable("webhook_deliveries").set({ status: "delivered", delivered_at: now, lease_expires_at: null }).where("id", "=", delivery.id).execute();
          return;
        case "retry":
          await trx.updateTable("webhook_deliveries").set({ next_attempt_at: outcome.nextAttemptAt, lease_expires_at: null }).where("id", "=", delivery.id).execute();
          return;
        case "failed":
          await trx.updateTable("webhook_deliveries").set({ status: "failed", lease_expires_at: null }).where("id", "=", delivery.id).execute();
          return;
        case "gone": {
          let pending = trx.updateTable("webhook_deliveries").set({ status: "failed", lease_expires_at: null }).where("status", "=", "pending");
          if (delivery.endpointId) {
            await trx
              .updateTable("webhook_endpoints")
              .set({ status: "disabled", disabled_reason: `the endpoint answered 410 Gone at ${now.toISOString()}`, updated_at: now })
              .where("id", "=", delivery.endpointId)
              .execute();
            pending = pending.where("endpoint_id", "=", delivery.endpointId);
          } else {
            pending = pending.where("job_id", "=", delivery.jobId).where("target", "=", JOB_URL_TARGET);
          }
          await pending.execute();
          await trx.updateTable("webhook_deliveries").set({ status: "failed", lease_expires_at: null }).where("id", "=", delivery.id).execute();
          return;
        }
      }
    });
  }

  /** A new event (webhook.test) with one delivery to one endpoint. */
  async insertTestDelivery(endpoint: EndpointRow, eventId: string, payload: string): Promise<string> {
    return this.db.transaction().execute(async (trx) => {
      await trx.insertInto("webhook_events").values({ id: eventId, organization_id: endpoint.organization_id, job_id: null, type: "webhook.test", payload }).execute();
      return this.copyDelivery(trx, { event_id: eventId, organization_id: endpoint.organization_id, job_id: null, endpoint_id: endpoint.id, target: endpoint.id, url: endpoint.url });
    });
  }

  /**
   * Queues an existing delivery's event again as a new delivery (same webhook-id, same body), to
   * the endpoint's current URL (or the job's URL). Undefined when there is no such delivery.
   */
  async redeliver(organizationId: string, deliveryId: string): Promise<{ deliveryId: string } | { refused: string } | undefined> {
    return this.db.transaction().execute(async (trx) => {
      const old = await trx.selectFrom("webhook_deliveries").selectAll().where("organization_id", "=", organizationId).where("id", "=", deliveryId).executeTakeFirst();
      if (!old) return undefined;
      let url = old.url;
      if (old.endpoint_id) {
        const endpoint = await trx.selectFrom("webhook_endpoints").select(["url", "status"]).where("id", "=", old.endpoint_id).executeTakeFirst();
        if (!endpoint) return { refused: `endpoint ${old.endpoint_id} was deleted` };
        if (endpoint.status !== "enabled") return { refused: `endpoint ${old.endpoint_id} is disabled; enable it with Update first` };
        url = endpoint.url;
      }
      return { deliveryId: await this.copyDelivery(trx, { ...old, url }) };
    });
  }

  private async copyDelivery(
    trx: Kysely<Database>,
    d: Pick<WebhookDeliveriesTable, "event_id" | "organization_id" | "job_id" | "endpoint_id" | "target" | "url">,
  ): Promise<string> {
    const id = newId("whd");
    await trx
      .insertInto("webhook_deliveries")
      .values({ id, event_id: d.event_id, organization_id: d.organization_id, job_id: d.job_id, endpoint_id: d.endpoint_id, target: d.target, url: d.url, status: "pending" })
      .execute();
    return id;
  }

  async listDeliveries(
    organizationId: string,
    filter: { endpointId?: string; jobId?: string; status?: DeliveryRow["status"] },
    page: PageRequest,
  ): Promise<{ rows: DeliveryRow[]; total: number }> {
    let base = this.db
      .selectFrom("webhook_deliveries")
      .innerJoin("webhook_events", "webhook_events.id", "webhook_deliveries.event_id")
      .where("webhook_deliveries.organization_id", "=", organizationId);
    if (filter.endpointId) base = base.where("webhook_deliveries.endpoint_id", "=", filter.endpointId);
    if (filter.jobId) base = base.where("webhook_deliveries.job_id", "=", filter.jobId);
    if (filter.status) base = base.where("webhook_deliveries.status", "=", filter.status);
    const total = await base.select((eb) => eb.fn.countAll<string>().as("n")).executeTakeFirstOrThrow();
    let query = base.selectAll("webhook_deliveries").select("webhook_events.type as event_type").orderBy("webhook_deliveries.id", "desc").limit(page.limit + 1);
    if (page.beforeId) query = query.where("webhook_deliveries.id", "<", page.beforeId);
    return { rows: await query.execute(), total: Number(total.n) };
  }

  async getDelivery(organizationId: string, id: string): Promise<DeliveryRow | undefined> {
    return this.db
      .selectFrom("webhook_deliveries")
      .innerJoin("webhook_events", "webhook_events.id", "webhook_deliveries.event_id")
      .selectAll("webhook_deliveries")
      .select("webhook_events.type as event_type")
      .where("webhook_deliveries.organization_id", "=", organizationId)
      .where("webhook_deliveries.id", "=", id)
      .executeTakeFirst();
  }

  /**
   * Forgets events older than `days` whose deliveries are all settled (delivered or failed),
   * with their deliveries and attempts; returns how many events went.
   */
  async deleteSettledOlderThan(days: number): Promise<number> {
    const result = await this.db
      .deleteFrom("webhook_events")
      .where("created_at", "<", sql<Date>`now() - ${days} * interval '1 day'`)
      .where(({ not, exists, selectFrom }) =>
        not(exists(selectFrom("webhook_deliveries").select("webhook_deliveries.id").whereRef("webhook_deliveries.event_id", "=", "webhook_events.id").where("webhook_deliveries.status", "=", "pending"))),
      )
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async attemptsOf(deliveryIds: readonly string[]): Promise<AttemptRow[]> {
    if (deliveryIds.length === 0) return [];
    return this.db.selectFrom("webhook_attempts").selectAll().where("delivery_id", "in", [...deliveryIds]).orderBy("id").execute();
  }
}
