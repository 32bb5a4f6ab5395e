/**
 * `npm run bench:dispatch`: jobs per second through outbox -> JetStream -> worker -> database,
 * with a no-op encoder (bench/noop-media-tools.ts), so that what is measured is Rendition's own
 * dispatch: every real database write, event and queue ack of a job, and no ffmpeg.
 *
 * Rendition runs in the bench's process (bench/in-process.ts) in NATS mode: PostgreSQL on
 * 127.0.0.1:5432 with a database of its own per run, NATS JetStream on 127.0.0.1:4222 with a
 * prefix of its own (both removed at the end). For each worker concurrency (encoder slots):
 *   1. N jobs are created through JobManager.create (the domain method the Create handler
 *      calls, so the same validation, origin checks and one transaction with the outbox row),
 *      with the relay and the worker stopped: creating is timed on its own (creates/s), and the
 *      backlog is then all in the outbox;
 *   2. the worker's slots start, then the relay: timed from the relay's start until the database
 *      says every job is completed (polled every 50 ms). That is the dispatch throughput;
 *   3. checked: every job completed, each claimed exactly once (claims = 1), each output
 *      completed, no outbox row unsent, the work stream empty. Lost or doubled work fails the run.
 * Beside it, interleaved (the order alternates), a baseline of the same shape with nothing of
 * Rendition in it: one JetStream publish (awaited, one at a time, as the relay does), and per
 * worker slot one pull (`consumer.next()`), one single-row UPDATE and one ack per job, in a database and
 * stream of its own. Its rate is what this machine, right now, allows a minimal
 * outbox-to-worker-to-database loop; Rendition's rate / baseline's rate is the ratio reported.
 *
 * Where it saturates: per-stage latencies (each wrapped call: queue publish and take, every
 * lease-guarded write, events), the bench process's event-loop utilisation and CPU, and the CPU
 * of the PostgreSQL backends serving the run's database and of nats-server (/proc).
 *
 * Options: --jobs N (default 2000), --concurrency 1,4,16,64 (encoder slots), --rounds R (default 1),
 * --create-concurrency K (concurrent creates, default 16), --skip-baseline.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { performance as perf } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { AckPolicy, connect, RetentionPolicy, StorageType, type JsMsg } from "nats";
import pg from "pg";
import { OutputType, Quality, VideoCodec } from "../gen/rendition/v1/common_pb.js";
import { JobServiceCreateRequestSchema } from "../gen/rendition/v1/job_pb.js";
import { natsWorkQueueNames } from "../services/queue/nats-work-queue.js";
import { cpuSeconds } from "./hls.js";
import { median, NATS_URL, POSTGRES_ADMIN_URL, startInProcess, Tracer } from "./in-process.js";
import { noopMediaTools, tinyMp4 } from "./noop-media-tools.js";

const { values: opts } = parseArgs({
  options: {
    jobs: { type: "string", default: "2000" },
    concurrency: { type: "string", default: "1,4,16,64" },
    rounds: { type: "string", default: "1" },
    "create-concurrency": { type: "string", default: "16" },
    "skip-baseline": { type: "boolean", default: false },
  },
});
const N = Number(opts.jobs);
const LEVELS = opts.concurrency.split(",").map(Number);
const ROUNDS = Number(opts.rounds);
const CREATE_CONCURRENCY = Number(opts["create-concurrency"]);
const TIMEOUT_MS = 600_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The local nats-server's pid, for its CPU seconds in /proc. */
function natsPid(): number | undefined {
  try {
    return Number(execFileSync("pgrep", ["-x", "nats-server"], { encoding: "utf8" }).trim().split("\n")[0]) || undefined;
  } catch {
    return undefined;
  }
}

async function backendPids(client: pg.Client, database: string): Promise<number[]> {
  const { rows } = await client.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", [database]);
  return rows.map((r) => r.pid);
}

const cpuOf = (pids: number[]) => new Map(pids.map((pid) => [pid, cpuSeconds(pid).own]));
/** CPU used by `pids` since `before` (a pid absent before counts from its start). */
function cpuSince(before: Map<number, number>, pids: number[]): number {
  return pids.reduce((sum, pid) => {
    const now = cpuSeconds(pid).own;
    return Number.isNaN(now) ? sum : sum + now - (before.get(pid) ?? 0);
  }, 0);
}

