import http from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";

/**
 * A local webhook receiver: verifies every delivery's Standard Webhooks signature (the
 * `standardwebhooks` package: webhook-id, webhook-timestamp within 5 minutes, webhook-signature)
 * and reports it. Answers 204 to a verified delivery and 401 to anything else, so the sender's
 * delivery history shows the refusal. Used by `rendition webhooks listen` and
 * `npm run webhook:listen` (scripts/webhook-listen.ts).
 */
export interface WebhookEventBody {
  type: string;
  data?: { id?: string; status?: string; progress?: number };
  output_id?: string;
  progress_milestone?: number;
}

export type Delivery =
  | { verified: true; webhookId: string; event: WebhookEventBody & Record<string, unknown> }
  | { verified: false; webhookId: string; error: string };

export interface WebhookListener {
  port: number;
  close(): Promise<void>;
}

export function startWebhookListener(options: { port: number; host: string; secret: string; onDelivery(delivery: Delivery): void }): Promise<WebhookListener> {
  const verifier = new Webhook(options.secret);
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      const webhookId = headers["webhook-id"] ?? "";
      try {
        const event = verifier.verify(body, headers) as WebhookEventBody & Record<string, unknown>;
        options.onDelivery({ verified: true, webhookId, event });
        res.writeHead(204).end();
      } catch (err) {
        options.onDelivery({ verified: false, webhookId, error: (err as Error).message });
        res.writeHead(401, { "content-type": "text/plain" }).end("signature did not verify");
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () => new Promise((done) => server.close(() => done())),
      });
    });
  });
}

/** `verified msg_… job.completed job_… JOB_STATUS_COMPLETED 100%`, or `REFUSED msg_…: reason`. */
export function formatDelivery(delivery: Delivery): string {
  if (!delivery.verified) return `REFUSED ${delivery.webhookId || "(no webhook-id)"}: ${delivery.error}`;
  const { event } = delivery;
  return `verified ${delivery.webhookId} ${event.type} ${event.data?.id ?? ""} ${event.data?.status ?? ""} ${event.data?.progress ?? ""}%${event.progress_milestone ? ` (milestone ${event.progress_milestone} %)` : ""}${event.output_id ? ` output ${event.output_id}` : ""}`;
}

/** The same as one JSON object: the verified event itself with `verified` and `webhook_id`. */
export function deliveryJson(delivery: Delivery): Record<string, unknown> {
  return delivery.verified
    ? { verified: true, webhook_id: delivery.webhookId, ...delivery.event }
    : { verified: false, webhook_id: delivery.webhookId, error: delivery.error };
}

export function listeningLine(host: string, port: number, secret: string): string {
  return `listening for webhooks on http://${host === "127.0.0.1" ? "localhost" : host}:${port}/ (secret ${secret.slice(0, 12)}...)`;
}
