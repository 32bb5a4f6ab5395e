/**
 * The log seam on pino: JSON lines with the level as a word, the fields of the work running
 * (request id, job, organization, worker) merged in from the async context, errors serialized,
 * levels filtered. And the request-log interceptor: a request id per RPC (the caller's or a new
 * one), answered in x-request-id, on every line the call writes, and one line per RPC naming the
 * method, code and duration.
 */
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { JobService, JobServiceGetResponseSchema, JobServiceWatchResponseSchema, JobSchema } from "../../gen/rendition/v1/job_pb.js";
import { createLogger, logFunction } from "../../services/observability/logger.js";
import { currentLogFields, withLogFields, type Log, type LogFields } from "../../services/observability/log-context.js";
import { requestLogInterceptor } from "../../services/api/request-log-interceptor.js";
import { ConfigError, loadConfig } from "../../services/config.js";

/** A pino logger writing into an array of parsed lines. */
function capture(level: "debug" | "info" = "debug"): { log: Log; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  let pending = "";
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      pending += chunk.toString("utf8");
      for (let cut = pending.indexOf("\n"); cut >= 0; cut = pending.indexOf("\n")) {
        lines.push(JSON.parse(pending.slice(0, cut)) as Record<string, unknown>);
        pending = pending.slice(cut + 1);
      }
      done();
    },
  });
  return { log: logFunction(createLogger({ level, format: "json", destination, base: { role: "worker" } })), lines };
}

describe("the pino log seam", () => {
  it("writes one JSON object per line with the level as a word, the message, and the process's base fields", () => {
    const { log, lines } = capture();
    log("rendition API listening on 127.0.0.1:8080");
    log("warning: NATS_URL is not set");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: "info", msg: "rendition API listening on 127.0.0.1:8080", role: "worker", pid: process.pid });
    expect(new Date(lines[0]!.time as string).toISOString()).toBe(lines[0]!.time);
    expect(lines[1]).toMatchObject({ level: "warn", msg: "warning: NATS_URL is not set" });
  });

  it("merges job_id / organization_id / worker_id from the work running, across awaits, and the call's own fields", async () => {
    const { log, lines } = capture();
    await withLogFields({ worker_id: "host:1:abc" }, async () => {
      log("encoder slot started");
      await withLogFields({ job_id: "job_1", organization_id: "org_1" }, async () => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        log("job job_1: completed (1 of 1 outputs)", undefined, { status: "completed", duration_ms: 1200 });
      });
    });
    log("outside any job");
    expect(lines[0]).toMatchObject({ worker_id: "host:1:abc", msg: "encoder slot started" });
    expect(lines[0]).not.toHaveProperty("job_id");
    expect(lines[1]).toMatchObject({ level: "info", worker_id: "host:1:abc", job_id: "job_1", organization_id: "org_1", status: "completed", duration_ms: 1200 });
    expect(lines[2]).not.toHaveProperty("worker_id");
    expect(currentLogFields()).toBeUndefined();
  });

  it("serializes an error under err (type, message, stack) at error level; a level given in the fields wins", () => {
    const { log, lines } = capture();
    log("queue: retrying after an error", new Error("connection refused"));
    log("job job_2: giving up", new Error("boom"), { level: "warn", job_id: "job_2" });
    expect(lines[0]).toMatchObject({ level: "error", msg: "queue: retrying after an error", err: { type: "Error", message: "connection refused" } });
    expect(String((lines[0]!.err as { stack: string }).stack)).toContain("connection refused");
    expect(lines[1]).toMatchObject({ level: "warn", job_id: "job_2", err: { message: "boom" } });
    expect(lines[1]).not.toHaveProperty("level", "error");
  });

  it("drops lines below the configured level", () => {
    const { log, lines } = capture("info");
    log("rpc rendition.v1.JobService/Get ok", undefined, { level: "debug" });
    log("kept");
    expect(lines.map((l) => l.msg)).toEqual(["kept"]);
  });
});

