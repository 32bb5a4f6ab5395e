/**
 * Fuzzing the API's input handling with fast-check: random and mutated JSON and binary bodies
 * for every RPC of every service in gen/ (descriptor-guided, so most requests get past parsing
 * into validation and the handlers on real PostgreSQL), wrong content types, oversized fields,
 * deep nesting, invalid UTF-8, garbled auth and protocol headers, over Connect (unary, GET,
 * streaming, plain-JSON Watch), gRPC (h2c) and gRPC-Web, against one real server.
 *
 * Every answer must be a caller's error or a success: never `internal` or `unknown`, never a
 * 5xx but the documented 501 `unimplemented` (a gRPC or streaming call without its one request
 * message), never a hang; every schema-violation answer names each violation by field path; no
 * id is echoed past 64 characters. At the end the server answers a normal call, logged no
 * internal error and its heap is back near where it started.
 *
 * Seeded and bounded: FUZZ_SEED=<n> replays a run (the seed is printed on failure, with the
 * shrunk counterexample), FUZZ_RUNS=<n> sets the number of batches (default 128 x 16 = 2,048 requests).
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, expect, inject, it, vi } from "vitest";
import fc from "fast-check";
import {
  create,
  fromJson,
  ScalarType,
  toBinary,
  type DescEnum,
  type DescField,
  type DescMessage,
  type DescMethod,
  type DescService,
  type JsonValue,
} from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import * as accountPb from "../../gen/rendition/v1/account_pb.js";
import * as jobPb from "../../gen/rendition/v1/job_pb.js";
import * as originPb from "../../gen/rendition/v1/origin_pb.js";
import * as presetPb from "../../gen/rendition/v1/preset_pb.js";
import * as uploadPb from "../../gen/rendition/v1/upload_pb.js";
import * as webhookPb from "../../gen/rendition/v1/webhook_pb.js";
import { enumAliases } from "../../services/api/enum-aliases.js";
import { localJobRequest, startTestApi, type TestApi } from "../support/api-harness.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { closeRawSessions, envelope, send, type Outcome, type RawRequest } from "../support/raw-rpc.js";

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : (Date.now() ^ (process.pid << 16)) >>> 0;
const RUNS = process.env.FUZZ_RUNS ? Number(process.env.FUZZ_RUNS) : 128;
const BATCH = 16;

const SERVICES: DescService[] = [accountPb, jobPb, originPb, presetPb, uploadPb, webhookPb].flatMap((module) =>
  Object.values(module).filter((v): v is DescService => typeof v === "object" && v !== null && (v as { kind?: unknown }).kind === "service"),
);
const METHODS: DescMethod[] = SERVICES.flatMap((s) => s.methods);
/** A marker run no answer may echo whole: ids and names are cut to 64 characters. */
const ECHO_MARKER = "o".repeat(65);

let database: TestDatabase;
let api: TestApi;
const logged: string[] = [];
/** Real ids and names, so that some requests find what they name and go deeper. */
let pool: string[] = [];
let validAuth: Record<string, string>;

function gc(): void {
  setFlagsFromString("--expose-gc");
  (runInNewContext("gc") as () => void)();
}
function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

beforeAll(async () => {
  // The harness's server logs with console.error: every line is kept to be checked.
  vi.spyOn(console, "error").mockImplementation((...args: unknown[]) => void logged.push(args.map((a) => (a instanceof Error ? a.stack : String(a))).join(" ")));
  database = await createTestDatabase(inject("databaseUrl"));
  api = await startTestApi(database.url);
  validAuth = { authorization: `Bearer ${api.credentials.api_key}`, "x-organization-id": api.credentials.organization_id };
  const job = (await api.jobs.create(localJobRequest(api))).job!;
  pool = [job.id, job.outputs[0]!.id, api.credentials.local_origin_id, api.credentials.organization_id, "hls_ladder_standard", "uploads/in.mp4", "in.mp4", "https://example.com/a.mp4", "{job_id}/{output_id}", "eng", "mp4", "h264", "1080p", ""];
});
afterAll(async () => {
  closeRawSessions();
  await api?.close();
  await database?.drop();
});

