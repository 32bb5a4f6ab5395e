import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import cliProgress from "cli-progress";
import { JobStatus, JobStatusSchema } from "../gen/rendition/v1/common_pb.js";
import { OutputStatus, OutputStatusSchema, WatchEvent, type Job, type JobServiceWatchResponse } from "../gen/rendition/v1/job_pb.js";
import type { Clients } from "./client.js";
import { enumLabel } from "./client.js";
import { JobEndedBadly, messageJson, type Io } from "./output.js";
import { formatRate, ProgressRate, type JobRate } from "./progress-rate.js";

export const TERMINAL = new Set([JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.PARTIAL]);

/** How a watch is shown: NDJSON, live bars (stdout is a terminal) or plain lines. */
interface WatchRenderer {
  update(id: string, event: JobServiceWatchResponse, rate: JobRate): void;
  /** The job reached a terminal state (job) or its watch failed (error). */
  finish(id: string, job: Job | undefined, error?: unknown): void;
  stop(): void;
}

const status = (job: Job) => enumLabel(JobStatusSchema, job.status);

/** NDJSON: every Watch message as the API's JSON, plus the derived rate. */
function jsonRenderer(io: Io): WatchRenderer {
  return {
    update(_id, event, rate) {
      const line = messageJson(event) as Record<string, unknown>;
      line.rate = { speed: rate.speed ?? null, fps: rate.fps ?? null, eta_seconds: rate.etaSeconds ?? null };
      io.out(JSON.stringify(line));
    },
    finish() {},
    stop() {},
  };
}

function describeLine(job: Job, rate: JobRate): string {
  const r = formatRate(rate);
  const extra = job.status === JobStatus.PROCESSING ? ` ${r.speed} ${r.fps} ETA ${r.eta}` : "";
  const waiting = job.status === JobStatus.AWAITING_CONFIRMATION ? ` estimated ${job.totalEstimatedCost} ${job.currency}: confirm with \`rendition jobs confirm ${job.id}\`` : "";
  return `${job.id} ${status(job)} ${job.progress}%${extra}${waiting}`;
}

/** Not a terminal: one line per status change and per 10 % of progress, and the final state. */
function lineRenderer(io: Io): WatchRenderer {
  const last = new Map<string, { status: number; step: number }>();
  return {
    update(id, event, rate) {
      const job = event.job;
      if (!job) return;
      const step = Math.floor(job.progress / 10);
      const seen = last.get(id);
      if (seen && seen.status === job.status && seen.step === step) return;
      last.set(id, { status: job.status, step });
      io.out(describeLine(job, rate));
    },
    finish(id, job, error) {
      if (job) for (const line of summary(job)) io.out(line);
      else io.out(`${id} watch failed: ${(error as Error)?.message ?? error}`);
    },
    stop() {},
  };
}

