import { randomBytes } from "node:crypto";
import { Webhook } from "standardwebhooks";

/** A Standard Webhooks secret: whsec_ + base64 of 32 random bytes. */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString("base64")}`;
}

/** Enough of a secret to tell two apart in a listing, nothing a forger could use. */
export function secretPrefix(secret: string): string {
  return secret.slice(0, 12);
}

/**
 * The Standard Webhooks headers for one attempt. Every secret in `secrets` signs (the current one
 * and, during a rotation's grace period, the previous one): `webhook-signature` then lists
 * `v1,<sig>` entries separated by spaces, and a receiver that knows either secret verifies.
 */
export function signedHeaders(messageId: string, timestamp: Date, body: string, secrets: readonly string[]): Record<string, string> {
  if (secrets.length === 0) throw new Error("a webhook needs at least one secret to be signed");
  return {
    "content-type": "application/json",
    "user-agent": "Rendition-Webhooks/1",
    "webhook-id": messageId,
    "webhook-timestamp": String(Math.floor(timestamp.getTime() / 1000)),
    "webhook-signature": secrets.map((secret) => new Webhook(secret).sign(messageId, timestamp, body)).join(" "),
  };
}
