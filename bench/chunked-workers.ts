/**
 * `npm run bench:chunked-workers`: the chunked speed-up through the real processes (not a test;
 * figures for docs/benchmarks.md). One `api` process and worker processes on PostgreSQL (a
 * database of its own, dropped at the end) + NATS JetStream (a prefix of its own, its stream
 * deleted at the end), sharing a data directory with the first-start local origin. Every worker
 * is pinned to one core (`taskset`) with `RENDITION_FFMPEG_THREADS=1`:
 *   (a) one worker, chunking off: the job's single pass;
 *   (b) two workers on cores 0 and 1, chunking on (`RENDITION_CHUNK_SECONDS`, --chunk): the
 *       chunk tasks, staging in the origin, the assembly, through the queue and the database.
 * Create → completed (polled every 100 ms), same source as `bench:chunked`; frames and PSNR of
 * both outputs against the source. Options: --seconds S (default 60), --chunk S (default 15),
 * --rounds N (default 1).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import pg from "pg";
import { connect } from "nats";
import { natsWorkQueueNames } from "../services/queue/nats-work-queue.js";
import { chunkedSourceFile, frames, psnrOf } from "./chunked-checks.js";

const { values: opts } = parseArgs({ options: { seconds: { type: "string", default: "60" }, chunk: { type: "string", default: "15" }, rounds: { type: "string", default: "1" } } });
const SECONDS = Number(opts.seconds);
const ROUNDS = Number(opts.rounds);
const REPO = fileURLToPath(new URL("..", import.meta.url));
const ADMIN_URL = process.env.BENCH_POSTGRES_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const NATS_URL = process.env.BENCH_NATS_URL || "nats://127.0.0.1:4222";
const source = chunkedSourceFile(SECONDS);
if (!existsSync(source)) {
  console.error(`run \`npm run bench:chunked -- --seconds ${SECONDS}\` first: it generates ${source}`);
  process.exit(2);
}

const children = new Set<ChildProcess>();
function start(args: string[], env: Record<string, string>, core?: number): { child: ChildProcess; output: () => string } {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(PORT|HOST|DATABASE_URL|NATS_URL|RENDITION_.*)$/.test(k)));
  const argv = [process.execPath, "--import", "tsx", "services/main.ts", ...args];
  const child = core === undefined ? spawn(argv[0]!, argv.slice(1), { cwd: REPO, env: { ...base, ...env } }) : spawn("taskset", ["-c", String(core), ...argv], { cwd: REPO, env: { ...base, ...env } });
  children.add(child);
  child.on("exit", () => children.delete(child));
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (out += s));
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (out += s));
  return { child, output: () => out };
}

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill("SIGTERM");
  await until("a process to exit", () => (child.exitCode !== null || child.signalCode !== null ? true : undefined), 20_000).catch(() => child.kill("SIGKILL"));
}

async function main(): Promise<void> {
  const database = `bench_chunked_${randomBytes(4).toString("hex")}`;
  const prefix = `benchchunk_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  const dataDir = mkdtempSync(join(tmpdir(), "rendition-bench-chunked-workers-"));
  const url = new URL(ADMIN_URL);
  url.pathname = `/${database}`;
  const env = {
    DATABASE_URL: url.href,
    NATS_URL,
    RENDITION_NATS_PREFIX: prefix,
    RENDITION_DATA_DIR: dataDir,
    RENDITION_TMP_DIR: join(dataDir, "tmp"),
    RENDITION_ENCRYPTION_KEY: Buffer.alloc(32, 3).toString("base64"),
    RENDITION_FFMPEG_THREADS: "1",
    RENDITION_WORKER_CONCURRENCY: "1",
    RENDITION_CHUNK_SECONDS: opts.chunk!,
  };
  try {
    const api = start(["api"], { ...env, PORT: "0", HOST: "127.0.0.1" });
    const port = await until("the API", () => /listening on 127\.0\.0\.1:(\d+)/.exec(api.output())?.[1], 60_000);
    const credentials = JSON.parse(readFileSync(join(dataDir, "credentials.json"), "utf8")) as { api_key: string; organization_id: string; local_origin_id: string };
    mkdirSync(join(dataDir, "storage", "bench"), { recursive: true });
    copyFileSync(source, join(dataDir, "storage", "bench", "source.mp4"));
    const rpc = async (method: string, body: unknown) => {
      const res = await fetch(`http://127.0.0.1:${port}/rendition.v1.JobService/${method}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${credentials.api_key}`, "x-organization-id": credentials.organization_id },
        body: JSON.stringify(body),
      });
      return (await res.json()) as { job: { id: string; status: string; error_message: string; outputs: Array<{ output_url: string }>; execution?: { attempts?: number } } };
    };
    const runJob = async (workers: Array<{ core: number; chunking: boolean }>) => {
      const procs = workers.map((w, i) =>
        start(["worker"], { ...env, RENDITION_DATA_DIR: join(dataDir, `worker-${i}`), RENDITION_TMP_DIR: join(dataDir, `worker-${i}`, "tmp"), RENDITION_CHUNK_MIN_INPUT_S: w.chunking ? "10" : "604800" }, w.core),
      );
      // Each worker has its own data and temp directories, as on machines of their own; the
      // first-start origin (an absolute directory) is what they share.
      for (const p of procs) await until("a worker", () => (/slot\(s\)/.test(p.output()) ? true : undefined), 60_000);
      const started = performance.now();
      const { job } = await rpc("Create", {
        input_origin_id: credentials.local_origin_id,
        input_path: "bench/source.mp4",
        output_origin_id: credentials.local_origin_id,
        outputs: [{ type: "OUTPUT_TYPE_MP4", video: [{ codec: "VIDEO_CODEC_H264", resolution: "RESOLUTION_720P" }] }],
      });
      const done = await until("the job", async () => {
        const { job: now } = await rpc("Get", { id: job.id });
        return /COMPLETED|FAILED|PARTIAL|CANCELED/.test(now.status) ? now : undefined;
      }, 30 * 60_000);
      const elapsed = performance.now() - started;
      for (const p of procs) await stop(p.child);
      if (done.status !== "JOB_STATUS_COMPLETED") throw new Error(`job ${job.id} ended ${done.status}: ${done.error_message}\n${procs.map((p) => p.output()).join("\n")}`);
      return { elapsed, file: fileURLToPath(done.outputs[0]!.output_url) };
    };
    console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model}), load ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
    console.log(`source: ${SECONDS} s 1080p30, ${frames(source)} frames; chunks of ${opts.chunk} s; RENDITION_FFMPEG_THREADS=1, each worker pinned to one core`);
    for (let round = 1; round <= ROUNDS; round++) {
      const a = await runJob([{ core: 0, chunking: false }]);
      const b = await runJob([{ core: 0, chunking: true }, { core: 1, chunking: true }]);
      console.log(`round ${round}: (a) 1 worker, one pass ${(a.elapsed / 1000).toFixed(1)} s | (b) 2 workers, chunked ${(b.elapsed / 1000).toFixed(1)} s | speed-up a/b ${(a.elapsed / b.elapsed).toFixed(2)}x`);
      console.log(`  frames ${frames(a.file)} vs ${frames(b.file)}; PSNR vs source ${psnrOf(a.file, source).toFixed(3)} vs ${psnrOf(b.file, source).toFixed(3)} dB`);
    }
    await stop(api.child);
  } finally {
    for (const child of children) child.kill("SIGKILL");
    await new Promise((resolve) => setTimeout(resolve, 500));
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => {});
    await admin.end();
    const nc = await connect({ servers: NATS_URL });
    const jsm = await nc.jetstreamManager();
    await jsm.streams.delete(natsWorkQueueNames(prefix).stream).catch(() => {});
    await nc.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
