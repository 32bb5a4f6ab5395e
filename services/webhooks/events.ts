import { toJson } from "@bufbuild/protobuf";
import type { Transaction } from "kysely";
import { JobSchema } from "../../gen/rendition/v1/job_pb.js";
import { API_JSON_WRITE } from "../common/api-json.js";
import { newId } from "../common/ids.js";
import type { Database } from "../db/schema.js";
import { loadJob } from "../jobs/job-rows.js";
import { toProtoJob } from "../jobs/job.mapper.js";
import type { JobStatusName } from "../jobs/job.types.js";

export const JOB_EVENT_TYPES = [
  "job.created",
  "job.probed",
  "job.awaiting_confirmation",
  "job.progress",
  "job.completed",
  "job.partial",
  "job.failed",
  "job.canceled",
  "output.completed",
  "output.failed",
] as const;
export type JobEventType = (typeof JOB_EVENT_TYPES)[number];
/** Every type an endpoint can filter on; webhook.test is what SendTest sends. */
export const EVENT_TYPES: readonly string[] = [...JOB_EVENT_TYPES, "webhook.test"];

/** Progress milestones that send job.progress (the reference's 5/10/25/50/75/90 %). */
export const PROGRESS_MILESTONES = [5, 10, 25, 50, 75, 90] as const;

/** The milestones a progress move from `before` to `after` crosses, lowest first. */
export function crossedMilestones(before: number, after: number): number[] {
  return PROGRESS_MILESTONES.filter((m) => before < m && after >= m);
}

/** job.progress events for the milestones a move from `before` to `after` crosses. */
export function progressEvents(before: number, after: number): JobEvent[] {
  return crossedMilestones(before, after).map((milestone) => ({ type: "job.progress", milestone }));
}

export interface JobEvent {
  type: JobEventType;
  /** output.* events name their output. */
  outputId?: string;
  /** job.progress events name the milestone they crossed. */
  milestone?: number;
}

export function terminalEventOf(status: JobStatusName): JobEventType {
  switch (status) {
    case "completed":
    case "partial":
    case "failed":
    case "canceled":
      return `job.${status}`;
    default:
      throw new Error(`${status} is not a terminal status`);
  }
}


/** A Standard Webhooks payload: {type, timestamp, data}; data is the job as Get returns it. */
export function eventBody(type: string, timestamp: Date, data: unknown, extra: Record<string, string | number> = {}): string {
  return JSON.stringify({ type, timestamp: timestamp.toISOString(), ...extra, data });
}

/**
 * Writes `events` for a job, in order, inside the transaction that made the change they
 * describe: one webhook_events row each (the body is rendered now, from what the transaction
 * sees, so it shows the job as it was at that moment) and one pending delivery per target: every
 * enabled endpoint of the organization whose filter takes the type, and the job's own
 * webhook_url. The dispatcher sends them after the commit; a rollback takes them with it.
 */
export async function recordJobEvents(
  trx: Transaction<Database>,
  jobId: string,
  events: readonly JobEvent[],
  /** The job's organization and webhook_url when the caller has just written them (Create): saves reading them. */
  known?: { organization_id: string; webhook_url: string },
): Promise<void> {
  if (events.length === 0) return;
  // Most jobs have nobody listening: find that out before reading the whole job.
  const head = known ?? (await trx.selectFrom("jobs").select(["organization_id", "webhook_url"]).where("id", "=", jobId).executeTakeFirst());
  if (!head) throw new Error(`job ${jobId} vanished inside its own transaction`);
  const endpoints = await trx
    .selectFrom("webhook_endpoints")
    .select(["id", "url", "event_types"])
    .where("organization_id", "=", head.organization_id)
    .where("status", "=", "enabled")
    .orderBy("id")
    .execute();
  if (endpoints.length === 0 && !head.webhook_url) return;
  const job = (await loadJob(trx, jobId))!;
  const data = toJson(JobSchema, toProtoJob(job), API_JSON_WRITE);
  const now = new Date();
  for (const event of events) {
    const id = newId("msg");
    await trx
      .insertInto("webhook_events")
      .values({
        id,
        organization_id: job.organizationId,
        job_id: job.id,
        type: event.type,
        payload: eventBody(event.type, now, data, {
          ...(event.outputId ? { output_id: event.outputId } : {}),
          ...(event.milestone ? { progress_milestone: event.milestone } : {}),
        }),
        created_at: now,
      })
      .execute();
    const targets: Array<{ endpoint_id: string | null; target: string; url: string }> = endpoints
      .filter((e) => e.event_types.length === 0 || e.event_types.includes(event.type))
      .map((e) => ({ endpoint_id: e.id, target: e.id, url: e.url }));
    if (job.webhookUrl) targets.push({ endpoint_id: null, target: JOB_URL_TARGET, url: job.webhookUrl });
    for (const target of targets) {
      await trx
        .insertInto("webhook_deliveries")
        .values({ id: newId("whd"), event_id: id, organization_id: job.organizationId, job_id: job.id, ...target, status: "pending", created_at: now })
        .execute();
    }
  }
}

/** The `target` of deliveries to a job's own webhook_url. */
export const JOB_URL_TARGET = "job_url";
