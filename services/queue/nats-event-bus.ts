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

export class NatsEventBus implements JobEventBus {
  private readonly prefix: string;
  private readonly subscriptions = new Set<Subscription>();
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

  async subscribe(jobId: string, handler: (event: JobEvent) => void): Promise<Unsubscribe> {
    if (this.closed) throw new Error("event bus is closed");
    const subscription = this.nc.subscribe(this.subject(jobId), {
      callback: (error, msg) => {
        if (error) return;
        let event: JobEvent;
        try {
          event = msg.json<JobEvent>();
        } catch {
          return; // not ours
        }
        try {
          handler(event);
        } catch (handlerError) {
          console.warn(`[event-bus] handler for job ${jobId} threw`, handlerError);
        }
      },
    });
    this.subscriptions.add(subscription);
    // Resolve only once the server has the subscription: events published after this reach it.
    await this.nc.flush();
    return () => this.end(subscription);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const subscription of [...this.subscriptions]) this.end(subscription);
  }

  private end(subscription: Subscription): void {
    if (!this.subscriptions.delete(subscription)) return;
    if (this.nc.isClosed()) return;
    try {
      subscription.unsubscribe();
    } catch {
      // the connection closed meanwhile
    }
  }
}
