/**
 * `npm run chaos`: breaks a real Rendition deployment on purpose and checks that nothing is lost,
 * finished twice or left broken (not a test; figures for docs/reliability.md).
 *
 * It starts everything privately: a PostgreSQL cluster (initdb into a temp dir, its own port,
 * durable settings), a nats-server with JetStream (its own store and port), a webhook receiver,
 * one or two `api` processes and N `worker` processes (`services/main.ts`, each in its own
 * process group so `kill -9` of the group takes its ffmpeg too), and runs these scenarios:
 *   a  kill    random `kill -9` of workers' process groups while jobs run, each restarted
 *   b  nats    nats-server SIGKILLed mid-run and started again on the same store
 *   c  pg      PostgreSQL stopped with `pg_ctl stop -m immediate` mid-run and started again
 *   d  api     an API process SIGKILLed during Creates (with idempotency keys, retried on the
 *              other API) and during open Watches (which reconnect), then restarted
 *   e  netns   a worker inside a network namespace (veth pair, private /30) cut off from NATS and
 *              PostgreSQL while it encodes (`ip link set down`), then reconnected
 * Options: --quick (scenario a only, small), --scenarios a,b,..., --jobs N, --workers N,
 * --outage S, --nats-signal KILL|TERM (how b stops NATS), --keep (keep the run directory and logs).
 *
 * Prints one row per scenario and exits 1 when any job was lost, stuck, failed, finished twice or
 * left invalid output, any event was missing or doubled, or the API answered `internal`/`unknown`
 * or hung (no answer within 5 s) during an outage. The last line, `chaos-json: {...}`, is the same
 * table for programs (test/e2e/chaos-quick.test.ts).
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { JobStatus, OutputType, Quality, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobService, WatchEvent } from "../../gen/rendition/v1/job_pb.js";
import { authHeaders } from "../../test/support/api-harness.js";
import { ffprobeJson, generateClip } from "../../test/support/media.js";
import { spawnRendition, type RenditionProcess } from "../../test/support/process.js";
import { freePort } from "../../test/support/services.js";
import { startWebhookReceiver, type WebhookReceiver } from "../../test/support/webhook-receiver.js";
import { NetworkNamespace, PrivateNats, PrivatePostgres, cleanupAll, onCleanup, removeLater } from "./infra.js";

const { values: opts } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    scenarios: { type: "string" },
    jobs: { type: "string" },
    workers: { type: "string" },
    outage: { type: "string" },
    keep: { type: "boolean", default: false },
    "nats-signal": { type: "string", default: "KILL" },
  },
});
const QUICK = opts.quick!;
const SCENARIOS = (opts.scenarios ?? (QUICK ? "a" : "a,b,c,d,e")).split(",").map((s) => s.trim()).filter(Boolean);
const JOBS = Number(opts.jobs ?? (QUICK ? 4 : 10));
const WORKERS = Number(opts.workers ?? (QUICK ? 2 : 3));
const OUTAGE_MS = Number(opts.outage ?? 8) * 1000;
const NATS_SIGNAL = `SIG${opts["nats-signal"]!.toUpperCase().replace(/^SIG/, "")}`;
if (NATS_SIGNAL !== "SIGKILL" && NATS_SIGNAL !== "SIGTERM") throw new Error("--nats-signal is KILL or TERM");
const LEASE_MS = 3000;
const CLIENT_TIMEOUT_MS = 5000;
const PROBE_EVERY_MS = 200;
/** How long a scenario's jobs may take to reach a terminal state once the fault is over. */
const SETTLE_MS = QUICK ? 40_000 : 120_000;
/** A Watch must report the terminal state within this long of the row's completed_at. */
const WATCH_GRACE_MS = 10_000;
const CLIP_S = 3;
const LONG_CLIP_S = 8;
const TERMINAL = new Set(["completed", "failed", "canceled", "partial"]);
const TERMINAL_EVENTS = new Set(["job.completed", "job.failed", "job.canceled", "job.partial"]);
const for_ = (ms: number) => sleep(ms, undefined, { ref: false });
const log = (line: string) => console.error(`${new Date().toISOString().slice(11, 23)} [chaos] ${line}`);

for (const s of SCENARIOS) if (!"abcde".includes(s) || s.length !== 1) throw new Error(`unknown scenario ${s}: use a,b,c,d,e`);

// --------------------------------------------------------------------------------------------
// The deployment
// --------------------------------------------------------------------------------------------

interface Proc {
  name: string;
  role: "api" | "worker";
  proc: RenditionProcess;
  prefix?: string[];
  port?: number;
}

const runDir = mkdtempSync(join(tmpdir(), "rendition-chaos-"));
chmodSync(runDir, 0o755); // the postgres user must reach its data directory below it
if (!opts.keep) removeLater(runDir);
const tag = randomBytes(3).toString("hex");
let env: Record<string, string> = {};
const procs = new Map<string, Proc>();
let netns: NetworkNamespace | undefined;
let netnsProblem = "";
let postgres: PrivatePostgres;
let nats: PrivateNats;
let receiver: WebhookReceiver;
let db: pg.Pool;
let credentials: { api_key: string; organization_id: string; local_origin_id: string };
const apiPorts: number[] = [];
let clients: Array<Client<typeof JobService>> = [];

/** Every process started, for the logs written at the end (a restarted name gets a new entry). */
const started: Proc[] = [];
/** Processes the script stopped; any other that exited crashed. */
const stoppedByUs = new Set<Proc>();
const crashReported = new Set<Proc>();

