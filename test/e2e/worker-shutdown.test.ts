/**
 * Worker shutdown with the real processes: an `api` and two `worker` processes on PostgreSQL +
 * NATS JetStream, sharing the data directory of the first-start local origin. Worker A is
 * encoding a job (a slow preset) when it gets SIGTERM with a short RENDITION_SHUTDOWN_TIMEOUT_MS:
 * it kills ffmpeg, gives the lease back (the attempt refunded) and naks the message, and exits
 * in time; worker B takes the job at once, not after the (long) lease would have lapsed, and
 * finishes it exactly once.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createClient, type Client } from "@connectrpc/connect";
import { JobStatus, OutputType, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobService, OutputStatus, type Job } from "../../gen/rendition/v1/job_pb.js";
import { connectPostgres } from "../../services/db/connect.js";
import { createEmptyDatabase } from "../support/database.js";
import { bootstrapTransport, dropWorkStreams } from "../support/e2e.js";
import { ffprobeJson, generateClip } from "../support/media.js";
import { isAlive, killAllChildren, spawnRendition, type RenditionProcess } from "../support/process.js";

/** Long, so that a job moving on before it lapses can only be the hand-back. */
const LEASE_MS = 300_000;
const SHUTDOWN_TIMEOUT_MS = 3_000;
/** What the process may take past its shutdown timeout (stopping the relay, closing NATS and the pool). */
const EXIT_MARGIN_MS = 10_000;

let db: { url: string; drop(): Promise<void> };
let handle: ReturnType<typeof connectPostgres>;
let dataDir: string;
let env: Record<string, string>;
let jobs: Client<typeof JobService>;
let credentials: { api_key: string; organization_id: string; local_origin_id: string };
const workers: RenditionProcess[] = [];
let api: RenditionProcess;

function spawnWorker(name: string): RenditionProcess {
  const worker = spawnRendition(["worker"], { ...env, RENDITION_TMP_DIR: join(dataDir, `tmp-${name}`), RENDITION_WORKER_CONCURRENCY: "1" });
  workers.push(worker);
  return worker;
}

async function waitFor(id: string, done: (job: Job) => boolean, timeoutMs: number): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { job } = await jobs.get({ id });
    if (done(job!)) return job!;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${JobStatus[job!.status]} (progress ${job!.progress}) after ${timeoutMs} ms\n${[api, ...workers].map((w) => w.output.slice(-3000)).join("\n---\n")}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Pids of ffmpeg processes whose parent is `pid`. */
function childFfmpeg(pid: number): number[] {
  const out = execFileSync("ps", ["-eo", "pid=,ppid=,comm="], { encoding: "utf8" });
  return out
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter(([, ppid, comm]) => Number(ppid) === pid && comm === "ffmpeg")
    .map(([p]) => Number(p));
}

function jobRow(id: string) {
  return handle.db.selectFrom("jobs").select(["status", "lease_owner", "lease_expires_at", "claims", "last_error", "error_code"]).where("id", "=", id).executeTakeFirstOrThrow();
}

beforeAll(async () => {
  db = await createEmptyDatabase(inject("databaseUrl"));
  dataDir = mkdtempSync(join(tmpdir(), "rendition-shutdown-e2e-"));
  env = {
    DATABASE_URL: db.url,
    NATS_URL: inject("natsUrl"),
    RENDITION_NATS_PREFIX: `sd_${randomBytes(4).toString("hex")}`,
    RENDITION_ENCRYPTION_KEY: Buffer.alloc(32, 5).toString("base64"),
    RENDITION_NETWORK_ALLOW: "127.0.0.1/32",
    // API and workers share this directory: the first-start local origin lives in it.
    RENDITION_DATA_DIR: dataDir,
    RENDITION_LEASE_MS: String(LEASE_MS),
    RENDITION_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
  };
  mkdirSync(join(dataDir, "storage", "in"), { recursive: true });
  await generateClip(join(dataDir, "storage", "in", "clip.mp4"), { durationS: 12, width: 640, height: 360, fps: 25, audio: true });
  api = spawnRendition(["api"], { ...env, PORT: "0", HOST: "127.0.0.1" });
  const { baseUrl } = await api.listening(60_000);
  const connection = bootstrapTransport(dataDir, baseUrl);
  credentials = connection.credentials;
  const transport = connection.transport;
  jobs = createClient(JobService, transport);
  handle = connectPostgres(db.url, 2);
}, 180_000);

