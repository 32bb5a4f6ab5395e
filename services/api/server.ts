import http from "node:http";
import { API_JSON } from "../common/api-json.js";
import http2 from "node:http2";
import net from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { AuthRepository } from "../auth/auth.repository.js";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import { withEnumAliases } from "./enum-aliases.js";
import { fileRoutes } from "./file-routes.js";
import { authInterceptor, errorInterceptor, validationInterceptor } from "./interceptors.js";
import { plainJsonStreaming } from "./json-watch.js";
import { markRequestRead, refuseUndecodableRequests } from "./request-decoding.js";
import { rateLimitInterceptor, type RateLimitSettings } from "./rate-limit.js";
import { serveDashboard } from "./web-routes.js";
import { deferredValidation, routes, semanticChecks, type ApiDependencies } from "./routes.js";

export interface ApiServerOptions extends Omit<ApiDependencies, "shutdownSignal"> {
  keys: Pick<AuthRepository, "findActiveKey" | "touchApiKey">;
  /** For GET /readyz: resolves when the database answers. */
  checkDatabase: () => Promise<void>;
  log: (msg: string, err?: unknown) => void;
  shutdownTimeoutMs: number;
  /** Told the listening address, for signed URLs when RENDITION_PUBLIC_URL is unset. */
  publicUrl?: { listening(host: string, port: number): void };
  /** Per-organization request rate (rate-limit.ts); unset or 0 rps: unlimited. */
  rateLimit?: RateLimitSettings;
}

export interface ApiServer {
  /** Resolves with the bound port (0 picks a free one). */
  listen(port: number, host?: string): Promise<number>;
  /** Stops accepting, ends Watch streams, lets in-flight calls finish (up to the timeout), then closes. */
  close(): Promise<void>;
}

const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const MAX_REQUEST_BYTES = 1024 * 1024;
/** Responses (and stream messages) smaller than this are sent uncompressed. */
const COMPRESS_MIN_BYTES = 16 * 1024;
/** A connection that sends nothing is dropped after this long (before HTTP's own timeouts apply). */
const FIRST_BYTE_TIMEOUT_MS = 30_000;

/**
 * An error answered before its request's body was read (over 1 MiB, refused early) would leave
 * the rest of the body on the keep-alive connection, stalling the client's next request on it
 * (Node drains such a body only if nobody started reading it; Connect did). Such an answer says
 * `Connection: close`, and Node closes the connection once it is sent. Only errors: a stream
 * (Watch, gRPC) answers 200 while its request may still be finishing, and must not be cut.
 */
function closeIfRefusedEarly(req: http.IncomingMessage, res: http.ServerResponse): void {
  const writeHead = res.writeHead;
  res.writeHead = function (this: http.ServerResponse, ...args: Parameters<typeof writeHead>) {
    const status = typeof args[0] === "number" ? args[0] : res.statusCode;
    if (status >= 400 && !req.complete && !res.headersSent) res.setHeader("connection", "close");
    return writeHead.apply(this, args);
  } as typeof writeHead;
}

/**
 * One port for the Connect protocol (JSON and binary), gRPC and gRPC-Web over HTTP/1.1 and
 * cleartext HTTP/2: each connection's first bytes tell whether it opens with the HTTP/2 preface
 * (h2c prior knowledge, as gRPC clients do) or is HTTP/1.1.
 */
