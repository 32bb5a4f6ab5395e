/**
 * /metrics against the real pipeline: the API harness with its encoder over PostgreSQL and NATS
 * JetStream runs a real job (ffmpeg, a webhook to a real receiver) and the exposition is scraped
 * over HTTP and parsed; lease takeovers are made on real rows; the queue numbers are read from
 * a real JetStream stream and from the in-process queue; and a spawned worker-only process
 * answers /metrics on its own port and logs JSON lines.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { sql } from "kysely";
import { ConnectError } from "@connectrpc/connect";
import { JobStatus, OutputType, Quality, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { type Job } from "../../gen/rendition/v1/job_pb.js";
import { JobTaskRepository } from "../../services/jobs/job-task.repository.js";
import { createInProcessWorkQueue } from "../../services/queue/in-process-work-queue.js";
import { closeNats, connectNats } from "../../services/queue/nats-connection.js";
import { createNatsWorkQueue } from "../../services/queue/nats-work-queue.js";
import type { QueueStats, WorkQueue } from "../../services/queue/work-queue.js";
import { newId } from "../../services/common/ids.js";
import { localJobRequest, startTestApi, type TestApi } from "../support/api-harness.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { dropWorkStreams } from "../support/e2e.js";
import { generateClip } from "../support/media.js";
import { killAllChildren, spawnRendition } from "../support/process.js";
import { startWebhookReceiver, type WebhookReceiver } from "../support/webhook-receiver.js";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The Prometheus text format (0.0.4): `name{label="value",...} number` per line, # lines skipped. */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

async function scrape(url: string): Promise<{ contentType: string; samples: Sample[] }> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  return { contentType: res.headers.get("content-type") ?? "", samples: parseExposition(await res.text()) };
}

/** The value of the one sample named `name` whose labels include `labels` (0 when there is none). */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${found.length} samples`);
  return found[0]?.value ?? 0;
}

/** Scrapes until `ready` holds (the job count is cached for 5 s; the ack follows the job's end). */
async function scrapeUntil(url: string, ready: (samples: Sample[]) => boolean, timeoutMs = 30_000): Promise<Sample[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { samples } = await scrape(url);
    if (ready(samples)) return samples;
    if (Date.now() > deadline) throw new Error(`metrics not as expected after ${timeoutMs} ms:\n${samples.filter((s) => s.name.startsWith("rendition_")).map((s) => `${s.name}${JSON.stringify(s.labels)} ${s.value}`).join("\n")}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const TERMINAL = new Set([JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.PARTIAL]);

let database: TestDatabase;
let api: TestApi;
let receiver: WebhookReceiver;
const prefix = `metrics_${randomBytes(4).toString("hex")}`;
const tmp = mkdtempSync(join(tmpdir(), "rendition-metrics-test-"));

beforeAll(async () => {
  database = await createTestDatabase(inject("databaseUrl"));
  api = await startTestApi(database.url, { NATS_URL: inject("natsUrl"), RENDITION_NATS_PREFIX: prefix, RENDITION_TMP_DIR: tmp }, { worker: true });
  receiver = await startWebhookReceiver();
  mkdirSync(join(api.config.dataDir, "storage", "in"), { recursive: true });
  await generateClip(join(api.config.dataDir, "storage", "in", "clip.mp4"), { durationS: 1, width: 320, height: 240, fps: 25, audio: false });
}, 120_000);

afterAll(async () => {
  await killAllChildren();
  await api?.close();
  await receiver?.close();
  await dropWorkStreams(inject("natsUrl"), prefix, `${prefix}_w`, `${prefix}_q`);
  await database?.drop();
  rmSync(tmp, { recursive: true, force: true });
});