/** Processes that exited on their own since the last look (noted as crashes), restarted so the next scenario has the whole fleet. */
async function reapCrashes(s: ScenarioState): Promise<number> {
  const crashed = started.filter((p) => !alive(p) && !stoppedByUs.has(p) && !crashReported.has(p));
  for (const p of crashed) {
    crashReported.add(p);
    const exit = p.proc.child.exitCode ?? p.proc.child.signalCode;
    const why = p.proc.stderr.split("\n").find((l) => /^(Error|\w*Error:|fatal)/.test(l.trim())) ?? p.proc.stderr.trim().split("\n").at(-1) ?? "";
    s.notes.push(`crashed: ${p.name} (pid ${p.proc.child.pid}) exited ${exit} on its own: ${why.trim().slice(0, 200)}`);
  }
  for (const p of crashed) {
    if (procs.get(p.name) !== p) continue; // already replaced
    if (p.role === "api") await startApi(Number(p.name.slice(3)) - 1);
    else await startWorker(p.name, p.prefix);
  }
  return crashed.length;
}
function writeLogs(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const count = new Map<string, number>();
  for (const p of started) {
    const n = (count.get(p.name) ?? 0) + 1;
    count.set(p.name, n);
    writeFileSync(join(dir, `${p.name}.${n}.log`), p.proc.output);
  }
}

function spawnProc(name: string, role: "api" | "worker", extra: Record<string, string> = {}, prefix?: string[]): Proc {
  const proc = spawnRendition([role], { ...env, ...extra }, { detached: true, prefix });
  const p: Proc = { name, role, proc, prefix, port: extra.PORT ? Number(extra.PORT) : undefined };
  procs.set(name, p);
  started.push(p);
  return p;
}

function alive(p: Proc): boolean {
  return p.proc.child.exitCode === null && p.proc.child.signalCode === null;
}

/** SIGKILL (or `signal`) to the whole process group: the node process and its ffmpeg children. */
async function killGroup(p: Proc, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
  stoppedByUs.add(p);
  if (!alive(p)) return;
  try {
    process.kill(-p.proc.child.pid!, signal);
  } catch {
    // gone meanwhile
  }
  await p.proc.exited(30_000).catch(() => process.kill(-p.proc.child.pid!, "SIGKILL"));
}

async function startApi(index: number): Promise<Proc> {
  const p = spawnProc(`api${index + 1}`, "api", { PORT: String(apiPorts[index]), HOST: "127.0.0.1" });
  await p.proc.listening(90_000);
  return p;
}

async function startWorker(name: string, prefix?: string[]): Promise<Proc> {
  const p = spawnProc(name, "worker", {}, prefix);
  await p.proc.waitFor(/encoder \S+: \d+ slot/, 90_000);
  return p;
}

/** Workers whose process group has an ffmpeg running right now. */
function busyWorkers(): Proc[] {
  const out = execFileSync("ps", ["-eo", "pgid=,comm="], { encoding: "utf8" });
  const groups = new Set(out.split("\n").map((l) => l.trim().split(/\s+/)).filter(([, comm]) => comm === "ffmpeg").map(([pgid]) => Number(pgid)));
  return [...procs.values()].filter((p) => p.role === "worker" && alive(p) && groups.has(p.proc.child.pid!));
}

async function setup(): Promise<void> {
  if (SCENARIOS.includes("e")) {
    const made = NetworkNamespace.create();
    if (typeof made === "string") netnsProblem = made;
    else netns = made;
  }
  const host = netns?.hostIp ?? "127.0.0.1";
  postgres = await PrivatePostgres.create(join(runDir, "pg"), { listen: host, trustNet: netns?.cidr });
  const admin = new pg.Client({ connectionString: postgres.url });
  await admin.connect();
  await admin.query("CREATE DATABASE rendition");
  await admin.end();
  const databaseUrl = postgres.url.replace(/\/postgres$/, "/rendition");
  nats = await PrivateNats.create(join(runDir, "nats"), host);
  log(`PostgreSQL ${databaseUrl} (data in ${runDir}/pg), NATS ${nats.url}${netns ? `, namespace ${netns.name} (${netns.nsIp} ↔ ${netns.hostIp})` : ""}`);

  const dataDir = join(runDir, "data");
  mkdirSync(join(dataDir, "storage", "in"), { recursive: true });
  await generateClip(join(dataDir, "storage", "in", "clip.mp4"), { durationS: CLIP_S, width: 320, height: 240, fps: 25, audio: true });
  await generateClip(join(dataDir, "storage", "in", "long.mp4"), { durationS: LONG_CLIP_S, width: 640, height: 360, fps: 25, audio: true });
  receiver = await startWebhookReceiver();
  env = {
    DATABASE_URL: databaseUrl,
    NATS_URL: nats.url,
    RENDITION_NATS_PREFIX: `chaos_${tag}`,
    RENDITION_ENCRYPTION_KEY: randomBytes(32).toString("base64"),
    RENDITION_DATA_DIR: dataDir,
    RENDITION_TMP_DIR: join(runDir, "tmp"),
    RENDITION_NETWORK_ALLOW: "127.0.0.1",
    RENDITION_LEASE_MS: String(LEASE_MS),
    RENDITION_STUCK_AFTER_S: "15",
    RENDITION_FFMPEG_THREADS: "1",
    RENDITION_WATCH_HEARTBEAT_MS: "1000",
    RENDITION_SHUTDOWN_TIMEOUT_MS: "3000",
    RENDITION_WEBHOOK_POLL_MS: "200",
    RENDITION_WEBHOOK_TIMEOUT_MS: "2000",
    RENDITION_WEBHOOK_RETRY_SCHEDULE_MS: Array(50).fill("500").join(","),
  };
  // Processes die before the servers they talk to are stopped (cleanups run last-registered first).
  onCleanup(() => {
    for (const p of procs.values()) {
      if (!alive(p)) continue;
      try {
        process.kill(-p.proc.child.pid!, "SIGKILL");
      } catch {
        // gone
      }
    }
  });
  db = new pg.Pool({ connectionString: databaseUrl, max: 3, connectionTimeoutMillis: 2000 });
  db.on("error", () => undefined); // the cluster goes away on purpose

  const apis = SCENARIOS.includes("d") ? 2 : 1;
  for (let i = 0; i < apis; i++) apiPorts.push(await freePort());
  await startApi(0);
  credentials = JSON.parse(readFileSync(join(dataDir, "credentials.json"), "utf8"));
  clients = apiPorts.map((port) =>
    createClient(
      JobService,
      createConnectTransport({
        baseUrl: `http://127.0.0.1:${port}`,
        httpVersion: "1.1",
        interceptors: [authHeaders({ apiKey: credentials.api_key, organizationId: credentials.organization_id })],
      }),
    ),
  );
  await Promise.all([
    ...apiPorts.slice(1).map((_, i) => startApi(i + 1)),
    ...Array.from({ length: WORKERS }, (_, i) => startWorker(`worker${i + 1}`)),
  ]);
  log(`${apis} API process(es) on ${apiPorts.join(", ")}, ${WORKERS} workers, lease ${LEASE_MS} ms`);
}

