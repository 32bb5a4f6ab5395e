import { existsSync } from "node:fs";
import { join } from "node:path";
import type { NatsConnection } from "nats";
import type { App } from "./app.js";
import { defaultStorageDir } from "./bootstrap.js";
import type { Config } from "./config.js";
import { InProcessEventBus, type JobEventBus } from "./queue/event-bus.js";
import { createInProcessWorkQueue } from "./queue/in-process-work-queue.js";
import { closeNats, connectNats, redactNatsUrl } from "./queue/nats-connection.js";
import { createNatsEventBus } from "./queue/nats-event-bus.js";
import { createNatsWorkQueue } from "./queue/nats-work-queue.js";
import { OutboxRelay } from "./queue/outbox-relay.js";
import { JobTaskRepository } from "./jobs/job-task.repository.js";
import type { WorkQueue } from "./queue/work-queue.js";
import { WebhookDispatcher } from "./webhooks/dispatcher.js";
import { locateMediaTools } from "../workers/ffmpeg/binaries.js";
import { describeCapabilities } from "../workers/ffmpeg/capabilities.js";
import { createMediaTools } from "../workers/ffmpeg/media-tools.js";
import { EncoderWorker } from "../workers/encoder/worker.js";
import { ensureSampleClip } from "../workers/encoder/sample.js";
import type { MediaTools } from "../workers/ffmpeg/types.js";

type Log = (msg: string, err?: unknown) => void;

/** The queue and event bus: JetStream + NATS subjects when NATS_URL is set, else in memory. */
export interface Messaging {
  kind: "nats" | "in-process";
  queue: WorkQueue;
  events: JobEventBus;
  close(): Promise<void>;
}

/** JetStream's MaxDeliver: a backstop above the job's own attempt limit (leases count claims). */
function maxDeliver(config: Config): number {
  return config.worker.maxAttempts * 2 + 2;
}

export async function openMessaging(config: Config, role: string, log: Log): Promise<Messaging> {
  const queueOptions = { ackWaitMs: config.worker.leaseMs, maxDeliver: maxDeliver(config) };
  if (!config.natsUrl) {
    const queue = createInProcessWorkQueue(queueOptions);
    const events = new InProcessEventBus();
    return {
      kind: "in-process",
      queue,
      events,
      async close() {
        await queue.close();
        await events.close();
      },
    };
  }
  const nc: NatsConnection = await connectNats(config.natsUrl, { name: `rendition-${role}` });
  try {
    const queue = await createNatsWorkQueue(nc, { ...queueOptions, prefix: config.natsPrefix, replicas: config.natsReplicas, onError: (err) => log("queue: retrying after an error", err) });
    const events = createNatsEventBus(nc, { prefix: config.natsPrefix });
    log(`queue: NATS JetStream at ${redactNatsUrl(config.natsUrl)} (prefix ${config.natsPrefix})`);
    return {
      kind: "nats",
      queue,
      events,
      async close() {
        await queue.close();
        await events.close();
        await closeNats(nc);
      },
    };
  } catch (err) {
    await closeNats(nc);
    throw err;
  }
}

/**
 * The relay moves committed outbox rows to the queue; Create and Confirm kick it at once. An
 * in-process queue starts empty, so unfinished jobs from the last run are queued again first.
 */
export async function startRelay(app: App, messaging: Messaging, config: Config, log: Log): Promise<OutboxRelay> {
  const relay = new OutboxRelay(app.database.db, messaging.queue, {
    pollMs: 1000,
    reconcileEveryMs: Math.min(60_000, config.worker.stuckAfterMs),
    stuckAfterMs: config.worker.stuckAfterMs,
    log,
  });
  app.jobs.onOutboxWritten = () => relay.kick();
  if (messaging.kind === "in-process") {
    // PGlite is locked to this process, so the last run's leases belong to nobody now.
    if (app.database.kind === "pglite") {
      await app.runs.releaseAll();
      await new JobTaskRepository(app.database.db).releaseAll();
    }
    const requeued = await relay.requeueUnfinished();
    if (requeued > 0) log(`queued ${requeued} unfinished job(s) from the previous run again`);
  }
  relay.start();
  return relay;
}

/**
 * The webhook dispatcher (API processes): polls for due deliveries, and is kicked after every
 * commit of this process that may have written events.
 */
export function startWebhookDispatcher(app: App, config: Config, log: Log, relay?: OutboxRelay): WebhookDispatcher {
  const dispatcher = new WebhookDispatcher(app.webhookRepository, app.guard, app.webhooks.secretsFor, { ...config.webhooks, log });
  app.webhooks.onDeliveryQueued = () => dispatcher.kick();
  app.jobs.onOutboxWritten = () => {
    relay?.kick();
    dispatcher.kick();
  };
  dispatcher.start();
  return dispatcher;
}

/**
 * Finds ffmpeg (logging which one) and starts the encoder slots. `tools` replaces the real
 * ffmpeg adapter (the benchmarks' instrumented or no-op doubles).
 */
export async function startWorker(app: App, messaging: Messaging, config: Config, log: Log, tools?: MediaTools): Promise<{ worker: EncoderWorker; tools: MediaTools }> {
  tools ??= createMediaTools(await locateMediaTools(process.env), { limits: config.worker.processLimits });
  log(`encoder: ${tools.description}; ffprobe ${tools.ffprobePath}`);
  // Asked once, here: a build without an encoder fails those outputs with CODEC_UNSUPPORTED.
  log(`encoder: ${describeCapabilities(await tools.capabilities())}`);
  const { worker: w } = config;
  const worker = new EncoderWorker(
    {
      jobs: app.jobRepository,
      runs: app.runs,
      origins: app.origins,
      events: messaging.events,
      queue: messaging.queue,
      tools,
      guard: app.guard,
      log,
      tasks: new JobTaskRepository(app.database.db),
      kickOutbox: () => app.jobs.onOutboxWritten?.(),
      settings: {
        limits: { maxInputBytes: w.maxInputBytes, maxDurationMs: w.maxInputDurationMs, maxWidth: w.maxInputWidth, maxHeight: w.maxInputHeight },
        encodeTimeoutMinMs: w.encodeTimeoutMinMs,
        inputCredentials: { s3: w.inputS3, gcs: w.inputGcs },
        progressPersistMs: 1000,
        chunking: w.chunking,
        ffmpegThreads: w.ffmpegThreads,
      },
    },
    { concurrency: w.concurrency, leaseMs: w.leaseMs, maxAttempts: w.maxAttempts, maxDeliver: maxDeliver(config), tmpDir: w.tmpDir, maxConcurrentChunks: w.chunking.maxConcurrent },
  );
  await worker.start();
  log(`encoder ${worker.workerId}: ${w.concurrency} slot(s), lease ${w.leaseMs} ms, up to ${w.maxAttempts} attempts per job`);
  return { worker, tools };
}

const SAMPLE_CLIP = "sample.mp4";

/**
 * Embedded mode: a sample clip in the default local origin, so the first curl has something to
 * transcode. Returns its path within the origin, or undefined when there is no such origin.
 */
export async function prepareSample(tools: MediaTools, config: Config, log: Log): Promise<string | undefined> {
  const storage = defaultStorageDir(config);
  if (!existsSync(storage)) return undefined;
  try {
    await ensureSampleClip(tools, join(storage, SAMPLE_CLIP));
    return SAMPLE_CLIP;
  } catch (err) {
    log(`could not write the sample clip to ${storage}`, err);
    return undefined;
  }
}
