/**
 * `npm run bench:watch`: Watch fan-out. One API process (`services/main.ts api`, a child process
 * so that its RSS and CPU can be read from /proc) on PostgreSQL (a database of its own) and NATS
 * (127.0.0.1:4222, a subject prefix of its own); N Watch streams (default 2,000) over Connect
 * JSON on h2c (HTTP/2 with prior knowledge, default 20 connections, so 100 streams per
 * connection) spread over J jobs (default 200), set to `processing` in the database. A driver in
 * this process publishes progress events for those jobs to the NATS subjects the API subscribes
 * to (`<prefix>.events.job.<id>`, as a worker does), one per job per interval (default 1 s,
 * staggered), and the clients measure each event's latency from publish to receipt of the
 * PROGRESS message (the same clock: driver and clients are this process).
 *
 * Baseline, in the same run and process: a bare NATS subscriber (its own connection, one wildcard
 * subscription) receiving the same events; its latency is what NATS plus this process's own load
 * cost, without the API.
 *
 * Reports p50/p95/p99 latency of both, the API's RSS before and after opening the streams (per
 * stream), and the CPU of the API process and of this process while the events flow.
 *
 * Options: --streams N (2000), --jobs J (200), --connections C (20), --seconds S (events phase,
 * 30), --interval MS (per job, 1000; at least the API's 200 ms progress debounce), --api-dir DIR
 * (run the API of another checkout, e.g. `git archive` of the commit before a change with a
 * node_modules link), --cpu-prof DIR (a V8 CPU profile of the API process, written when it stops). NATS_URL
 * (default nats://127.0.0.1:4222), DATABASE_ADMIN_URL (default
 * postgres://postgres@127.0.0.1:5432/postgres). Skips cleanly when NATS is not reachable.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { setMaxListeners } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { connect, type NatsConnection } from "nats";
import pg from "pg";
import { OutputType, Resolution, VideoCodec } from "../gen/rendition/v1/common_pb.js";
import { JobService, WatchEvent } from "../gen/rendition/v1/job_pb.js";
import { cpuSeconds } from "./hls.js";

const { values: opts } = parseArgs({
  options: {
    streams: { type: "string", default: "2000" },
    jobs: { type: "string", default: "200" },
    connections: { type: "string", default: "20" },
    seconds: { type: "string", default: "30" },
    "api-dir": { type: "string" },
    "cpu-prof": { type: "string" },
    interval: { type: "string", default: "1000" },
  },
});
const STREAMS = Number(opts.streams);
const JOBS = Number(opts.jobs);
const CONNECTIONS = Number(opts.connections);
const SECONDS = Number(opts.seconds);
const INTERVAL_MS = Number(opts.interval);
if (SECONDS * 1000 / INTERVAL_MS > 95) throw new Error("progress is 0-100: at most 95 events per job (--seconds / --interval)");
const NATS_URL = process.env.NATS_URL || "nats://127.0.0.1:4222";
const ADMIN_URL = process.env.DATABASE_ADMIN_URL || "postgres://postgres@127.0.0.1:5432/postgres";

const work = mkdtempSync(join(tmpdir(), "rendition-bench-watch-"));
const suffix = randomBytes(4).toString("hex");
const database = `rendition_bench_watch_${suffix}`;
const prefix = `bw${suffix}`;
const databaseUrl = (() => {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${database}`;
  return url.toString();
})();
const children: ChildProcess[] = [];

async function admin<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

function startApi(env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [...(opts["cpu-prof"] ? ["--cpu-prof", "--cpu-prof-dir", opts["cpu-prof"]] : []), "--import", "tsx", "services/main.ts", "api"], { env, cwd: opts["api-dir"], stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let log = "";
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      log += chunk.toString();
      const match = /listening on [^\s:]+:(\d+)/.exec(log);
      if (match) resolve({ child, port: Number(match[1]) });
      if (log.length > 100_000) log = log.slice(-50_000);
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => reject(new Error(`the API exited with ${code}:\n${log}`)));
  });
}

/** VmRSS of a process, in bytes. */
function rss(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match![1]) * 1024;
}