// --------------------------------------------------------------------------------------------
// Clients: Create with retry, Watch with reconnect, probes
// --------------------------------------------------------------------------------------------

/** Socket errors of a connection that broke under the client (the process it talked to died). */
const CONNECTION_LOST = new Set(["EPIPE", "ECONNRESET", "ECONNREFUSED", "ECONNABORTED", "ERR_STREAM_PREMATURE_CLOSE", "ERR_HTTP2_STREAM_ERROR", "ERR_HTTP2_SESSION_ERROR"]);

/**
 * The answer's code, or `connection_lost` when no answer came because the connection broke (the
 * Connect client reports some of those, such as `write EPIPE`, as `internal`: not the server's).
 */
function codeOf(error: unknown): string {
  const err = ConnectError.from(error);
  for (let cause = err.cause, depth = 0; cause && depth < 4; cause = (cause as { cause?: unknown }).cause, depth++) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === "string" && CONNECTION_LOST.has(code)) return "connection_lost";
  }
  return Code[err.code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

function jobRequest(key: string, input = "in/clip.mp4") {
  return {
    inputOriginId: credentials.local_origin_id,
    inputPath: input,
    outputOriginId: credentials.local_origin_id,
    webhookUrl: receiver.url,
    idempotencyKey: key,
    outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 144, quality: Quality.ECONOMY }] }],
  };
}

const RETRYABLE = new Set(["unavailable", "deadline_exceeded", "internal", "unknown", "aborted", "canceled", "connection_lost"]);

interface ScenarioState {
  name: string;
  title: string;
  keyPrefix: string;
  /** Keys whose Create was sent (tracked submissions and probes). */
  keys: Set<string>;
  /** key → job id the API answered with. */
  answered: Map<string, string>;
  /** Tracked Creates the client gave up on (never answered within the retry budget). */
  gaveUp: string[];
  createErrors: Map<string, number>;
  watches: WatchRecord[];
  probes: Array<{ t: number; rpc: string; code: string; ms: number }>;
  outage?: { start: number; end: number };
  expectedDurationS: Map<string, number>;
  notes: string[];
}

function newScenario(name: string, title: string): ScenarioState {
  return {
    name,
    title,
    keyPrefix: `${tag}-${name}-`,
    keys: new Set(),
    answered: new Map(),
    gaveUp: [],
    createErrors: new Map(),
    watches: [],
    probes: [],
    expectedDurationS: new Map(),
    notes: [],
  };
}

const bump = (m: Map<string, number>, k: string, by = 1) => m.set(k, (m.get(k) ?? 0) + by);

/** A careful client: the same idempotency key on every retry, moving to the next API after a failure. */
async function createWithRetry(s: ScenarioState, key: string, options: { api?: number; input?: string; budgetMs?: number } = {}): Promise<string | undefined> {
  s.keys.add(key);
  s.expectedDurationS.set(key, options.input === "in/long.mp4" ? LONG_CLIP_S : CLIP_S);
  let api = options.api ?? 0;
  const deadline = Date.now() + (options.budgetMs ?? 90_000);
  for (;;) {
    try {
      const { job } = await clients[api]!.create(jobRequest(key, options.input), { timeoutMs: CLIENT_TIMEOUT_MS });
      s.answered.set(key, job!.id);
      return job!.id;
    } catch (error) {
      const code = codeOf(error);
      bump(s.createErrors, code);
      if (!RETRYABLE.has(code) || Date.now() > deadline) {
        s.gaveUp.push(`${key}: ${code} ${ConnectError.from(error).rawMessage.slice(0, 120)}`);
        return undefined;
      }
      api = (api + 1) % clients.length;
      await for_(300);
    }
  }
}

interface WatchRecord {
  jobId: string;
  events: Array<{ t: number; event: WatchEvent; status: JobStatus }>;
  errors: Map<string, number>;
  /** When each error came (the ones during the fault are counted with the probes). */
  errorTimes: Array<{ t: number; code: string; message: string }>;
  reconnects: number;
  terminalAt?: number;
  terminalStatus?: JobStatus;
  terminalEvents: number;
}

