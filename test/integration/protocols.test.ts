/**
 * Every caller the product promises, against one server port: curl (Connect JSON over HTTP/1.1
 * and h2c, unary and server-streaming), the generated clients over the Connect binary protocol,
 * gRPC and gRPC-Web, `buf curl`, and the health endpoints.
 */
import { execFile, spawn } from "node:child_process";
import { Agent, request as httpRequest } from "node:http";
import { gunzipSync, gzipSync } from "node:zlib";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Code, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { fromBinary } from "@bufbuild/protobuf";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { JobStatus, OutputType, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobService, WatchEvent } from "../../gen/rendition/v1/job_pb.js";
import { authHeaders, localJobRequest, startTestApi, type TestApi } from "../support/api-harness.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { connectError } from "../support/rpc.js";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BUF = join(REPO_ROOT, "node_modules/.bin/buf");

let database: TestDatabase;
let api: TestApi;

beforeAll(async () => {
  database = await createTestDatabase(inject("databaseUrl"));
  api = await startTestApi(database.url);
});
afterAll(async () => {
  await api?.close();
  await database?.drop();
});

// ---------------------------------------------------------------------------------------------
// Helpers

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a real binary; a non-zero exit is a result, not an exception. */
function run(file: string, args: string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd: options.cwd ?? REPO_ROOT, timeout: options.timeoutMs ?? 20_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code: unknown = err ? (err as { code?: unknown }).code : 0;
      // A spawn failure (ENOENT) or a timeout (killed, no exit code) is a test error.
      if (typeof code !== "number") return reject(err);
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

interface CurlResponse {
  status: number;
  httpVersion: string;
  contentType: string;
  body: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: any;
}

const WRITE_OUT_MARKER = "\n--curl-write-out--";

/** The real curl binary: POST JSON (or GET without a body) and report status, HTTP version, content type and body. */
async function curl(
  path: string,
  options: { body?: unknown; http2?: boolean; headers?: Record<string, string>; auth?: boolean } = {},
): Promise<CurlResponse> {
  const args = ["-sS", "--max-time", "15", "-w", `${WRITE_OUT_MARKER}%{http_code} %{http_version} %{content_type}`];
  if (options.http2) args.push("--http2-prior-knowledge");
  const headers: Record<string, string> = { ...(options.auth === false ? {} : bootstrapHeaders()), ...options.headers };
  if (options.body !== undefined) {
    args.push("-X", "POST", "-H", "Content-Type: application/json");
    args.push("--data-binary", typeof options.body === "string" ? options.body : JSON.stringify(options.body));
  }
  for (const [name, value] of Object.entries(headers)) args.push("-H", `${name}: ${value}`);
  args.push(`${api.baseUrl}${path}`);
  const result = await run("curl", args);
  expect(result.code, `curl failed: ${result.stderr}`).toBe(0);
  const at = result.stdout.lastIndexOf(WRITE_OUT_MARKER);
  const body = result.stdout.slice(0, at);
  const [status, httpVersion, ...contentType] = result.stdout.slice(at + WRITE_OUT_MARKER.length).split(" ");
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    json = undefined;
  }
  return { status: Number(status), httpVersion: httpVersion!, contentType: contentType.join(" "), body, json };
}

function bootstrapHeaders(): Record<string, string> {
  return { Authorization: `Bearer ${api.credentials.api_key}`, "X-Organization-ID": api.credentials.organization_id };
}

/** A valid JobService.Create body in the canonical (snake_case) JSON form. */
function createBodySnake(extra: Record<string, unknown> = {}) {
  return {
    input_origin_id: api.credentials.local_origin_id,
    input_path: "uploads/in.mp4",
    output_origin_id: api.credentials.local_origin_id,
    outputs: [{ type: "OUTPUT_TYPE_MP4", video: [{ codec: "VIDEO_CODEC_H264", resolution: "RESOLUTION_720P" }] }],
    ...extra,
  };
}

