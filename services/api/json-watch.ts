import type http from "node:http";
import type http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import {
  compressedFlag,
  createAsyncIterable,
  encodeEnvelope,
  pipe,
  transformSplitEnvelope,
  type EnvelopedMessage,
  type UniversalHandler,
  type UniversalServerResponse,
} from "@connectrpc/connect/protocol";
import {
  codeFromString,
  codeToHttpStatus,
  contentTypeStreamJson,
  endStreamFlag,
  headerContentType,
  headerProtocolVersion,
  headerStreamAcceptEncoding,
  headerStreamEncoding,
  headerUnaryAcceptEncoding,
  headerUnaryContentLength,
  headerUnaryEncoding,
  protocolVersion,
} from "@connectrpc/connect/protocol-connect";

/**
 * Server-streaming RPCs called with plain `Content-Type: application/json`, as the hosted API we
 * model documents Watch for curl: the answer is newline-delimited JSON, one `{"result": …}` line
 * per message, and a final `{"error": …}` line if the stream fails after it started.
 *
 * The call is not handled a second time: it is translated into a Connect streaming call
 * (`application/connect+json`, the body as the one enveloped request message) and run through the
 * same Connect handler as every other call, so parsing (with the enum aliases), the size limit,
 * decompression, interceptors (errors, auth, validation) and the handler itself are the ones
 * Connect, gRPC and gRPC-Web callers get. Its answer is un-enveloped: each message frame becomes a
 * line; an error in the end-of-stream frame before any message becomes the usual Connect unary
 * error (JSON body, HTTP status of its code: 401, 403, 404, 400 with violations …).
 */

/** NDJSON (ndjson.org): what Elasticsearch, Docker and Ollama stream with; curl and proxies pass it through as it comes. */
export const NDJSON_CONTENT_TYPE = "application/x-ndjson";

/** `application/json`, optionally with a UTF-8 charset; other charsets stay Connect's 415. */
const PLAIN_JSON = /^application\/json\s*(?:;\s*charset\s*=\s*"?utf-?8"?\s*)?$/i;

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

export interface PlainJsonStreaming {
  /** True for a POST with plain JSON to a server-streaming method. */
  accepts(req: NodeRequest): boolean;
  handle(req: NodeRequest, res: NodeResponse): void;
}

export function plainJsonStreaming(
  handlers: readonly UniversalHandler[],
  options: { readMaxBytes: number; log: (msg: string, err?: unknown) => void },
): PlainJsonStreaming {
  const streaming = new Map(handlers.filter((h) => h.method.methodKind === "server_streaming").map((h) => [h.requestPath, h]));
  const pathOf = (req: NodeRequest) => (req.url ?? "").split("?", 1)[0]!;
  return {
    accepts(req) {
      return req.method === "POST" && streaming.has(pathOf(req)) && PLAIN_JSON.test(req.headers["content-type"] ?? "");
    },
    handle(req, res) {
      const handler = streaming.get(pathOf(req))!;
      const universal = universalRequestFromNodeRequest(req, res, undefined, undefined);
      const header = new Headers(universal.header);
      const encoding = header.get(headerUnaryEncoding);
      const contentLength = header.get(headerUnaryContentLength);
      const compressed = encoding !== null && encoding.toLowerCase() !== "identity";
      header.set(headerContentType, contentTypeStreamJson);
      header.set(headerProtocolVersion, protocolVersion);
      // A compressed body becomes a compressed envelope: Connect inflates it, within readMaxBytes
      // (and answers an unsupported encoding as it does for any stream).
      if (compressed) header.set(headerStreamEncoding, encoding);
      // Lines go out uncompressed, each as soon as it is written (with no accept header at all,
      // Connect would answer in the request's encoding).
      for (const name of [headerUnaryEncoding, headerUnaryContentLength, headerUnaryAcceptEncoding]) header.delete(name);
      header.set(headerStreamAcceptEncoding, "identity");
      const body = envelope(universal.body as AsyncIterable<Uint8Array>, compressed, options.readMaxBytes, contentLength);
      handler({ ...universal, header, body })
        .then(toLines)
        .then((answer) => universalResponseToNodeResponse(answer, res))
        .catch((reason: unknown) => {
          // The client went away mid-stream: nothing to answer, the handler has been stopped.
          if (ConnectError.from(reason).code === Code.Aborted) return;
          options.log(`plain JSON stream of ${handler.method.parent.typeName}.${handler.method.name} failed`, reason);
        });
    },
  };
}