/** Watches a job to its end, reconnecting (to the next API) whenever the stream breaks. */
function watchJob(s: ScenarioState, jobId: string, stop: AbortSignal, api = 0): WatchRecord {
  const rec: WatchRecord = { jobId, events: [], errors: new Map(), errorTimes: [], reconnects: 0, terminalEvents: 0 };
  s.watches.push(rec);
  void (async () => {
    while (!stop.aborted) {
      try {
        for await (const m of clients[api]!.watch({ id: jobId }, { signal: stop })) {
          rec.events.push({ t: Date.now(), event: m.event, status: m.job?.status ?? JobStatus.UNSPECIFIED });
          if (m.event === WatchEvent.COMPLETED) {
            rec.terminalEvents += 1;
            rec.terminalAt ??= Date.now();
            rec.terminalStatus ??= m.job?.status;
          }
        }
        if (rec.terminalAt) return;
        bump(rec.errors, "ended_without_terminal");
      } catch (error) {
        if (stop.aborted) return;
        const code = codeOf(error);
        bump(rec.errors, code);
        rec.errorTimes.push({ t: Date.now(), code, message: ConnectError.from(error).rawMessage.slice(0, 200) });
      }
      rec.reconnects += 1;
      api = (api + 1) % clients.length;
      await for_(500);
    }
  })();
  return rec;
}

/** Get, List and Create every ~200 ms each, recording code and latency; a call past 5 s is a hang. */
function startProbes(s: ScenarioState, canaryId: string, stop: AbortSignal): Promise<unknown> {
  let probeCreates = 0;
  const loop = async (rpc: string, call: (client: Client<typeof JobService>) => Promise<unknown>) => {
    let api = 0;
    while (!stop.aborted) {
      const started = Date.now();
      let code = "ok";
      try {
        await call(clients[api]!);
      } catch (error) {
        code = codeOf(error);
        if (code === "unavailable" || code === "connection_lost") api = (api + 1) % clients.length;
      }
      const ms = Date.now() - started;
      s.probes.push({ t: started, rpc, code: code === "deadline_exceeded" || ms >= CLIENT_TIMEOUT_MS ? "hang" : code, ms });
      await for_(Math.max(0, PROBE_EVERY_MS - ms));
    }
  };
  return Promise.all([
    loop("Get", (c) => c.get({ id: canaryId }, { timeoutMs: CLIENT_TIMEOUT_MS })),
    loop("List", (c) => c.list({ pagination: { limit: 5 } }, { timeoutMs: CLIENT_TIMEOUT_MS })),
    // A new key every 25th Create (a real new job every ~5 s), replays of it in between.
    loop("Create", (c) => {
      const key = `${s.keyPrefix}probe-${Math.floor(probeCreates++ / 25)}`;
      s.keys.add(key);
      s.expectedDurationS.set(key, CLIP_S);
      return c.create(jobRequest(key), { timeoutMs: CLIENT_TIMEOUT_MS }).then(({ job }) => s.answered.set(key, job!.id));
    }),
  ]);
}

// --------------------------------------------------------------------------------------------
// Observing the truth: the database, the outputs, the receiver
// --------------------------------------------------------------------------------------------

interface JobRow {
  id: string;
  idempotency_key: string;
  status: string;
  error_code: string;
  completed_at: Date | null;
  claims: number;
  lease_owner: string;
  lease_expires_at: Date | null;
  updated_at: Date;
}

async function query<T>(sql: string, params: unknown[] = []): Promise<T[]> {
  return (await db.query(sql, params)).rows as T[];
}

async function scenarioJobs(s: ScenarioState): Promise<JobRow[]> {
  return query<JobRow>(
    "SELECT id, idempotency_key, status, error_code, completed_at, claims, lease_owner, lease_expires_at, updated_at FROM jobs WHERE idempotency_key LIKE $1",
    [`${s.keyPrefix}%`],
  );
}

/** Output files of completed jobs as first seen: a later change means a second write. */
const firstSeen = new Map<string, { file: string; sig: string }[]>();
function signature(file: string): string {
  try {
    const st = statSync(file);
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return "missing";
  }
}

async function outputsOf(jobId: string): Promise<string[]> {
  const rows = await query<{ output_url: string }>("SELECT output_url FROM job_outputs WHERE job_id = $1 ORDER BY position", [jobId]);
  return rows.map((r) => (r.output_url.startsWith("file:") ? fileURLToPath(r.output_url) : r.output_url));
}

/** Polls the database until every job of the scenario is terminal (or the deadline), noting outputs of newly completed ones. */
async function settle(s: ScenarioState, deadline: number): Promise<JobRow[]> {
  let rows: JobRow[] = [];
  let lastLog = Date.now();
  for (;;) {
    try {
      rows = await scenarioJobs(s);
      if (Date.now() - lastLog > 5000) {
        lastLog = Date.now();
        const counts: Record<string, number> = {};
        for (const r of rows) counts[r.status] = (counts[r.status] ?? 0) + 1;
        log(`  ${s.name}: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(", ")}`);
      }
      for (const row of rows) {
        if (row.status === "completed" && !firstSeen.has(row.id)) {
          firstSeen.set(row.id, (await outputsOf(row.id)).map((file) => ({ file, sig: signature(file) })));
        }
      }
      const everyKeyThere = [...s.answered.keys()].every((k) => rows.some((r) => r.idempotency_key === k));
      if (everyKeyThere && rows.every((r) => TERMINAL.has(r.status))) return rows;
    } catch {
      // the database is down: keep polling
    }
    if (Date.now() > deadline) return rows;
    await for_(300);
  }
}

/** When the first job of any scenario completed after `t` (ms since epoch), from the rows' completed_at. */
async function firstCompletionAfter(t: number): Promise<number | undefined> {
  const [row] = await query<{ at: Date | null }>("SELECT min(completed_at) AS at FROM jobs WHERE status = 'completed' AND completed_at > $1", [new Date(t)]);
  return row?.at ? row.at.getTime() : undefined;
}