describe("GET /metrics on the API port", () => {
  it("moves the job, encode, webhook and RPC series for a real job, answers x-request-id, and has the process metrics", async () => {
    const url = `${api.baseUrl}/metrics`;
    const before = (await scrape(url)).samples;
    const labels = { format: "mp4", codec: "h264", resolution: "autox144" };

    let requestId: string | null = null;
    const { job: created } = await api.jobs.create(
      localJobRequest(api, {
        inputPath: "in/clip.mp4",
        outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 144, quality: Quality.ECONOMY }] }],
        webhookUrl: receiver.url,
      }),
      { headers: { "x-request-id": "metrics-test-create" }, onHeader: (h) => (requestId = h.get("x-request-id")) },
    );
    expect(requestId).toBe("metrics-test-create");
    let job: Job | undefined;
    for (const deadline = Date.now() + 120_000; !job || !TERMINAL.has(job.status); await new Promise((r) => setTimeout(r, 200))) {
      if (Date.now() > deadline) throw new Error(`job still ${JobStatus[job!.status]}`);
      job = (await api.jobs.get({ id: created!.id })).job;
    }
    expect(job.status).toBe(JobStatus.COMPLETED);
    await receiver.waitFor((r) => r.some((x) => x.event.type === "job.completed"), 60_000);
    const missing = await api.jobs.get({ id: "job_00000000000000000000000000" }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(ConnectError);
    expect((missing as ConnectError).metadata.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);

    const after = await scrapeUntil(
      url,
      (s) =>
        value(s, "rendition_jobs", { status: "completed", priority: "standard" }) === 1 &&
        value(s, "rendition_queue_in_flight", { priority: "standard" }) === 0 &&
        value(s, "rendition_webhook_delivery_attempts_total", { result: "delivered" }) > value(before, "rendition_webhook_delivery_attempts_total", { result: "delivered" }),
    );
    const { contentType } = await scrape(url);
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);

    // Jobs by status and priority: every pair is there, zeros included.
    expect(after.filter((s) => s.name === "rendition_jobs")).toHaveLength(8 * 3);
    expect(value(after, "rendition_jobs", { status: "pending", priority: "standard" })).toBe(0);
    // The encode histograms: one observation for the one output, in its format/codec/resolution.
    const delta = (name: string, l: Record<string, string>) => value(after, name, l) - value(before, name, l);
    expect(delta("rendition_encode_seconds_count", labels)).toBe(1);
    expect(delta("rendition_encode_seconds_sum", labels)).toBeGreaterThan(0);
    expect(delta("rendition_encode_realtime_factor_count", labels)).toBe(1);
    expect(delta("rendition_encode_realtime_factor_bucket", { ...labels, le: "+Inf" })).toBe(1);
    // Webhook attempts by result: the job's events went out and were answered 200.
    expect(delta("rendition_webhook_delivery_attempts_total", { result: "delivered" })).toBeGreaterThanOrEqual(1);
    expect(value(after, "rendition_webhook_delivery_attempts_total", { result: "failed" })).toBe(0);
    // RPC latency by method and code.
    const rpc = { service: "rendition.v1.JobService", type: "unary" };
    expect(delta("rendition_rpc_duration_seconds_count", { ...rpc, method: "Create", code: "ok" })).toBe(1);
    expect(delta("rendition_rpc_duration_seconds_count", { ...rpc, method: "Get", code: "ok" })).toBeGreaterThanOrEqual(1);
    expect(delta("rendition_rpc_duration_seconds_count", { ...rpc, method: "Get", code: "not_found" })).toBe(1);
    expect(delta("rendition_rpc_duration_seconds_bucket", { ...rpc, method: "Create", code: "ok", le: "+Inf" })).toBe(1);
    // The JetStream queue, per priority.
    for (const priority of ["premium", "standard", "economy"]) {
      expect(after.some((s) => s.name === "rendition_queue_depth" && s.labels.priority === priority)).toBe(true);
      expect(value(after, "rendition_queue_oldest_message_age_seconds", { priority })).toBeGreaterThanOrEqual(0);
    }
    expect(value(after, "rendition_queue_depth", { priority: "standard" })).toBe(0);
    // Node's process metrics.
    expect(after.some((s) => s.name === "process_cpu_user_seconds_total")).toBe(true);
    expect(after.some((s) => s.name === "nodejs_heap_size_used_bytes")).toBe(true);
    expect(value(after, "rendition_metrics_source_errors_total", { source: "jobs" })).toBe(0);
  }, 240_000);

  it("counts lease takeovers of jobs and tasks, and not first claims", async () => {
    const url = `${api.baseUrl}/metrics`;
    const org = api.credentials.organization_id;
    const before = (await scrape(url)).samples;
    // Paused for Confirm: probed by the harness's worker, then nobody holds it.
    const { job } = await api.jobs.create(localJobRequest(api, { inputPath: "in/clip.mp4", delayedStart: true }));
    const id = job!.id;
    for (const deadline = Date.now() + 120_000; ; await new Promise((r) => setTimeout(r, 200))) {
      if ((await api.jobs.get({ id })).job!.status === JobStatus.AWAITING_CONFIRMATION) break;
      if (Date.now() > deadline) throw new Error("the job was not probed");
    }
    const lapse = (table: "jobs" | "job_tasks", rowId: string) => sql`UPDATE ${sql.table(table)} SET lease_expires_at = now() - interval '1 second' WHERE id = ${rowId}`.execute(database.db);

    expect(await api.app.runs.claim(org, id, "worker-a", 60_000, ["awaiting_confirmation"])).toBeDefined();
    await lapse("jobs", id);
    expect(await api.app.runs.claim(org, id, "worker-b", 60_000, ["awaiting_confirmation"])).toBeDefined();

    // A chunk task of a processing job (no outbox row: no worker is sent to it).
    const taskId = newId("tsk");
    await database.db.updateTable("jobs").set({ status: "processing", lease_owner: "", lease_expires_at: null }).where("id", "=", id).execute();
    await database.db.insertInto("job_tasks").values({ id: taskId, job_id: id, kind: "chunk", position: 0, spec: JSON.stringify({}) }).execute();
    const tasks = new JobTaskRepository(database.db);
    expect((await tasks.claim(org, taskId, "worker-a", 60_000, 4)).kind).toBe("claimed");
    await lapse("job_tasks", taskId);
    expect((await tasks.claim(org, taskId, "worker-b", 60_000, 4)).kind).toBe("claimed");
    await api.jobs.cancel({ id });

    const after = (await scrape(url)).samples;
    expect(value(after, "rendition_lease_takeovers_total", { kind: "job" }) - value(before, "rendition_lease_takeovers_total", { kind: "job" })).toBe(1);
    expect(value(after, "rendition_lease_takeovers_total", { kind: "task" }) - value(before, "rendition_lease_takeovers_total", { kind: "task" })).toBe(1);
  }, 180_000);
});