/** Asserts the canonical JSON shape of a freshly created job (snake_case, enum names, zero values spelled out). */
function expectCanonicalPendingJob(job: any) {
  expect(job.id).toMatch(/^job_[0-9a-z]{26}$/);
  expect(job.status).toBe("JOB_STATUS_PENDING");
  expect(job.priority).toBe("PRIORITY_STANDARD");
  // Zero values are present, not omitted.
  expect(job.progress).toBe(0);
  expect(job.error_code).toBe("");
  expect(job.error_message).toBe("");
  expect(job.total_estimated_cost).toBe("");
  expect(job.delayed_start).toBe(false);
  expect(job.metadata).toEqual({});
  expect(job.thumbnails).toEqual([]);
  // snake_case field names, never the camelCase JSON names.
  expect(job.output_origin).toEqual({ id: api.credentials.local_origin_id, name: "Local storage", provider: "ORIGIN_PROVIDER_LOCAL", path: "", bucket: "" });
  expect(job.input_origin).toMatchObject({ id: api.credentials.local_origin_id, provider: "ORIGIN_PROVIDER_LOCAL", path: "uploads/in.mp4" });
  for (const camel of ["outputOrigin", "inputOrigin", "errorCode", "createdAt", "delayedStart", "totalEstimatedCost"]) {
    expect(job).not.toHaveProperty(camel);
  }
  expect(job.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
  const [output] = job.outputs;
  expect(output.type).toBe("OUTPUT_TYPE_MP4");
  expect(output.status).toBe("OUTPUT_STATUS_PENDING");
  expect(output.video).toEqual([
    { codec: "VIDEO_CODEC_H264", resolution: "RESOLUTION_720P", quality: "QUALITY_STANDARD", framerate: 0, width: 0, height: 0, bitrate: 0 },
  ]);
  expect(output.progress).toBe(0);
  // int64 is a JSON string in the canonical mapping.
  expect(output.file_size_bytes).toBe("0");
  expect(output.path).toBe(`${job.id}/${output.id}.mp4`);
}

// ---------------------------------------------------------------------------------------------
// curl: the Connect protocol with JSON

describe("curl, Connect JSON over HTTP/1.1", () => {
  it("creates a job and answers canonical snake_case JSON with enum names and zero values", async () => {
    const res = await curl("/rendition.v1.JobService/Create", { body: createBodySnake() });
    expect(res.status, res.body).toBe(200);
    expect(res.httpVersion).toBe("1.1");
    expect(res.contentType).toMatch(/^application\/json/);
    expectCanonicalPendingJob(res.json.job);

    // The same job read back by id, over the same wire format.
    const got = await curl("/rendition.v1.JobService/Get", { body: { id: res.json.job.id } });
    expect(got.status).toBe(200);
    expect(got.json.job).toEqual(res.json.job);
  });

  it("accepts camelCase (JSON name) input as well, still answering snake_case", async () => {
    const res = await curl("/rendition.v1.JobService/Create", {
      body: {
        inputOriginId: api.credentials.local_origin_id,
        inputPath: "uploads/in.mp4",
        outputOriginId: api.credentials.local_origin_id,
        outputPathTemplate: "camel/{job_id}/{output_index}",
        delayedStart: true,
        idempotencyKey: "camel-case-1",
        outputs: [{ type: "OUTPUT_TYPE_MP4", video: [{ codec: "VIDEO_CODEC_H264", resolution: "RESOLUTION_720P" }] }],
      },
    });
    expect(res.status, res.body).toBe(200);
    const job = res.json.job;
    expect(job.delayed_start).toBe(true);
    expect(job.idempotency_key).toBe("camel-case-1");
    expect(job.input_origin.path).toBe("uploads/in.mp4");
    expect(job.outputs[0].path).toBe(`camel/${job.id}/0.mp4`);
    expect(job).not.toHaveProperty("delayedStart");
  });

  it("answers HTTP 400 invalid_argument naming all three invalid field paths", async () => {
    const res = await curl("/rendition.v1.JobService/Create", {
      body: createBodySnake({
        input_path: "", // 1. required with input_origin_id (cross-field rule)
        outputs: [{ type: "OUTPUT_TYPE_MP4", video: [{ resolution: "RESOLUTION_720P" }] }], // 2. codec is required
        idempotency_key: "k".repeat(129), // 3. at most 128 characters
      }),
    });
    expect(res.status).toBe(400);
    expect(res.contentType).toMatch(/^application\/json/);
    expect(res.json.code).toBe("invalid_argument");
    const paths = ["input_path", "outputs[0].video[0].codec", "idempotency_key"];
    for (const path of paths) expect(res.json.message).toContain(path);
    expect(res.json.message).toMatch(/^3 invalid fields/);

    const [detail] = res.json.details;
    expect(detail.type).toBe("buf.validate.Violations");
    const violations = fromBinary(ViolationsSchema, Buffer.from(detail.value, "base64")).violations;
    const named = violations.map((v) =>
      v.field!.elements.map((e) => e.fieldName + (e.subscript.case === "index" ? `[${e.subscript.value}]` : "")).join("."),
    );
    expect(named.sort()).toEqual([...paths].sort());
    expect(violations.map((v) => v.ruleId).sort()).toEqual(["job.input_path_required", "required", "string.max_len"]);
  });

  it("answers malformed JSON with invalid_argument, not a 500", async () => {
    const res = await curl("/rendition.v1.JobService/Create", { body: "{not json" });
    expect(res.status).toBe(400);
    expect(res.json.code).toBe("invalid_argument");
  });

  it("serves GET /healthz and GET /readyz with a JSON body", async () => {
    const health = await curl("/healthz", { auth: false });
    expect(health.status).toBe(200);
    expect(health.contentType).toMatch(/^application\/json/);
    expect(health.json).toEqual({ status: "ok" });
    const ready = await curl("/readyz", { auth: false });
    expect(ready.status).toBe(200);
    expect(ready.contentType).toMatch(/^application\/json/);
    expect(ready.json).toEqual({ status: "ok" });
  });

  it("streams Watch with application/connect+json envelopes: snapshot, completed, end of stream", async () => {
    const { job } = await api.jobs.create({
      inputOriginId: api.credentials.local_origin_id,
      inputPath: "uploads/in.mp4",
      outputOriginId: api.credentials.local_origin_id,
      outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264 }] }],
    });
    const payload = Buffer.from(JSON.stringify({ id: job!.id }));
    const envelope = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), payload]);
    envelope.writeUInt32BE(payload.length, 1);

    const args = ["-sS", "--no-buffer", "--max-time", "15", "-X", "POST", "-H", "Content-Type: application/connect+json"];
    for (const [name, value] of Object.entries(bootstrapHeaders())) args.push("-H", `${name}: ${value}`);
    args.push("--data-binary", "@-", "-D", "-", `${api.baseUrl}/rendition.v1.JobService/Watch`);
    const child = spawn("curl", args, { stdio: ["pipe", "pipe", "pipe"] });
    child.stdin.end(envelope);

    let out = Buffer.alloc(0);
    let stderr = "";
    let canceled: Promise<unknown> | undefined;
    child.stderr.on("data", (d: Buffer) => (stderr += String(d)));
    child.stdout.on("data", (chunk: Buffer) => {
      out = Buffer.concat([out, chunk]);
      // Once the snapshot envelope has arrived, cancel: the stream must then complete and end.
      if (!canceled && out.includes(Buffer.from("WATCH_EVENT_SNAPSHOT"))) canceled = api.jobs.cancel({ id: job!.id });
    });
    const exitCode = await new Promise<number | null>((resolve) => child.on("close", resolve));
    await canceled;
    expect(exitCode, stderr).toBe(0);

    const headerEnd = out.indexOf("\r\n\r\n");
    const head = out.subarray(0, headerEnd).toString();
    expect(head).toMatch(/^HTTP\/1\.1 200/);
    expect(head.toLowerCase()).toContain("content-type: application/connect+json");
    let rest = out.subarray(headerEnd + 4);
    const frames: Array<{ flags: number; json: any }> = [];
    while (rest.length >= 5) {
      const length = rest.readUInt32BE(1);
      frames.push({ flags: rest[0]!, json: JSON.parse(rest.subarray(5, 5 + length).toString()) });
      rest = rest.subarray(5 + length);
    }
    expect(rest.length).toBe(0);
    expect(frames.map((f) => [f.flags, f.json.event, f.json.job?.status])).toEqual([
      [0, "WATCH_EVENT_SNAPSHOT", "JOB_STATUS_PENDING"],
      [0, "WATCH_EVENT_COMPLETED", "JOB_STATUS_CANCELED"],
      [2, undefined, undefined], // end-of-stream frame
    ]);
    expect(frames[2]!.json.error).toBeUndefined();
    // Streamed messages use the same canonical JSON as unary answers.
    expect(frames[0]!.json.job.progress).toBe(0);
    expect(frames[0]!.json.job.output_origin.id).toBe(api.credentials.local_origin_id);
    expect(typeof frames[0]!.json.server_time).toBe("string");
  });
});

