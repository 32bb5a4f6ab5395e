import type { Interceptor } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { rpcDuration } from "../observability/metrics.js";
import { untilRpcEnds } from "./rpc-outcome.js";

const TYPES = { unary: "unary", server_streaming: "server_stream", client_streaming: "client_stream", bidi_streaming: "bidi_stream" } as const;

/**
 * RPC handling time by service, method, type and Connect code (rendition_rpc_duration_seconds).
 * Outermost but for the request log, so it sees the code the caller is told.
 */
export function metricsInterceptor(): Interceptor {
  return (next) => async (req) => {
    const started = performance.now();
    const labels = { service: req.service.typeName, method: req.method.name, type: TYPES[req.method.methodKind] };
    return untilRpcEnds(req, next, (code) => {
      rpcDuration.observe({ ...labels, code: code === undefined ? "ok" : codeToString(code) }, (performance.now() - started) / 1000);
    });
  };
}
