import http from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";

export interface ReceivedWebhook {
  headers: Record<string, string>;
  body: string;
  /** The parsed payload: {type, timestamp, data, ...}. */
  event: { type: string; timestamp: string; data: Record<string, unknown>; output_id?: string; progress_milestone?: number };
}

/** What the receiver answers to the n-th request (1-based): a status, or "hang" to never answer. */
export type Responder = (n: number, request: ReceivedWebhook) => number | "hang";

export interface WebhookReceiver {
  url: string;
  port: number;
  received: ReceivedWebhook[];
  /** Answers from now on. Default: 200 to everything. */
  respond: Responder;
  /** The body of each answer; default "ok" for 2xx, "answer <status>" otherwise. */
  body?: (status: number) => string | Buffer;
  /** Resolves once `predicate` holds for what was received (polling), or rejects after `timeoutMs`. */
  waitFor(predicate: (received: ReceivedWebhook[]) => boolean, timeoutMs?: number): Promise<ReceivedWebhook[]>;
  close(): Promise<void>;
}

/** A real HTTP receiver on 127.0.0.1 that records every request as it arrived. */
export async function startWebhookReceiver(port = 0): Promise<WebhookReceiver> {
  const hanging = new Set<http.ServerResponse>();
  const receiver: WebhookReceiver = {
    url: "",
    port: 0,
    received: [],
    respond: () => 200,
    async waitFor(predicate, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(receiver.received)) {
        if (Date.now() > deadline) throw new Error(`webhook receiver: condition not met after ${timeoutMs} ms; got ${receiver.received.map((r) => r.event.type).join(", ") || "nothing"}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return receiver.received;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      let event: ReceivedWebhook["event"];
      try {
        event = JSON.parse(body);
      } catch {
        event = { type: "(unparseable)", timestamp: "", data: {} };
      }
      const received = { headers, body, event };
      receiver.received.push(received);
      const answer = receiver.respond(receiver.received.length, received);
      if (answer === "hang") {
        hanging.add(res);
        res.on("close", () => hanging.delete(res));
        return;
      }
      res.writeHead(answer, { "content-type": "text/plain" });
      res.end(receiver.body?.(answer) ?? (answer >= 200 && answer < 300 ? "ok" : `answer ${answer}`));
    });
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  receiver.port = (server.address() as AddressInfo).port;
  receiver.url = `http://127.0.0.1:${receiver.port}/hooks`;
  return receiver;
}

/** Verifies a delivery with the Standard Webhooks library, as a receiver would; throws when it does not verify. */
export function verifyWebhook(secret: string, received: ReceivedWebhook): unknown {
  return new Webhook(secret).verify(received.body, received.headers);
}
