/**
 * Regression tests for the input defects of issue 9, each on a real server over PostgreSQL and
 * on every protocol that can carry it: a body that does not decode answers invalid_argument (not
 * internal), JSON must be UTF-8, strings must be text PostgreSQL can store, and Create reports
 * its schema violations before (and together with) what only the database knows, without
 * echoing a caller's long id.
 */
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { Priority } from "../../gen/rendition/v1/common_pb.js";
import { JobServiceGetRequestSchema, JobServiceWatchRequestSchema } from "../../gen/rendition/v1/job_pb.js";
import { localJobRequest, startTestApi, type TestApi } from "../support/api-harness.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { closeRawSessions, envelope, send, type Outcome, type Protocol, type RawRequest } from "../support/raw-rpc.js";
import { connectError, violationsOf } from "../support/rpc.js";

let database: TestDatabase;
let api: TestApi;
let auth: Record<string, string>;
const logged: string[] = [];

beforeAll(async () => {
  // The harness's server logs with console.error: an internal error would show here.
  vi.spyOn(console, "error").mockImplementation((...args: unknown[]) => void logged.push(args.map(String).join(" ")));
  database = await createTestDatabase(inject("databaseUrl"));
  api = await startTestApi(database.url);
  auth = { authorization: `Bearer ${api.credentials.api_key}`, "x-organization-id": api.credentials.organization_id };
});
afterAll(async () => {
  closeRawSessions();
  await api?.close();
  await database?.drop();
});

const GET = "/rendition.v1.JobService/Get";
const WATCH = "/rendition.v1.JobService/Watch";

/** `body` as a unary binary request of each protocol (Connect unary, gRPC, gRPC-Web). */
function binaryRequests(path: string, body: Uint8Array, headers: Record<string, string> = auth): RawRequest[] {
  return [
    { protocol: "connect", path, headers: { ...headers, "content-type": "application/proto" }, body },
    { protocol: "grpc", path, headers: { ...headers, "content-type": "application/grpc" }, body: envelope(body) },
    { protocol: "grpc-web", path, headers: { ...headers, "content-type": "application/grpc-web+proto" }, body: envelope(body) },
  ];
}

function jsonRequests(path: string, body: Uint8Array, headers: Record<string, string> = auth): RawRequest[] {
  return [
    { protocol: "connect", path, headers: { ...headers, "content-type": "application/json" }, body },
    { protocol: "grpc", path, headers: { ...headers, "content-type": "application/grpc+json" }, body: envelope(body) },
    { protocol: "grpc-web", path, headers: { ...headers, "content-type": "application/grpc-web+json" }, body: envelope(body) },
  ];
}

async function outcomes(requests: RawRequest[]): Promise<Array<Outcome & { protocol: Protocol }>> {
  return Promise.all(requests.map(async (r) => ({ protocol: r.protocol, ...(await send(api.baseUrl, r)) })));
}

/** A valid JobServiceGetRequest, then the same cut short, bit-flipped … */
const validGet = toBinary(JobServiceGetRequestSchema, create(JobServiceGetRequestSchema, { id: "job_does_not_exist" }));
/** 200 nested groups of an unknown field 15 (tag 0x7b, end 0x7c): past protobuf-es's recursion limit of 100. */
const deepGroups = Buffer.concat([Buffer.alloc(200, 0x7b), Buffer.alloc(200, 0x7c)]);