/** One scenario's row (also the `chaos-json:` line's elements; test/e2e/chaos-quick.test.ts reads them). */
export interface Result {
  scenario: string;
  submitted: number;
  accepted: number;
  completed: number;
  failed: Record<string, number>;
  stuck: number;
  lost: number;
  duplicateJobs: number;
  finishedTwice: number;
  invalidOutput: number;
  eventsMissing: number;
  eventsDuplicate: number;
  watchStale: number;
  watchWrong: number;
  watchMaxLagMs: number;
  outage: Record<string, number>;
  outageMaxMs: number;
  hangs: number;
  badOutageAnswers: number;
  recoveryS: number | null;
  /** Processes (API or worker) that exited on their own. */
  crashed: number;
  elapsedS: number;
  pass: boolean;
  notes: string[];
}

async function verify(s: ScenarioState, rows: JobRow[], startedAt: number, crashed: number): Promise<Result> {
  const notes = s.notes;
  const byKey = new Map<string, JobRow[]>();
  for (const r of rows) byKey.set(r.idempotency_key, [...(byKey.get(r.idempotency_key) ?? []), r]);
  const duplicateJobs = [...byKey.values()].filter((list) => list.length > 1).length;
  // Lost: the API answered with a job that the database does not have, or a tracked Create never got an answer.
  const lostKeys = [...s.answered.entries()].filter(([key, id]) => !byKey.get(key)?.some((r) => r.id === id));
  for (const [key, id] of lostKeys) notes.push(`lost: ${key} answered ${id}, not in the database`);
  for (const g of s.gaveUp) notes.push(`create gave up: ${g}`);
  const lost = lostKeys.length + s.gaveUp.filter((g) => !g.includes("-probe-")).length;

  const failed: Record<string, number> = {};
  let completed = 0;
  let stuck = 0;
  for (const r of rows) {
    if (r.status === "completed") completed += 1;
    else if (TERMINAL.has(r.status)) failed[`${r.status}:${r.error_code || "-"}`] = (failed[`${r.status}:${r.error_code || "-"}`] ?? 0) + 1;
    else {
      stuck += 1;
      notes.push(`stuck: job ${r.id} (${r.idempotency_key}) still ${r.status} after ${claimsNote(r)}`);
    }
    if (TERMINAL.has(r.status) && r.status !== "completed") notes.push(`failed: job ${r.id} ${r.status} ${r.error_code}`);
  }

  // Webhook events: the rows written (source of truth) and what the receiver got.
  const ids = rows.map((r) => r.id);
  const events = ids.length
    ? await query<{ id: string; job_id: string; type: string }>("SELECT id, job_id, type FROM webhook_events WHERE job_id = ANY($1)", [ids])
    : [];
  let finishedTwice = 0;
  let eventsDuplicate = 0;
  let eventsMissing = 0;
  for (const r of rows) {
    const mine = events.filter((e) => e.job_id === r.id);
    const terminalRows = mine.filter((e) => TERMINAL_EVENTS.has(e.type));
    const createdRows = mine.filter((e) => e.type === "job.created");
    const got = receiver.received.filter((x) => x.event.data.id === r.id);
    const gotTerminal = new Set(got.filter((x) => TERMINAL_EVENTS.has(x.event.type)).map((x) => x.headers["webhook-id"]));
    const gotCreated = new Set(got.filter((x) => x.event.type === "job.created").map((x) => x.headers["webhook-id"]));
    if (terminalRows.length > 1 || gotTerminal.size > 1) {
      finishedTwice += 1;
      notes.push(`finished twice: job ${r.id} has terminal events ${terminalRows.map((e) => e.type).join(",")} (received ${gotTerminal.size} distinct)`);
    }
    if (createdRows.length > 1 || gotCreated.size > 1) {
      eventsDuplicate += 1;
      notes.push(`duplicate job.created for ${r.id}`);
    }
    if (TERMINAL.has(r.status) && (gotTerminal.size === 0 || gotCreated.size === 0)) {
      eventsMissing += 1;
      notes.push(`missing webhook for job ${r.id} (${r.status}): rows ${mine.map((e) => e.type).join(",") || "none"}; received ${got.map((x) => x.event.type).join(",") || "nothing"}`);
    }
  }

  // Outputs: valid (ffprobe), and not rewritten after the job was first seen completed.
  let invalidOutput = 0;
  for (const r of rows.filter((x) => x.status === "completed")) {
    const expected = s.expectedDurationS.get(r.idempotency_key) ?? CLIP_S;
    const files = await outputsOf(r.id);
    if (files.length === 0) {
      invalidOutput += 1;
      notes.push(`no output row for completed job ${r.id}`);
    }
    for (const file of files) {
      try {
        const info = await ffprobeJson(file);
        const video = info.streams.find((st: { codec_type: string }) => st.codec_type === "video");
        const duration = Number(info.format.duration);
        if (video?.codec_name !== "h264" || video?.height !== 144 || !(Math.abs(duration - expected) < 0.3)) {
          invalidOutput += 1;
          notes.push(`invalid output ${file}: ${video?.codec_name} ${video?.width}x${video?.height} ${duration}s (expected h264 x144 ${expected}s)`);
        }
      } catch (error) {
        invalidOutput += 1;
        notes.push(`unreadable output ${file}: ${(error as Error).message.split("\n")[0]}`);
      }
    }
    const seen = firstSeen.get(r.id);
    if (seen?.some((o) => signature(o.file) !== o.sig)) {
      finishedTwice += 1;
      notes.push(`output of ${r.id} rewritten after the job completed: ${seen.map((o) => `${o.sig} → ${signature(o.file)}`).join(", ")}`);
    }
  }

  // Watch: every watched job that ended must have been reported, with the database's status.
  let watchStale = 0;
  let watchWrong = 0;
  let watchMaxLagMs = 0;
  const statusName = (st: JobStatus | undefined) => (st === undefined ? "none" : JobStatus[st].toLowerCase());
  for (const w of s.watches) {
    const row = rows.find((r) => r.id === w.jobId);
    if (!row || !TERMINAL.has(row.status) || !row.completed_at) continue;
    if (!w.terminalAt) {
      watchStale += 1;
      const last = w.events.at(-1);
      notes.push(`watch stale: job ${row.id} ${row.status} at ${row.completed_at.toISOString()}, the Watch's last message ${last ? `${WatchEvent[last.event]} ${statusName(last.status)}` : "none"}; reconnects ${w.reconnects} (${[...w.errors].map(([k, v]) => `${k}:${v}`).join(" ")})`);
      continue;
    }
    watchMaxLagMs = Math.max(watchMaxLagMs, w.terminalAt - row.completed_at.getTime());
    if (statusName(w.terminalStatus) !== row.status || w.terminalEvents > 1) {
      watchWrong += 1;
      notes.push(`watch of ${row.id} ended with ${statusName(w.terminalStatus)} (${w.terminalEvents} terminal messages), database says ${row.status}`);
    }
    if (w.terminalAt - row.completed_at.getTime() > WATCH_GRACE_MS) {
      watchStale += 1;
      notes.push(`watch late: job ${row.id} reported ${w.terminalAt - row.completed_at.getTime()} ms after it ended`);
    }
  }

  // API answers while the fault lasted.
  const inFault = (t: number) => !!s.outage && t >= s.outage.start && t <= s.outage.end;
  // Probes, plus the errors that broke open Watches during the fault (a reconnect is not an error; a Watch ending `internal` is).
  const during = [
    ...s.probes.filter((p) => inFault(p.t)),
    ...s.watches.flatMap((w) => w.errorTimes.filter((e) => inFault(e.t)).map((e) => ({ t: e.t, rpc: "Watch", code: e.code, ms: 0, message: e.message }))),
  ];
  const outage: Record<string, number> = {};
  for (const p of during) outage[`${p.rpc}:${p.code}`] = (outage[`${p.rpc}:${p.code}`] ?? 0) + 1;
  const hangs = during.filter((p) => p.code === "hang").length;
  const bad = during.filter((p) => p.code === "internal" || p.code === "unknown");
  if (bad.length) {
    const messages = [...new Set(bad.map((p) => ("message" in p ? `: ${String(p.message)}` : "")))].join("; ");
    notes.push(`API answered ${bad.length} × internal/unknown during the outage (${[...new Set(bad.map((p) => p.rpc))].join(", ")})${messages}`);
  }
  const outageMaxMs = during.reduce((m, p) => Math.max(m, p.ms), 0);

  let recoveryS: number | null = null;
  if (s.outage) {
    const next = await firstCompletionAfter(s.outage.end).catch(() => undefined);
    recoveryS = next === undefined ? null : Math.round((next - s.outage.end) / 100) / 10;
  }

  const failedCount = Object.values(failed).reduce((a, b) => a + b, 0);
  const pass =
    crashed + lost + duplicateJobs + failedCount + stuck + finishedTwice + invalidOutput + eventsMissing + eventsDuplicate + watchStale + watchWrong + hangs + bad.length === 0 &&
    (s.outage === undefined || recoveryS !== null);
  return {
    scenario: s.name,
    submitted: s.keys.size,
    accepted: byKey.size,
    completed,
    failed,
    stuck,
    lost,
    duplicateJobs,
    finishedTwice,
    invalidOutput,
    eventsMissing,
    eventsDuplicate,
    watchStale,
    watchWrong,
    watchMaxLagMs,
    outage,
    outageMaxMs,
    hangs,
    badOutageAnswers: bad.length,
    recoveryS,
    crashed,
    elapsedS: Math.round((Date.now() - startedAt) / 1000),
    pass,
    notes,
  };
}