afterAll(async () => {
  await killAllChildren();
  if (env?.RENDITION_NATS_PREFIX) {
    await dropWorkStreams(inject("natsUrl"), env.RENDITION_NATS_PREFIX);
  }
  await handle?.close();
  await db?.drop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe("worker shutdown", () => {
  it("SIGTERM mid-encode: ffmpeg killed, lease released, message nak'ed; another worker finishes the job at once, exactly once", async () => {
    // Both workers are up before the job exists: whichever takes it is "A", the other "B".
    const pair = [spawnWorker("one"), spawnWorker("two")];
    await Promise.all(pair.map((w) => w.waitFor(/encoder \S+: \d+ slot/, 120_000)));
    const { job: created } = await jobs.create({
      inputOriginId: credentials.local_origin_id,
      inputPath: "in/clip.mp4",
      outputOriginId: credentials.local_origin_id,
      // A webhook URL makes every job event a row (webhook_events), to count them at the end;
      // nothing listens there, which only leaves deliveries pending.
      webhookUrl: "http://127.0.0.1:9/hooks",
      // A slow x264 preset keeps the encode busy far longer than the shutdown timeout.
      outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 360, h264: { encoderPreset: "veryslow" } }] }],
    });
    const id = created!.id;
    await waitFor(id, (j) => j.status === JobStatus.PROCESSING || j.status >= JobStatus.COMPLETED, 60_000);
    // The holder: the worker whose pid is in the lease owner and that runs ffmpeg.
    const deadline = Date.now() + 60_000;
    let a: RenditionProcess | undefined;
    while (!a && Date.now() < deadline) {
      const owner = (await jobRow(id)).lease_owner.split(":")[1];
      a = pair.find((w) => String(w.child.pid) === owner && childFfmpeg(w.child.pid!).length > 0);
      if (!a) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(a, "a worker holds the job and runs ffmpeg for it").toBeDefined();
    const b = pair.find((w) => w !== a)!;
    const encoders = childFfmpeg(a!.child.pid!);
    expect((await jobRow(id)).status).toBe("processing");

    const sigtermAt = Date.now();
    a!.child.kill("SIGTERM");
    const exit = await a!.exited(SHUTDOWN_TIMEOUT_MS + EXIT_MARGIN_MS);
    expect(exit, a!.output.slice(-3000)).toEqual({ code: 0, signal: null });
    expect(a!.output).toMatch(/handing back 1 running job for another worker/);
    // Its last words: the JSON log line of a clean stop.
    expect(a!.output).toMatch(/"msg":"stopped"\}$/m);
    // ffmpeg was killed, not left running.
    expect(encoders.filter(isAlive)).toEqual([]);

    // Handed back: A's lease is gone and its attempt refunded (B may hold the job already).
    const after = await jobRow(id);
    expect(after.lease_owner.split(":")[1]).not.toBe(String(a!.child.pid));
    expect(after.last_error).toBe("the worker running it shut down");
    expect(after.status).not.toBe("failed");

    const done = await waitFor(id, (j) => j.status >= JobStatus.COMPLETED, LEASE_MS);
    // Well before A's lease (300 s, renewed up to the SIGTERM) could have lapsed: the nak'ed
    // message was redelivered at once and B could claim the released job.
    expect(Date.now() - sigtermAt).toBeLessThan(LEASE_MS / 2);
    expect(done.status, `${done.errorCode}: ${done.errorMessage}`).toBe(JobStatus.COMPLETED);
    expect(done.errorCode).toBe("");
    // The shutdown did not use up an attempt: B's run is the job's first counted one.
    expect(done.execution!.attempts).toBe(1);
    expect(done.outputs[0]!.status).toBe(OutputStatus.COMPLETED);
    // A had exited: B, still running, is the one that did it.
    expect(b.child.exitCode).toBeNull();
    const finalRow = await jobRow(id);
    expect(finalRow.lease_owner).toBe("");
    expect(finalRow.claims).toBe(1);

    const info = await ffprobeJson(fileURLToPath(done.outputs[0]!.outputUrl));
    expect(Math.abs(Number(info.format.duration) - 12)).toBeLessThan(0.2);
    expect(info.streams.find((s: { codec_type: string }) => s.codec_type === "video")).toMatchObject({ codec_name: "h264", height: 360 });

    // Finished once: every event of the job is recorded once (progress: once per milestone).
    const events = await handle.db.selectFrom("webhook_events").select(["type", "payload"]).where("job_id", "=", id).execute();
    const keys = events.map((e) => `${e.type}${e.type === "job.progress" ? ` ${JSON.parse(e.payload).progress_milestone}` : ""}`);
    expect(keys.filter((k) => k === "job.completed")).toHaveLength(1);
    expect(keys.filter((k) => k === "output.completed")).toHaveLength(1);
    expect(keys.filter((k) => k === "job.failed")).toHaveLength(0);
    expect(new Set(keys).size).toBe(keys.length);
  }, 420_000);
});
