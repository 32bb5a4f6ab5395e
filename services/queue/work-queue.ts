import type { PriorityName } from "../pricing/pricing.js";

/**
 * What a work message asks a worker to do with a job. A message is a nudge, not a command: the
 * worker re-reads the job and carries it on from wherever it is (see workers/encoder), so a
 * duplicate or late message is harmless.
 */
export type WorkStage = "probe" | "encode" | "chunk" | "assemble";

export const WORK_STAGES: readonly WorkStage[] = ["probe", "encode", "chunk", "assemble"];

export interface WorkMessage {
  /** Unique per message; the JetStream `Nats-Msg-Id`, so a re-publish of the same id is dropped. */
  id: string;
  jobId: string;
  organizationId: string;
  stage: WorkStage;
  priority: PriorityName;
  /** The job_tasks row a `chunk` or `assemble` message names (chunked encoding). */
  taskId?: string;
}

/** Highest first: a worker takes premium work before standard before economy. */
export const PRIORITY_ORDER: readonly PriorityName[] = ["premium", "standard", "economy"];

/** One delivery of a message to one worker. Exactly one of ack / nak / term ends it. */
export interface Delivery {
  readonly message: WorkMessage;
  /** 1 on first delivery, then 2, 3... after redeliveries (nak, ack timeout, crashed worker). */
  readonly deliveryCount: number;
  /** Extends the ack deadline; call it while long work (ffmpeg) runs. */
  working(): void;
  /** Done: never deliver again. */
  ack(): Promise<void>;
  /** Transient failure: deliver again after `delayMs` (to any worker). */
  nak(delayMs?: number): void;
  /** Permanent failure: never deliver again. */
  term(): void;
}

export interface WorkQueue {
  /** Resolves once the queue has stored the message (JetStream publish ack). Duplicate ids are dropped. */
  publish(message: WorkMessage): Promise<void>;
  /**
   * Waits for the highest-priority message available and returns it, or undefined when `signal`
   * aborts first. One call = one message (one encode slot pulls one at a time).
   */
  take(signal: AbortSignal): Promise<Delivery | undefined>;
  close(): Promise<void>;
  /** What the queue holds per priority, for /metrics (docs/architecture.md, Observability). */
  stats?(): Promise<QueueStats[]>;
}

/** One priority's share of the queue. */
export interface QueueStats {
  priority: PriorityName;
  /** Stored and not yet handed to any worker. */
  waiting: number;
  /** Handed to a worker and not acked yet: running, or waiting out a nak's delay or an ack timeout. */
  inFlight: number;
  /** Age of the oldest waiting message (its first publish); 0 when none waits. */
  oldestWaitingAgeSeconds: number;
}

export interface WorkQueueOptions {
  /** Ack deadline: a delivery not acked, nak'd or extended by working() within it is redelivered. */
  ackWaitMs: number;
  /** Deliveries after which the queue gives up on a message (JetStream MaxDeliver). */
  maxDeliver: number;
}

export const DEFAULT_WORK_QUEUE_OPTIONS: WorkQueueOptions = { ackWaitMs: 30_000, maxDeliver: 10 };