describe("curl, Connect JSON over h2c (HTTP/2 prior knowledge) on the same port", () => {
  it("creates a job over HTTP/2 with the same canonical JSON", async () => {
    const res = await curl("/rendition.v1.JobService/Create", { body: createBodySnake(), http2: true });
    expect(res.status, res.body).toBe(200);
    expect(res.httpVersion).toBe("2");
    expectCanonicalPendingJob(res.json.job);
  });

  it("answers errors with their HTTP status over HTTP/2 too", async () => {
    const res = await curl("/rendition.v1.JobService/Get", { body: { id: "job_missing" }, http2: true });
    expect(res.httpVersion).toBe("2");
    expect(res.status).toBe(404);
    expect(res.json.code).toBe("not_found");
  });

  it("serves /healthz and /readyz over HTTP/2", async () => {
    for (const path of ["/healthz", "/readyz"]) {
      const res = await curl(path, { auth: false, http2: true });
      expect(res.httpVersion).toBe("2");
      expect(res.status).toBe(200);
      expect(res.json).toEqual({ status: "ok" });
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Generated clients over every transport

/** Records the content types on the wire, to prove which protocol a transport really spoke. */
function wireRecorder() {
  const seen: Array<{ request: string | null; response: string | null }> = [];
  const interceptor: Interceptor = (next) => async (req) => {
    const entry = { request: req.header.get("content-type"), response: null as string | null };
    seen.push(entry);
    const res = await next(req);
    entry.response = res.header.get("content-type");
    return res;
  };
  return { seen, interceptor };
}

const TRANSPORTS: Array<{
  name: string;
  contentType: RegExp;
  make: (baseUrl: string, interceptors: Interceptor[]) => Transport;
}> = [
  {
    name: "Connect binary (HTTP/1.1)",
    contentType: /^application\/(connect\+)?proto$/,
    make: (baseUrl, interceptors) => createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true, interceptors }),
  },
  {
    name: "Connect JSON (h2c)",
    contentType: /^application\/(connect\+)?json$/,
    make: (baseUrl, interceptors) => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: false, interceptors }),
  },
  {
    name: "gRPC (h2c)",
    contentType: /^application\/grpc(\+proto)?$/,
    make: (baseUrl, interceptors) => createGrpcTransport({ baseUrl, interceptors }),
  },
  {
    name: "gRPC-Web (HTTP/1.1)",
    contentType: /^application\/grpc-web(\+proto)?$/,
    make: (baseUrl, interceptors) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors }),
  },
];