// ---------------------------------------------------------------------------------------------
// JSON values shaped by the descriptors (with wrong shapes mixed in)

const oversized = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 65, max: 2_000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 50_000, max: 110_000 }) },
).map((n) => "o".repeat(n));

const stringValue: fc.Arbitrary<string> = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom(...Array.from({ length: 14 }, (_, i) => i)).map((i) => pool[i] ?? "") },
  { weight: 4, arbitrary: fc.string({ maxLength: 16 }) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 8 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 8 }) },
  { weight: 1, arbitrary: oversized },
  { weight: 1, arbitrary: fc.string({ maxLength: 4 }).map((s) => `${s}\u0000${s}`) },
);

const anyJson = fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<JsonValue>;

function scalarJson(type: ScalarType): fc.Arbitrary<JsonValue> {
  switch (type) {
    case ScalarType.STRING:
      return stringValue;
    case ScalarType.BOOL:
      return fc.oneof(fc.boolean(), fc.constantFrom("true", 1, "yes"));
    case ScalarType.BYTES:
      return fc.oneof(fc.base64String({ maxLength: 24 }), fc.string({ maxLength: 8 }));
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constantFrom("NaN", "Infinity", "-Infinity", 1e39, "1.5", "x"));
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.SINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return fc.oneof(fc.integer({ min: -5, max: 5_000_000 }), fc.constantFrom("9223372036854775807", "9223372036854775808", "18446744073709551616", "-1", "1e3", "x", 2 ** 60));
    default:
      return fc.oneof(
        { weight: 4, arbitrary: fc.integer({ min: -5, max: 200 }) },
        { weight: 2, arbitrary: fc.integer() },
        { weight: 1, arbitrary: fc.constantFrom(2 ** 31, -(2 ** 31) - 1, 2 ** 32, 1.5, 1e308, "7", "x", -0) },
      );
  }
}

function enumJson(desc: DescEnum): fc.Arbitrary<JsonValue> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...desc.values.map((v) => v.name)) },
    { weight: 3, arbitrary: fc.constantFrom(...[...enumAliases(desc).keys()], "unspecified") },
    { weight: 1, arbitrary: fc.integer({ min: -3, max: 40 }) },
    { weight: 1, arbitrary: fc.string({ maxLength: 8 }) },
  );
}

function wellKnownJson(desc: DescMessage): fc.Arbitrary<JsonValue> | undefined {
  if (!desc.typeName.startsWith("google.protobuf.")) return undefined;
  switch (desc.typeName) {
    case "google.protobuf.Timestamp":
      return fc.oneof(
        fc.date({ min: new Date("1970-01-01T00:00:00Z"), max: new Date("2100-01-01T00:00:00Z"), noInvalidDate: true }).map((d) => d.toISOString()),
        fc.constantFrom("2026-13-01T00:00:00Z", "0000-01-01T00:00:00Z", "10000-01-01T00:00:00Z", "x", 5, "2026-01-01T00:00:00+25:00"),
      );
    case "google.protobuf.Duration":
      return fc.constantFrom("1s", "-3.5s", "x", "315576000001s", 3);
    default:
      return anyJson;
  }
}

const messageCache = new Map<string, fc.Arbitrary<JsonValue>>();
const MAX_DEPTH = 4;

function messageJson(desc: DescMessage, depth: number): fc.Arbitrary<JsonValue> {
  const key = `${desc.typeName}@${depth}`;
  let arb = messageCache.get(key);
  if (arb) return arb;
  const wkt = wellKnownJson(desc);
  if (wkt) arb = wkt;
  else if (depth > MAX_DEPTH) arb = fc.constant({});
  else {
    const model: Record<string, fc.Arbitrary<JsonValue>> = {};
    for (const field of desc.fields) model[field.name] = fieldJson(field, depth);
    arb = fc
      .tuple(fc.record(model, { requiredKeys: [] }), fc.option(fc.tuple(fc.string({ minLength: 1, maxLength: 8 }), anyJson), { freq: 12 }))
      .map(([record, unknown]) => (unknown ? { ...record, [unknown[0]]: unknown[1] } : record) as JsonValue);
  }
  messageCache.set(key, arb);
  return arb;
}