function claimsNote(r: JobRow): string {
  const lease = r.lease_owner ? `lease ${r.lease_owner} until ${r.lease_expires_at?.toISOString()}` : "no lease";
  return `${r.claims} claim(s), ${lease}, last change ${r.updated_at.toISOString()} (now ${new Date().toISOString()})`;
}

/** Waits (bounded) for the receiver to have each terminal job's terminal event, and the Watches to end. */
async function drainEvents(s: ScenarioState, rows: JobRow[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  const terminal = rows.filter((r) => TERMINAL.has(r.status));
  while (Date.now() < deadline) {
    const hooks = terminal.every((r) => receiver.received.some((x) => x.event.data.id === r.id && TERMINAL_EVENTS.has(x.event.type)));
    const watches = s.watches.every((w) => w.terminalAt || !terminal.some((r) => r.id === w.jobId) || Date.now() - (terminal.find((r) => r.id === w.jobId)!.completed_at?.getTime() ?? 0) > WATCH_GRACE_MS);
    if (hooks && watches) return;
    await for_(250);
  }
}

// --------------------------------------------------------------------------------------------
// Scenarios
// --------------------------------------------------------------------------------------------

let canaryId = "";

/** Submits `n` jobs ~400 ms apart (each Create retried until answered), Watching every second one. */
function submitJobs(s: ScenarioState, n: number, stop: AbortSignal, options: { api?: number; input?: string } = {}): Promise<unknown> {
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      await for_(i * 400);
      const id = await createWithRetry(s, `${s.keyPrefix}job-${i}`, options);
      if (id && i % 2 === 0) watchJob(s, id, stop, options.api ?? 0);
    }),
  );
}

