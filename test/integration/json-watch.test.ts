/**
 * The reference's own calls: Watch with plain `Content-Type: application/json` (curl) answers
 * newline-delimited JSON, and JSON requests take the reference's lower-case enum spellings.
 * A real server with the in-process worker (embedded queue), real ffmpeg, real PostgreSQL.
 */
import { request as httpRequest, type ClientRequest, type IncomingMessage } from "node:http";
import http2 from "node:http2";
import { mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { JobStatus, OutputType, Quality, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import type { Job } from "../../gen/rendition/v1/job_pb.js";
import { startTestApi, type TestApi } from "../support/api-harness.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { generateClip } from "../support/media.js";

let database: TestDatabase;
let api: TestApi;
const tmp = join(tmpdir(), `rendition-json-watch-test-${process.pid}`);

beforeAll(async () => {
  mkdirSync(tmp, { recursive: true });
  database = await createTestDatabase(inject("databaseUrl"));
  api = await startTestApi(database.url, { RENDITION_TMP_DIR: tmp }, { worker: true });
  await generateClip(join(api.config.dataDir, "storage/in/clip.mp4"), { durationS: 2, width: 320, height: 240, fps: 25, audio: true });
}, 120_000);

afterAll(async () => {
  await api?.close();
  await database?.drop();
  rmSync(tmp, { recursive: true, force: true });
});

/** Exactly the reference's curl headers (no Connect-Protocol-Version). */
function referenceHeaders(): Record<string, string> {
  return {
    Authorization: `Bearer ${api.credentials.api_key}`,
    "X-Organization-ID": api.credentials.organization_id,
    "Content-Type": "application/json",
  };
}

interface Answer {
  status: number;
  headers: IncomingMessage["headers"];
  body: string;
}

function post(method: string, body: string | Buffer, headers: Record<string, string> = referenceHeaders()): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${api.baseUrl}/rendition.v1.JobService/${method}`, { method: "POST", headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** Every line of an NDJSON body, parsed; the body must end with a newline. */
function ndjson(body: string): any[] {
  expect(body.endsWith("\n")).toBe(true);
  return body.slice(0, -1).split("\n").map((line) => JSON.parse(line));
}

/** Object keys anywhere in a JSON value that are not snake_case. */
function nonSnakeKeys(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(nonSnakeKeys);
  if (value === null || typeof value !== "object") return [];
  return Object.entries(value).flatMap(([key, v]) => [...(/^[a-z0-9_]+$/.test(key) ? [] : [key]), ...nonSnakeKeys(v)]);
}

async function waitFor(id: string, done: (job: Job) => boolean): Promise<Job> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const { job } = await api.jobs.get({ id });
    if (done(job!)) return job!;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${JobStatus[job!.status]}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function createRequest(overrides: Record<string, unknown> = {}) {
  return {
    input_origin_id: api.credentials.local_origin_id,
    input_path: "in/clip.mp4",
    output_origin_id: api.credentials.local_origin_id,
    outputs: [{ type: "mp4", video: [{ codec: "h264", resolution: "720p", quality: "economy" }] }],
    priority: "standard",
    ...overrides,
  };
}

let completedJobId = "";

describe("Watch with plain application/json (the reference's curl)", () => {
  it("streams NDJSON lines {result: …} from the snapshot to the completed job, snake_case, then ends", async () => {
    const { job } = await api.jobs.create({
      inputOriginId: api.credentials.local_origin_id,
      inputPath: "in/clip.mp4",
      outputOriginId: api.credentials.local_origin_id,
      outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 144, quality: Quality.ECONOMY }] }],
    });
    completedJobId = job!.id;
    const answer = await post("Watch", JSON.stringify({ id: job!.id }));
    expect(answer.status).toBe(200);
    expect(answer.headers["content-type"]).toBe("application/x-ndjson");
    expect(answer.headers["transfer-encoding"]).toBe("chunked");
    const lines = ndjson(answer.body);
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const line of lines) {
      expect(Object.keys(line)).toEqual(["result"]);
      expect(Object.keys(line.result).sort()).toEqual(["event", "job", "server_time"]);
      expect(line.result.job.id).toBe(job!.id);
      expect(line.result.server_time).toMatch(/^\d{4}-\d\d-\d\dT/);
      expect(nonSnakeKeys(line)).toEqual([]);
    }
    expect(lines[0].result.event).toBe("WATCH_EVENT_SNAPSHOT");
    const last = lines.at(-1).result;
    expect(last.event).toBe("WATCH_EVENT_COMPLETED");
    expect(last.job).toMatchObject({ status: "JOB_STATUS_COMPLETED", progress: 100, error_code: "" });
    expect(last.job.outputs[0]).toMatchObject({ status: "OUTPUT_STATUS_COMPLETED", output_url: expect.stringMatching(/^file:\/\//) });
    expect(lines.slice(0, -1).map((l) => l.result.event)).not.toContain("WATCH_EVENT_COMPLETED");
  }, 120_000);

  it("streams over h2c too, and takes a gzip-compressed request body", async () => {
    const session = http2.connect(api.baseUrl);
    try {
      const body = await new Promise<{ status: number; contentType: string; text: string }>((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": "/rendition.v1.JobService/Watch", ...lowerCase(referenceHeaders()), "content-encoding": "gzip" });
        let status = 0;
        let contentType = "";
        const chunks: Buffer[] = [];
        stream.on("response", (headers) => {
          status = Number(headers[":status"]);
          contentType = String(headers["content-type"]);
        });
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () => resolve({ status, contentType, text: Buffer.concat(chunks).toString("utf8") }));
        stream.on("error", reject);
        stream.end(gzipSync(JSON.stringify({ id: completedJobId })));
      });
      expect(body.status).toBe(200);
      expect(body.contentType).toBe("application/x-ndjson");
      expect(ndjson(body.text).map((l) => [l.result.event, l.result.job.status])).toEqual([
        ["WATCH_EVENT_SNAPSHOT", "JOB_STATUS_COMPLETED"],
        ["WATCH_EVENT_COMPLETED", "JOB_STATUS_COMPLETED"],
      ]);
    } finally {
      session.close();
    }
  });

  it("answers errors before the stream as Connect unary JSON errors with their HTTP status", async () => {
    const { Authorization: _, ...noKey } = referenceHeaders();
    const unauthenticated = await post("Watch", JSON.stringify({ id: completedJobId }), noKey);
    expect(unauthenticated.status).toBe(401);
    expect(unauthenticated.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(unauthenticated.body)).toMatchObject({ code: "unauthenticated", message: expect.stringContaining("missing API key") });

    const otherOrganization = await post("Watch", JSON.stringify({ id: completedJobId }), { ...referenceHeaders(), "X-Organization-ID": "org_someone_else" });
    expect(otherOrganization.status).toBe(403);
    expect(JSON.parse(otherOrganization.body).code).toBe("permission_denied");

    const notFound = await post("Watch", JSON.stringify({ id: "job_does_not_exist" }));
    expect(notFound.status).toBe(404);
    expect(notFound.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(notFound.body)).toEqual({ code: "not_found", message: "job job_does_not_exist not found" });

    const invalid = await post("Watch", JSON.stringify({ id: "" }));
    expect(invalid.status).toBe(400);
    const error = JSON.parse(invalid.body);
    expect(error.code).toBe("invalid_argument");
    expect(error.details[0].type).toBe("buf.validate.Violations");
    expect(error.details[0].debug.violations[0]).toMatchObject({ rule_id: "string.min_len", field: { elements: [{ field_name: "id" }] } });

    const unknownField = await post("Watch", JSON.stringify({ id: completedJobId, idd: 1 }));
    expect(unknownField.status).toBe(400);
    expect(JSON.parse(unknownField.body).message).toContain('key "idd" is unknown');

    const oversized = await post("Watch", `{"id":"${"x".repeat(2 * 1024 * 1024)}"}`);
    expect(oversized.status).toBe(429);
    expect(JSON.parse(oversized.body).code).toBe("resource_exhausted");
    // Refused without reading the body: the keep-alive connection still answers the next call.
    expect((await post("Watch", JSON.stringify({ id: "job_does_not_exist" }))).status).toBe(404);
  });

  it("stops the watch when the client disconnects mid-stream", async () => {
    // delayed_start parks the job in awaiting_confirmation: its Watch stays open.
    const { job } = await api.jobs.create({
      inputOriginId: api.credentials.local_origin_id,
      inputPath: "in/clip.mp4",
      outputOriginId: api.credentials.local_origin_id,
      outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 144 }] }],
      delayedStart: true,
    });
    await waitFor(job!.id, (j) => j.status === JobStatus.AWAITING_CONFIRMATION);

    // Count the event-bus subscriptions Watch holds for this job.
    const events = api.app.events;
    const subscribe = events.subscribe.bind(events);
    let active = 0;
    events.subscribe = async (jobId, handler) => {
      const unsubscribe = await subscribe(jobId, handler);
      if (jobId !== job!.id) return unsubscribe;
      active++;
      return () => {
        active--;
        unsubscribe();
      };
    };
    try {
      let req: ClientRequest | undefined;
      const firstLine = await new Promise<string>((resolve, reject) => {
        req = httpRequest(`${api.baseUrl}/rendition.v1.JobService/Watch`, { method: "POST", headers: referenceHeaders() }, (res) => {
          let text = "";
          res.on("data", (c: Buffer) => {
            text += c.toString("utf8");
            if (text.includes("\n")) resolve(text.slice(0, text.indexOf("\n")));
          });
          res.on("error", () => {});
        });
        req.on("error", () => {});
        req.end(JSON.stringify({ id: job!.id }));
        setTimeout(() => reject(new Error("no first line")), 30_000).unref();
      });
      // The snapshot was flushed on its own, while the stream stays open.
      expect(JSON.parse(firstLine).result).toMatchObject({ event: "WATCH_EVENT_SNAPSHOT", job: { status: "JOB_STATUS_AWAITING_CONFIRMATION" } });
      expect(active).toBe(1);

      req!.destroy();
      const deadline = Date.now() + 15_000;
      while (active > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(active, "the Watch still holds its subscription after the client left").toBe(0);
    } finally {
      events.subscribe = subscribe;
    }
  }, 120_000);
});

describe("lower-case enum spellings on JSON input", () => {
  it("creates a job from the reference's spellings and answers the canonical names", async () => {
    const answer = await post("Create", JSON.stringify(createRequest()));
    expect(answer.status, answer.body).toBe(200);
    const { job } = JSON.parse(answer.body);
    expect(job.priority).toBe("PRIORITY_STANDARD");
    expect(job.outputs[0].type).toBe("OUTPUT_TYPE_MP4");
    expect(job.outputs[0].video[0]).toMatchObject({ codec: "VIDEO_CODEC_H264", resolution: "RESOLUTION_720P", quality: "QUALITY_ECONOMY" });
    // The same request in camelCase JSON names takes them too.
    const camel = await post("Create", JSON.stringify({ inputOriginId: api.credentials.local_origin_id, inputPath: "in/clip.mp4", outputOriginId: api.credentials.local_origin_id, outputs: [{ type: "webm", video: [{ codec: "vp9", height: 144 }] }], priority: "economy" }));
    expect(camel.status, camel.body).toBe(200);
    expect(JSON.parse(camel.body).job).toMatchObject({ priority: "PRIORITY_ECONOMY", outputs: [{ type: "OUTPUT_TYPE_WEBM" }] });
  });

  it("filters List by a lower-case status", async () => {
    const processing = await post("List", JSON.stringify({ status: "processing", pagination: { limit: 20 } }));
    expect(processing.status, processing.body).toBe(200);
    expect(JSON.parse(processing.body).jobs.every((j: any) => j.status === "JOB_STATUS_PROCESSING")).toBe(true);
    const completed = await post("List", JSON.stringify({ status: "completed" }));
    const jobs = JSON.parse(completed.body).jobs;
    expect(jobs.map((j: any) => j.id)).toContain(completedJobId);
    expect(jobs.every((j: any) => j.status === "JOB_STATUS_COMPLETED")).toBe(true);
  });

  it("refuses a wrong spelling with invalid_argument naming every such field", async () => {
    const answer = await post("Create", JSON.stringify(createRequest({ outputs: [{ type: "mp5", video: [{ codec: "H264", resolution: "720p" }] }] })));
    expect(answer.status).toBe(400);
    const error = JSON.parse(answer.body);
    expect(error.code).toBe("invalid_argument");
    expect(error.message).toMatch(/^2 invalid fields: outputs\[0\]\.type: unknown value "mp5" for rendition\.v1\.OutputType; expected one of mp4, webm/);
    expect(error.details[0].debug.violations.map((v: any) => v.field.elements.map((e: any) => e.field_name + (e.index ? `[${e.index}]` : "")).join("."))).toEqual([
      "outputs[0].type",
      "outputs[0].video[0].codec",
    ]);
  });
});

function lowerCase(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
}
