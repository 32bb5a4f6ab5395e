import type { NatsConnection, Subscription } from "nats";

import type { JobEvent, JobEventBus, Unsubscribe } from "./event-bus.js";

/**
 * JobEventBus over core NATS (no JetStream: a Watch stream that misses an event re-reads the job),
 * so that Watch works on any API replica whichever process changed the job.
 * Subject: `${prefix}.events.job.<jobId>`, JSON payload.
 */
export interface NatsEventBusOptions {
  /** Subject prefix, as for the work queue. Default "rendition". */
  prefix?: string;
}

const SUBJECT_PREFIX = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const SUBJECT_TOKEN = /^[A-Za-z0-9_-]+$/;

export function createNatsEventBus(nc: NatsConnection, options: NatsEventBusOptions = {}): NatsEventBus {
  return new NatsEventBus(nc, options);
}

type Handler = (event: JobEvent) => void;

/** One NATS subscription per job, shared by everything on this bus that watches the job. */
interface JobSubscription {
  subscription: Subscription;
  /** One entry per subscribe() call (the same function subscribed twice is called twice). */
  handlers: Set<{ handler: Handler }>;
  /** Resolves once the server has the subscription. */
  ready: Promise<void>;
}

export class NatsEventBus implements JobEventBus {
  private readonly prefix: string;
  private readonly jobs = new Map<string, JobSubscription>();
  private closed = false;

  /** The caller owns `nc`; close() only ends this bus's subscriptions. */
  constructor(
    private readonly nc: NatsConnection,
    options: NatsEventBusOptions = {},
  ) {
    this.prefix = options.prefix ?? "rendition";
    if (!SUBJECT_PREFIX.test(this.prefix)) {
      throw new Error(`invalid NATS subject prefix ${JSON.stringify(this.prefix)}`);
    }
  }

  /** `${prefix}.events.job.<jobId>` */
  subject(jobId: string): string {
    if (!SUBJECT_TOKEN.test(jobId)) throw new Error(`job id ${JSON.stringify(jobId)} cannot be a NATS subject token`);
    return `${this.prefix}.events.job.${jobId}`;
  }

  async publish(event: JobEvent): Promise<void> {
    if (this.closed) throw new Error("event bus is closed");
    this.nc.publish(this.subject(event.jobId), JSON.stringify(event));
  }

  /**
   * Many Watch streams on one job share one NATS subscription: the server sends each event to
   * this process once, it is parsed once and handed to every handler of the job.
   */
  async subscribe(jobId: string, handler: Handler): Promise<Unsubscribe> {
    if (this.closed) throw new Error("event bus is closed");
    const entry = this.jobs.get(jobId) ?? this.open(jobId);
    const token = { handler };
    entry.handlers.add(token);
    const unsubscribe = () => {
      if (!entry.handlers.delete(token) || entry.handlers.size > 0) return;
      if (this.jobs.get(jobId) === entry) this.jobs.delete(jobId);
      this.end(entry.subscription);
    };
    try {
      // Resolve only once the server has the subscription: events published after this reach it.
      await entry.ready;
    } catch (err) {
      unsubscribe();
      throw err;
    }
    return unsubscribe;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const entry of this.jobs.values()) this.end(entry.subscription);
    this.jobs.clear();
  }

  private open(jobId: string): JobSubscription {
    const handlers = new Set<{ handler: Handler }>();
    const subscription = this.nc.subscribe(this.subject(jobId), {
      callback: (error, msg) => {
        if (error) return;
        let event: JobEvent;
        try {
          event = msg.json<JobEvent>();
        } catch {
          return; // not ours
        }
        for (const { handler } of [...handlers]) {
          try {
            handler(event);
          } catch (handlerError) {
            console.warn(`[event-bus] handler for job ${jobId} threw`, handlerError);
          }
        }
      },
    });
    const entry: JobSubscription = { subscription, handlers, ready: this.nc.flush() };
    this.jobs.set(jobId, entry);
    // A failed flush (connection closing) fails every subscribe waiting on it; the next one starts afresh.
    entry.ready.catch(() => {
      if (this.jobs.get(jobId) === entry) this.jobs.delete(jobId);
      this.end(entry.subscription);
    });
    return entry;
  }

  private end(subscription: Subscription): void {
    if (subscription.isClosed() || this.nc.isClosed()) return;
    try {
      subscription.unsubscribe();
    } catch {
      // the connection closed meanwhile
    }
  }
}