/** A terminal: one cli-progress bar per job, redrawn in place. */
function barRenderer(io: Io, ids: string[]): WatchRenderer {
  const width = Math.max(...ids.map((id) => id.length));
  const multibar = new cliProgress.MultiBar(
    {
      stream: process.stdout,
      format: " {id} {status} |{bar}| {percentage}% | {speed} | {fps} | ETA {remaining}",
      barsize: 30,
      barCompleteChar: "\u2588",
      barIncompleteChar: "\u2591",
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      autopadding: true,
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  );
  const payload = (id: string, job: Job | undefined, rate: JobRate) => {
    const r = formatRate(rate);
    return { id: id.padEnd(width), status: (job ? status(job) : "connecting").padEnd(10), speed: r.speed.padStart(5), fps: r.fps.padStart(7), remaining: r.eta };
  };
  const bars = new Map(ids.map((id) => [id, multibar.create(100, 0, payload(id, undefined, {}))]));
  const finished: string[] = [];
  return {
    update(id, event, rate) {
      const job = event.job;
      if (!job) return;
      bars.get(id)?.update(job.progress, payload(id, job, rate));
      if (job.status === JobStatus.AWAITING_CONFIRMATION && event.event !== WatchEvent.HEARTBEAT && event.event !== WatchEvent.PROGRESS) {
        multibar.log(`${job.id} awaits confirmation: estimated ${job.totalEstimatedCost} ${job.currency}; run \`rendition jobs confirm ${job.id}\`\n`);
      }
    },
    finish(id, job, error) {
      const bar = bars.get(id);
      if (job) {
        bar?.update(job.progress, payload(id, job, {}));
        finished.push(...summary(job));
      } else finished.push(`${id} watch failed: ${(error as Error)?.message ?? error}`);
      bar?.stop();
    },
    stop() {
      multibar.stop();
      for (const line of finished) io.out(line);
    },
  };
}

/** The end of a job in words: its outputs' files, or what failed. */
export function summary(job: Job): string[] {
  const lines = [`${job.id} ${status(job)}${job.errorCode ? `: ${job.errorCode}: ${job.errorMessage}` : ""}`];
  for (const output of job.outputs) {
    const state = enumLabel(OutputStatusSchema, output.status);
    if (output.status === OutputStatus.COMPLETED) lines.push(`  ${output.id} ${state} ${output.outputUrl}`);
    else lines.push(`  ${output.id} ${state}${output.errorCode ? `: ${output.errorCode}: ${output.errorMessage}` : ""}`);
  }
  return lines;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Reconnects after a dropped stream (server restart, network): at most this many times in a row. */
const MAX_RECONNECTS = 10;

/**
 * Follows one job to its terminal state. A stream that ends early or drops with `unavailable`
 * after it had started is opened again (the new snapshot carries on); errors before the first
 * message (not_found, unauthenticated, nothing listening) are the caller's.
 */
async function followJob(clients: Clients, id: string, onEvent: (event: JobServiceWatchResponse) => void): Promise<Job> {
  let last: Job | undefined;
  let reconnects = 0;
  for (;;) {
    try {
      for await (const event of clients.jobs.watch({ id })) {
        reconnects = 0;
        if (event.job) last = event.job;
        onEvent(event);
        if (last && event.event === WatchEvent.COMPLETED) return last;
      }
      // The server closes the stream after the terminal state (a terminal snapshot included).
      if (last && TERMINAL.has(last.status)) return last;
    } catch (err) {
      if (!last || !(err instanceof ConnectError) || err.code !== Code.Unavailable) throw err;
    }
    if (++reconnects > MAX_RECONNECTS) throw new ConnectError(`the watch of ${id} dropped ${MAX_RECONNECTS} times in a row`, Code.Unavailable);
    await sleep(1000);
  }
}

export interface WatchResult {
  jobs: Map<string, Job>;
  errors: Map<string, unknown>;
}

/**
 * Watches jobs at once until each is terminal, shown as `--json` NDJSON, live bars (terminal) or
 * plain lines. Throws the first watch error (after the other jobs ended), then JobEndedBadly
 * when a job ended other than COMPLETED.
 */
export async function watchJobs(clients: Clients, ids: string[], io: Io, options: { json: boolean }): Promise<WatchResult> {
  const renderer = options.json ? jsonRenderer(io) : io.isTTY ? barRenderer(io, ids) : lineRenderer(io);
  const result: WatchResult = { jobs: new Map(), errors: new Map() };
  const stopOnSignal = () => {
    renderer.stop();
    process.exit(130);
  };
  process.once("SIGINT", stopOnSignal);
  try {
    await Promise.all(
      ids.map(async (id) => {
        const rate = new ProgressRate();
        try {
          const job = await followJob(clients, id, (event) => {
            const job = event.job!;
            const atMs = event.serverTime ? timestampMs(event.serverTime) : Date.now();
            const measured = rate.observe({
              atMs,
              progress: job.progress,
              processing: job.status === JobStatus.PROCESSING,
              durationMs: Number(job.inputMetadata?.durationMs ?? 0),
              framerate: job.inputMetadata?.framerate,
            });
            renderer.update(id, event, measured);
          });
          result.jobs.set(id, job);
          renderer.finish(id, job);
        } catch (err) {
          result.errors.set(id, err);
          renderer.finish(id, undefined, err);
        }
      }),
    );
  } finally {
    process.off("SIGINT", stopOnSignal);
    renderer.stop();
  }
  const [firstError] = result.errors.values();
  if (firstError !== undefined) throw firstError;
  const bad = [...result.jobs.values()].filter((job) => job.status !== JobStatus.COMPLETED);
  if (bad.length) throw new JobEndedBadly(bad.map((job) => `${job.id} ended ${status(job)}${job.errorCode ? ` (${job.errorCode})` : ""}`).join("; "));
  return result;
}