async function runScenario(s: ScenarioState, fault: (stop: AbortSignal, faultOver: () => Promise<void>) => Promise<void>): Promise<Result> {
  const startedAt = Date.now();
  log(`scenario ${s.name}: ${s.title}`);
  const stop = new AbortController(); // ends the Watches
  const stopProbes = new AbortController();
  const probing = startProbes(s, canaryId, stopProbes.signal);
  try {
    await fault(stop.signal, async () => {
      // The fault is over. Work sent now: its completion is the recovery (what was sent before
      // may all have finished during the fault: workers survive an API kill, a host worker
      // covers a cut-off one). Then a last second of probes, and no more probe jobs.
      await Promise.all(Array.from({ length: 2 }, (_, i) => createWithRetry(s, `${s.keyPrefix}after-${i}`)));
      await for_(1000);
      stopProbes.abort();
      await probing;
    });
  } catch (error) {
    s.notes.push(`scenario error: ${(error as Error).stack ?? String(error)}`);
  }
  stopProbes.abort();
  await probing;
  const rows = await settle(s, Date.now() + SETTLE_MS);
  await drainEvents(s, rows);
  stop.abort();
  const crashed = await reapCrashes(s);
  const result = await verify(s, rows, startedAt, crashed);
  log(`scenario ${s.name}: ${result.pass ? "PASS" : "FAIL"} (${result.completed}/${result.accepted} completed in ${result.elapsedS} s)`);
  for (const note of result.notes) log(`  ${note}`);
  return result;
}

const SCENARIO_RUNS: Record<string, () => Promise<Result>> = {
  a: () => {
    const s = newScenario("a", "kill -9 of worker process groups while jobs run");
    const kills = QUICK ? 2 : 6;
    return runScenario(s, async (stop, faultOver) => {
      const submitting = submitJobs(s, JOBS, stop);
      await for_(1500);
      s.outage = { start: Date.now(), end: 0 };
      let busyKills = 0;
      const restarts: Array<Promise<Proc>> = [];
      for (let k = 0; k < kills; k++) {
        await for_(1000 + Math.random() * 1500);
        const busy = busyWorkers();
        const workers = [...procs.values()].filter((p) => p.role === "worker" && alive(p) && !p.prefix);
        const victim = busy.length ? busy[Math.floor(Math.random() * busy.length)]! : workers[Math.floor(Math.random() * workers.length)]!;
        if (busy.includes(victim)) busyKills += 1;
        log(`  kill -9 ${victim.name} (group ${victim.proc.child.pid}${busy.includes(victim) ? ", encoding" : ""})`);
        await killGroup(victim);
        await for_(800);
        // Restarted in the background (a node + tsx start takes seconds on a loaded machine).
        restarts.push(startWorker(victim.name).catch(() => victim));
      }
      s.outage.end = Date.now();
      await faultOver();
      await Promise.all(restarts);
      s.notes.push(`${kills} kills, ${busyKills} of them while the worker's ffmpeg ran`);
      await submitting;
    });
  },
  b: () => {
    const s = newScenario("b", `nats-server stopped (${NATS_SIGNAL}) for ${OUTAGE_MS / 1000} s mid-run, restarted on the same store`);
    return runScenario(s, async (stop, faultOver) => {
      const submitting = submitJobs(s, JOBS, stop);
      await for_(2500);
      s.outage = { start: Date.now(), end: 0 };
      await nats.stop(NATS_SIGNAL as "SIGKILL" | "SIGTERM");
      await for_(OUTAGE_MS);
      await nats.start();
      s.outage.end = Date.now();
      await faultOver();
      await submitting;
    });
  },
  c: () => {
    const s = newScenario("c", `PostgreSQL stopped (pg_ctl stop -m immediate) for ${OUTAGE_MS / 1000} s mid-run, restarted`);
    return runScenario(s, async (stop, faultOver) => {
      const submitting = submitJobs(s, JOBS, stop);
      await for_(2500);
      s.outage = { start: Date.now(), end: 0 };
      await postgres.stopImmediate();
      await for_(OUTAGE_MS);
      await postgres.start();
      s.outage.end = Date.now();
      await faultOver();
      await submitting;
    });
  },
  d: () => {
    const s = newScenario("d", "API process SIGKILLed mid-Create and mid-Watch (clients retry on the other API), restarted");
    return runScenario(s, async (stop, faultOver) => {
      // Jobs through api1, all Watched there.
      await Promise.all(
        Array.from({ length: Math.max(2, Math.floor(JOBS / 2)) }, async (_, i) => {
          await for_(i * 300);
          const id = await createWithRetry(s, `${s.keyPrefix}job-${i}`, { api: 0 });
          if (id) watchJob(s, id, stop, 0);
        }),
      );
      await for_(1000);
      const api1 = procs.get("api1")!;
      // Creates in flight on api1 when it dies; each is retried with its key on api2.
      const inFlight = Array.from({ length: 6 }, (_, i) => createWithRetry(s, `${s.keyPrefix}inflight-${i}`, { api: 0 }));
      await for_(5 + Math.random() * 30);
      s.outage = { start: Date.now(), end: 0 };
      await killGroup(api1);
      await Promise.all(inFlight);
      await for_(3000);
      await startApi(0);
      s.outage.end = Date.now();
      await faultOver();
      const reconnected = s.watches.filter((w) => w.reconnects > 0).length;
      s.notes.push(`${reconnected} of ${s.watches.length} Watches reconnected after the kill`);
    });
  },
  e: () => {
    const s = newScenario("e", `a worker in a network namespace cut off from NATS and PostgreSQL for ${Math.max(OUTAGE_MS, 10_000) / 1000} s while it encodes`);
    return runScenario(s, async (stop, faultOver) => {
      if (!netns) {
        s.notes.push(`skipped: ${netnsProblem}`);
        return;
      }
      // Leave one host worker, so the cut-off one is likely to hold a job; the namespace worker joins.
      const host = [...procs.values()].filter((p) => p.role === "worker" && alive(p) && !p.prefix);
      for (const p of host.slice(1)) await killGroup(p, "SIGTERM");
      const inside = await startWorker("worker-netns", netns.exec);
      const submitting = submitJobs(s, Math.max(3, Math.floor(JOBS / 2)), stop, { input: "in/long.mp4" });
      const deadline = Date.now() + 60_000;
      while (!busyWorkers().includes(inside) && Date.now() < deadline) await for_(100);
      s.notes.push(busyWorkers().includes(inside) ? "the namespace worker was encoding when cut" : "the namespace worker never took a job before the cut");
      s.outage = { start: Date.now(), end: 0 };
      netns.cut();
      await for_(Math.max(OUTAGE_MS, 10_000));
      netns.restore();
      s.outage.end = Date.now();
      await faultOver();
      await submitting;
      // Restore the fleet for whatever runs next.
      await Promise.all(host.slice(1).map((p) => startWorker(p.name)));
    });
  },
};