describe("RENDITION_METRICS=off", () => {
  it("serves no /metrics on the API port (health still answers)", async () => {
    const other = await createTestDatabase(inject("databaseUrl"));
    const quiet = await startTestApi(other.url, { RENDITION_METRICS: "off" });
    try {
      expect((await fetch(`${quiet.baseUrl}/metrics`)).status).toBe(404);
      expect((await fetch(`${quiet.baseUrl}/healthz`)).status).toBe(200);
    } finally {
      await quiet.close();
      await other.drop();
    }
  }, 120_000);
});

describe("queue numbers (the queue gauges' source)", () => {
  async function contract(queue: WorkQueue) {
    const byPriority = async () => Object.fromEntries((await queue.stats!()).map((s) => [s.priority, s])) as Record<string, QueueStats>;
    expect(Object.keys(await byPriority()).sort()).toEqual(["economy", "premium", "standard"]);
    const message = (n: number, priority: "premium" | "standard") => ({ id: `m${n}`, jobId: `job_${n}`, organizationId: "org_x", stage: "probe" as const, priority });
    await queue.publish(message(1, "standard"));
    await queue.publish(message(2, "standard"));
    await queue.publish(message(3, "premium"));
    let stats = await byPriority();
    expect([stats.standard!.waiting, stats.standard!.inFlight, stats.premium!.waiting, stats.economy!.waiting]).toEqual([2, 0, 1, 0]);
    expect(stats.standard!.oldestWaitingAgeSeconds).toBeGreaterThanOrEqual(0);
    expect(stats.economy!.oldestWaitingAgeSeconds).toBe(0);

    const signal = new AbortController().signal;
    const premium = (await queue.take(signal))!;
    const standard = (await queue.take(signal))!;
    expect([premium.message.id, standard.message.id]).toEqual(["m3", "m1"]);
    stats = await byPriority();
    expect([stats.premium!.waiting, stats.premium!.inFlight, stats.standard!.waiting, stats.standard!.inFlight]).toEqual([0, 1, 1, 1]);
    expect(stats.premium!.oldestWaitingAgeSeconds).toBe(0);
    // A nak'd message waits for its redelivery in flight, as JetStream counts it.
    standard.nak(60_000);
    await premium.ack();
    await new Promise((resolve) => setTimeout(resolve, 200)); // the ack reaches the server
    stats = await byPriority();
    expect([stats.premium!.inFlight, stats.standard!.waiting, stats.standard!.inFlight]).toEqual([0, 1, 1]);
  }

  it("JetStream: consumer num_pending / num_ack_pending and the oldest waiting message", async () => {
    const nc = await connectNats(inject("natsUrl"), { name: "metrics-test-queue" });
    const queue = await createNatsWorkQueue(nc, { prefix: `${prefix}_q`, ackWaitMs: 60_000 });
    try {
      await contract(queue);
    } finally {
      await queue.close();
      await closeNats(nc);
    }
  });

  it("in-process: the same numbers", async () => {
    const queue = createInProcessWorkQueue({ ackWaitMs: 60_000 });
    try {
      await contract(queue);
    } finally {
      await queue.close();
    }
  });
});

