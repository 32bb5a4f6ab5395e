import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  WebhookAttemptSchema,
  WebhookDeliverySchema,
  WebhookDeliveryStatus,
  WebhookEndpointSchema,
  WebhookEndpointStatus,
  type WebhookDelivery,
  type WebhookEndpoint,
} from "../../gen/rendition/v1/webhook_pb.js";
import type { DeliveryRow, EndpointRow } from "./webhook.repository.js";
import type { DeliveryWithAttempts } from "./webhook.service.js";

const ts = (d: Date | null | undefined) => (d ? timestampFromDate(d) : undefined);

export const DELIVERY_STATUS: Record<DeliveryRow["status"], WebhookDeliveryStatus> = {
  pending: WebhookDeliveryStatus.PENDING,
  delivered: WebhookDeliveryStatus.DELIVERED,
  failed: WebhookDeliveryStatus.FAILED,
};

export function deliveryStatusName(status: WebhookDeliveryStatus): DeliveryRow["status"] | undefined {
  return (Object.entries(DELIVERY_STATUS) as Array<[DeliveryRow["status"], WebhookDeliveryStatus]>).find(([, v]) => v === status)?.[0];
}

export function toProtoEndpoint(row: EndpointRow): WebhookEndpoint {
  return create(WebhookEndpointSchema, {
    id: row.id,
    url: row.url,
    description: row.description,
    eventTypes: row.event_types,
    status: row.status === "enabled" ? WebhookEndpointStatus.ENABLED : WebhookEndpointStatus.DISABLED,
    disabledReason: row.disabled_reason,
    secretPrefix: row.secret_prefix,
    previousSecretExpiresAt: row.previous_secret && row.previous_secret_expires_at && row.previous_secret_expires_at > new Date() ? ts(row.previous_secret_expires_at) : undefined,
    createdAt: ts(row.created_at),
    updatedAt: ts(row.updated_at),
  });
}

export function toProtoDelivery(row: DeliveryWithAttempts): WebhookDelivery {
  return create(WebhookDeliverySchema, {
    id: row.id,
    eventId: row.event_id,
    eventType: row.event_type,
    jobId: row.job_id ?? "",
    endpointId: row.endpoint_id ?? "",
    url: row.url,
    status: DELIVERY_STATUS[row.status],
    attemptCount: row.attempt_count,
    nextAttemptAt: row.status === "pending" ? ts(row.next_attempt_at) : undefined,
    deliveredAt: ts(row.delivered_at),
    createdAt: ts(row.created_at),
    attempts: row.attempts.map((a) =>
      create(WebhookAttemptSchema, {
        attemptedAt: ts(a.attempted_at),
        responseStatus: a.response_status,
        latencyMs: a.latency_ms,
        responseSnippet: a.response_snippet,
        error: a.state === "sending" ? "in progress" : a.error,
      }),
    ),
  });
}