describe("a protobuf body that does not decode", () => {
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ["a length prefix longer than the body", Buffer.from([0x0a, 0x05, 0x61, 0x62]), /premature EOF/],
    ["a truncated valid message", validGet.subarray(0, validGet.length - 3), /premature EOF/],
    ["an invalid wire type", Buffer.from([0x0f, 0x01]), /parse binary/],
    ["nested groups past the recursion limit", deepGroups, /recursion depth/],
    ["invalid UTF-8 in a string field", Buffer.from([0x0a, 0x03, 0x61, 0xff, 0x62]), /parse binary/],
  ];
  it.each(cases)("%s: invalid_argument (HTTP 400 / grpc-status 3) on Connect, gRPC and gRPC-Web, before auth too", async (_name, body, message) => {
    for (const headers of [auth, {}]) {
      for (const o of await outcomes(binaryRequests(GET, body, headers))) {
        expect(o, o.protocol).toMatchObject({ code: "invalid_argument", status: o.protocol === "connect" ? 400 : 200 });
        expect(o.message).toMatch(message);
      }
    }
  });

  it("a bit-flipped message never answers internal or unknown (single-bit flips of a Get)", async () => {
    const seen = new Set<string>();
    // Every bit of the tag, the length and the first character; the lowest bit of each later byte.
    const bits = [...Array.from({ length: 24 }, (_, bit) => bit), ...Array.from({ length: validGet.length - 3 }, (_, i) => (i + 3) * 8)];
    for (let from = 0; from < bits.length; from += 16) {
      await Promise.all(
        bits.slice(from, from + 16).map(async (bit) => {
          const flipped = Buffer.from(validGet);
          flipped[bit >> 3]! ^= 1 << (bit & 7);
          for (const o of await outcomes(binaryRequests(GET, flipped))) {
            expect(["invalid_argument", "not_found"], `${o.protocol} bit ${bit}: ${o.code} ${o.message}`).toContain(o.code);
            seen.add(o.code);
          }
        }),
      );
    }
    expect([...seen].sort()).toEqual(["invalid_argument", "not_found"]);
  });

  it("a frame flagged compressed without a compression header is invalid_argument (gRPC, gRPC-Web)", async () => {
    for (const [protocol, contentType] of [["grpc", "application/grpc"], ["grpc-web", "application/grpc-web+proto"]] as const) {
      const o = await send(api.baseUrl, { protocol, path: GET, headers: { ...auth, "content-type": contentType }, body: envelope(validGet, 1) });
      expect(o, protocol).toMatchObject({ code: "invalid_argument", message: "received compressed envelope, but do not know how to decompress" });
    }
  });

  it("a gzip body cut short (Connect's `internal` \"decompression failed\") is invalid_argument, unary and streaming", async () => {
    const cut = gzipSync(Buffer.from('{"id":"job_x"}')).subarray(0, 12);
    const unary = await send(api.baseUrl, { protocol: "connect", path: GET, headers: { ...auth, "content-type": "application/json", "content-encoding": "gzip" }, body: cut });
    expect(unary).toMatchObject({ status: 400, code: "invalid_argument", message: "decompression failed" });
    const grpc = await send(api.baseUrl, { protocol: "grpc", path: WATCH, headers: { ...auth, "content-type": "application/grpc+json", "grpc-encoding": "gzip" }, body: envelope(cut, 1) });
    expect(grpc).toMatchObject({ code: "invalid_argument", message: "decompression failed" });
  });

  it("Watch (server streaming) answers invalid_argument on Connect, gRPC and gRPC-Web", async () => {
    const body = Buffer.from([0x0a, 0x05, 0x61, 0x62]);
    for (const [protocol, contentType] of [
      ["connect", "application/connect+proto"],
      ["grpc", "application/grpc"],
      ["grpc-web", "application/grpc-web+proto"],
    ] as const) {
      const o = await send(api.baseUrl, { protocol, path: WATCH, headers: { ...auth, "content-type": contentType }, body: envelope(body) });
      expect(o, protocol).toMatchObject({ code: "invalid_argument", message: "parse binary: premature EOF" });
    }
  });

  it("a Connect GET with a message that is not base64 is invalid_argument, and a valid one still works", async () => {
    const bad = await send(api.baseUrl, { protocol: "connect", method: "GET", path: `${GET}?encoding=proto&base64=1&message=%25%25%25%25`, headers: auth });
    expect(bad).toMatchObject({ status: 400, code: "invalid_argument" });
    expect(bad.message).toMatch(/base64/);
    const job = await api.jobs.create(localJobRequest(api));
    const message = Buffer.from(toBinary(JobServiceGetRequestSchema, create(JobServiceGetRequestSchema, { id: job.job!.id }))).toString("base64url");
    const good = await send(api.baseUrl, { protocol: "connect", method: "GET", path: `${GET}?encoding=proto&base64=1&message=${message}`, headers: auth });
    expect(good).toMatchObject({ status: 200, code: "ok" });
  });

  it("a valid binary Get still answers (not_found for an unknown job, the job for a known one)", async () => {
    for (const o of await outcomes(binaryRequests(GET, validGet))) expect(o, o.protocol).toMatchObject({ code: "not_found", message: "job job_does_not_exist not found" });
    const watch = toBinary(JobServiceWatchRequestSchema, create(JobServiceWatchRequestSchema, { id: (await api.jobs.create(localJobRequest(api))).job!.id }));
    const o = await send(api.baseUrl, { protocol: "grpc", path: WATCH, headers: { ...auth, "content-type": "application/grpc" }, body: envelope(watch) });
    expect(o).toMatchObject({ code: "ok", messages: 1 });
  });
});

