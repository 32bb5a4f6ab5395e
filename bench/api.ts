/**
 * `npm run bench:api`: API throughput, Get and Create over Connect JSON (HTTP/1.1, keep-alive),
 * against a bare connect-node handler measured in the same run. Not a test: it prints figures for
 * docs/benchmarks.md.
 *
 *   - measured: the real API process, `services/main.ts api` as operators run it, on PostgreSQL
 *     (127.0.0.1:5432, a database of its own, created and dropped here), with its interceptors
 *     (errors, auth: key digest lookup, validation: protovalidate + cross-field checks). No
 *     NATS_URL, so the outbox relay runs and moves each new job to the in-process queue, where it
 *     stays pending (no encoder runs). Get reads one existing job; Create makes a valid
 *     local-origin job per request (no idempotency key);
 *   - baseline: bench/api-bare.ts, a bare connect-node server (same JSON options) whose Get and
 *     Create answer the same job at once, in its own process like the API.
 *
 * Load generator: wrk (Debian: `apt-get install -y wrk`; skipped cleanly when it is missing),
 * closed loop, C keep-alive connections, one thread; it costs far less CPU per request than
 * either server, which matters on a 2-core machine. The four measurements (bare Get, API Get,
 * bare Create, API Create) interleave round by round, in reverse order every other round, so
 * drift in the machine's load hits all alike. Beside req/s and latency it reports CPU per request
 * from /proc: the server process's and PostgreSQL's backends' (less sensitive to other load).
 *
 * Options: --duration S (per measurement, default 10), --rounds N (default 3), --connections C
 * (default 32), --warmup S (default 3), --skip-create, --cpu-prof DIR (a V8 CPU profile of the
 * API process, written to DIR when it stops), --only NAMES (some of the measurements, comma-separated,
 * e.g. "API Get" for profiling or "bare Create,API Create"), --before DIR (also measure the API
 * of another checkout in DIR, e.g. `git archive` of the commit before a change with a
 * node_modules link: "before Get", "before Create", on the same database). DATABASE_ADMIN_URL picks the server
 * (default postgres://postgres@127.0.0.1:5432/postgres).
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import { cpuSeconds } from "./hls.js";

const { values: opts } = parseArgs({
  options: {
    duration: { type: "string", default: "10" },
    rounds: { type: "string", default: "3" },
    connections: { type: "string", default: "32" },
    warmup: { type: "string", default: "3" },
    "skip-create": { type: "boolean", default: false },
    "cpu-prof": { type: "string" },
    only: { type: "string" },
    before: { type: "string" },
  },
});
const DURATION = Number(opts.duration);
const ROUNDS = Number(opts.rounds);
const CONNECTIONS = Number(opts.connections);
const WARMUP = Number(opts.warmup);
const ADMIN_URL = process.env.DATABASE_ADMIN_URL || "postgres://postgres@127.0.0.1:5432/postgres";

function findWrk(): string | undefined {
  try {
    return execFileSync("sh", ["-c", "command -v wrk"], { encoding: "utf8" }).trim() || undefined;
  } catch {
    return undefined;
  }
}

const WRK = findWrk();
if (!WRK) {
  console.log("bench:api skipped: wrk is not installed (Debian/Ubuntu: `apt-get install -y wrk`; macOS: `brew install wrk`).");
  process.exit(0);
}

const work = mkdtempSync(join(tmpdir(), "rendition-bench-api-"));
const database = `rendition_bench_api_${randomBytes(4).toString("hex")}`;
const databaseUrl = (() => {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${database}`;
  return url.toString();
})();
const children: ChildProcess[] = [];

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Starts a child and resolves with the port it prints in "listening on host:port". */
function startChild(args: string[], env: NodeJS.ProcessEnv, nodeArgs: string[] = [], cwd?: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [...nodeArgs, "--import", "tsx", ...args], { env, cwd, stdio: ["ignore", "pipe", "pipe"] });
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
    child.once("exit", (code) => reject(new Error(`${args.join(" ")} exited with ${code}:\n${log}`)));
  });
}