function valueJson(field: DescField, kind: "scalar" | "enum" | "message", depth: number): fc.Arbitrary<JsonValue> {
  if (kind === "enum" && field.enum) return enumJson(field.enum);
  if (kind === "message" && field.message) return messageJson(field.message, depth + 1);
  return scalarJson(field.scalar ?? ScalarType.STRING);
}

function fieldJson(field: DescField, depth: number): fc.Arbitrary<JsonValue> {
  let right: fc.Arbitrary<JsonValue>;
  switch (field.fieldKind) {
    case "scalar":
      right = scalarJson(field.scalar);
      break;
    case "enum":
      right = enumJson(field.enum);
      break;
    case "message":
      right = fc.oneof({ weight: 8, arbitrary: messageJson(field.message, depth + 1) }, { weight: 1, arbitrary: fc.constant(null) });
      break;
    case "list": {
      const item = valueJson(field, field.listKind, depth);
      right = fc.oneof({ weight: 8, arbitrary: fc.array(item, { maxLength: 3 }) }, { weight: 1, arbitrary: fc.array(item, { minLength: 11, maxLength: 30 }) });
      break;
    }
    case "map": {
      const value = valueJson(field, field.mapKind, depth);
      const mapKey = field.mapKey === ScalarType.STRING ? stringValue : fc.oneof(fc.integer().map(String), fc.constantFrom("true", "x"));
      right = fc.oneof({ weight: 8, arbitrary: fc.dictionary(mapKey, value, { maxKeys: 3 }) }, { weight: 1, arbitrary: fc.dictionary(mapKey, value, { minKeys: 21, maxKeys: 25 }) });
      break;
    }
  }
  // Now and then the wrong shape altogether.
  return fc.oneof({ weight: 12, arbitrary: right }, { weight: 1, arbitrary: anyJson });
}

/**
 * Plausible messages: well-shaped values, real ids and names, small numbers, defined enum values.
 * Many of these pass validation and reach the handlers and the database (the wild ones mostly
 * stop at parsing or validation).
 */
const plausibleCache = new Map<string, fc.Arbitrary<JsonValue>>();
const plausibleString = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...Array.from({ length: 14 }, (_, i) => i)).map((i) => pool[i] ?? "") },
  { weight: 1, arbitrary: fc.stringMatching(/^[a-z][a-z0-9_]{0,11}$/) },
);

function plausibleValue(field: DescField, kind: "scalar" | "enum" | "message", depth: number): fc.Arbitrary<JsonValue> {
  if (kind === "enum" && field.enum) return fc.constantFrom(...field.enum.values.filter((v) => v.number !== 0).map((v) => v.name));
  if (kind === "message" && field.message) return plausibleJson(field.message, depth + 1);
  switch (field.scalar) {
    case ScalarType.STRING:
      return plausibleString;
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.BYTES:
      return fc.base64String({ maxLength: 12 });
    default:
      return fc.nat({ max: 100 });
  }
}

function plausibleJson(desc: DescMessage, depth: number): fc.Arbitrary<JsonValue> {
  const key = `${desc.typeName}@${depth}`;
  let arb = plausibleCache.get(key);
  if (arb) return arb;
  if (desc.typeName === "google.protobuf.Timestamp") {
    arb = fc.date({ min: new Date("2020-01-01T00:00:00Z"), max: new Date("2030-01-01T00:00:00Z"), noInvalidDate: true }).map((d) => d.toISOString());
  } else if (desc.typeName.startsWith("google.protobuf.")) {
    arb = wellKnownJson(desc) ?? anyJson;
  } else if (depth > 3) {
    arb = fc.constant({});
  } else {
    const model: Record<string, fc.Arbitrary<JsonValue>> = {};
    for (const field of desc.fields) {
      model[field.name] =
        field.fieldKind === "list"
          ? fc.array(plausibleValue(field, field.listKind, depth), { maxLength: 2 })
          : field.fieldKind === "map"
            ? fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9-]{0,7}$/), plausibleValue(field, field.mapKind, depth), { maxKeys: 2 })
            : plausibleValue(field, field.fieldKind, depth);
    }
    arb = fc.record(model, { requiredKeys: [] }) as fc.Arbitrary<JsonValue>;
  }
  plausibleCache.set(key, arb);
  return arb;
}

