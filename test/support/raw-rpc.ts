/**
 * Raw requests to the API, byte for byte as a test writes them (malformed bodies, wrong content
 * types, garbled headers), over the three protocols of the one port, and the answer read back as
 * one outcome: the Connect code (or "ok"), the HTTP status and, for invalid_argument, the
 * buf.validate violations. The generated clients cannot send what these tests send.
 */
import http from "node:http";
import http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { codeToString, endStreamFromJson, errorFromJsonBytes } from "@connectrpc/connect/protocol-connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { trailerParse } from "@connectrpc/connect/protocol-grpc-web";

export type Protocol = "connect" | "grpc" | "grpc-web";

export interface RawRequest {
  protocol: Protocol;
  /** `/rendition.v1.JobService/Get`, with a query for a Connect GET. */
  path: string;
  method?: "POST" | "GET";
  headers: Record<string, string>;
  body?: Uint8Array;
}

export interface Outcome {
  /** HTTP status (gRPC: the HTTP/2 `:status`). */
  status: number;
  /** "ok", a Connect code name (`invalid_argument`), or `http_<status>` for an answer without one (415, 404 of an unknown path). */
  code: string;
  message: string;
  /** The buf.validate violations of an invalid_argument answer, field paths as `a.b[0]`. */
  violations: Array<{ field: string; rule: string }>;
  /** Bytes of the answer body (for bounds on what is echoed). */
  bodyBytes: number;
  /** Streaming answers: how many messages came before the end (the test stops reading after the first). */
  messages: number;
}

/** A 5-byte-prefixed frame (Connect streaming, gRPC, gRPC-Web). */
export function envelope(data: Uint8Array, flags = 0): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(data.byteLength, 1);
  return Buffer.concat([head, data]);
}

interface Frame {
  flags: number;
  data: Buffer;
}

/** Complete frames of `body` (a trailing partial frame is ignored). */
function frames(body: Buffer): Frame[] {
  const out: Frame[] = [];
  for (let offset = 0; offset + 5 <= body.length; ) {
    const length = body.readUInt32BE(offset + 1);
    if (offset + 5 + length > body.length) break;
    out.push({ flags: body[offset]!, data: body.subarray(offset + 5, offset + 5 + length) });
    offset += 5 + length;
  }
  return out;
}

function violationsOf(err: ConnectError): Outcome["violations"] {
  return err.findDetails(ViolationsSchema).flatMap((d) =>
    d.violations.map((v) => ({
      field: (v.field?.elements ?? [])
        .map((e) => e.fieldName + (e.subscript.case === "index" ? `[${e.subscript.value}]` : e.subscript.case ? `[${JSON.stringify(String(e.subscript.value))}]` : ""))
        .join("."),
      rule: v.ruleId,
    })),
  );
}

function fromError(status: number, err: ConnectError | undefined, bodyBytes: number, messages: number): Outcome {
  if (!err) return { status, code: "ok", message: "", violations: [], bodyBytes, messages };
  return { status, code: codeToString(err.code), message: err.rawMessage, violations: violationsOf(err), bodyBytes, messages };
}

// A connection per request: an answer sent before its request body was read (an oversized
// gRPC-Web body refused with HTTP 200 + trailers) leaves the rest of the body on a kept-alive
// connection and stalls the next request on it — a known server defect, not yet fixed
// (services/api/server.ts closes the connection only for HTTP errors), which would otherwise make
// the fuzz suite fail at random on connection reuse rather than on what it sends.
const agent = new http.Agent({ keepAlive: false, maxSockets: 16 });

/** Reads the answer of an HTTP/1.1 request; for a 200 stream, stops after the first message frame (a Watch of a live job never ends). */
function http1(baseUrl: string, req: RawRequest, timeoutMs: number): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer; cut: boolean }> {
  return new Promise((resolve, reject) => {
    const url = new URL(req.path, baseUrl);
    const request = http.request(url, { method: req.method ?? "POST", headers: req.headers, agent, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      const streaming = /^application\/(connect\+|grpc-web|x-ndjson)/.test(res.headers["content-type"] ?? "");
      res.on("data", (chunk: Buffer) => {
        chunks.push(chunk);
        if (streaming && res.statusCode === 200 && firstMessageSeen(Buffer.concat(chunks), res.headers["content-type"]!)) {
          res.destroy();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), cut: true });
        }
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), cut: false }));
      res.on("error", reject);
    });
    request.on("timeout", () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    request.on("error", reject);
    request.end(req.body === undefined ? undefined : Buffer.from(req.body));
  });
}

function firstMessageSeen(body: Buffer, contentType: string): boolean {
  if (contentType.startsWith("application/x-ndjson")) return body.includes(0x0a);
  return frames(body).some((f) => f.flags === 0 || f.flags === 1);
}

