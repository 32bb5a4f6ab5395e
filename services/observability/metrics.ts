import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { PRIORITY_ORDER, type QueueStats } from "../queue/work-queue.js";
import { OutputType, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import type { OutputSpec } from "../../gen/rendition/v1/job_pb.js";
import { enumWord } from "../common/enums.js";
import type { JobStatusName } from "../jobs/job.types.js";
import { ACTIVE_STATUSES, TERMINAL_STATUSES } from "../jobs/job.types.js";

/**
 * The process's Prometheus metrics (docs/architecture.md, Observability): one registry, the
 * metric definitions, and the sources the scrape-time gauges read. Counters and histograms are
 * module-level so the code that observes them (a lease takeover in a repository, a webhook
 * attempt, an output delivered) needs no wiring; gauges that read the database or the queue get
 * their source from the process that serves /metrics (`observeJobCounts`, `observeQueue`).
 */
export const registry = new Registry();

const STATUSES: readonly JobStatusName[] = [...ACTIVE_STATUSES, ...TERMINAL_STATUSES];

/** How long one grouped count of the jobs table serves scrapes (several Prometheus servers, a refreshing dashboard). */
export const JOB_COUNT_CACHE_MS = 5_000;

export interface JobCount {
  status: string;
  priority: string;
  count: number;
}

let jobCounts: (() => Promise<JobCount[]>) | undefined;
let queueStats: (() => Promise<QueueStats[]>) | undefined;

/** Reads `load` at most once per `ttlMs`; a failed read is not kept. */
function cached<T>(load: () => Promise<T>, ttlMs: number): () => Promise<T> {
  let entry: { at: number; value: Promise<T> } | undefined;
  return () => {
    if (!entry || Date.now() - entry.at >= ttlMs) {
      const value = load();
      entry = { at: Date.now(), value };
      value.catch(() => {
        if (entry?.value === value) entry = undefined;
      });
    }
    return entry.value;
  };
}

/**
 * Where `rendition_jobs` comes from: one grouped count over the jobs table, cached. Only API
 * processes set it (a cluster-wide number: with several API replicas, aggregate with max()).
 */
export function observeJobCounts(load: () => Promise<JobCount[]>, cacheMs = JOB_COUNT_CACHE_MS): void {
  jobCounts = cached(load, cacheMs);
}

/** Where the queue gauges come from: the work queue's own numbers (JetStream consumer info, or the in-process queue). */
export function observeQueue(load: () => Promise<QueueStats[]>): void {
  queueStats = load;
}

/** Forgets the scrape-time sources (a process, or a test harness, that stops serving them). */
export function stopObserving(): void {
  jobCounts = undefined;
  queueStats = undefined;
}

/** A scrape-time source that failed: its gauge is left out of that scrape, the rest is served. */
export const scrapeErrors = new Counter({
  name: "rendition_metrics_source_errors_total",
  help: "Scrape-time reads that failed (source: jobs = the database count, queue = the work queue's numbers)",
  labelNames: ["source"] as const,
  registers: [registry],
});

export const jobsGauge = new Gauge({
  name: "rendition_jobs",
  help: "Jobs by status and priority (all organizations), counted in the database at scrape time (cached 5 s)",
  labelNames: ["status", "priority"] as const,
  registers: [registry],
  async collect() {
    this.reset();
    if (!jobCounts) return;
    let rows: JobCount[];
    try {
      rows = await jobCounts();
    } catch {
      scrapeErrors.inc({ source: "jobs" });
      return;
    }
    // Every status x priority pair, zeros included: a series that drops to 0 stays visible.
    for (const status of STATUSES) for (const priority of PRIORITY_ORDER) this.set({ status, priority }, 0);
    for (const row of rows) this.set({ status: row.status, priority: row.priority }, row.count);
  },
});

const countedFailures = new WeakSet<Promise<QueueStats[]>>();

/** One read of the queue serves all three queue gauges of a scrape. */
let queueRead: { at: number; value: Promise<QueueStats[]> } | undefined;
function readQueue(): Promise<QueueStats[]> | undefined {
  if (!queueStats) return undefined;
  if (!queueRead || Date.now() - queueRead.at > 1000) queueRead = { at: Date.now(), value: queueStats() };
  return queueRead.value;
}

function queueGauge(name: string, help: string, pick: (stats: QueueStats) => number): Gauge<"priority"> {
  return new Gauge({
    name,
    help,
    labelNames: ["priority"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const read = readQueue();
      if (!read) return;
      let all: QueueStats[];
      try {
        all = await read;
      } catch {
        // Counted once per failed read, not once per gauge.
        if (!countedFailures.has(read)) {
          countedFailures.add(read);
          scrapeErrors.inc({ source: "queue" });
        }
        return;
      }
      for (const stats of all) this.set({ priority: stats.priority }, pick(stats));
    },
  });
}

export const queueDepthGauge = queueGauge(
  "rendition_queue_depth",
  "Work messages waiting to be taken by a worker, per priority",
  (s) => s.waiting,
);
export const queueInFlightGauge = queueGauge(
  "rendition_queue_in_flight",
  "Work messages handed to a worker and not yet acknowledged (running, or waiting for a redelivery), per priority",
  (s) => s.inFlight,
);
export const queueOldestAgeGauge = queueGauge(
  "rendition_queue_oldest_message_age_seconds",
  "Age of the oldest work message still waiting to be taken, per priority (0 when none waits)",
  (s) => s.oldestWaitingAgeSeconds,
);

/**
 * Wall time of the ffmpeg run that produced a delivered output. Outputs encoded together (one
 * decode feeding several encoders) each report that run's time; a chunked output reports the
 * time from the start of processing to the joined file.
 */
export const encodeSeconds = new Histogram({
  name: "rendition_encode_seconds",
  help: "Encode wall time of each delivered output, by format, codec and resolution",
  labelNames: ["format", "codec", "resolution"] as const,
  // From a short clip to a two-hour film at realtime.
  buckets: [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200],
  registers: [registry],
});

/** Seconds of input encoded per second of wall time (above 1: faster than realtime). */
export const realtimeFactor = new Histogram({
  name: "rendition_encode_realtime_factor",
  help: "Input duration divided by encode wall time for each delivered output, by format, codec and resolution",
  labelNames: ["format", "codec", "resolution"] as const,
  buckets: [0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64],
  registers: [registry],
});

export const leaseTakeovers = new Counter({
  name: "rendition_lease_takeovers_total",
  help: "Leases taken over from a worker whose lease lapsed (kind: job or task)",
  labelNames: ["kind"] as const,
  registers: [registry],
});

export const webhookDeliveries = new Counter({
  name: "rendition_webhook_delivery_attempts_total",
  help: "Webhook delivery attempts by result (delivered, retry, failed: out of attempts, gone: 410)",
  labelNames: ["result"] as const,
  registers: [registry],
});

/**
 * Handling time of each RPC until its last message, as go-grpc-prometheus's
 * grpc_server_handling_seconds (so a Watch reports the stream's lifetime: filter on `type`).
 */
export const rpcDuration = new Histogram({
  name: "rendition_rpc_duration_seconds",
  help: "RPC handling time by service, method, type (unary, server_stream) and Connect code",
  labelNames: ["service", "method", "type", "code"] as const,
  // The Prometheus clients' default buckets (5 ms to 10 s).
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

// Zero series from the start, so a rate() or an alert sees 0 before the first event, not a gap.
for (const kind of ["job", "task"]) leaseTakeovers.inc({ kind }, 0);
for (const result of ["delivered", "retry", "failed", "gone"]) webhookDeliveries.inc({ result }, 0);

let defaultsOn = false;

/** Node's process metrics (CPU, memory, event loop lag, GC, handles), once per process. */
export function collectProcessMetrics(): void {
  if (defaultsOn) return;
  defaultsOn = true;
  collectDefaultMetrics({ register: registry });
}

/** The exposition text and its content type, for a GET /metrics. */
export async function scrape(): Promise<{ contentType: string; body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}

/** format / codec / resolution of an output, as the path-template words name them (its first video variant). */
export function outputLabels(spec: OutputSpec): { format: string; codec: string; resolution: string } {
  const first = spec.video[0];
  const resolution = !first ? "source" : first.resolution ? enumWord(Resolution, first.resolution) : first.width || first.height ? `${first.width || "auto"}x${first.height || "auto"}` : "source";
  return { format: enumWord(OutputType, spec.type), codec: first ? enumWord(VideoCodec, first.codec) : "none", resolution };
}

/** A delivered output's encode time and realtime factor (the worker, once the output's completion is written). */
export function observeEncode(spec: OutputSpec, encodeSecondsTaken: number, inputDurationMs: number): void {
  const labels = outputLabels(spec);
  encodeSeconds.observe(labels, encodeSecondsTaken);
  if (encodeSecondsTaken > 0 && inputDurationMs > 0) realtimeFactor.observe(labels, inputDurationMs / 1000 / encodeSecondsTaken);
}
