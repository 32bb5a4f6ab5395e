/**
 * Chunked encoding resumed per chunk, with the real processes: an `api` and two `worker`
 * processes (one slot each) on PostgreSQL + NATS JetStream, sharing the data directory of the
 * first-start local origin. One worker is killed with SIGKILL while it encodes a chunk: the
 * other takes over exactly that chunk once its lease lapses, and the job completes with every
 * frame.
 */
import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createClient, type Client } from "@connectrpc/connect";
import { JobStatus, OutputType, Quality, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobService, OutputStatus, type Job } from "../../gen/rendition/v1/job_pb.js";
import { connectPostgres } from "../../services/db/connect.js";
import { createEmptyDatabase } from "../support/database.js";
import { bootstrapTransport, dropWorkStreams } from "../support/e2e.js";
import { generateClip, testMediaTools } from "../support/media.js";
import { isAlive, killAllChildren, spawnRendition, type RenditionProcess } from "../support/process.js";

const exec = promisify(execFile);
let db: { url: string; drop(): Promise<void> };
let handle: ReturnType<typeof connectPostgres>;
let dataDir: string;
let env: Record<string, string>;
let jobs: Client<typeof JobService>;
let credentials: { api_key: string; organization_id: string; local_origin_id: string };
const workers: RenditionProcess[] = [];

async function waitFor(id: string, done: (job: Job) => boolean, timeoutMs = 180_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { job } = await jobs.get({ id });
    if (done(job!)) return job!;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${JobStatus[job!.status]} (progress ${job!.progress}) after ${timeoutMs} ms\n${workers.map((w) => w.output.slice(-3000)).join("\n---\n")}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function tasksOf(jobId: string) {
  return handle.db.selectFrom("job_tasks").selectAll().where("job_id", "=", jobId).orderBy("kind", "desc").orderBy("position").execute();
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

async function frameCount(file: string): Promise<number> {
  const { ffprobePath } = await testMediaTools();
  const { stdout } = await exec(ffprobePath, ["-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", file]);
  return Number(stdout.trim());
}

beforeAll(async () => {
  db = await createEmptyDatabase(inject("databaseUrl"));
  dataDir = mkdtempSync(join(tmpdir(), "rendition-chunked-e2e-"));
  env = {
    DATABASE_URL: db.url,
    NATS_URL: inject("natsUrl"),
    RENDITION_NATS_PREFIX: `chk_${randomBytes(4).toString("hex")}`,
    RENDITION_ENCRYPTION_KEY: Buffer.alloc(32, 3).toString("base64"),
    RENDITION_NETWORK_ALLOW: "127.0.0.1/32",
    // API and workers share this directory: the first-start local origin lives in it.
    RENDITION_DATA_DIR: dataDir,
    // Short leases so a killed worker's chunk moves on quickly.
    RENDITION_LEASE_MS: "3000",
    RENDITION_CHUNK_MIN_INPUT_S: "5",
    RENDITION_CHUNK_SECONDS: "4",
  };
  mkdirSync(join(dataDir, "storage", "in"), { recursive: true });
  await generateClip(join(dataDir, "storage", "in", "cuts.mp4"), { durationS: 20, width: 640, height: 360, fps: 25, audio: true, sceneCutEveryS: 1.3 });
  const api = spawnRendition(["api"], { ...env, PORT: "0", HOST: "127.0.0.1" });
  const { baseUrl } = await api.listening(60_000);
  const connection = bootstrapTransport(dataDir, baseUrl);
  credentials = connection.credentials;
  const transport = connection.transport;
  jobs = createClient(JobService, transport);
  handle = connectPostgres(db.url, 2);
  for (const name of ["a", "b"]) {
    // Each worker its own temp directory: its own cache of the job's input and chunks.
    workers.push(spawnRendition(["worker"], { ...env, RENDITION_TMP_DIR: join(dataDir, `tmp-${name}`), RENDITION_WORKER_CONCURRENCY: "1" }));
  }
  await Promise.all(workers.map((w) => w.waitFor(/encoder \S+: \d+ slot/, 60_000)));
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

describe("chunked encoding across worker processes", () => {
  it("resumes only the chunk a worker killed with SIGKILL was encoding; the job completes with every frame", async () => {
    const { job: created } = await jobs.create({
      inputOriginId: credentials.local_origin_id,
      inputPath: "in/cuts.mp4",
      outputOriginId: credentials.local_origin_id,
      // A slow preset keeps each chunk busy for a while.
      outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 360, quality: Quality.STANDARD, h264: { encoderPreset: "slower" } }] }],
    });
    const id = created!.id;
    // Wait until a worker encodes a chunk, then kill that worker.
    const deadline = Date.now() + 120_000;
    let victim: RenditionProcess | undefined;
    let running: string[] = [];
    while (!victim) {
      if (Date.now() > deadline) throw new Error(`no chunk of ${id} started encoding`);
      const tasks = await tasksOf(id);
      for (const worker of workers) {
        const pid = worker.child.pid!;
        const held = tasks.filter((t) => t.kind === "chunk" && t.status === "running" && t.lease_owner.split(":")[1] === String(pid)).map((t) => t.id);
        if (held.length > 0 && childFfmpeg(pid).length > 0) {
          victim = worker;
          running = held;
          break;
        }
      }
      if (!victim) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const orphans = childFfmpeg(victim.child.pid!);
    victim.child.kill("SIGKILL");
    await victim.exited(10_000);
    // What it held when it died: still its own, since nobody may take a chunk before its lease lapses.
    const killed = (await tasksOf(id)).filter((t) => t.status === "running" && t.lease_owner.split(":")[1] === String(victim!.child.pid)).map((t) => t.id);
    expect(killed, `it was running ${running.join(", ")}`).toHaveLength(1);

    const job = await waitFor(id, (j) => j.status >= JobStatus.COMPLETED);
    expect(job.status, `${job.errorCode}: ${job.errorMessage}`).toBe(JobStatus.COMPLETED);
    expect(job.outputs[0]!.status).toBe(OutputStatus.COMPLETED);
    const tasks = await tasksOf(id);
    expect(tasks.filter((t) => t.kind === "chunk")).toHaveLength(5);
    expect(tasks.every((t) => t.status === "completed")).toBe(true);
    // Exactly the chunk that worker was running was taken again.
    expect(tasks.filter((t) => t.claims > 1).map((t) => t.id)).toEqual(killed);
    expect(tasks.find((t) => t.id === killed[0])!.claims).toBe(2);
    // Every frame, as in an uninterrupted run (which has the input's frames: test/integration/chunked-jobs.test.ts).
    const output = fileURLToPath(job.outputs[0]!.outputUrl);
    expect(await frameCount(output)).toBe(await frameCount(join(dataDir, "storage", "in", "cuts.mp4")));
    expect(await frameCount(output)).toBe(20 * 25);
    // The staged chunks go right after the job's final write.
    const staged = join(dataDir, "storage", ".rendition", id);
    for (const until = Date.now() + 15_000; existsSync(staged) && Date.now() < until; ) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(existsSync(staged)).toBe(false);
    // The killed worker's ffmpeg went with it (setpriv --pdeathsig).
    const gone = Date.now() + 10_000;
    while (orphans.some(isAlive) && Date.now() < gone) await new Promise((resolve) => setTimeout(resolve, 200));
    expect(orphans.filter(isAlive)).toEqual([]);
  }, 300_000);
});
