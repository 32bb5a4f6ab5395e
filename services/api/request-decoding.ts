import { Code, ConnectError, createContextKey, createContextValues, type Interceptor } from "@connectrpc/connect";
import {
  compressedFlag,
  createAsyncIterable,
  encodeEnvelope,
  readAllBytes,
  type UniversalHandler,
  type UniversalServerRequest,
  type UniversalServerResponse,
} from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorFromJsonBytes, errorToJsonBytes, headerUnaryContentLength } from "@connectrpc/connect/protocol-connect";
import { headerGrpcStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";

/**
 * A request body that does not decode is the caller's fault: `invalid_argument` on every protocol.
 *
 * connect-es reads and parses a unary request before any interceptor runs, and answers a body
 * protobuf-es cannot decode with `internal`: its binary serialization wraps every fromBinary
 * error as `new ConnectError("parse binary: …", Code.Internal)` (protocol/serialization.ts,
 * createBinarySerialization) — truncated or random bytes, a bad wire type, groups nested past the
 * recursion limit, invalid UTF-8 in a string field — and so does its envelope reader for a frame
 * flagged compressed without a compression header (protocol/envelope.ts). There is no option to
 * hook that serialization (BinaryReadOptions has no reader factory, unlike the JSON textDecoder
 * enum-aliases.ts uses), so the handler of every unary method is wrapped here, and the one place
 * a server-streaming request is read, the validation interceptor, maps its read errors with
 * `requestReadError`.
 *
 * Which answers are rewritten is decided by where they came from, not by their message: the
 * outermost interceptor (`markRequestRead`) marks the call; an `internal` answer to a call that
 * never reached it was produced while Connect read the request (the service code, which could
 * fail for its own reasons, runs inside the interceptors), and becomes `invalid_argument` with
 * the same message. Answers of calls that reached the interceptors pass through untouched.
 */

/** Set by the outermost interceptor: Connect read the request, the call reached our code. */
export const interceptedKey = createContextKey<boolean>(false, { description: "the request reached the interceptors" });

/** Must be the first (outermost) interceptor: marks the call as read, for refuseUndecodableRequests. */
export const markRequestRead: Interceptor = (next) => (req) => {
  req.contextValues.set(interceptedKey, true);
  return next(req);
};

const INVALID_BASE64 = "message: the query parameter is not valid base64 (base64=1: the URL-safe alphabet, padding optional)";
/** protobuf-es's base64Decode reads both alphabets and skips whitespace; a space here is a '+' the URL did not escape. */
const BASE64 = /^[A-Za-z0-9\-_+/]*={0,2}$/;

/** An error met while reading a request (parsing, envelopes, decompression): `internal` there means the caller sent something unreadable. */
export function requestReadError(err: unknown): unknown {
  if (!(err instanceof ConnectError) || err.code !== Code.Internal) return err;
  // Connect's read errors carry no details.
  return new ConnectError(err.rawMessage, Code.InvalidArgument, err.metadata, undefined, err);
}

/** The handler of a unary method, answering `invalid_argument` (not `internal`) for a request Connect cannot read. */
export function refuseUndecodableRequests(handler: UniversalHandler): UniversalHandler {
  if (handler.method.methodKind !== "unary") return handler;
  const wrapped = async (req: UniversalServerRequest): Promise<UniversalServerResponse> => {
    if (req.method === "GET") {
      const refused = checkGetQuery(req.url);
      if (refused) return connectErrorResponse(new ConnectError(refused, Code.InvalidArgument));
    }
    const contextValues = req.contextValues ?? createContextValues();
    const res = await handler({ ...req, contextValues });
    // Unary: by the time the handler resolves, the implementation has run or reading failed.
    if (contextValues.get(interceptedKey)) return res;
    return asInvalidArgument(res);
  };
  return Object.assign(wrapped, {
    service: handler.service,
    method: handler.method,
    requestPath: handler.requestPath,
    supportedContentType: handler.supportedContentType,
    protocolNames: handler.protocolNames,
    allowedMethods: handler.allowedMethods,
  });
}

/**
 * A Connect GET carries the message in the query: URLSearchParams decodes a malformed
 * percent-encoding to U+FFFD without a word (`%FF` in a JSON string would reach the handler as
 * `\uFFFD`), and protobuf-es's base64 decoder throws a plain Error that Connect answers as
 * `internal error`. Both are checked on the raw query first.
 */
function checkGetQuery(url: string): string | undefined {
  const query = url.includes("?") ? url.slice(url.indexOf("?") + 1).split("#", 1)[0]! : "";
  const params = new Map<string, string>();
  for (const pair of query.split("&")) {
    const eq = pair.indexOf("=");
    const rawName = eq < 0 ? pair : pair.slice(0, eq);
    const rawValue = eq < 0 ? "" : pair.slice(eq + 1);
    let name: string;
    let value: string;
    try {
      name = decodeURIComponent(rawName.replace(/\+/g, " "));
      value = decodeURIComponent(rawValue.replace(/\+/g, " "));
    } catch {
      return `query parameter ${JSON.stringify(rawName.slice(0, 32))} is not valid percent-encoded UTF-8`;
    }
    // Connect reads the first occurrence (URLSearchParams.get).
    if (!params.has(name)) params.set(name, value);
  }
  if (params.get("base64") === "1" && !BASE64.test(params.get("message") ?? "")) return INVALID_BASE64;
  return undefined;
}

/** The `internal` answer Connect gave while reading the request, as `invalid_argument`, in the answer's own protocol. */
async function asInvalidArgument(res: UniversalServerResponse): Promise<UniversalServerResponse> {
  const contentType = res.header?.get("content-type") ?? "";
  if (contentType.startsWith("application/grpc-web")) return grpcWebTrailer(res);
  if (contentType.startsWith("application/grpc")) return grpcTrailer(res);
  if (res.status !== codeToHttpStatus(Code.Internal) || res.body === undefined || res.header?.has("content-encoding")) return res;
  // Connect unary: the error JSON is the whole (small, uncompressed) body.
  const body = res.body instanceof Uint8Array ? res.body : await readAllBytes(res.body as AsyncIterable<Uint8Array>, 0xffffffff);
  const error = errorFromJsonBytes(body, undefined, new ConnectError("internal error", Code.Internal));
  if (error.code !== Code.Internal) return { ...res, body: createAsyncIterable([body]) };
  return connectErrorResponse(new ConnectError(error.rawMessage, Code.InvalidArgument), res.header);
}

function connectErrorResponse(error: ConnectError, header?: HeadersInit): UniversalServerResponse {
  const body = errorToJsonBytes(error, undefined);
  const headers = new Headers(header);
  headers.set("content-type", "application/json");
  headers.set(headerUnaryContentLength, String(body.byteLength));
  return { status: codeToHttpStatus(error.code), header: headers, body: createAsyncIterable([body]) };
}

const INTERNAL = String(Code.Internal);
const INVALID_ARGUMENT = String(Code.InvalidArgument);

/** gRPC: the status is in the HTTP/2 trailers, written after the (empty) body. */
function grpcTrailer(res: UniversalServerResponse): UniversalServerResponse {
  const fix = () => {
    for (const headers of [res.header, res.trailer]) {
      if (headers instanceof Headers && headers.get(headerGrpcStatus) === INTERNAL) headers.set(headerGrpcStatus, INVALID_ARGUMENT);
    }
  };
  fix();
  const source = res.body as AsyncIterable<Uint8Array> | undefined;
  if (!source || !(Symbol.asyncIterator in Object(source))) return res;
  return {
    ...res,
    body: (async function* () {
      yield* source;
      fix();
    })(),
  };
}

/** gRPC-Web: the status is in the trailer frame that ends the body. */
async function grpcWebTrailer(res: UniversalServerResponse): Promise<UniversalServerResponse> {
  if (res.body === undefined) return res;
  const body = res.body instanceof Uint8Array ? res.body : await readAllBytes(res.body as AsyncIterable<Uint8Array>, 0xffffffff);
  const frames: Uint8Array[] = [];
  for (let offset = 0; offset + 5 <= body.byteLength; ) {
    const flags = body[offset]!;
    const length = new DataView(body.buffer, body.byteOffset + offset + 1, 4).getUint32(0);
    const data = body.subarray(offset + 5, offset + 5 + length);
    if (flags & trailerFlag && !(flags & compressedFlag)) {
      const trailer = trailerParse(data);
      if (trailer.get(headerGrpcStatus) === INTERNAL) trailer.set(headerGrpcStatus, INVALID_ARGUMENT);
      frames.push(encodeEnvelope(flags, trailerSerialize(trailer)));
    } else {
      frames.push(body.subarray(offset, offset + 5 + length));
    }
    offset += 5 + length;
  }
  return { ...res, body: createAsyncIterable([Buffer.concat(frames)]) };
}