interface Measured {
  way: "rendition" | "baseline";
  concurrency: number;
  jobsPerS: number;
  wallS: number;
  createsPerS?: number;
  relayDoneS?: number;
  cpu: { bench: number; postgres: number; nats: number };
  elu: number;
  stages?: Array<{ name: string; calls: number; meanMs: number; totalS: number }>;
  load: number;
}

function cpuLine(m: Measured): string {
  const per = (s: number) => `${((s / N) * 1e6).toFixed(0)} µs/job`;
  return `CPU: bench process ${m.cpu.bench.toFixed(2)} s (${per(m.cpu.bench)}, event loop ${(m.elu * 100).toFixed(0)} % busy), PostgreSQL backends ${m.cpu.postgres.toFixed(2)} s (${per(m.cpu.postgres)}), nats-server ${m.cpu.nats.toFixed(2)} s (${per(m.cpu.nats)}; shared with other tenants)`;
}

async function runRendition(concurrency: number): Promise<Measured> {
  const work = mkdtempSync(join(tmpdir(), "rendition-dispatch-"));
  const tracer = new Tracer();
  const r = await startInProcess({
    mode: "nats",
    work,
    concurrency,
    tools: noopMediaTools(),
    deferRelay: true,
    deferWorker: true,
    instrument: (app, messaging) => {
      tracer.wrap(app.jobs, "jobs", ["create"]);
      tracer.wrap(app.runs, "runs", ["leaseState", "claim", "startProbe", "recordProbe", "completeOutput", "finish", "progress"]);
      tracer.wrap(app.jobRepository, "jobRepository", ["get"]);
      tracer.wrap(app.origins, "origins", ["get"]);
      tracer.wrap(messaging.queue, "queue", ["publish", "take"]);
      tracer.wrap(messaging.events, "events", ["publish", "subscribe"]);
    },
  });
  const database = new URL(r.databaseUrl!).pathname.slice(1);
  const observer = new pg.Client({ connectionString: r.databaseUrl });
  await observer.connect();
  try {
    writeFileSync(join(r.config.dataDir, "storage", "tiny.mp4"), tinyMp4());
    const req = create(JobServiceCreateRequestSchema, {
      inputOriginId: r.credentials.local_origin_id,
      inputPath: "tiny.mp4",
      outputOriginId: r.credentials.local_origin_id,
      outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, quality: Quality.STANDARD, height: 360 }] }],
    });
    let made = 0;
    const createStarted = performance.now();
    await Promise.all(
      Array.from({ length: CREATE_CONCURRENCY }, async () => {
        while (made < N) {
          made++;
          await r.app.jobs.create(r.credentials.organization_id, req);
        }
      }),
    );
    const createS = (performance.now() - createStarted) / 1000;
    tracer.reset();

    await r.startWorker();
    const load = loadavg()[0]!;
    const nats = natsPid();
    const pidsBefore = await backendPids(observer, database);
    const pgBefore = cpuOf(pidsBefore);
    const natsBefore = nats ? cpuSeconds(nats).own : NaN;
    const benchBefore = process.cpuUsage();
    const eluBefore = perf.eventLoopUtilization();
    const started = performance.now();
    await r.startRelay();
    let relayDoneS: number | undefined;
    for (;;) {
      await sleep(50);
      const { rows } = await observer.query<{ done: string; ended_otherwise: string; unsent: string }>(
        `SELECT (SELECT count(*) FROM jobs WHERE status = 'completed') AS done,
                (SELECT count(*) FROM jobs WHERE status IN ('failed', 'partial', 'canceled')) AS ended_otherwise,
                (SELECT count(*) FROM outbox WHERE sent_at IS NULL) AS unsent`,
      );
      const row = rows[0]!;
      if (relayDoneS === undefined && Number(row.unsent) === 0) relayDoneS = (performance.now() - started) / 1000;
      if (Number(row.ended_otherwise) > 0) throw new Error(`${row.ended_otherwise} job(s) did not complete`);
      if (Number(row.done) >= N) break;
      if (performance.now() - started > TIMEOUT_MS) throw new Error(`only ${row.done} of ${N} jobs completed in ${TIMEOUT_MS / 1000} s`);
    }
    const wallS = (performance.now() - started) / 1000;
    const elu = perf.eventLoopUtilization(eluBefore).utilization;
    const benchCpu = process.cpuUsage(benchBefore);
    const pidsAfter = await backendPids(observer, database);
    const cpu = {
      bench: (benchCpu.user + benchCpu.system) / 1e6,
      postgres: cpuSince(pgBefore, [...new Set([...pidsBefore, ...pidsAfter])]),
      nats: nats ? cpuSeconds(nats).own - natsBefore : NaN,
    };

    // Exactly once: every job completed, claimed once, its output completed; nothing left over.
    await sleep(200);
    const { rows: [check] } = await observer.query<Record<string, string>>(
      `SELECT (SELECT count(*) FROM jobs) AS jobs,
              (SELECT count(*) FROM jobs WHERE status = 'completed' AND claims = 1 AND completed_at IS NOT NULL) AS once,
              (SELECT count(*) FROM job_outputs WHERE status = 'completed') AS outputs,
              (SELECT count(*) FROM outbox WHERE sent_at IS NULL) AS unsent`,
    );
    const nc = await connect({ servers: NATS_URL });
    const left = (await (await nc.jetstreamManager()).streams.info(natsWorkQueueNames(r.prefix).stream)).state.messages;
    await nc.close();
    const lost = N - Number(check!.once);
    console.log(`    check: ${check!.jobs} jobs, ${check!.once} completed after exactly one claim, ${check!.outputs} outputs completed, ${check!.unsent} outbox rows unsent, ${left} messages left in the stream: ${lost === 0 && Number(check!.outputs) === N && left === 0 ? "0 lost, none twice" : "MISMATCH"}`);
    if (lost !== 0 || Number(check!.outputs) !== N || left !== 0) throw new Error("lost or repeated work");

    const names = [...new Set(tracer.spans.map((s) => s.name))].filter((n) => n !== "queue.take");
    const stages = names.map((name) => {
      const spans = tracer.spans.filter((s) => s.name === name);
      const total = spans.reduce((sum, s) => sum + s.end - s.start, 0);
      return { name, calls: spans.length, meanMs: total / spans.length, totalS: total / 1000 };
    });
    return { way: "rendition", concurrency, jobsPerS: N / wallS, wallS, createsPerS: N / createS, relayDoneS, cpu, elu, stages, load };
  } finally {
    await observer.end();
    await r.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

/** The floor: publish, pull, one UPDATE, ack per job, nothing else. */
async function runBaseline(concurrency: number): Promise<Measured> {
  const suffix = randomBytes(4).toString("hex");
  const database = `rendition_bench_base_${suffix}`;
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${database}`;
  const pool = new pg.Pool({ connectionString: url.toString(), max: 10 });
  pool.on("error", () => undefined); // the DROP at the end
  const observer = new pg.Client({ connectionString: url.toString() });
  await observer.connect();
  const nc = await connect({ servers: NATS_URL });
  const jsm = await nc.jetstreamManager();
  const stream = `BENCH_BASE_${suffix.toUpperCase()}`;
  const subject = `bench_base_${suffix}.work`;
  try {
    await observer.query("CREATE TABLE t (id text PRIMARY KEY, status text NOT NULL DEFAULT 'pending', sent_at timestamptz)");
    const ids = Array.from({ length: N }, (_, i) => `job_${String(i).padStart(7, "0")}`);
    await observer.query("INSERT INTO t (id) SELECT unnest($1::text[])", [ids]);
    await jsm.streams.add({ name: stream, subjects: [subject], retention: RetentionPolicy.Workqueue, storage: StorageType.File, num_replicas: 1 });
    await jsm.consumers.add(stream, { durable_name: "work", ack_policy: AckPolicy.Explicit, filter_subject: subject, max_ack_pending: 10_000 });
    const js = nc.jetstream({ timeout: 2000 });
    // Warm the pool as an app would be.
    await Promise.all(Array.from({ length: 10 }, () => pool.query("SELECT 1")));
    const load = loadavg()[0]!;
    const nats = natsPid();
    const pidsBefore = await backendPids(observer, database);
    const pgBefore = cpuOf(pidsBefore);
    const natsBefore = nats ? cpuSeconds(nats).own : NaN;
    const benchBefore = process.cpuUsage();
    const eluBefore = perf.eventLoopUtilization();
    const started = performance.now();
    let done = 0;
    const publisher = (async () => {
      for (const id of ids) {
        await js.publish(subject, id, { msgID: id });
        await pool.query("UPDATE t SET sent_at = now() WHERE id = $1", [id]);
      }
    })();
    const consumer = await js.consumers.get(stream, "work");
    const slot = async () => {
      while (done < N) {
        // One pull request for one message, waiting up to 1 s for it.
        const msg: JsMsg | null = await consumer.next({ expires: 1000 });
        if (!msg) continue;
        await pool.query("UPDATE t SET status = 'completed' WHERE id = $1", [msg.string()]);
        await msg.ackAck();
        done++;
      }
    };
    await Promise.all([publisher, ...Array.from({ length: concurrency }, slot)]);
    const wallS = (performance.now() - started) / 1000;
    const elu = perf.eventLoopUtilization(eluBefore).utilization;
    const benchCpu = process.cpuUsage(benchBefore);
    const pidsAfter = await backendPids(observer, database);
    const cpu = {
      bench: (benchCpu.user + benchCpu.system) / 1e6,
      postgres: cpuSince(pgBefore, [...new Set([...pidsBefore, ...pidsAfter])]),
      nats: nats ? cpuSeconds(nats).own - natsBefore : NaN,
    };
    const { rows: [check] } = await observer.query<{ n: string }>("SELECT count(*) AS n FROM t WHERE status = 'completed'");
    if (Number(check!.n) !== N) throw new Error(`baseline: ${check!.n} of ${N} completed`);
    return { way: "baseline", concurrency, jobsPerS: N / wallS, wallS, cpu, elu, load };
  } finally {
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc.close();
    await observer.end();
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.end();
  }
}

function report(m: Measured): void {
  const head = m.way === "rendition" ? "Rendition" : "baseline ";
  console.log(`  ${head} ${m.concurrency} slot(s): ${m.jobsPerS.toFixed(0)} jobs/s (${N} in ${m.wallS.toFixed(2)} s; load ${m.load.toFixed(1)})${m.createsPerS ? `; creating them: ${m.createsPerS.toFixed(0)} creates/s; relay had sent all after ${m.relayDoneS?.toFixed(2)} s` : ""}`);
  console.log(`    ${cpuLine(m)}`);
  if (m.stages) {
    const rows = m.stages.sort((a, b) => b.totalS - a.totalS).map((s) => `${s.name} ${s.calls}x ${s.meanMs.toFixed(2)} ms`);
    console.log(`    mean latency per call: ${rows.join(", ")}`);
  }
}

async function main(): Promise<void> {
  console.log(`machine: ${cpus().length} x ${cpus()[0]?.model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB; node ${process.version}; ${N} jobs per run; slots ${LEVELS.join(", ")}; ${CREATE_CONCURRENCY} concurrent creates`);
  const results: Measured[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [i, c] of LEVELS.entries()) {
      const ways = [() => runRendition(c), ...(opts["skip-baseline"] ? [] : [() => runBaseline(c)])];
      if ((round + i) % 2 === 0) ways.reverse();
      console.log(`round ${round}, ${c} slot(s):`);
      for (const way of ways) {
        const m = await way();
        results.push(m);
        report(m);
      }
    }
  }
  console.log(`\n| slots | Rendition jobs/s | baseline jobs/s | ratio | creates/s | bench CPU µs/job | PostgreSQL CPU µs/job | event loop busy |`);
  console.log(`|---|---|---|---|---|---|---|---|`);
  for (const c of LEVELS) {
    const a = results.filter((m) => m.way === "rendition" && m.concurrency === c);
    const b = results.filter((m) => m.way === "baseline" && m.concurrency === c);
    const ra = median(a.map((m) => m.jobsPerS));
    const rb = median(b.map((m) => m.jobsPerS));
    console.log(`| ${c} | ${ra.toFixed(0)} | ${b.length ? rb.toFixed(0) : "-"} | ${b.length ? (ra / rb).toFixed(2) : "-"} | ${median(a.map((m) => m.createsPerS!)).toFixed(0)} | ${median(a.map((m) => (m.cpu.bench / N) * 1e6)).toFixed(0)} | ${median(a.map((m) => (m.cpu.postgres / N) * 1e6)).toFixed(0)} | ${median(a.map((m) => m.elu * 100)).toFixed(0)} % |`);
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