// ---------------------------------------------------------------------------------------------
// Bodies: the message's JSON or binary encoding, often mutated

const bytes = (n: number) => fc.uint8Array({ minLength: 0, maxLength: n });

function deepJson(depth: number, kind: "object" | "array"): string {
  return kind === "object" ? `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}` : `${"[".repeat(depth)}${"]".repeat(depth)}`;
}

/** A message's JSON: wild or plausible, half and half. */
const someJson = (desc: DescMessage) => fc.oneof(messageJson(desc, 0), plausibleJson(desc, 0));

function jsonBody(desc: DescMessage): fc.Arbitrary<Buffer> {
  const text = someJson(desc).map((v) => Buffer.from(JSON.stringify(v)));
  return fc.oneof(
    { weight: 8, arbitrary: text },
    // Invalid UTF-8 in place of one byte (a lone continuation byte, 0xFF, an encoded surrogate, an overlong form).
    {
      weight: 2,
      arbitrary: fc
        .tuple(text, fc.nat(), fc.constantFrom([0xff], [0x80], [0xc3], [0xed, 0xa0, 0x80], [0xc0, 0xaf]))
        .map(([t, at, bad]) => Buffer.concat([t.subarray(0, at % (t.length + 1)), Buffer.from(bad), t.subarray(at % (t.length + 1))])),
    },
    { weight: 1, arbitrary: fc.tuple(text, fc.nat()).map(([t, at]) => t.subarray(0, at % (t.length + 1))) },
    { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 50, max: 5_000 }), fc.constantFrom("object" as const, "array" as const)).map(([d, k]) => Buffer.from(deepJson(d, k))) },
    { weight: 1, arbitrary: fc.constantFrom("null", "[]", "1", '"x"', "", " ", "\ufeff{}", "{}{}", '{"a":1,"a":2}').map((s) => Buffer.from(s)) },
    { weight: 1, arbitrary: bytes(64).map((b) => Buffer.from(b)) },
  );
}

/** An encoded string field: tag of field `no` (wire type 2), length, the bytes. */
function lengthDelimited(no: number, data: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([(no << 3) | 2, data.length]), data]);
}

function binaryBody(desc: DescMessage): fc.Arbitrary<Buffer> {
  const valid = someJson(desc).map((json) => {
    try {
      return Buffer.from(toBinary(desc, fromJson(desc, json, { ignoreUnknownFields: true })));
    } catch {
      return Buffer.from(toBinary(desc, create(desc)));
    }
  });
  const firstString = desc.fields.find((f) => f.fieldKind === "scalar" && f.scalar === ScalarType.STRING && f.number < 16);
  return fc.oneof(
    { weight: 6, arbitrary: valid },
    {
      weight: 3,
      arbitrary: fc.tuple(valid, fc.array(fc.nat(), { minLength: 1, maxLength: 4 })).map(([b, flips]) => {
        const out = Buffer.from(b);
        if (out.length) for (const f of flips) out[(f >> 3) % out.length]! ^= 1 << (f & 7);
        return out;
      }),
    },
    { weight: 1, arbitrary: fc.tuple(valid, fc.nat()).map(([b, at]) => b.subarray(0, at % (b.length + 1))) },
    { weight: 1, arbitrary: fc.tuple(valid, bytes(16)).map(([b, extra]) => Buffer.concat([b, extra])) },
    // Nested groups of an unknown field past the recursion limit, closed or not.
    { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 90, max: 5_000 }), fc.boolean()).map(([n, closed]) => Buffer.concat([Buffer.alloc(n, 0x7b), closed ? Buffer.alloc(n, 0x7c) : Buffer.alloc(0)])) },
    // A length far beyond the body.
    { weight: 1, arbitrary: fc.constant(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x61])) },
    ...(firstString
      ? [{ weight: 1, arbitrary: fc.constantFrom([0x61, 0xff], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0x61, 0x00]).map((bad) => lengthDelimited(firstString.number, Uint8Array.from(bad))) }]
      : []),
    { weight: 1, arbitrary: bytes(64).map((b) => Buffer.from(b)) },
  );
}