async function post(url: string, headers: Record<string, string>, body: unknown): Promise<any> {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${text}`);
  return JSON.parse(text);
}

interface WrkResult {
  requests: number;
  durationS: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** CPU seconds per 1000 requests: the server process, PostgreSQL's backends for its database. */
  serverCpuMsPerReq: number;
  pgCpuMsPerReq: number;
  load: number;
}

const luaString = (s: string) => `[==[${s}]==]`;

function wrkScript(name: string, headers: Record<string, string>, body: string): string {
  const file = join(work, `${name}.lua`);
  const lines = [
    `wrk.method = "POST"`,
    `wrk.body = ${luaString(body)}`,
    `wrk.headers["Content-Type"] = "application/json"`,
    ...Object.entries(headers).map(([k, v]) => `wrk.headers[ ${luaString(k)} ] = ${luaString(v)}`),
    `done = function(summary, latency, requests)`,
    `  local e = summary.errors`,
    `  io.write(string.format('WRK {"requests":%d,"duration_us":%d,"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\\n',`,
    `    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout, latency:percentile(50), latency:percentile(99)))`,
    `end`,
  ];
  writeFileSync(file, lines.join("\n") + "\n");
  return file;
}

/** CPU seconds of the PostgreSQL backends serving `database` (they come and go with the pool). */
async function pgCpuSeconds(client: pg.Client): Promise<Map<number, number>> {
  const { rows } = await client.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = $1", [database]);
  return new Map(rows.map((r) => [r.pid, cpuSeconds(r.pid).own]));
}

function pgCpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let sum = 0;
  for (const [pid, s] of after) if (Number.isFinite(s)) sum += s - (before.get(pid) ?? 0);
  return sum;
}

async function runWrk(url: string, script: string, seconds: number, serverPid: number, pgClient: pg.Client): Promise<WrkResult> {
  const load = loadavg()[0]!;
  const cpuBefore = cpuSeconds(serverPid).own;
  const pgBefore = await pgCpuSeconds(pgClient);
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(WRK!, ["-t1", `-c${CONNECTIONS}`, `-d${seconds}s`, "--timeout", "10s", "-s", script, url], { stdio: ["ignore", "pipe", "inherit"] });
    let text = "";
    child.stdout.on("data", (c: Buffer) => (text += c.toString()));
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited with ${code}: ${text}`))));
  });
  const cpu = cpuSeconds(serverPid).own - cpuBefore;
  const pgCpu = pgCpuDelta(pgBefore, await pgCpuSeconds(pgClient));
  const line = /WRK (\{.*\})/.exec(out);
  if (!line) throw new Error(`no summary from wrk:\n${out}`);
  const r = JSON.parse(line[1]!);
  const durationS = r.duration_us / 1e6;
  return {
    requests: r.requests,
    durationS,
    rps: r.requests / durationS,
    p50Ms: r.p50_us / 1000,
    p99Ms: r.p99_us / 1000,
    errors: r.status + r.connect + r.read + r.write + r.timeout,
    serverCpuMsPerReq: (cpu * 1000) / r.requests,
    pgCpuMsPerReq: (pgCpu * 1000) / r.requests,
    load,
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function main(): Promise<void> {
  await admin((c) => c.query(`CREATE DATABASE ${database}`));
  const pgClient = new pg.Client({ connectionString: ADMIN_URL });
  await pgClient.connect();
  try {
    // Throughput, not the per-organization limits: one organization sends everything, and Create
    // leaves every job pending.
    const env: NodeJS.ProcessEnv = { ...process.env, RENDITION_RATE_LIMIT_RPS: "0", RENDITION_MAX_ACTIVE_JOBS_PER_ORG: "0" };
    delete env.NATS_URL;
    const api = await startChild(["services/main.ts", "api"], {
      ...env,
      DATABASE_URL: databaseUrl,
      RENDITION_DATA_DIR: join(work, "data"),
      PORT: "0",
      HOST: "127.0.0.1",
    }, opts["cpu-prof"] ? ["--cpu-prof", "--cpu-prof-dir", opts["cpu-prof"]] : []);
    const credentials = JSON.parse(readFileSync(join(work, "data", "credentials.json"), "utf8"));
    const apiUrl = `http://127.0.0.1:${api.port}`;
    const auth = { authorization: `Bearer ${credentials.api_key}`, "x-organization-id": credentials.organization_id };
    const createBody = {
      input_origin_id: credentials.local_origin_id,
      input_path: "uploads/in.mp4",
      output_origin_id: credentials.local_origin_id,
      outputs: [{ type: "OUTPUT_TYPE_MP4", video: [{ codec: "VIDEO_CODEC_H264", resolution: "RESOLUTION_720P" }] }],
    };
    const created = await post(`${apiUrl}/rendition.v1.JobService/Create`, auth, createBody);
    const getBody = { id: created.job.id };
    const answer = await post(`${apiUrl}/rendition.v1.JobService/Get`, auth, getBody);
    const answerFile = join(work, "get-response.json");
    writeFileSync(answerFile, JSON.stringify(answer));
    const bare = await startChild(["bench/api-bare.ts", answerFile], process.env);
    // --before DIR: the same API from another checkout (say, the commit before a fix), on the same database.
    const before = opts.before
      ? await startChild(["services/main.ts", "api"], { ...env, DATABASE_URL: databaseUrl, RENDITION_DATA_DIR: join(work, "data-before"), PORT: "0", HOST: "127.0.0.1" }, [], opts.before)
      : undefined;
    const beforeUrl = before && `http://127.0.0.1:${before.port}`;
    const bareUrl = `http://127.0.0.1:${bare.port}`;
    // Both servers answer the same bytes for Get.
    const bareAnswer = await post(`${bareUrl}/rendition.v1.JobService/Get`, {}, getBody);
    if (JSON.stringify(bareAnswer) !== JSON.stringify(answer)) throw new Error("the bare server's Get answer differs from the API's");

    const scripts = {
      get: wrkScript("get", auth, JSON.stringify(getBody)),
      create: wrkScript("create", auth, JSON.stringify(createBody)),
    };
    type Target = { name: string; url: string; script: string; pid: number };
    const targets: Target[] = [
      { name: "bare Get", url: `${bareUrl}/rendition.v1.JobService/Get`, script: scripts.get, pid: bare.child.pid! },
      { name: "API Get", url: `${apiUrl}/rendition.v1.JobService/Get`, script: scripts.get, pid: api.child.pid! },
      ...(before ? [{ name: "before Get", url: `${beforeUrl}/rendition.v1.JobService/Get`, script: scripts.get, pid: before.child.pid! }] : []),
    ];
    if (!opts["skip-create"]) {
      targets.push(
        { name: "bare Create", url: `${bareUrl}/rendition.v1.JobService/Create`, script: scripts.create, pid: bare.child.pid! },
        { name: "API Create", url: `${apiUrl}/rendition.v1.JobService/Create`, script: scripts.create, pid: api.child.pid! },
        ...(before ? [{ name: "before Create", url: `${beforeUrl}/rendition.v1.JobService/Create`, script: scripts.create, pid: before.child.pid! }] : []),
      );
    }

    if (opts.only) targets.splice(0, targets.length, ...targets.filter((t) => opts.only!.split(",").includes(t.name)));
    console.log(`bench:api on ${cpus().length}× ${cpus()[0]?.model.trim()}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; wrk -t1 -c${CONNECTIONS}, ${DURATION} s per measurement, ${ROUNDS} round(s)`);
    for (const t of targets) await runWrk(t.url, t.script, WARMUP, t.pid, pgClient); // JIT, pools, caches
    const results = new Map<string, WrkResult[]>(targets.map((t) => [t.name, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      for (const t of round % 2 ? targets : [...targets].reverse()) {
        const r = await runWrk(t.url, t.script, DURATION, t.pid, pgClient);
        results.get(t.name)!.push(r);
        console.log(
          `round ${round}: ${t.name.padEnd(11)} ${r.rps.toFixed(0).padStart(6)} req/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, ` +
            `${r.errors} errors; CPU per request: server ${r.serverCpuMsPerReq.toFixed(3)} ms, PostgreSQL ${r.pgCpuMsPerReq.toFixed(3)} ms (load ${r.load.toFixed(1)})`,
        );
      }
    }

    const m = (name: string, key: keyof WrkResult) => median(results.get(name)!.map((r) => r[key]));
    console.log(`\nmedians of ${ROUNDS} (wrk -t1 -c${CONNECTIONS}, ${DURATION} s each):`);
    console.log("| | req/s | p50 | p99 | server CPU / req | PostgreSQL CPU / req | errors |");
    console.log("|---|---|---|---|---|---|---|");
    for (const t of targets) {
      const errors = results.get(t.name)!.reduce((s, r) => s + r.errors, 0);
      console.log(
        `| ${t.name} | ${m(t.name, "rps").toFixed(0)} | ${m(t.name, "p50Ms").toFixed(2)} ms | ${m(t.name, "p99Ms").toFixed(2)} ms | ` +
          `${m(t.name, "serverCpuMsPerReq").toFixed(3)} ms | ${m(t.name, "pgCpuMsPerReq").toFixed(3)} ms | ${errors} |`,
      );
    }
    const ratio = (a: string, b: string) => {
      const per = results.get(a)!.map((r, i) => (r.rps / results.get(b)![i]!.rps).toFixed(2)).join(", ");
      return `${(m(a, "rps") / m(b, "rps")).toFixed(3)} (per round ${per})`;
    };
    if (results.has("API Get") && results.has("bare Get")) console.log(`  Get: API/bare = ${ratio("API Get", "bare Get")}, goal >= 0.5`);
    if (results.has("API Create") && results.has("bare Create")) {
      console.log(`  Create: ${m("API Create", "rps").toFixed(0)}/s, goal >= 1000/s; API/bare = ${ratio("API Create", "bare Create")}`);
    }
    for (const method of ["Get", "Create"]) {
      if (results.has(`API ${method}`) && results.has(`before ${method}`)) console.log(`  ${method}: API/before = ${ratio(`API ${method}`, `before ${method}`)}`);
    }
    const jobs = await (async () => {
      const c = new pg.Client({ connectionString: databaseUrl });
      await c.connect();
      try {
        return (await c.query<{ n: number; pending: number }>(`SELECT count(*)::int AS n, count(*) FILTER (WHERE status = 'pending')::int AS pending FROM jobs`)).rows[0]!;
      } finally {
        await c.end();
      }
    })();
    console.log(`  jobs in the database afterwards: ${jobs.n} (${jobs.pending} pending)`);
  } finally {
    await pgClient.end();
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
    await admin((c) => c.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)).catch((err) => console.error("could not drop", database, err));
    rmSync(work, { recursive: true, force: true });
  });
