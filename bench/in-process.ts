/**
 * Rendition started inside the bench's own process, wired as `npm start` (services/main.ts,
 * runServices "all") wires it: messaging, app, first-start bootstrap, outbox relay, webhook
 * dispatcher, encoder slots and the API server on a free port of 127.0.0.1. In-process so that
 * the bench can time the domain's own steps (queue publish and take, every lease-guarded write,
 * events, ffprobe and ffmpeg) by wrapping the objects it hands to them, without any tracing in
 * the product. Two modes:
 *   - embedded: PGlite in the bench's temp directory, the in-process queue and event bus;
 *   - nats: PostgreSQL (a database of its own, created here and dropped at the end) and NATS
 *     JetStream (a prefix of its own, RENDITION_NATS_PREFIX; its stream is deleted at the end).
 */
import { randomBytes } from "node:crypto";
import http from "node:http";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { connect } from "nats";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { JobService } from "../gen/rendition/v1/job_pb.js";
import { createApiServer, type ApiServer } from "../services/api/server.js";
import { checkDatabase, createApp, type App } from "../services/app.js";
import { bootstrapIfEmpty, type Credentials } from "../services/bootstrap.js";
import { loadConfig, type Config } from "../services/config.js";
import { openMessaging, startRelay, startWebhookDispatcher, startWorker, type Messaging } from "../services/runtime.js";
import { natsWorkQueueNames } from "../services/queue/nats-work-queue.js";
import type { OutboxRelay } from "../services/queue/outbox-relay.js";
import type { WebhookDispatcher } from "../services/webhooks/dispatcher.js";
import type { EncoderWorker } from "../workers/encoder/worker.js";
import type { MediaTools } from "../workers/ffmpeg/types.js";

export type Mode = "embedded" | "nats";

export const POSTGRES_ADMIN_URL = process.env.BENCH_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
export const NATS_URL = process.env.BENCH_NATS_URL || "nats://127.0.0.1:4222";

export interface StartOptions {
  mode: Mode;
  /** The bench's temp directory: data dir (PGlite, storage, credentials) and worker temp dirs go under it. */
  work: string;
  /** Encoder slots (RENDITION_WORKER_CONCURRENCY). */
  concurrency?: number;
  /** Replaces the ffmpeg adapter (instrumented or no-op); default: the real one. */
  tools?: MediaTools;
  /** Called with app and messaging before anything starts, to wrap what the domain uses. */
  instrument?: (app: App, messaging: Messaging) => void;
  /** Start the encoder slots later (startWorker()) instead of at once. */
  deferWorker?: boolean;
  /** Start the relay later (startRelay()) instead of at once. */
  deferRelay?: boolean;
  /** More environment for loadConfig (RENDITION_* settings). */
  env?: Record<string, string>;
  log?: (msg: string, err?: unknown) => void;
}

export interface InProcessRendition {
  mode: Mode;
  config: Config;
  app: App;
  messaging: Messaging;
  credentials: Credentials;
  jobs: ReturnType<typeof createClient<typeof JobService>>;
  relay?: OutboxRelay;
  worker?: EncoderWorker;
  /** For nats mode: the database URL and the prefix of this run. */
  databaseUrl?: string;
  prefix?: string;
  startRelay(): Promise<void>;
  startWorker(): Promise<void>;
  stop(): Promise<void>;
}

const quietLog = (msg: string, err?: unknown) => {
  // Only trouble: the bench's own output is the figures.
  if (err || /fail|error|warning/i.test(msg)) console.error(`[rendition] ${msg}`, err ?? "");
};