// ---------------------------------------------------------------------------------------------
// Requests over each protocol

/** Mostly the bootstrap key; else missing, garbled, oversized or another organization's (built once beforeAll has the key). */
function authHeaders(): fc.Arbitrary<Record<string, string>> {
  const org = validAuth["x-organization-id"]!;
  const garbled = fc.oneof(
    fc.constant({}),
    fc.string({ maxLength: 40 }).map((s) => ({ authorization: `Bearer ${s}`, "x-organization-id": org })),
    fc.string({ maxLength: 40 }).map((s) => ({ ...validAuth, "x-organization-id": s })),
    fc.constantFrom("Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer rnd_live_x", "Bearer rnd_live_\u00e9", `Bearer ${"k".repeat(8_000)}`).map((a) => ({ authorization: a, "x-organization-id": org })),
    fc.constant({ authorization: validAuth.authorization!, "x-organization-id": "org_00000000000000000000000000" }),
  );
  return fc.oneof({ weight: 6, arbitrary: fc.constant(validAuth) }, { weight: 1, arbitrary: garbled });
}

/** Protocol headers a client may get wrong: a compression it did not apply, a malformed timeout. */
const protocolHeaders = (protocol: RawRequest["protocol"]): fc.Arbitrary<Record<string, string>> =>
  fc.oneof(
    { weight: 10, arbitrary: fc.constant<Record<string, string>>({}) },
    {
      weight: 1,
      arbitrary: fc.constantFrom<Record<string, string>>(
        ...(protocol === "connect"
          ? [{ "content-encoding": "gzip" }, { "content-encoding": "br" }, { "content-encoding": "zstd" }, { "connect-timeout-ms": "x" }, { "connect-timeout-ms": "99999999999" }, { "connect-protocol-version": "2" }]
          : [{ "grpc-encoding": "gzip" }, { "grpc-encoding": "zstd" }, { "grpc-timeout": "1H" }, { "grpc-timeout": "x" }, { "grpc-timeout": "999999999S" }]),
      ),
    },
  );

/** The frames a streaming protocol carries: normally one message; sometimes none, two, a bad flag or a cut frame. */
function framed(body: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  return fc.oneof(
    { weight: 8, arbitrary: body.map((b) => envelope(b)) },
    { weight: 1, arbitrary: fc.constant(Buffer.alloc(0)) },
    { weight: 1, arbitrary: body.map((b) => Buffer.concat([envelope(b), envelope(b)])) },
    { weight: 1, arbitrary: fc.tuple(body, fc.constantFrom(0x01, 0x02, 0x80, 0x7f, 0xff)).map(([b, flags]) => envelope(b, flags)) },
    { weight: 1, arbitrary: fc.tuple(body, fc.nat()).map(([b, cut]) => envelope(b).subarray(0, cut % (b.length + 5))) },
  );
}

const WRONG_CONTENT_TYPES = ["text/plain", "application/xml", "application/json; charset=latin1", "application/grpc-web-text", "application/x-protobuf", "multipart/form-data; boundary=x", "application/connect+thrift", "*/*", "application/json, application/proto", "é"];

/** The percent-encoding of arbitrary bytes (which need not be UTF-8). */
const percentEncode = (b: Buffer) => [...b].map((x) => `%${x.toString(16).padStart(2, "0")}`).join("");

const requestArbs = new Map<DescMethod, fc.Arbitrary<RawRequest>>();

function requestFor(method: DescMethod): fc.Arbitrary<RawRequest> {
  let arb = requestArbs.get(method);
  if (!arb) requestArbs.set(method, (arb = buildRequest(method)));
  return arb;
}