/**
 * The whole body as one envelope, held in memory only up to readMaxBytes. A larger body gets an
 * envelope that declares its real size, which Connect refuses with resource_exhausted like any
 * other: with a Content-Length, unread (Node discards the body after the answer, as for a unary
 * call); without one, read to its end and dropped, so the keep-alive connection stays in step.
 */
async function* envelope(source: AsyncIterable<Uint8Array>, compressed: boolean, readMaxBytes: number, contentLength: string | null): AsyncGenerator<Uint8Array> {
  const flags = compressed ? compressedFlag : 0;
  const declared = contentLength === null ? NaN : Number(contentLength);
  if (declared > readMaxBytes) {
    yield envelopeHeader(flags, declared);
    return;
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of source) {
    size += chunk.byteLength;
    if (size <= readMaxBytes) chunks.push(chunk);
  }
  yield size > readMaxBytes ? envelopeHeader(flags, size) : encodeEnvelope(flags, Buffer.concat(chunks));
}

/** The 5-byte envelope prefix alone: flags and a big-endian uint32 length. */
function envelopeHeader(flags: number, length: number): Uint8Array {
  const header = Buffer.alloc(5);
  header.writeUInt8(flags, 0);
  header.writeUInt32BE(Math.min(length, 0xffffffff), 1);
  return header;
}

interface ErrorJson {
  code?: string;
  message?: string;
  details?: unknown[];
}

interface EndStreamJson {
  error?: ErrorJson;
  metadata?: Record<string, string[]>;
}

const utf8 = new TextDecoder();
const encoder = new TextEncoder();

/** The Connect streaming answer as NDJSON, or as a unary-style error when it failed before its first message (exported for its unit test). */
export async function toLines(answer: UniversalServerResponse): Promise<UniversalServerResponse> {
  // Anything but a stream (e.g. 405, 415) is passed on as Connect answered it.
  if (answer.status !== 200 || answer.body === undefined || !(Symbol.asyncIterator in Object(answer.body))) return answer;
  const frames = pipe(answer.body as AsyncIterable<Uint8Array>, transformSplitEnvelope(0xffffffff))[Symbol.asyncIterator]();
  const header = new Headers();
  answer.header?.forEach((value, name) => {
    if (!/^(content-type|connect-)/i.test(name)) header.set(name, value);
  });
  // The Connect handler resolved once its first frame was ready, so this does not wait for events.
  const first = await frames.next();
  if (!first.done && first.value.flags & endStreamFlag) {
    const end = JSON.parse(utf8.decode(first.value.data)) as EndStreamJson;
    if (end.error) {
      await frames.return?.();
      header.set(headerContentType, "application/json");
      for (const [name, values] of Object.entries(end.metadata ?? {})) for (const value of values) header.append(name, value);
      const code = codeFromString(end.error.code ?? "") ?? Code.Unknown;
      const body = encoder.encode(JSON.stringify(end.error));
      header.set(headerUnaryContentLength, String(body.byteLength));
      return { status: codeToHttpStatus(code), header, body: createAsyncIterable([body]) };
    }
  }
  header.set(headerContentType, NDJSON_CONTENT_TYPE);
  // No proxy or browser should buffer or cache a live stream.
  header.set("cache-control", "no-store");
  header.set("x-accel-buffering", "no");
  return { status: 200, header, body: lines(first, frames) };
}

async function* lines(first: IteratorResult<EnvelopedMessage>, frames: AsyncIterator<EnvelopedMessage>): AsyncGenerator<Uint8Array> {
  try {
    for (let frame = first; !frame.done; frame = await frames.next()) {
      const { flags, data } = frame.value;
      if (flags & endStreamFlag) {
        const end = JSON.parse(utf8.decode(data)) as EndStreamJson;
        if (end.error) yield encoder.encode(`${JSON.stringify({ error: end.error })}\n`);
        return;
      }
      // The frame is the message's canonical JSON, compact (no newline inside).
      yield encoder.encode(`{"result":${utf8.decode(data)}}\n`);
    }
  } finally {
    // Also when the client went away (universalResponseToNodeResponse returns us): ends the
    // Connect handler, whose context is aborted.
    await frames.return?.();
  }
}