function percentile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Latencies in ms, sorted. */
function summary(values: number[]) {
  const sorted = Float64Array.from(values).sort();
  return { n: sorted.length, p50: percentile(sorted, 50), p95: percentile(sorted, 95), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? NaN };
}

const fmt = (s: ReturnType<typeof summary>) => `p50 ${s.p50.toFixed(2)} ms, p95 ${s.p95.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms, max ${s.max.toFixed(1)} ms (${s.n} events)`;

async function main(): Promise<void> {
  let driverNc: NatsConnection;
  try {
    driverNc = await connect({ servers: NATS_URL, name: `bench-watch-driver-${prefix}`, timeout: 3000 });
  } catch (err) {
    console.log(`bench:watch skipped: NATS is not reachable at ${NATS_URL} (${(err as Error).message}); start nats-server -js or set NATS_URL.`);
    return;
  }
  const baselineNc = await connect({ servers: NATS_URL, name: `bench-watch-baseline-${prefix}` });
  await admin(ADMIN_URL, (c) => c.query(`CREATE DATABASE ${database}`));
  const abort = new AbortController();
  setMaxListeners(0, abort.signal); // every stream listens to it
  try {
    // Thousands of Watch opens from one organization: not what the rate limit is for.
    const env = { ...process.env, RENDITION_RATE_LIMIT_RPS: "0" };
    const api = await startApi({
      ...env,
      DATABASE_URL: databaseUrl,
      NATS_URL,
      RENDITION_NATS_PREFIX: prefix,
      RENDITION_DATA_DIR: join(work, "data"),
      PORT: "0",
      HOST: "127.0.0.1",
    });
    const apiPid = api.child.pid!;
    const credentials = JSON.parse(readFileSync(join(work, "data", "credentials.json"), "utf8"));
    const baseUrl = `http://127.0.0.1:${api.port}`;
    const auth = (next: any) => (req: any) => {
      req.header.set("authorization", `Bearer ${credentials.api_key}`);
      req.header.set("x-organization-id", credentials.organization_id);
      return next(req);
    };
    const transports = Array.from({ length: CONNECTIONS }, () => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: false, interceptors: [auth] }));
    const clients = transports.map((t) => createClient(JobService, t));

    // The jobs, moved to `processing` as if a worker had started them (no encoder runs).
    const jobIds: string[] = [];
    for (let i = 0; i < JOBS; i++) {
      const { job } = await clients[0]!.create({
        inputOriginId: credentials.local_origin_id,
        inputPath: "uploads/in.mp4",
        outputOriginId: credentials.local_origin_id,
        outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_720P }] }],
      });
      jobIds.push(job!.id);
    }
    await admin(databaseUrl, (c) => c.query(`UPDATE jobs SET status = 'processing', started_at = now() WHERE id = ANY($1)`, [jobIds]));

    // When each (job, progress) was published, by the driver's clock; the receivers look it up.
    const sentAt = new Map<string, number>();
    const key = (jobId: string, progress: number) => `${jobId}:${progress}`;
    let measuring = false;
    const watchLatencies: number[] = [];
    const baselineLatencies: number[] = [];
    let unmatched = 0;

    const baselineSub = baselineNc.subscribe(`${prefix}.events.job.*`, {
      callback: (err, msg) => {
        if (err) return;
        const now = performance.now();
        const event = msg.json<{ jobId: string; progress: number }>();
        const at = sentAt.get(key(event.jobId, event.progress));
        if (at !== undefined && measuring) baselineLatencies.push(now - at);
      },
    });
    await baselineNc.flush();

    /** Opens `count` streams (at most 50 opening at once), each resolved once its snapshot arrived. */
    async function openStreams(count: number, signal: AbortSignal, onProgress: boolean): Promise<Array<Promise<void>>> {
      const ended: Array<Promise<void>> = [];
      let next = 0;
      const openOne = (i: number) =>
        new Promise<void>((opened, failed) => {
          const jobId = jobIds[i % JOBS]!;
          const client = clients[i % CONNECTIONS]!;
          ended.push(
            (async () => {
              let snapshot = false;
              try {
                for await (const message of client.watch({ id: jobId }, { signal })) {
                  if (!snapshot) {
                    snapshot = true;
                    opened();
                    continue;
                  }
                  if (!onProgress || message.event !== WatchEvent.PROGRESS) continue;
                  const now = performance.now();
                  const at = sentAt.get(key(jobId, message.job!.progress));
                  if (at === undefined) unmatched++;
                  else if (measuring) watchLatencies.push(now - at);
                }
              } catch (err) {
                if (!signal.aborted) {
                  if (!snapshot) failed(err);
                  else console.error(`stream ${i} on ${jobId} failed:`, err);
                }
              }
            })(),
          );
        });
      const workers = Array.from({ length: 50 }, async () => {
        while (next < count) await openOne(next++);
      });
      await Promise.all(workers);
      return ended;
    }

    console.log(
      `bench:watch on ${cpus().length}× ${cpus()[0]?.model.trim()}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}: ` +
        `${STREAMS} Watch streams on ${JOBS} jobs over ${CONNECTIONS} h2c connections (Connect JSON), one progress event per job every ${INTERVAL_MS} ms for ${SECONDS} s; load average ${loadavg()[0]!.toFixed(1)}`,
    );
    // Warm-up: code paths, the h2 sessions, the database pool; then let it settle.
    const warm = new AbortController();
    setMaxListeners(0, warm.signal);
    const warmEnded = await openStreams(Math.min(200, STREAMS), warm.signal, false);
    warm.abort();
    await Promise.all(warmEnded);
    await sleep(2000);
    const rssBefore = rss(apiPid);

    const openStart = performance.now();
    const cpuOpenBefore = cpuSeconds(apiPid).own;
    const ended = await openStreams(STREAMS, abort.signal, true);
    const openMs = performance.now() - openStart;
    const openCpu = cpuSeconds(apiPid).own - cpuOpenBefore;
    await sleep(1000);
    const rssOpen = rss(apiPid);
    console.log(`opened ${STREAMS} streams in ${(openMs / 1000).toFixed(2)} s (API CPU ${openCpu.toFixed(2)} s, ${((openCpu * 1e6) / STREAMS).toFixed(0)} µs per stream); API RSS ${(rssBefore / 2 ** 20).toFixed(1)} MiB before, ${(rssOpen / 2 ** 20).toFixed(1)} MiB with the streams open`);

    // The driver: every tick publishes the events due by now (time-based, so a late timer catches
    // up), job after job, so that each job gets one event per interval.
    const progress = new Array<number>(JOBS).fill(0);
    const TICK_MS = 10;
    let published = 0;
    const subject = (jobId: string) => `${prefix}.events.job.${jobId}`;
    const cpuBefore = cpuSeconds(apiPid).own;
    const selfBefore = process.cpuUsage();
    const loadBefore = loadavg()[0]!;
    measuring = true;
    const started = performance.now();
    await new Promise<void>((done) => {
      const timer = setInterval(() => {
        const elapsed = performance.now() - started;
        const due = Math.min(Math.floor((elapsed / INTERVAL_MS) * JOBS), Math.floor((SECONDS * 1000 / INTERVAL_MS) * JOBS));
        while (published < due) {
          const j = published % JOBS;
          const p = ++progress[j]!;
          const jobId = jobIds[j]!;
          sentAt.set(key(jobId, p), performance.now());
          driverNc.publish(subject(jobId), JSON.stringify({ jobId, organizationId: credentials.organization_id, kind: "progress", status: "processing", progress: p }));
          published++;
        }
        if (elapsed >= SECONDS * 1000) {
          clearInterval(timer);
          done();
        }
      }, TICK_MS);
    });
    await sleep(1000); // the last events arrive
    measuring = false;
    const elapsedS = (performance.now() - started) / 1000;
    const apiCpu = cpuSeconds(apiPid).own - cpuBefore;
    const self = process.cpuUsage(selfBefore);
    const selfCpu = (self.user + self.system) / 1e6;
    const rssAfter = rss(apiPid);

    const watch = summary(watchLatencies);
    const baseline = summary(baselineLatencies);
    const expected = published * (STREAMS / JOBS);
    const perStream = (rssAfter - rssBefore) / STREAMS;
    console.log(`\npublished ${published} events (${(published / SECONDS).toFixed(0)}/s), ${expected.toFixed(0)} expected at the streams, ${(expected / SECONDS).toFixed(0)}/s; load average ${loadBefore.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after`);
    console.log(`| | p50 | p95 | p99 | max | events |`);
    console.log(`|---|---|---|---|---|---|`);
    console.log(`| Watch streams (API) | ${watch.p50.toFixed(2)} ms | ${watch.p95.toFixed(2)} ms | ${watch.p99.toFixed(2)} ms | ${watch.max.toFixed(1)} ms | ${watch.n} of ${expected.toFixed(0)} |`);
    console.log(`| bare NATS subscriber | ${baseline.p50.toFixed(2)} ms | ${baseline.p95.toFixed(2)} ms | ${baseline.p99.toFixed(2)} ms | ${baseline.max.toFixed(1)} ms | ${baseline.n} of ${published} |`);
    console.log(`  Watch p99 = ${watch.p99.toFixed(2)} ms (goal <= 50 ms); Watch/bare p99 = ${(watch.p99 / baseline.p99).toFixed(1)}, p50 = ${(watch.p50 / baseline.p50).toFixed(1)}`);
    console.log(`  ${fmt(watch)}${unmatched ? `; ${unmatched} progress messages matched no published event` : ""}`);
    console.log(
      `  API RSS: ${(rssBefore / 2 ** 20).toFixed(1)} MiB before the streams, ${(rssOpen / 2 ** 20).toFixed(1)} MiB open, ${(rssAfter / 2 ** 20).toFixed(1)} MiB after ${SECONDS} s of events: ` +
        `${(perStream / 1024).toFixed(1)} KiB per stream (goal <= 20 KB; ${(((rssOpen - rssBefore) / STREAMS) / 1024).toFixed(1)} KiB just open)`,
    );
    console.log(
      `  CPU during the events: API ${apiCpu.toFixed(2)} s in ${elapsedS.toFixed(1)} s (${((apiCpu / elapsedS) * 100).toFixed(0)} % of a core, ${((apiCpu * 1e6) / Math.max(1, watch.n)).toFixed(0)} µs per delivered event); ` +
        `this process (driver, ${STREAMS} clients, baseline) ${selfCpu.toFixed(2)} s (${((selfCpu / elapsedS) * 100).toFixed(0)} %)`,
    );
    baselineSub.unsubscribe();
    abort.abort();
    await Promise.all(ended);
  } finally {
    abort.abort();
    await driverNc.close();
    await baselineNc.close();
  }
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(async () => {
    for (const child of children) child.kill("SIGTERM");
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once("exit", r)) : undefined)));
    // The API made a JetStream stream for its prefix: remove it.
    try {
      const nc = await connect({ servers: NATS_URL, timeout: 3000 });
      const jsm = await nc.jetstreamManager();
      for await (const stream of jsm.streams.list()) if (stream.config.name.startsWith(prefix.toUpperCase())) await jsm.streams.delete(stream.config.name);
      await nc.close();
    } catch {
      // NATS was never reachable, or the stream is gone already
    }
    await admin(ADMIN_URL, (c) => c.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)).catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  });