describe("JSON must be UTF-8", () => {
  const invalid = Buffer.from('{"id":"a\xffb"}', "latin1");

  it("invalid UTF-8 in a JSON body is invalid_argument on Connect unary, gRPC and gRPC-Web JSON", async () => {
    for (const o of await outcomes(jsonRequests(GET, invalid))) {
      expect(o, o.protocol).toMatchObject({ code: "invalid_argument", message: "the request body is not valid UTF-8 (JSON must be UTF-8)" });
    }
  });

  it("… on Connect streaming JSON and the plain-JSON (NDJSON) Watch", async () => {
    const streaming = await send(api.baseUrl, { protocol: "connect", path: WATCH, headers: { ...auth, "content-type": "application/connect+json" }, body: envelope(invalid) });
    expect(streaming).toMatchObject({ code: "invalid_argument", message: "the request body is not valid UTF-8 (JSON must be UTF-8)" });
    const plain = await send(api.baseUrl, { protocol: "connect", path: WATCH, headers: { ...auth, "content-type": "application/json" }, body: invalid });
    expect(plain).toMatchObject({ status: 400, code: "invalid_argument", message: "the request body is not valid UTF-8 (JSON must be UTF-8)" });
  });

  it("… and in a Connect GET's message parameter (percent-encoded, or base64)", async () => {
    const percent = await send(api.baseUrl, { protocol: "connect", method: "GET", path: `${GET}?encoding=json&message=%7B%22id%22%3A%22a%FFb%22%7D`, headers: auth });
    expect(percent).toMatchObject({ status: 400, code: "invalid_argument" });
    expect(percent.message).toMatch(/UTF-8/);
    const base64 = await send(api.baseUrl, { protocol: "connect", method: "GET", path: `${GET}?encoding=json&base64=1&message=${invalid.toString("base64url")}`, headers: auth });
    expect(base64).toMatchObject({ status: 400, code: "invalid_argument", message: "the request body is not valid UTF-8 (JSON must be UTF-8)" });
  });

  it("valid UTF-8 beyond ASCII is read as sent", async () => {
    const o = await send(api.baseUrl, { protocol: "connect", path: GET, headers: { ...auth, "content-type": "application/json" }, body: Buffer.from('{"id":"jöb_🎬"}') });
    expect(o).toMatchObject({ code: "not_found", message: "job jöb_🎬 not found" });
  });
});

