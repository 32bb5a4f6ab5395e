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
interface Subscriber {
  handler: Handler;
  onResync?: () => void;
}

/** One NATS subscription per job, shared by everything on this bus that watches the job. */
interface JobSubscription {
  subscription: Subscription;
  /** One entry per subscribe() call (the same function subscribed twice is called twice). */
  handlers: Set<Subscriber>;
  /** Resolves once the server has the subscription. */
  ready: Promise<void>;
}

export class NatsEventBus implements JobEventBus {
  private readonly prefix: string;
  private readonly jobs = new Map<string, JobSubscription>();
  private closed = false;
  private connected = true;

  /** The caller owns `nc`; close() only ends this bus's subscriptions. */
  constructor(
    private readonly nc: NatsConnection,
    options: NatsEventBusOptions = {},
  ) {
    this.prefix = options.prefix ?? "rendition";
    if (!SUBJECT_PREFIX.test(this.prefix)) {
      throw new Error(`invalid NATS subject prefix ${JSON.stringify(this.prefix)}`);
    }
    this.followStatus().catch(() => (this.connected = false));
  }

  isLive(): boolean {
    return this.connected && !this.closed && !this.nc.isClosed();
  }

  /** Disconnected from the moment the client notices until it has reconnected (and resubscribed). */
  private async followStatus(): Promise<void> {
    for await (const status of this.nc.status()) {
      if (status.type === "disconnect" || status.type === "reconnecting") this.connected = false;
      else if (status.type === "reconnect") {
        this.connected = true;
        // Core NATS kept nothing published meanwhile: every watcher re-reads its job.
        for (const [jobId, entry] of this.jobs) this.deliver(entry.handlers, jobId, undefined);
      }
    }
  }

  /** `${prefix}.events.job.<jobId>` */
  subject(jobId: string): string {
    if (!SUBJECT_TOKEN.test(jobId)) throw new Error(`job id ${JSON.stringify(jobId)} cannot be a NATS subject token`);
    return `${this.prefix}.events.job.${jobId}`;
  }

  /**
   * Best effort, never throws: the change is committed before it is announced, and Watch streams
   * re-read the database, so an event lost to a NATS outage delays a stream, it loses nothing.
   * (A failing announcement must not fail the worker or the RPC that made the change.)
   */
  async publish(event: JobEvent): Promise<void> {
    const subject = this.subject(event.jobId);
    if (this.closed || this.nc.isClosed()) return;
    try {
      this.nc.publish(subject, JSON.stringify(event));
    } catch {
      // disconnected with a full reconnect buffer, or closing: dropped (see above)
    }
  }

  /**
   * Many Watch streams on one job share one NATS subscription: the server sends each event to
   * this process once, it is parsed once and handed to every handler of the job.
   */
  async subscribe(jobId: string, handler: Handler, onResync?: () => void): Promise<Unsubscribe> {
    if (this.closed) throw new Error("event bus is closed");
    const entry = this.jobs.get(jobId) ?? this.open(jobId);
    const token: Subscriber = { handler, onResync };
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
    const handlers = new Set<Subscriber>();
    const subscription = this.nc.subscribe(this.subject(jobId), {
      callback: (error, msg) => {
        if (error) return;
        let event: JobEvent;
        try {
          event = msg.json<JobEvent>();
        } catch {
          return; // not ours
        }
        this.deliver(handlers, jobId, event);
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

  /** An event to every subscriber of the job, or (undefined) a resync. */
  private deliver(handlers: Set<Subscriber>, jobId: string, event: JobEvent | undefined): void {
    for (const { handler, onResync } of [...handlers]) {
      try {
        if (event) handler(event);
        else onResync?.();
      } catch (handlerError) {
        console.warn(`[event-bus] handler for job ${jobId} threw`, handlerError);
      }
    }
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