export function createApiServer(options: ApiServerOptions): ApiServer {
  const shutdown = new AbortController();
  const jsonOptions = API_JSON;
  let handlers: UniversalHandler[] = [];
  const connect = connectNodeAdapter({
    // Every method also reads the reference's lower-case enum spellings in JSON (enum-aliases.ts).
    routes: (router) => {
      routes({ ...options, shutdownSignal: shutdown.signal })(withEnumAliases(router, jsonOptions));
      // A unary request Connect cannot decode is invalid_argument, not internal (request-decoding.ts).
      router.handlers.splice(0, router.handlers.length, ...router.handlers.map(refuseUndecodableRequests));
      handlers = router.handlers;
    },
    // markRequestRead first: everything inside it runs only for a request Connect could read.
    interceptors: [
      markRequestRead,
      errorInterceptor(options.log),
      authInterceptor(options.keys, options.log),
      rateLimitInterceptor(options.rateLimit),
      validationInterceptor(semanticChecks, deferredValidation),
    ],
    jsonOptions,
    // Requests are parsed (and gzip inflated) before auth runs: bound what anyone can make us hold.
    // The largest valid Create (10 outputs x 20 variants, 20 metadata entries) is far below this.
    readMaxBytes: MAX_REQUEST_BYTES,
    // gzip only what is worth it: connect-node compresses every message over 1 KiB for a client
    // that accepts gzip, each with a zlib context of its own, and a Watch event (one job, ~1.5 kB
    // of JSON) then costs far more CPU and memory to compress than to send (docs/benchmarks.md).
    compressMinBytes: COMPRESS_MIN_BYTES,
  });
  // Watch with plain application/json (curl): NDJSON lines, through the same Connect handler.
  const jsonStreams = plainJsonStreaming(handlers, { readMaxBytes: MAX_REQUEST_BYTES, log: options.log });

  const files = fileRoutes(options);
  let inFlight = 0;
  let drained: (() => void) | undefined;
  const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    const path = (req.url ?? "").split("?")[0];
    if (req.method === "GET" && (path === "/healthz" || path === "/readyz")) {
      void health(path, res);
      return;
    }
    inFlight++;
    res.on("close", () => {
      if (--inFlight === 0) drained?.();
    });
    if (req instanceof http.IncomingMessage) closeIfRefusedEarly(req, res as http.ServerResponse);
    if (files(req, res) || serveDashboard(req, res)) return;
    if (jsonStreams.accepts(req)) jsonStreams.handle(req, res);
    else connect(req as never, res as never);
  };
  const health = async (path: string, res: http.ServerResponse | http2.Http2ServerResponse) => {
    let status = 200;
    let body: Record<string, string> = { status: "ok" };
    if (path === "/readyz") {
      try {
        if (shutdown.signal.aborted) throw new Error("shutting down");
        await options.checkDatabase();
      } catch (err) {
        status = 503;
        // The cause goes to the log, not to an unauthenticated caller.
        const reason = shutdown.signal.aborted ? "shutting down" : "database unreachable";
        if (!shutdown.signal.aborted) options.log("readiness check failed", err);
        body = { status: "unavailable", reason };
      }
    }
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };

  // Idle keep-alive connections outlive the clients' own idle timeouts (Node's agent: 5 s, most
  // load balancers: 60 s), so a client never reuses a socket the server is closing (EPIPE,
  // ECONNRESET on the next call).
  const h1 = http.createServer({ keepAliveTimeout: 65_000, headersTimeout: 66_000 }, handler);
  const h2 = http2.createServer(handler);
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.Http2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.setTimeout(FIRST_BYTE_TIMEOUT_MS, () => socket.destroy());
    socket.once("data", (chunk) => {
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(chunk);
      const n = Math.min(chunk.length, HTTP2_PREFACE.length);
      const isHttp2 = chunk.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n));
      if (isHttp2) {
        // The HTTP/2 session reads the buffered preface itself; resuming here would drop it.
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    });
  });

  return {
    listen(port, host = "0.0.0.0") {
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          const bound = (server.address() as net.AddressInfo).port;
          options.publicUrl?.listening(host, bound);
          resolve(bound);
        });
      });
    },
    async close() {
      server.close();
      shutdown.abort();
      h1.closeIdleConnections();
      for (const session of sessions) session.close();
      if (inFlight > 0) {
        await Promise.race([
          new Promise<void>((resolve) => (drained = resolve)),
          new Promise((resolve) => setTimeout(resolve, options.shutdownTimeoutMs).unref()),
        ]);
      }
      h1.closeAllConnections();
      for (const socket of sockets) socket.destroy();
    },
  };
}
