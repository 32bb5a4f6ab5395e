import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  ErrorCode,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
  nanos,
  type ConsumerConfig,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type NatsConnection,
  type StreamConfig,
  type Subscription,
} from "nats";

import type { PriorityName } from "../pricing/pricing.js";
import {
  DEFAULT_WORK_QUEUE_OPTIONS,
  PRIORITY_ORDER,
  WORK_STAGES,
  type Delivery,
  type WorkMessage,
  type WorkQueue,
  type WorkQueueOptions,
  type WorkStage,
} from "./work-queue.js";

/**
 * WorkQueue on NATS JetStream (proven against nats-server 2.9.10 with nats.js 2.29.3).
 *
 * Topology, for prefix "rendition":
 * - stream `RENDITION_JOBS`: WorkQueue retention, file storage, 2 min duplicate window,
 *   subjects `rendition.jobs.*.premium`, `rendition.jobs.*.standard`, `rendition.jobs.*.economy`;
 *   a message is published on `rendition.jobs.<stage>.<priority>` with Nats-Msg-Id = message.id.
 * - three durable pull consumers `work_premium`, `work_standard`, `work_economy`, each filtered on
 *   its priority (a WorkQueue stream requires non-overlapping filters), explicit ack.
 * - a core-NATS "doorbell" `rendition.jobs.ready`, published after each stored message.
 *
 * take() sweeps the consumers in priority order with single-message no-wait pulls (never holds
 * more than one message); when all are empty it sleeps until the doorbell rings (after a publish,
 * a nak, and when a delayed nak's delay is over) or a fallback timer (`idleSweepMs`: ack-timeout
 * redeliveries, and naks of a process that died, ring no bell) fires.
 *
 * Messages that exhaust max_deliver stay in a WorkQueue stream forever; the queue listens (in a
 * queue group, so one process does it) for the server's MAX_DELIVERIES advisory and deletes them.
 */

export interface NatsWorkQueueOptions extends Partial<WorkQueueOptions> {
  /** Subject prefix (dot-separated tokens of letters, digits, `_`, `-`). Default "rendition". */
  prefix?: string;
  /** JetStream duplicate window for Nats-Msg-Id. Default 2 min. */
  duplicateWindowMs?: number;
  /** Stream replicas (3 on a 3-node JetStream cluster: a publish is acked once a quorum has it). Default 1. */
  replicas?: number;
  /** An idle take() re-sweeps at least this often (catches redeliveries). Default 1 s. */
  idleSweepMs?: number;
  /**
   * Client-side limit on one no-wait pull. nats-server 2.9 sometimes never answers a pull (the one
   * that finds a message past max_deliver): the sweep treats the timeout as "empty". Default 2 s.
   */
  pullTimeoutMs?: number;
  /** Called with unexpected errors that take() survives by retrying. Default: console.warn. */
  onError?: (error: unknown) => void;
}

export interface NatsWorkQueueNames {
  prefix: string;
  stream: string;
  /** Stream subject = consumer filter, per priority: `${prefix}.jobs.*.<priority>`. */
  filters: Record<PriorityName, string>;
  /** Durable consumer name per priority. */
  consumers: Record<PriorityName, string>;
  /** Core-NATS subject rung after each publish. */
  doorbell: string;
  /** `${prefix}.jobs.<stage>.<priority>` */
  subject(stage: WorkStage, priority: PriorityName): string;
}

const SUBJECT_PREFIX = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const STAGES: readonly WorkStage[] = WORK_STAGES;
const MAX_ACK_PENDING = 10_000;
const NO_MESSAGES = new Set(["404", "408"]);

export function natsWorkQueueNames(prefix = "rendition"): NatsWorkQueueNames {
  if (!SUBJECT_PREFIX.test(prefix)) {
    throw new Error(`invalid NATS subject prefix ${JSON.stringify(prefix)}: use tokens of [A-Za-z0-9_-] separated by dots`);
  }
  const byPriority = (make: (priority: PriorityName) => string) =>
    Object.fromEntries(PRIORITY_ORDER.map((priority) => [priority, make(priority)])) as Record<PriorityName, string>;
  return {
    prefix,
    stream: `${prefix.toUpperCase().replace(/[^A-Z0-9_-]/g, "_")}_JOBS`,
    filters: byPriority((priority) => `${prefix}.jobs.*.${priority}`),
    consumers: byPriority((priority) => `work_${priority}`),
    doorbell: `${prefix}.jobs.ready`,
    subject: (stage, priority) => `${prefix}.jobs.${stage}.${priority}`,
  };
}