describe.each(TRANSPORTS)("generated client over $name", ({ make, contentType }) => {
  function client() {
    const wire = wireRecorder();
    const auth = { apiKey: api.credentials.api_key, organizationId: api.credentials.organization_id };
    const jobs = createClient(JobService, make(api.baseUrl, [wire.interceptor, authHeaders(auth)]));
    return { jobs, wire };
  }

  it("runs unary Create and Get", async () => {
    const { jobs, wire } = client();
    const { job } = await jobs.create({
      inputOriginId: api.credentials.local_origin_id,
      inputPath: "uploads/in.mp4",
      outputOriginId: api.credentials.local_origin_id,
      outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_1080P }] }],
      metadata: { via: "generated-client" },
    });
    expect(job!.status).toBe(JobStatus.PENDING);
    expect(job!.progress).toBe(0);
    expect(job!.metadata).toEqual({ via: "generated-client" });
    expect(job!.outputOrigin!.id).toBe(api.credentials.local_origin_id);

    const got = await jobs.get({ id: job!.id });
    expect(got.job!.id).toBe(job!.id);
    expect(got.job!.outputs[0]!.video[0]!.resolution).toBe(Resolution.RESOLUTION_1080P);

    expect(wire.seen.length).toBe(2);
    for (const { request, response } of wire.seen) {
      expect(request).toMatch(contentType);
      expect(response).toMatch(contentType);
    }
  });

  it("maps errors to codes (NOT_FOUND, INVALID_ARGUMENT with violation details)", async () => {
    const { jobs } = client();
    expect((await connectError(jobs.get({ id: "job_missing" }))).code).toBe(Code.NotFound);
    const invalid = await connectError(jobs.get({ id: "" }));
    expect(invalid.code).toBe(Code.InvalidArgument);
    const [violations] = invalid.findDetails(ViolationsSchema);
    expect(violations!.violations.map((v) => v.field!.elements[0]!.fieldName)).toEqual(["id"]);
  });

  it("streams Watch: SNAPSHOT, then COMPLETED after Cancel, then the stream ends", async () => {
    const { jobs, wire } = client();
    const { job } = await jobs.create({
      inputUrl: "https://example.com/in.mp4",
      outputOriginId: api.credentials.local_origin_id,
      outputs: [{ preset: "h264_1080p_standard" }],
    });
    const events: Array<[WatchEvent, JobStatus]> = [];
    for await (const message of jobs.watch({ id: job!.id })) {
      events.push([message.event, message.job!.status]);
      expect(message.serverTime).toBeDefined();
      expect(message.job!.id).toBe(job!.id);
      if (message.event === WatchEvent.SNAPSHOT) await jobs.cancel({ id: job!.id });
    }
    // The loop ends only because the server closed the stream after COMPLETED.
    expect(events).toEqual([
      [WatchEvent.SNAPSHOT, JobStatus.PENDING],
      [WatchEvent.COMPLETED, JobStatus.CANCELED],
    ]);
    // create, watch, cancel: all on the transport's protocol (Watch uses its streaming content type).
    expect(wire.seen.map(({ request }) => request)).toEqual([expect.stringMatching(contentType), expect.stringMatching(contentType), expect.stringMatching(contentType)]);
  });

  it("ends a Watch stream with NOT_FOUND for an unknown job", async () => {
    const { jobs } = client();
    const err = await connectError(
      (async () => {
        for await (const _ of jobs.watch({ id: "job_missing" })) void _;
      })(),
    );
    expect(err.code).toBe(Code.NotFound);
  });
});

