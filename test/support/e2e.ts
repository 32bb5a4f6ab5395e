/**
 * What the end-to-end tests that run `api` and `worker` processes on PostgreSQL + NATS share:
 * the bootstrap credentials an `api` process wrote, a client transport authenticated with them,
 * and the removal of the work streams the processes created on the shared NATS server.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Credentials } from "../../services/bootstrap.js";
import { closeNats, connectNats } from "../../services/queue/nats-connection.js";
import { natsWorkQueueNames } from "../../services/queue/nats-work-queue.js";
import { authHeaders } from "./api-harness.js";

/** The first start's credentials (from `dataDir`) and a Connect JSON transport to `baseUrl` using them. */
export function bootstrapTransport(dataDir: string, baseUrl: string): { credentials: Credentials; transport: Transport } {
  const credentials = JSON.parse(readFileSync(join(dataDir, "credentials.json"), "utf8")) as Credentials;
  const transport = createConnectTransport({
    baseUrl,
    httpVersion: "1.1",
    interceptors: [authHeaders({ apiKey: credentials.api_key, organizationId: credentials.organization_id })],
  });
  return { credentials, transport };
}

/** Deletes the work stream of each NATS subject prefix a test used (a missing one is fine). */
export async function dropWorkStreams(natsUrl: string, ...prefixes: string[]): Promise<void> {
  const nc = await connectNats(natsUrl, { name: "e2e-cleanup" });
  try {
    const jsm = await nc.jetstreamManager();
    for (const prefix of prefixes) await jsm.streams.delete(natsWorkQueueNames(prefix).stream).catch(() => false);
  } finally {
    await closeNats(nc);
  }
}