describe("the request-log interceptor", () => {
  function service(log: Log, seen: LogFields[]) {
    return createRouterTransport(
      (router) =>
        router.service(JobService, {
          async get(req) {
            log("inside the handler");
            seen.push({ ...currentLogFields() });
            if (req.id === "job_missing") throw new ConnectError("job not found", Code.NotFound);
            return create(JobServiceGetResponseSchema, { job: create(JobSchema, { id: req.id }) });
          },
          async *watch(req) {
            for (const progress of [10, 100]) {
              await new Promise((resolve) => setTimeout(resolve, 5));
              log(`watch ${req.id} at ${progress}`);
              yield create(JobServiceWatchResponseSchema, { job: create(JobSchema, { id: req.id, progress }) });
            }
          },
        }),
      { router: { interceptors: [requestLogInterceptor(log)] } },
    );
  }

  it("keeps the caller's x-request-id, answers it, and puts it on every line of the call and on the call's own line", async () => {
    const { log, lines } = capture();
    const seen: LogFields[] = [];
    const client = createClient(JobService, service(log, seen));
    let answered: string | null = null;
    await client.get({ id: "job_1" }, { headers: { "x-request-id": "req-abc-123" }, onHeader: (h) => (answered = h.get("x-request-id")) });
    expect(answered).toBe("req-abc-123");
    expect(seen[0]).toMatchObject({ request_id: "req-abc-123" });
    expect(lines[0]).toMatchObject({ msg: "inside the handler", request_id: "req-abc-123" });
    expect(lines[1]).toMatchObject({ level: "debug", request_id: "req-abc-123", rpc_method: "rendition.v1.JobService/Get", rpc_code: "ok" });
    expect(typeof lines[1]!.duration_ms).toBe("number");
  });

  it("makes a UUID when the caller sends none (or an implausible one), also on an error, which is logged at info with its code", async () => {
    const { log, lines } = capture();
    const seen: LogFields[] = [];
    const client = createClient(JobService, service(log, seen));
    const err = await client.get({ id: "job_missing" }, { headers: { "x-request-id": "bad id with spaces" } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    const id = (err as ConnectError).metadata.get("x-request-id");
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(seen[0]!.request_id).toBe(id);
    expect(lines.at(-1)).toMatchObject({ level: "info", request_id: id, rpc_method: "rendition.v1.JobService/Get", rpc_code: "not_found" });

    let second: string | null = null;
    await client.get({ id: "job_2" }, { onHeader: (h) => (second = h.get("x-request-id")) });
    expect(second).toMatch(/^[0-9a-f-]{36}$/);
    expect(second).not.toBe(id);
  });

  it("a stream's lines carry its request id while it is read, and its own line comes when it ends", async () => {
    const { log, lines } = capture();
    const client = createClient(JobService, service(log, []));
    const progress: number[] = [];
    for await (const message of client.watch({ id: "job_w" }, { headers: { "x-request-id": "watch-1" } })) progress.push(message.job!.progress);
    expect(progress).toEqual([10, 100]);
    expect(lines.map((l) => [l.msg, l.request_id])).toEqual([
      ["watch job_w at 10", "watch-1"],
      ["watch job_w at 100", "watch-1"],
      ["rpc rendition.v1.JobService/Watch ok", "watch-1"],
    ]);
  });
});

describe("log and metrics settings", () => {
  it("reads the level from RENDITION_LOG_LEVEL, else LOG_LEVEL, and refuses an unknown one naming the variable", () => {
    expect(loadConfig({}).log).toEqual({ level: "info", format: "auto" });
    expect(loadConfig({ LOG_LEVEL: "debug" }).log.level).toBe("debug");
    expect(loadConfig({ LOG_LEVEL: "debug", RENDITION_LOG_LEVEL: "WARN" }).log.level).toBe("warn");
    expect(() => loadConfig({ LOG_LEVEL: "loud" })).toThrow(new ConfigError('LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, silent, got "loud"'));
    expect(() => loadConfig({ RENDITION_LOG_FORMAT: "xml" })).toThrow(/RENDITION_LOG_FORMAT must be one of auto, json, pretty/);
  });

  it("serves metrics by default, on 9464 for a worker; RENDITION_METRICS=off and a port of 0 turn them off", () => {
    expect(loadConfig({}).metrics).toEqual({ enabled: true, port: 9464 });
    expect(loadConfig({ RENDITION_METRICS: "off", RENDITION_METRICS_PORT: "0" }).metrics).toEqual({ enabled: false, port: 0 });
    expect(() => loadConfig({ RENDITION_METRICS: "maybe" })).toThrow(/RENDITION_METRICS must be true or false/);
    expect(() => loadConfig({ RENDITION_METRICS_PORT: "70000" })).toThrow(/RENDITION_METRICS_PORT must be an integer between 0 and 65535/);
  });
});