// ---------------------------------------------------------------------------------------------
// buf curl

describe("buf curl with the repository's schema", () => {
  beforeAll(async () => {
    // buf.yaml's second module is buf/validate/validate.proto, printed offline from
    // @bufbuild/protovalidate into the git-ignored third_party/ (what `npm run proto:deps` does).
    if (!existsSync(join(REPO_ROOT, "third_party/protovalidate/buf/validate/validate.proto"))) {
      const printed = await run(process.execPath, ["--import", "tsx", "scripts/print-validate-proto.ts", "third_party/protovalidate"], { timeoutMs: 60_000 });
      expect(printed.code, printed.stderr).toBe(0);
    }
  });

  /** `buf curl --schema .` from the repository root (the buf.yaml workspace), no network needed. */
  function bufCurl(method: string, data: unknown, flags: string[], headers: Record<string, string> = bootstrapHeaders()) {
    const args = ["curl", "--schema", ".", ...flags, "--emit-defaults", "-d", JSON.stringify(data)];
    for (const [name, value] of Object.entries(headers)) args.push("-H", `${name}: ${value}`);
    args.push(`${api.baseUrl}/rendition.v1.JobService/${method}`);
    return run(BUF, args, { timeoutMs: 30_000 });
  }

  /** buf curl prints each message as indented JSON; a new message starts with `{` at column 0. */
  function jsonDocuments(stdout: string): any[] {
    return stdout
      .split(/\n(?=\{)/)
      .map((s) => s.trim())
      .filter(Boolean)
      .map((s) => JSON.parse(s));
  }

  const PROTOCOLS: Array<{ name: string; flags: string[] }> = [
    { name: "--protocol connect", flags: ["--protocol", "connect"] },
    { name: "--protocol grpcweb", flags: ["--protocol", "grpcweb"] },
    { name: "--protocol grpc --http2-prior-knowledge", flags: ["--protocol", "grpc", "--http2-prior-knowledge"] },
  ];

  describe.each(PROTOCOLS)("$name", ({ flags }) => {
    it("creates and gets a job with the auth headers given by -H", async () => {
      const created = await bufCurl("Create", createBodySnake({ metadata: { via: "buf-curl" } }), flags);
      expect(created.code, created.stderr + created.stdout).toBe(0);
      const [{ job }] = jsonDocuments(created.stdout);
      expect(job.status).toBe("JOB_STATUS_PENDING");
      expect(job.metadata).toEqual({ via: "buf-curl" });
      expect(job.outputOrigin.id).toBe(api.credentials.local_origin_id);

      const got = await bufCurl("Get", { id: job.id }, flags);
      expect(got.code, got.stderr + got.stdout).toBe(0);
      expect(jsonDocuments(got.stdout)[0].job.id).toBe(job.id);
    });

    it("exits with the RPC code (code << 3) and prints the error without credentials", async () => {
      const res = await bufCurl("Get", { id: "job_x" }, flags, {});
      expect(res.code).toBe(Code.Unauthenticated << 3);
      const [error] = jsonDocuments(res.stdout + res.stderr);
      expect(error.code).toBe("unauthenticated");
    });

    it("streams Watch of a finished job: snapshot, completed, exit 0", async () => {
      const { job } = await api.jobs.create({
        inputUrl: "https://example.com/in.mp4",
        outputOriginId: api.credentials.local_origin_id,
        outputs: [{ preset: "h264_720p_economy" }],
      });
      await api.jobs.cancel({ id: job!.id });
      const res = await bufCurl("Watch", { id: job!.id }, flags);
      expect(res.code, res.stderr + res.stdout).toBe(0);
      expect(jsonDocuments(res.stdout).map((m) => [m.event, m.job.status])).toEqual([
        ["WATCH_EVENT_SNAPSHOT", "JOB_STATUS_CANCELED"],
        ["WATCH_EVENT_COMPLETED", "JOB_STATUS_CANCELED"],
      ]);
    });
  });
});

describe("oversized requests", () => {
  /** POSTs raw bytes with node:http (curl would need a temp file for binary gzip data). */
  function post(body: Buffer, headers: Record<string, string>): Promise<{ status: number; json: any }> {
    return new Promise((resolve, reject) => {
      const req = httpRequest(`${api.baseUrl}/rendition.v1.JobService/Get`, { method: "POST", headers: { "content-type": "application/json", ...headers } }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString("utf8")) }));
      });
      req.on("error", reject);
      req.end(body);
    });
  }

  it("closes the connection after refusing a body it did not read, so the next call on a keep-alive agent is answered", async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const send = (body: string, chunked: boolean) =>
      new Promise<number>((resolve, reject) => {
        const req = httpRequest(`${api.baseUrl}/rendition.v1.JobService/Get`, {
          method: "POST",
          agent,
          headers: { "content-type": "application/json", ...(chunked ? { "transfer-encoding": "chunked" } : {}) },
          signal: AbortSignal.timeout(15_000),
        }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        });
        req.on("error", reject);
        // Chunked, in pieces: the server answers while most of the body is still unread.
        const piece = "x".repeat(64 * 1024);
        if (chunked) {
          req.write(`{"id":"`);
          for (let i = 0; i < 32; i++) req.write(piece);
          req.end(`"}`);
        } else req.end(body);
      });
    try {
      expect(await send("", true)).toBe(429);
      // Before the fix this call went out on the stalled connection and hung for 65 s.
      expect(await send('{"id":"job_x"}', false)).toBe(401);
    } finally {
      agent.destroy();
    }
  });

  it("refuses a body over 1 MiB, and a gzip body that inflates past it, before authentication", async () => {
    const plain = await post(Buffer.from(`{"id":"${"x".repeat(2 * 1024 * 1024)}"}`), {});
    expect(plain.status).toBe(429);
    expect(plain.json.code).toBe("resource_exhausted");
    // 64 MiB of whitespace compresses to about 64 KB: it must not be inflated whole.
    const bomb = gzipSync(Buffer.concat([Buffer.from('{"id":"x"'), Buffer.alloc(64 * 1024 * 1024, 0x20), Buffer.from("}")]));
    expect(bomb.length).toBeLessThan(100 * 1024);
    const inflated = await post(bomb, { "content-encoding": "gzip" });
    expect(inflated.status).toBe(429);
    expect(inflated.json).toMatchObject({ code: "resource_exhausted", message: expect.stringContaining("after decompression") });
  });
});

