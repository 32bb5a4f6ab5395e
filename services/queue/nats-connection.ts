import { connect, type NatsConnection } from "nats";

export interface ConnectNatsOptions {
  /** Client name shown by the server (`nats server report connections`, /connz). */
  name: string;
  /** How long the first connection attempt may take before failing. Default 5 s. */
  connectTimeoutMs?: number;
}

/**
 * Connects to NATS. The first connection fails fast with a readable error ("cannot reach NATS at
 * URL: ...") instead of waiting for a server to appear; once connected, the client reconnects
 * forever (a restarted NATS server must not take the API or the workers down with it).
 * The caller owns the connection: close it with {@link closeNats}.
 */
export async function connectNats(url: string, options: ConnectNatsOptions): Promise<NatsConnection> {
  const servers = url
    .split(",")
    .map((server) => server.trim())
    .filter((server) => server.length > 0);
  try {
    return await connect({
      servers,
      name: options.name,
      timeout: options.connectTimeoutMs ?? 5_000,
      waitOnFirstConnect: false,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1_000,
      // Notice a dead TCP connection within ~30 s instead of the default ~4 min.
      pingInterval: 10_000,
      maxPingOut: 3,
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`cannot reach NATS at ${redactNatsUrl(url)}: ${reason}`, { cause: error });
  }
}

/** Drains (finishes in-flight messages and subscriptions) then closes; safe to call twice. */
export async function closeNats(nc: NatsConnection): Promise<void> {
  if (nc.isClosed()) return;
  try {
    if (!nc.isDraining()) {
      await nc.drain();
    }
    await nc.closed();
  } catch {
    // Draining a connection that is reconnecting or already closing can fail; make sure it is closed.
    if (!nc.isClosed()) await nc.close().catch(() => undefined);
  }
}

/** `nats://user:secret@host` → `nats://user:***@host` (a bare token → `***`), for logs and errors. */
export function redactNatsUrl(url: string): string {
  return url.replace(/\/\/([^/@,]*)@/g, (_match, userinfo: string) => {
    const colon = userinfo.indexOf(":");
    return colon >= 0 ? `//${userinfo.slice(0, colon)}:***@` : "//***@";
  });
}