// --------------------------------------------------------------------------------------------
// Report
// --------------------------------------------------------------------------------------------

function table(results: Result[]): string {
  const fmt = (r: Record<string, number>) => Object.entries(r).map(([k, v]) => `${k} ${v}`).join(", ") || "0";
  const outageSummary = (r: Result) => {
    if (!Object.keys(r.outage).length) return "–";
    const byCode: Record<string, number> = {};
    for (const [k, v] of Object.entries(r.outage)) {
      const code = k.split(":")[1]!;
      byCode[code] = (byCode[code] ?? 0) + v;
    }
    return `${fmt(byCode)}; max ${r.outageMaxMs} ms`;
  };
  const head = ["scenario", "submitted", "accepted", "completed", "failed", "stuck", "lost", "dup jobs", "finished twice", "invalid output", "events dup/missing", "watch stale/wrong (max lag)", "API during fault", "hangs", "recovery", "crashed", "result"];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const r of results) {
    lines.push(
      `| ${[
        r.scenario,
        r.submitted,
        r.accepted,
        r.completed,
        fmt(r.failed),
        r.stuck,
        r.lost,
        r.duplicateJobs,
        r.finishedTwice,
        r.invalidOutput,
        `${r.eventsDuplicate}/${r.eventsMissing}`,
        `${r.watchStale}/${r.watchWrong} (${(r.watchMaxLagMs / 1000).toFixed(1)} s)`,
        outageSummary(r),
        r.hangs,
        r.recoveryS === null ? "–" : `${r.recoveryS} s`,
        r.crashed,
        r.pass ? "PASS" : "FAIL",
      ].join(" | ")} |`,
    );
  }
  return lines.join("\n");
}

async function main(): Promise<number> {
  const started = Date.now();
  await setup();
  const seed = newScenario("setup", "canary");
  canaryId = (await createWithRetry(seed, `${tag}-canary`))!;
  const results: Result[] = [];
  for (const name of SCENARIOS) results.push(await SCENARIO_RUNS[name]!());
  // A last look at every output: a worker that came back late must not have rewritten any.
  await for_(2000);
  for (const [jobId, files] of firstSeen) {
    for (const o of files) {
      if (signature(o.file) !== o.sig) {
        const r = results.find((x) => x.notes.some((n) => n.includes(jobId))) ?? results.at(-1)!;
        r.finishedTwice += 1;
        r.pass = false;
        r.notes.push(`output of ${jobId} rewritten later: ${o.file}`);
      }
    }
  }
  const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
  console.log(`\nrendition chaos (${QUICK ? "--quick" : "full"}) ${new Date().toISOString()} commit ${commit}, ${WORKERS} workers, ${JOBS} jobs/scenario, lease ${LEASE_MS} ms, outage ${OUTAGE_MS / 1000} s, ${Math.round((Date.now() - started) / 1000)} s in all\n`);
  console.log(table(results));
  const failedResults = results.filter((r) => !r.pass);
  if (failedResults.length) {
    console.log("\nWhat failed:");
    for (const r of failedResults) for (const note of r.notes) console.log(`- ${r.scenario}: ${note}`);
  }
  const skipped = results.flatMap((r) => r.notes.filter((n) => n.startsWith("skipped")).map((n) => `${r.scenario}: ${n}`));
  for (const s of skipped) console.log(`\n${s}`);
  console.log(`\n${failedResults.length ? "FAIL" : "PASS"}`);
  console.log(`chaos-json: ${JSON.stringify(results.map(({ notes: _notes, ...rest }) => rest))}`);
  if (failedResults.length || opts.keep) {
    const logs = opts.keep ? join(runDir, "logs") : mkdtempSync(join(tmpdir(), "rendition-chaos-logs-"));
    writeLogs(logs);
    console.log(`process logs: ${logs}`);
  }
  return failedResults.length ? 1 : 0;
}

const abort = (signal: string) => {
  log(`${signal}: cleaning up`);
  try {
    const logs = mkdtempSync(join(tmpdir(), "rendition-chaos-logs-"));
    writeLogs(logs);
    log(`process logs: ${logs}`);
  } catch {
    // nothing to save
  }
  cleanupAll();
  process.exit(130);
};
process.on("SIGINT", () => abort("SIGINT"));
process.on("SIGTERM", () => abort("SIGTERM"));

main().then(
  async (code) => {
    await receiver?.close();
    await db?.end().catch(() => undefined);
    cleanupAll();
    process.exit(code);
  },
  (error: unknown) => {
    console.error("chaos run failed:", error);
    cleanupAll();
    process.exit(2);
  },
);
