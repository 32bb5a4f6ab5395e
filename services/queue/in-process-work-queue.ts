import type { PriorityName } from "../pricing/pricing.js";
import {
  DEFAULT_WORK_QUEUE_OPTIONS,
  PRIORITY_ORDER,
  WORK_STAGES,
  type Delivery,
  type WorkMessage,
  type WorkQueue,
  type QueueStats,
  type WorkQueueOptions,
} from "./work-queue.js";

/**
 * The WorkQueue contract in memory, for the embedded single-process mode: the same semantics as
 * the JetStream queue (priority order, Nats-Msg-Id style dedupe within a window, ack deadline with
 * redelivery, working(), nak with delay, term, max deliveries), without durability: what is queued
 * dies with the process.
 */
export interface InProcessWorkQueueOptions extends Partial<WorkQueueOptions> {
  /** How long a message id is remembered for dedupe. Default 2 min (the JetStream window). */
  duplicateWindowMs?: number;
}

interface Entry {
  readonly message: WorkMessage;
  deliveries: number;
  /** When it was published (Date.now()), for the oldest-message age. */
  readonly queuedAt: number;
}

interface Taker {
  resolve(delivery: Delivery | undefined): void;
}

export function createInProcessWorkQueue(options: InProcessWorkQueueOptions = {}): InProcessWorkQueue {
  return new InProcessWorkQueue(options);
}

export class InProcessWorkQueue implements WorkQueue {
  private readonly ackWaitMs: number;
  private readonly maxDeliver: number;
  private readonly duplicateWindowMs: number;
  private readonly ready = new Map<PriorityName, Entry[]>(PRIORITY_ORDER.map((priority) => [priority, []]));
  /** Waiting take() calls, first come first served. */
  private readonly takers: Taker[] = [];
  /** message id → when it may be published again. Insertion order = expiry order. */
  private readonly seenIds = new Map<string, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Messages delivered at least once and not finished (acked, termed or given up), per priority. */
  private readonly outstanding = new Map<PriorityName, number>(PRIORITY_ORDER.map((priority) => [priority, 0]));
  private closed = false;

  constructor(options: InProcessWorkQueueOptions = {}) {
    this.ackWaitMs = options.ackWaitMs ?? DEFAULT_WORK_QUEUE_OPTIONS.ackWaitMs;
    this.maxDeliver = options.maxDeliver ?? DEFAULT_WORK_QUEUE_OPTIONS.maxDeliver;
    this.duplicateWindowMs = options.duplicateWindowMs ?? 120_000;
  }

  async publish(message: WorkMessage): Promise<void> {
    if (this.closed) throw new Error("work queue is closed");
    if (typeof message.id !== "string" || message.id.length === 0) throw new Error("work message needs an id");
    if (!WORK_STAGES.includes(message.stage)) throw new Error(`unknown work stage ${JSON.stringify(message.stage)}`);
    if (!this.ready.has(message.priority)) throw new Error(`unknown priority ${JSON.stringify(message.priority)}`);
    const now = Date.now();
    for (const [id, until] of this.seenIds) {
      if (until > now) break;
      this.seenIds.delete(id);
    }
    if (this.seenIds.has(message.id)) return;
    this.seenIds.set(message.id, now + this.duplicateWindowMs);
    this.enqueue({ message: { ...message }, deliveries: 0, queuedAt: now });
  }

  /** JetStream's view, in memory: never delivered = waiting; delivered and unfinished = in flight. */
  async stats(): Promise<QueueStats[]> {
    const now = Date.now();
    return PRIORITY_ORDER.map((priority) => {
      const fresh = this.ready.get(priority)!.filter((entry) => entry.deliveries === 0);
      const oldest = fresh.reduce((min, entry) => Math.min(min, entry.queuedAt), now);
      return { priority, waiting: fresh.length, inFlight: this.outstanding.get(priority)!, oldestWaitingAgeSeconds: (now - oldest) / 1000 };
    });
  }

  take(signal: AbortSignal): Promise<Delivery | undefined> {
    if (this.closed || signal.aborted) return Promise.resolve(undefined);
    const entry = this.dequeue();
    if (entry) return Promise.resolve(this.deliver(entry));
    return new Promise((resolve) => {
      const taker: Taker = {
        resolve: (delivery) => {
          signal.removeEventListener("abort", onAbort);
          resolve(delivery);
        },
      };
      const onAbort = () => {
        const index = this.takers.indexOf(taker);
        if (index >= 0) this.takers.splice(index, 1);
        resolve(undefined);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.takers.push(taker);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const queue of this.ready.values()) queue.length = 0;
    for (const taker of this.takers.splice(0)) taker.resolve(undefined);
  }

  /** Makes an entry available: straight to the longest-waiting taker, else into its priority queue. */
  private enqueue(entry: Entry): void {
    if (this.closed) return;
    const taker = this.takers.shift();
    if (taker) taker.resolve(this.deliver(entry));
    else this.ready.get(entry.message.priority)!.push(entry);
  }

  private dequeue(): Entry | undefined {
    for (const priority of PRIORITY_ORDER) {
      const entry = this.ready.get(priority)!.shift();
      if (entry) return entry;
    }
    return undefined;
  }

  private deliver(entry: Entry): Delivery {
    const { priority } = entry.message;
    if (entry.deliveries === 0) this.outstanding.set(priority, this.outstanding.get(priority)! + 1);
    entry.deliveries += 1;
    const finished = () => void this.outstanding.set(priority, this.outstanding.get(priority)! - 1);
    let settled = false;
    let deadline: NodeJS.Timeout | undefined;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      this.clearTimer(deadline);
      return true;
    };
    const retry = (delayMs: number) => {
      if (entry.deliveries >= this.maxDeliver) {
        finished(); // given up, like JetStream MaxDeliver
        return;
      }
      if (delayMs <= 0) this.enqueue(entry);
      else this.schedule(delayMs, () => this.enqueue(entry));
    };
    const armDeadline = () => {
      this.clearTimer(deadline);
      deadline = this.schedule(this.ackWaitMs, () => {
        if (settle()) retry(0);
      });
    };
    armDeadline();

    return {
      message: { ...entry.message },
      deliveryCount: entry.deliveries,
      working: () => {
        if (!settled) armDeadline();
      },
      ack: async () => {
        if (settle()) finished();
      },
      nak: (delayMs?: number) => {
        if (settle()) retry(delayMs ?? 0);
      },
      term: () => {
        if (settle()) finished();
      },
    };
  }

  private schedule(delayMs: number, run: () => void): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      run();
    }, delayMs);
    // Pending redeliveries must not keep a finished process alive.
    timer.unref();
    this.timers.add(timer);
    return timer;
  }

  private clearTimer(timer: NodeJS.Timeout | undefined): void {
    if (!timer) return;
    clearTimeout(timer);
    this.timers.delete(timer);
  }
}