function buildRequest(method: DescMethod): fc.Arbitrary<RawRequest> {
  const path = `/${method.parent.typeName}/${method.name}`;
  const json = jsonBody(method.input);
  const binary = binaryBody(method.input);
  const streaming = method.methodKind === "server_streaming";
  type Variant = Omit<RawRequest, "headers"> & { contentType?: string };
  const variants: Array<fc.Arbitrary<Variant>> = [];
  if (streaming) {
    variants.push(
      fc.tuple(framed(json), fc.constantFrom("application/connect+json", "application/connect+json; charset=utf-8")).map(([body, ct]) => ({ protocol: "connect", path, body, contentType: ct })),
      framed(binary).map((body) => ({ protocol: "connect", path, body, contentType: "application/connect+proto" })),
      // The plain-JSON (NDJSON) Watch.
      json.map((body) => ({ protocol: "connect", path, body, contentType: "application/json" })),
    );
  } else {
    variants.push(
      fc.tuple(json, fc.constantFrom("application/json", "application/json; charset=utf-8")).map(([body, ct]) => ({ protocol: "connect", path, body, contentType: ct })),
      binary.map((body) => ({ protocol: "connect", path, body, contentType: "application/proto" })),
    );
    if (method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS) {
      variants.push(
        json.map((body) => ({ protocol: "connect", method: "GET", path: `${path}?encoding=json&message=${percentEncode(body)}` })),
        fc
          .oneof(binary.map((b) => b.toString("base64url")), fc.constantFrom("%25%25%25%25", "%FF", "a%20b", "====", "*", "%"))
          .map((message) => ({ protocol: "connect", method: "GET", path: `${path}?encoding=proto&base64=1&message=${message}` })),
      );
    }
  }
  variants.push(
    fc.tuple(framed(binary), fc.constantFrom("application/grpc", "application/grpc+proto")).map(([body, ct]) => ({ protocol: "grpc", path, body, contentType: ct })),
    framed(json).map((body) => ({ protocol: "grpc", path, body, contentType: "application/grpc+json" })),
    fc.tuple(framed(binary), fc.constantFrom("application/grpc-web", "application/grpc-web+proto")).map(([body, ct]) => ({ protocol: "grpc-web", path, body, contentType: ct })),
    framed(json).map((body) => ({ protocol: "grpc-web", path, body, contentType: "application/grpc-web+json" })),
  );
  const wrongContentType = fc.tuple(fc.oneof(json, binary), fc.constantFrom(...WRONG_CONTENT_TYPES)).map(([body, ct]): Variant => ({ protocol: "connect", path, body, contentType: ct }));
  const auth = authHeaders();
  return fc
    .oneof(...variants.map((arbitrary) => ({ weight: 3, arbitrary })), { weight: 1, arbitrary: wrongContentType })
    .chain((r) => fc.tuple(fc.constant(r), auth, protocolHeaders(r.protocol)))
    .map(([{ contentType, ...r }, auth, extra]) => ({ ...r, headers: { ...auth, ...extra, ...(contentType ? { "content-type": contentType } : {}) } }));
}

const anyRequest = fc.constantFrom(...METHODS).chain(requestFor);

// ---------------------------------------------------------------------------------------------
// What every answer must be

/**
 * 501 `unimplemented` is documented (docs/api.md) for what the protocols themselves prescribe it
 * for: a gRPC or streaming call that carries no request message, or two, and a compression the
 * server does not support (the answer lists the supported ones).
 */