/**
 * Creates (or updates) the stream and consumers, then returns a queue on `nc`. Safe when several
 * processes start at once. The caller owns `nc`: close() leaves it open.
 */
export async function createNatsWorkQueue(nc: NatsConnection, options: NatsWorkQueueOptions = {}): Promise<NatsWorkQueue> {
  const names = natsWorkQueueNames(options.prefix);
  const settings: ResolvedOptions = {
    ackWaitMs: options.ackWaitMs ?? DEFAULT_WORK_QUEUE_OPTIONS.ackWaitMs,
    maxDeliver: options.maxDeliver ?? DEFAULT_WORK_QUEUE_OPTIONS.maxDeliver,
    duplicateWindowMs: options.duplicateWindowMs ?? 120_000,
    replicas: options.replicas ?? 1,
    idleSweepMs: options.idleSweepMs ?? 1_000,
    pullTimeoutMs: options.pullTimeoutMs ?? 2_000,
    onError: options.onError ?? ((error) => console.warn(`[work-queue ${names.stream}]`, error)),
  };
  const jsm = await nc.jetstreamManager();
  await ensureTopology(jsm, names, settings);
  const queue = new NatsWorkQueue(nc, jsm, names, settings);
  // The doorbell subscription must be on the server before a publish can be missed.
  await nc.flush();
  return queue;
}

interface ResolvedOptions extends WorkQueueOptions {
  duplicateWindowMs: number;
  replicas: number;
  idleSweepMs: number;
  pullTimeoutMs: number;
  onError: (error: unknown) => void;
}