describe("strings are text PostgreSQL can store", () => {
  it("a NUL character is a violation of its field (it used to reach PostgreSQL and answer internal)", async () => {
    const o = await send(api.baseUrl, { protocol: "connect", path: GET, headers: { ...auth, "content-type": "application/json" }, body: Buffer.from('{"id":"a\\u0000b"}') });
    expect(o).toMatchObject({ status: 400, code: "invalid_argument", violations: [{ field: "id", rule: "string.no_nul" }] });
    const err = await connectError(api.jobs.create(localJobRequest(api, { metadata: { "k\u0000": "v", ok: "a\u0000" } })));
    expect(violationsOf(err).map((v) => v.rule)).toEqual(["string.no_nul", "string.no_nul"]);
    expect(err.message).toContain('metadata["k\\u0000"]: key must not contain the NUL character');
  });

  it("an unpaired surrogate escape in JSON is refused, naming the field; a pair is one character", async () => {
    const o = await send(api.baseUrl, { protocol: "connect", path: GET, headers: { ...auth, "content-type": "application/json" }, body: Buffer.from('{"id":"a\\ud800b"}') });
    expect(o).toMatchObject({ status: 400, code: "invalid_argument" });
    expect(o.message).toMatch(/JobServiceGetRequest\.id .*invalid UTF8/);
    const pair = await send(api.baseUrl, { protocol: "connect", path: GET, headers: { ...auth, "content-type": "application/json" }, body: Buffer.from('{"id":"a\\ud83c\\udfacb"}') });
    expect(pair).toMatchObject({ code: "not_found", message: "job a🎬b not found" });
  });
});

describe("Create: schema violations first, all of them; ids echoed capped", () => {
  it("a 65-character unknown origin id is a max_len violation listed with the request's others, not not_found", async () => {
    const long = "o".repeat(65);
    const err = await connectError(api.jobs.create(localJobRequest(api, { inputOriginId: long, outputOriginId: long, priority: 99 as Priority })));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(violationsOf(err).map((v) => `${v.field} ${v.rule}`)).toEqual(["input_origin_id string.max_len", "output_origin_id string.max_len", "priority enum.defined_only"]);
    expect(err.message).not.toContain(long);
  });

  it("a 100 KB origin id answers a short invalid_argument (the id is not echoed)", async () => {
    const huge = "o".repeat(100_000);
    const o = await send(api.baseUrl, {
      protocol: "connect",
      path: "/rendition.v1.JobService/Create",
      headers: { ...auth, "content-type": "application/json" },
      body: Buffer.from(JSON.stringify({ input_origin_id: huge, input_path: "in.mp4", output_origin_id: huge, outputs: [{ type: "mp4", video: [{ codec: "h264" }] }] })),
    });
    expect(o).toMatchObject({ status: 400, code: "invalid_argument" });
    expect(o.violations.map((v) => v.field)).toEqual(["input_origin_id", "output_origin_id"]);
    expect(o.bodyBytes).toBeLessThan(2_000);
  });

  it("an unknown (valid) origin id next to other violations is one more violation (origin.not_found)", async () => {
    const err = await connectError(api.jobs.create(localJobRequest(api, { inputOriginId: "ori_unknown", priority: 99 as Priority })));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(violationsOf(err).map((v) => `${v.field} ${v.rule}`)).toEqual(["priority enum.defined_only", "input_origin_id origin.not_found"]);
  });

  it("an unknown origin in an otherwise valid request is still not_found", async () => {
    const err = await connectError(api.jobs.create(localJobRequest(api, { outputOriginId: "ori_unknown" })));
    expect(err.code).toBe(Code.NotFound);
    expect(err.rawMessage).toBe("origin ori_unknown not found");
  });

  it("a preset reference longer than the schema allows is not looked up nor echoed", async () => {
    const long = "p".repeat(5_000);
    const err = await connectError(api.jobs.create(localJobRequest(api, { outputs: [{ preset: long }] })));
    expect(violationsOf(err).map((v) => `${v.field} ${v.rule}`)).toEqual(["outputs[0].preset string.max_len"]);
    expect(err.message).not.toContain("p".repeat(65));
  });
});

it("none of the above logged an internal error", () => {
  expect(logged).toEqual([]);
});