describe("response compression", () => {
  /** POSTs JSON with `Accept-Encoding: gzip` and returns the answer's encoding and its body, inflated. */
  function post(path: string, body: unknown): Promise<{ status: number; encoding: string | undefined; json: any }> {
    return new Promise((resolve, reject) => {
      const headers = { "content-type": "application/json", "accept-encoding": "gzip", ...bootstrapHeaders() };
      const req = httpRequest(`${api.baseUrl}${path}`, { method: "POST", headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const raw = Buffer.concat(chunks);
          const encoding = res.headers["content-encoding"];
          resolve({ status: res.statusCode ?? 0, encoding, json: JSON.parse((encoding === "gzip" ? gunzipSync(raw) : raw).toString("utf8")) });
        });
      });
      req.on("error", reject);
      req.end(JSON.stringify(body));
    });
  }

  it("sends a small answer (one job) uncompressed and a large one (a list of jobs over 16 KiB) gzipped, to a client that accepts gzip", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 15; i++) ids.push((await api.jobs.create(localJobRequest(api))).job!.id);
    const one = await post("/rendition.v1.JobService/Get", { id: ids[0] });
    expect(one.status).toBe(200);
    expect(one.encoding).toBeUndefined();
    expect(one.json.job.id).toBe(ids[0]);
    const many = await post("/rendition.v1.JobService/List", { pagination: { limit: 100 } });
    expect(many.status).toBe(200);
    expect(many.encoding).toBe("gzip");
    expect(many.json.jobs.map((j: { id: string }) => j.id)).toEqual(expect.arrayContaining(ids));
  });
});