export async function startInProcess(options: StartOptions): Promise<InProcessRendition> {
  const log = options.log ?? quietLog;
  const suffix = randomBytes(4).toString("hex");
  const env: Record<string, string> = {
    RENDITION_DATA_DIR: join(options.work, "data"),
    RENDITION_TMP_DIR: options.work,
    PORT: "0",
    HOST: "127.0.0.1",
    RENDITION_WORKER_CONCURRENCY: String(options.concurrency ?? 1),
    // The benches send one organization's bursts of jobs: measure the pipeline, not the limits.
    RENDITION_RATE_LIMIT_RPS: "0",
    RENDITION_MAX_ACTIVE_JOBS_PER_ORG: "0",
    ...options.env,
  };
  let databaseUrl: string | undefined;
  let prefix: string | undefined;
  if (options.mode === "nats") {
    const name = `rendition_bench_${suffix}`;
    const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const url = new URL(POSTGRES_ADMIN_URL);
    url.pathname = `/${name}`;
    databaseUrl = url.toString();
    prefix = `bench_${suffix}`;
    Object.assign(env, { DATABASE_URL: databaseUrl, NATS_URL, RENDITION_NATS_PREFIX: prefix, RENDITION_ENCRYPTION_KEY: randomBytes(32).toString("base64") });
  }
  const config = loadConfig(env);
  const messaging = await openMessaging(config, "all", log);
  const app = await createApp(config, log, messaging.events);
  options.instrument?.(app, messaging);
  const credentials = await bootstrapIfEmpty(app, config);
  if (!credentials) throw new Error("expected a first start on an empty database");
  let relay: OutboxRelay | undefined;
  let dispatcher: WebhookDispatcher | undefined;
  let worker: EncoderWorker | undefined;
  const doStartRelay = async () => {
    relay = await startRelay(app, messaging, config, log);
    dispatcher = startWebhookDispatcher(app, config, log, relay);
  };
  const doStartWorker = async () => {
    worker = (await startWorker(app, messaging, config, log, options.tools)).worker;
  };
  if (!options.deferRelay) await doStartRelay();
  if (!options.deferWorker) await doStartWorker();
  const server: ApiServer = createApiServer({
    ...app,
    keys: app.auth,
    watch: { heartbeatMs: config.watchHeartbeatMs, pollMs: config.watchPollMs, progressDebounceMs: 200 },
    checkDatabase: () => checkDatabase(app.database),
    log,
    shutdownTimeoutMs: 2000,
  });
  const port = await server.listen(0, "127.0.0.1");
  const stored = JSON.parse(readFileSync(join(config.dataDir, "credentials.json"), "utf8")) as Credentials;
  const transport = createConnectTransport({
    baseUrl: `http://127.0.0.1:${port}`,
    httpVersion: "1.1",
    nodeOptions: { agent: new http.Agent({ keepAlive: true }) },
    interceptors: [
      (next) => (req) => {
        req.header.set("authorization", `Bearer ${stored.api_key}`);
        req.header.set("x-organization-id", stored.organization_id);
        return next(req);
      },
    ],
  });
  const result: InProcessRendition = {
    mode: options.mode,
    config,
    app,
    messaging,
    credentials,
    jobs: createClient(JobService, transport),
    databaseUrl,
    prefix,
    get relay() {
      return relay;
    },
    get worker() {
      return worker;
    },
    startRelay: doStartRelay,
    startWorker: doStartWorker,
    async stop() {
      await server.close();
      await worker?.stop();
      await relay?.stop();
      await dispatcher?.stop();
      await messaging.close();
      await app.close();
      if (options.mode === "nats") {
        const nc = await connect({ servers: NATS_URL });
        try {
          const jsm = await nc.jetstreamManager();
          await jsm.streams.delete(natsWorkQueueNames(prefix).stream).catch(() => undefined);
        } finally {
          await nc.close();
        }
        const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
        await admin.connect();
        await admin.query(`DROP DATABASE IF EXISTS ${new URL(databaseUrl!).pathname.slice(1)} WITH (FORCE)`);
        await admin.end();
      }
    },
  };
  return result;
}

/** One timed call: what was called, when it started and ended (performance.now()). */
export interface Span {
  name: string;
  start: number;
  end: number;
  /** The job it concerns, when the arguments name one. */
  jobId?: string;
}

/**
 * Records spans of wrapped async methods. `wrap(obj, "runs", ["claim", ...])` replaces each named
 * method on the instance with one that times it; calls the object makes to itself through the
 * prototype (a named write calling update()) stay untimed, so spans never nest by accident.
 */
export class Tracer {
  spans: Span[] = [];
  marks: Array<{ name: string; at: number }> = [];
  enabled = true;

  mark(name: string): void {
    if (this.enabled) this.marks.push({ name, at: performance.now() });
  }

  reset(): void {
    this.spans = [];
    this.marks = [];
  }

  wrap<T extends object>(obj: T, label: string, methods: ReadonlyArray<keyof T & string>): void {
    for (const method of methods) {
      const original = (obj as Record<string, unknown>)[method];
      if (typeof original !== "function") throw new Error(`${label}.${method} is not a method`);
      (obj as Record<string, unknown>)[method] = (...args: unknown[]) => {
        const start = performance.now();
        const jobId = jobIdOf(args);
        const finish = () => {
          if (this.enabled) this.spans.push({ name: `${label}.${method}`, start, end: performance.now(), jobId });
        };
        const value = (original as (...a: unknown[]) => unknown).apply(obj, args);
        if (value && typeof (value as Promise<unknown>).then === "function") {
          return (value as Promise<unknown>).then(
            (v) => (finish(), v),
            (e) => {
              finish();
              throw e;
            },
          );
        }
        finish();
        return value;
      };
    }
  }

  /** Spans of `name` (in order of start). */
  all(name: string): Span[] {
    return this.spans.filter((s) => s.name === name).sort((a, b) => a.start - b.start);
  }

  first(name: string, after = -Infinity): Span | undefined {
    return this.all(name).find((s) => s.start >= after);
  }
}

function jobIdOf(args: unknown[]): string | undefined {
  for (const arg of args) {
    if (typeof arg === "string" && arg.startsWith("job_")) return arg;
    if (arg && typeof arg === "object") {
      const value = (arg as { jobId?: unknown }).jobId;
      if (typeof value === "string") return value;
    }
  }
  return undefined;
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
