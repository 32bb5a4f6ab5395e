import { EventEmitter } from "node:events";
import type { JobStatusName } from "../jobs/job.types.js";

/** A change to a job, announced after it is committed. Watchers re-read the job from the database. */
export interface JobEvent {
  jobId: string;
  organizationId: string;
  kind: "status" | "progress";
  status: JobStatusName;
  progress: number;
}

export type Unsubscribe = () => void;

/**
 * Fan-out of job events to Watch streams. The in-process bus serves the embedded single-process
 * mode; a NATS implementation of the same interface lets Watch work on any API replica.
 */
export interface JobEventBus {
  publish(event: JobEvent): Promise<void>;
  /** Resolves once the subscription is active, so a caller can subscribe before reading state. */
  /** `onResync`: events may have been missed (NATS reconnected after an outage); re-read the job. */
  subscribe(jobId: string, handler: (event: JobEvent) => void, onResync?: () => void): Promise<Unsubscribe>;
  /**
   * False while events published now may be lost (NATS disconnected). Nothing depends on the bus
   * for correctness: Watch streams re-read the job from the database, more often while this is false.
   */
  isLive(): boolean;
  close(): Promise<void>;
}

export class InProcessEventBus implements JobEventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    // Each Watch stream is one listener on its job; many watchers of one job are normal.
    this.emitter.setMaxListeners(0);
  }

  async publish(event: JobEvent): Promise<void> {
    this.emitter.emit(event.jobId, event);
  }

  async subscribe(jobId: string, handler: (event: JobEvent) => void): Promise<Unsubscribe> {
    this.emitter.on(jobId, handler);
    return () => this.emitter.off(jobId, handler);
  }

  isLive(): boolean {
    return true;
  }

  async close(): Promise<void> {
    this.emitter.removeAllListeners();
  }
}