describe("a worker-only process", () => {
  it("serves /metrics (and /healthz) on RENDITION_METRICS_PORT and logs JSON lines naming its role", async () => {
    const port = await freePort();
    const worker = spawnRendition(["worker"], {
      DATABASE_URL: database.url,
      NATS_URL: inject("natsUrl"),
      RENDITION_NATS_PREFIX: `${prefix}_w`,
      RENDITION_DATA_DIR: mkdtempSync(join(tmp, "worker-")),
      RENDITION_TMP_DIR: tmp,
      RENDITION_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString("base64"),
      RENDITION_METRICS_PORT: String(port),
    });
    const announced = await worker.waitFor(/metrics: GET \/metrics on \S+:(\d+)/, 180_000);
    expect(Number(announced[1])).toBe(port);
    await worker.waitFor(/encoder \S+: \d+ slot/, 180_000);

    const { contentType, samples } = await scrape(`http://127.0.0.1:${port}/metrics`);
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(samples.some((s) => s.name === "process_cpu_user_seconds_total")).toBe(true);
    expect(samples.some((s) => s.name === "rendition_lease_takeovers_total" && s.labels.kind === "job")).toBe(true);
    // The cluster-wide gauges are the API processes' to export.
    expect(samples.filter((s) => s.name === "rendition_jobs" || s.name === "rendition_queue_depth")).toEqual([]);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect([health.status, await health.json()]).toEqual([200, { status: "ok" }]);
    expect((await fetch(`http://127.0.0.1:${port}/nothing`)).status).toBe(404);

    worker.child.kill("SIGTERM");
    expect((await worker.exited(30_000)).code).toBe(0);
    const lines = worker.stderr.split("\n").filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
    const slots = lines.find((l) => /^encoder \S+: \d+ slot/.test(String(l.msg)));
    expect(slots).toMatchObject({ level: "info", role: "worker", pid: worker.child.pid });
    expect(lines.at(-1)).toMatchObject({ msg: "stopped", role: "worker" });
    expect(worker.stdout).toBe("");
  }, 300_000);
});
