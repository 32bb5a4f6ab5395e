import { randomUUID } from "node:crypto";
import { Code, type Interceptor } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { withLogFields, type Log } from "../observability/log-context.js";
import { untilRpcEnds } from "./rpc-outcome.js";

/** A caller's id is kept when it is a plausible token (a UUID, a trace id...), else one is made. */
const CALLER_ID = /^[A-Za-z0-9._:@\/+=-]{1,128}$/;

/** Codes that say the server (or what it depends on) is in trouble, not the caller. */
const SERVER_SIDE = new Set([Code.Internal, Code.Unknown, Code.Unavailable, Code.DataLoss, Code.DeadlineExceeded]);

/**
 * Outermost: gives each RPC a request id (the caller's `x-request-id`, or a new UUID), answers
 * it in the `x-request-id` response header, puts it on every log line written while the call
 * runs (log-context.ts), and logs the call's method, code and duration when it ends: OK at
 * debug, the caller's mistakes at info, server-side failures at warn.
 */
export function requestLogInterceptor(log: Log): Interceptor {
  return (next) => async (req) => {
    const given = req.header.get("x-request-id");
    const requestId = given && CALLER_ID.test(given) ? given : randomUUID();
    const method = `${req.service.typeName}/${req.method.name}`;
    const started = performance.now();
    return withLogFields({ request_id: requestId }, async () => {
      const res = await untilRpcEnds(
        req,
        next,
        (code, error) => {
          const name = code === undefined ? "ok" : codeToString(code);
          error?.metadata.set("x-request-id", requestId);
          log(`rpc ${method} ${name}`, undefined, {
            level: code === undefined || code === Code.Canceled ? "debug" : SERVER_SIDE.has(code) ? "warn" : "info",
            // A stream ends in its reader's async context: name the request here too.
            request_id: requestId,
            rpc_method: method,
            rpc_code: name,
            duration_ms: Math.round((performance.now() - started) * 10) / 10,
          });
        },
        (read) => withLogFields({ request_id: requestId }, read),
      );
      res.header.set("x-request-id", requestId);
      return res;
    });
  };
}