/** One HTTP/2 session per base URL (gRPC clients multiplex on one connection). */
const sessions = new Map<string, http2.ClientHttp2Session>();
function session(baseUrl: string): http2.ClientHttp2Session {
  let s = sessions.get(baseUrl);
  if (!s || s.closed || s.destroyed) {
    s = http2.connect(baseUrl);
    s.on("error", () => sessions.delete(baseUrl));
    s.on("close", () => sessions.delete(baseUrl));
    sessions.set(baseUrl, s);
  }
  return s;
}

export function closeRawSessions(): void {
  for (const s of sessions.values()) s.close();
  sessions.clear();
  agent.destroy();
}

function http2Call(baseUrl: string, req: RawRequest, timeoutMs: number): Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: Buffer; cut: boolean }> {
  return new Promise((resolve, reject) => {
    const stream = session(baseUrl).request({ ":method": req.method ?? "POST", ":path": req.path, te: "trailers", ...req.headers });
    const chunks: Buffer[] = [];
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    let done = false;
    const finish = (cut: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ headers, trailers, body: Buffer.concat(chunks), cut });
    };
    const timer = setTimeout(() => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      if (!done) reject(new Error(`no answer within ${timeoutMs} ms`));
      done = true;
    }, timeoutMs);
    stream.on("response", (h) => (headers = h));
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      if (frames(Buffer.concat(chunks)).length > 0) {
        // A message arrived: the call got through; a live Watch would go on.
        stream.close(http2.constants.NGHTTP2_CANCEL);
        finish(true);
      }
    });
    stream.on("end", () => finish(false));
    stream.on("close", () => finish(false));
    stream.on("error", (err) => {
      if (!done) reject(err);
      done = true;
    });
    stream.end(req.body === undefined ? undefined : Buffer.from(req.body));
  });
}

function toHeaders(h: http.IncomingHttpHeaders | http2.IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const [name, value] of Object.entries(h)) {
    if (name.startsWith(":") || value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [String(value)]) out.append(name, v);
  }
  return out;
}

/** Sends `req` and reads its outcome. Rejects only when the server does not answer (a hang or a dropped connection). */
export async function send(baseUrl: string, req: RawRequest, timeoutMs = 10_000): Promise<Outcome> {
  if (req.protocol === "grpc") {
    const res = await http2Call(baseUrl, req, timeoutMs);
    const status = Number(res.headers[":status"] ?? 0);
    const messages = frames(res.body).length;
    if (res.headers["grpc-status"] === undefined && res.trailers["grpc-status"] === undefined) {
      if (res.cut || status !== 200) return { status, code: res.cut ? "ok" : `http_${status}`, message: "", violations: [], bodyBytes: res.body.length, messages };
    }
    const err = findTrailerError(toHeaders(res.headers)) ?? findTrailerError(toHeaders(res.trailers));
    return fromError(status, err, res.body.length, messages);
  }
  const res = await http1(baseUrl, req, timeoutMs);
  const contentType = String(res.headers["content-type"] ?? "");
  const bodyBytes = res.body.length;
  if (req.protocol === "grpc-web") {
    const all = frames(res.body);
    const trailer = all.find((f) => f.flags & 0x80);
    const messages = all.filter((f) => !(f.flags & 0x80)).length;
    if (res.cut) return fromError(res.status, undefined, bodyBytes, messages);
    const source = trailer ? trailerParse(trailer.data) : toHeaders(res.headers);
    if (res.status !== 200 || source.get("grpc-status") === null) {
      return { status: res.status, code: `http_${res.status}`, message: "", violations: [], bodyBytes, messages };
    }
    return fromError(res.status, findTrailerError(source), bodyBytes, messages);
  }
  // Connect.
  if (contentType.startsWith("application/connect+")) {
    const all = frames(res.body);
    const messages = all.filter((f) => !(f.flags & 0x02)).length;
    const end = all.find((f) => f.flags & 0x02);
    if (!end) return fromError(res.status, undefined, bodyBytes, messages);
    const parsed = endStreamFromJson(end.data);
    return fromError(res.status, parsed.error, bodyBytes, messages);
  }
  if (contentType.startsWith("application/x-ndjson")) {
    const lines = res.body.toString("utf8").split("\n").filter(Boolean);
    const messages = lines.filter((l) => l.startsWith('{"result"')).length;
    const errorLine = lines.find((l) => l.startsWith('{"error"'));
    if (!errorLine) return fromError(res.status, undefined, bodyBytes, messages);
    const err = errorFromJsonBytes(Buffer.from(JSON.stringify((JSON.parse(errorLine) as { error: unknown }).error)), undefined, new ConnectError("unreadable error line", Code.Unknown));
    return fromError(res.status, err, bodyBytes, messages);
  }
  if (res.status === 200) return fromError(200, undefined, bodyBytes, 1);
  if (contentType.startsWith("application/json")) {
    return fromError(res.status, errorFromJsonBytes(res.body, toHeaders(res.headers), new ConnectError(`unreadable error body (HTTP ${res.status})`, Code.Unknown)), bodyBytes, 0);
  }
  return { status: res.status, code: `http_${res.status}`, message: "", violations: [], bodyBytes, messages: 0 };
}
