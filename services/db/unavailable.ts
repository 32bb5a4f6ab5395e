/**
 * Whether an error means the database could not be reached (down, restarting, refusing or
 * dropping connections), as opposed to a query that failed. Callers answer such errors with
 * `unavailable`, which clients retry, instead of `internal`.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  for (let cause = err, depth = 0; cause && depth < 5; cause = (cause as { cause?: unknown }).cause, depth++) {
    if (cause instanceof AggregateError && cause.errors.some((e) => isDatabaseUnavailable(e))) return true;
    const { code, message } = cause as { code?: unknown; message?: unknown };
    if (typeof code === "string" && (NETWORK_CODES.has(code) || code.startsWith("08") || SERVER_STATES.has(code))) return true;
    if (typeof message === "string" && PG_CLIENT_MESSAGES.some((m) => message.includes(m))) return true;
  }
  return false;
}

/** Socket errors on the way to the server. */
const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"]);

/** SQLSTATEs (besides class 08, connection exception) of a server that is going away or full. */
const SERVER_STATES = new Set([
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now (starting up, shutting down, in recovery)
  "53300", // too_many_connections
]);

/** node-postgres's own errors for a lost or unobtainable connection (they carry no code). */
const PG_CLIENT_MESSAGES = [
  "Connection terminated",
  "timeout exceeded when trying to connect",
  "Client has encountered a connection error and is not queryable",
  "Query read timeout",
  "Cannot use a pool after calling end on the pool",
];