const CARDINALITY = /^(protocol error: (missing|received extra) input message|unknown compression ")/;

function problemWith(o: Outcome): string | undefined {
  if (o.code === "internal" || o.code === "unknown") return `answered ${o.code}`;
  if (o.status >= 500 && !(o.code === "unimplemented" && CARDINALITY.test(o.message))) return `HTTP ${o.status} (${o.code})`;
  if (o.code === "unimplemented" && !CARDINALITY.test(o.message)) return `unimplemented: ${o.message}`;
  const echoed = o.message.indexOf(ECHO_MARKER);
  if (echoed >= 0) return `echoed a caller's string past 64 characters: …${o.message.slice(Math.max(0, echoed - 200), echoed + 70)}…`;
  if (o.bodyBytes > 64 * 1024) return `answered ${o.bodyBytes} bytes`;
  if (o.code === "invalid_argument") {
    const counted = /^(\d+) invalid fields?:/.exec(o.message);
    if (counted) {
      if (o.violations.length !== Number(counted[1])) return `lists ${counted[1]} violations in the message, ${o.violations.length} in the details`;
      const unnamed = o.violations.find((v) => !v.field && !v.rule.startsWith("message."));
      if (unnamed) return `violation ${unnamed.rule} has no field path`;
    } else if (!o.message) return "invalid_argument without a message";
  }
  return undefined;
}

/** The request as the failure report shows it: enough to replay it with curl. */
function describeRequest(r: RawRequest): string {
  const body = r.body ? Buffer.from(r.body) : Buffer.alloc(0);
  const shown = body.length > 300 ? `${body.subarray(0, 300).toString("base64")}… (${body.length} bytes)` : body.toString("base64");
  return `${r.protocol} ${r.method ?? "POST"} ${r.path.slice(0, 300)} headers=${JSON.stringify(r.headers).slice(0, 300)} body(base64)=${shown}`;
}

it(`answers every fuzzed request as a caller's error or a success, on every protocol (seed ${SEED})`, { timeout: 300_000 }, async () => {
  const heapBefore = heapAfterGc();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const codes = new Map<string, number>();
  let sent = 0;
  // fc.check rather than fc.assert: the report names the failing requests (shortened), not the whole batch.
  const details = await fc.check(
    fc.asyncProperty(fc.array(anyRequest, { minLength: BATCH, maxLength: BATCH }), async (batch) => {
      const problems = await Promise.all(
        batch.map(async (r) => {
          let o: Outcome;
          try {
            o = await send(api.baseUrl, r);
          } catch (err) {
            return `${describeRequest(r)}: no answer (${String(err)})`;
          }
          sent++;
          codes.set(`${r.protocol} ${o.code}`, (codes.get(`${r.protocol} ${o.code}`) ?? 0) + 1);
          const problem = problemWith(o);
          return problem && `${describeRequest(r)}: ${problem} — ${o.code} "${o.message.slice(0, 300)}"`;
        }),
      );
      const found = problems.filter(Boolean);
      if (found.length) throw new Error(found.join("\n"));
    }),
    // No shrinking: every step would replay a batch against the server; the failing requests are named.
    { seed: SEED, numRuns: RUNS, endOnFailure: true },
  );
  if (details.failed) {
    const reason = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
    throw new Error(`fuzz failed at run ${details.numRuns}; replay with FUZZ_SEED=${SEED} npx vitest run test/integration/fuzz.test.ts\n${reason}`);
  }
  // Enough requests got past parsing into validation and the handlers to mean something.
  const count = (pattern: RegExp) => [...codes].filter(([k]) => pattern.test(k)).reduce((n, [, c]) => n + c, 0);
  expect(sent).toBeGreaterThanOrEqual(RUNS * BATCH);
  for (const protocol of ["connect", "grpc", "grpc-web"]) {
    expect(count(new RegExp(`^${protocol} ok$`)), `${protocol} successes`).toBeGreaterThan(0);
    expect(count(new RegExp(`^${protocol} invalid_argument$`)), `${protocol} invalid_argument`).toBeGreaterThan(0);
  }
  expect(count(/ (not_found|unauthenticated|failed_precondition)$/)).toBeGreaterThan(0);

  // Still serving: a normal call over the generated client succeeds.
  expect((await api.jobs.list({})).jobs.length).toBeGreaterThan(0);
  expect((await fetch(`${api.baseUrl}/readyz`)).status).toBe(200);
  // Nothing was logged as an internal error (nor did the adapter report a failed handler).
  expect(logged.filter((l) => /internal error|handler for rpc|failed/.test(l))).toEqual([]);
  // The heap came back near where it started (after the server's connections went idle).
  closeRawSessions();
  const heapAfter = heapAfterGc();
  const grownMb = (heapAfter - heapBefore) / 2 ** 20;
  const cpu = process.cpuUsage(cpuBefore);
  console.log(`fuzz: seed ${SEED}, ${sent} requests in ${((performance.now() - started) / 1000).toFixed(1)} s (CPU of this process, server included: ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s), heap ${(heapBefore / 2 ** 20).toFixed(1)} -> ${(heapAfter / 2 ** 20).toFixed(1)} MiB; ${[...codes].sort().map(([k, n]) => `${k}: ${n}`).join(", ")}`);
  expect(grownMb, `heap grew ${grownMb.toFixed(1)} MiB`).toBeLessThan(48);
});