export class NatsWorkQueue implements WorkQueue {
  private readonly js: JetStreamClient;
  private readonly doorbell: Subscription;
  private readonly reaper: Subscription;
  private readonly closing = new AbortController();
  /** Incremented on every doorbell; a sweep that started before a ring must sweep again. */
  private rings = 0;
  private readonly sleepers = new Set<() => void>();
  private repairing: Promise<void> | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    readonly names: NatsWorkQueueNames,
    private readonly settings: ResolvedOptions,
  ) {
    // js.pull's request timeout is the JetStream client timeout.
    this.js = nc.jetstream({ timeout: settings.pullTimeoutMs });
    this.doorbell = nc.subscribe(names.doorbell, {
      callback: () => {
        this.rings += 1;
        // One ring, one message: wake one idle slot (the longest asleep), not all of them, or
        // every publish sends each idle slot of every worker sweeping the consumers. A slot
        // that was sweeping meanwhile sweeps again anyway (it sees the ring count move).
        const [first] = this.sleepers;
        first?.();
      },
    });
    this.reaper = nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${names.stream}.*`, {
      queue: `${names.stream}_reaper`,
      callback: (_error, msg) => {
        let seq: unknown;
        try {
          seq = (msg.json() as { stream_seq?: unknown }).stream_seq;
        } catch {
          return;
        }
        if (typeof seq !== "number") return;
        // no_erase: just drop it. Fails harmlessly when someone else already did.
        this.jsm.streams.deleteMessage(names.stream, seq, false).catch(() => undefined);
      },
    });
  }

  async publish(message: WorkMessage): Promise<void> {
    if (this.closing.signal.aborted) throw new Error("work queue is closed");
    assertWorkMessage(message);
    const ack = await this.js.publish(this.names.subject(message.stage, message.priority), JSON.stringify(message), {
      msgID: message.id,
      timeout: Math.max(this.settings.pullTimeoutMs, 5_000),
    });
    if (!ack.duplicate) this.ring();
  }

  async take(signal: AbortSignal): Promise<Delivery | undefined> {
    const stop = AbortSignal.any([signal, this.closing.signal]);
    while (!stop.aborted) {
      const seen = this.rings;
      const sweep = this.sweep();
      const delivery = await untilAborted(sweep, stop);
      if (stop.aborted) {
        // Aborted mid-sweep: hand anything that still arrives straight back to the queue.
        void sweep.then((late) => late?.nak(), () => undefined);
        if (delivery) delivery.nak();
        return undefined;
      }
      if (delivery) return delivery;
      if (this.rings === seen) await this.sleep(stop);
    }
    return undefined;
  }

  async close(): Promise<void> {
    if (this.closing.signal.aborted) return;
    this.closing.abort();
    if (!this.nc.isClosed()) {
      for (const sub of [this.doorbell, this.reaper]) {
        try {
          sub.unsubscribe();
        } catch {
          // the connection went away meanwhile
        }
      }
    }
  }

  private ring(): void {
    try {
      this.nc.publish(this.names.doorbell);
    } catch {
      // closed or draining: the fallback sweep covers it
    }
  }

  /** One no-wait pull per consumer, highest priority first; the first message found wins. */
  private async sweep(): Promise<NatsDelivery | undefined> {
    for (const priority of PRIORITY_ORDER) {
      if (this.nc.isClosed()) throw new Error("NATS connection is closed");
      let msg: JsMsg;
      try {
        // A single-message no-wait pull (js.pull is deprecated in favour of Consumer#fetch, which
        // has no no_wait; exactly this request is what we want).
        msg = await this.js.pull(this.names.stream, this.names.consumers[priority], 0);
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        if (typeof code === "string" && NO_MESSAGES.has(code)) continue;
        if (this.nc.isClosed()) throw new Error("NATS connection is closed", { cause: error });
        if (code === ErrorCode.Timeout) {
          // Either the 2.9 "unanswered pull" (see pullTimeoutMs) or, also unanswered on 2.9, a pull
          // from a consumer or stream that no longer exists: check which, and recreate if need be.
          await this.verifyConsumer(priority);
          continue;
        }
        this.settings.onError(error);
        continue;
      }
      const message = parseWorkMessage(msg);
      if (!message) {
        try {
          msg.term();
        } catch {
          // closed meanwhile
        }
        this.settings.onError(new Error(`terminated an unreadable work message on ${msg.subject} (seq ${msg.seq})`));
        continue;
      }
      return new NatsDelivery(message, msg, this.nc, () => this.ring());
    }
    return undefined;
  }

  private sleep(stop: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        stop.removeEventListener("abort", wake);
        this.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, this.settings.idleSweepMs);
      stop.addEventListener("abort", wake, { once: true });
      this.sleepers.add(wake);
    });
  }

  private async verifyConsumer(priority: PriorityName): Promise<void> {
    try {
      await this.jsm.consumers.info(this.names.stream, this.names.consumers[priority]);
    } catch (error) {
      if (hasApiErrorCode(error, 10014) || hasApiErrorCode(error, 10059)) await this.repair();
      else if (!this.nc.isClosed()) this.settings.onError(error);
    }
  }

  /** The stream or a consumer vanished (deleted by an operator): recreate, once at a time. */
  private repair(): Promise<void> {
    if (this.closing.signal.aborted) return Promise.resolve();
    this.repairing ??= ensureTopology(this.jsm, this.names, this.settings)
      .catch((error: unknown) => this.settings.onError(error))
      .finally(() => {
        this.repairing = undefined;
      });
    return this.repairing;
  }
}

class NatsDelivery implements Delivery {
  readonly deliveryCount: number;
  private settled = false;

  constructor(
    readonly message: WorkMessage,
    private readonly msg: JsMsg,
    private readonly nc: NatsConnection,
    private readonly ring: () => void,
  ) {
    // 1 on the first delivery (the ack subject's delivered count).
    this.deliveryCount = msg.info.redeliveryCount;
  }

  working(): void {
    if (this.settled) return;
    this.quietly(() => this.msg.working());
  }

  async ack(): Promise<void> {
    if (this.settled) return;
    this.settled = true;
    try {
      await this.msg.ackAck();
    } catch (error) {
      // On a closed connection the message is simply redelivered later, which is harmless.
      if (this.nc.isClosed() || this.nc.isDraining()) return;
      throw error;
    }
  }

  nak(delayMs?: number): void {
    if (this.settled) return;
    this.settled = true;
    const delay = delayMs !== undefined && delayMs > 0 ? Math.round(delayMs) : undefined;
    this.quietly(() => this.msg.nak(delay));
    // Wake idle workers when the message is available again (if this process is still there to do
    // it; else the fallback sweep finds it). A ring that comes a little early costs one sweep.
    if (delay === undefined) this.ring();
    else setTimeout(this.ring, delay + 10).unref();
  }

  term(): void {
    if (this.settled) return;
    this.settled = true;
    this.quietly(() => this.msg.term());
  }

  private quietly(act: () => void): void {
    try {
      act();
    } catch (error) {
      if (this.nc.isClosed() || this.nc.isDraining()) return;
      throw error;
    }
  }
}

async function ensureTopology(jsm: JetStreamManager, names: NatsWorkQueueNames, settings: ResolvedOptions): Promise<void> {
  const stream: Partial<StreamConfig> = {
    name: names.stream,
    description: "Rendition work messages (one consumer per priority)",
    subjects: PRIORITY_ORDER.map((priority) => names.filters[priority]),
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    num_replicas: settings.replicas,
    duplicate_window: nanos(settings.duplicateWindowMs),
  };
  try {
    await jsm.streams.add(stream);
  } catch (error) {
    // Created meanwhile by another process (identical adds succeed) or with other settings.
    if (!hasApiErrorCode(error, 10058)) throw error;
    await jsm.streams.update(names.stream, stream);
  }

  await Promise.all(
    PRIORITY_ORDER.map(async (priority) => {
      const consumer: Partial<ConsumerConfig> = {
        durable_name: names.consumers[priority],
        description: `Rendition ${priority} work`,
        filter_subject: names.filters[priority],
        ack_policy: AckPolicy.Explicit,
        ack_wait: nanos(settings.ackWaitMs),
        max_deliver: settings.maxDeliver,
        max_ack_pending: MAX_ACK_PENDING,
        deliver_policy: DeliverPolicy.All,
        replay_policy: ReplayPolicy.Instant,
      };
      try {
        // nats-server 2.9 treats a create of an existing durable as an update.
        await jsm.consumers.add(names.stream, consumer);
      } catch (error) {
        // 2.10+: "consumer already exists" (10148) / "name already in use" (10013) → update.
        if (!hasApiErrorCode(error, 10148) && !hasApiErrorCode(error, 10013)) throw error;
        await jsm.consumers.update(names.stream, names.consumers[priority], {
          description: consumer.description,
          ack_wait: consumer.ack_wait,
          max_deliver: consumer.max_deliver,
          max_ack_pending: consumer.max_ack_pending,
        });
      }
    }),
  );
}

function hasApiErrorCode(error: unknown, errCode: number): boolean {
  return (error as { api_error?: { err_code?: number } } | undefined)?.api_error?.err_code === errCode;
}

function assertWorkMessage(message: WorkMessage): void {
  if (typeof message.id !== "string" || message.id.length === 0) throw new Error("work message needs an id");
  if (!STAGES.includes(message.stage)) throw new Error(`unknown work stage ${JSON.stringify(message.stage)}`);
  if (!PRIORITY_ORDER.includes(message.priority)) throw new Error(`unknown priority ${JSON.stringify(message.priority)}`);
}

function parseWorkMessage(msg: JsMsg): WorkMessage | undefined {
  try {
    const value = msg.json<Partial<WorkMessage>>();
    if (
      typeof value?.id === "string" &&
      typeof value.jobId === "string" &&
      typeof value.organizationId === "string" &&
      STAGES.includes(value.stage as WorkStage) &&
      PRIORITY_ORDER.includes(value.priority as PriorityName) &&
      (value.taskId === undefined || typeof value.taskId === "string")
    ) {
      return value as WorkMessage;
    }
  } catch {
    // fall through
  }
  return undefined;
}

/** Resolves with the promise's value, or with undefined as soon as `signal` aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(undefined);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
