import { KickedLoop } from "../common/kicked-loop.js";
import { createGuardedFetch, type FetchLike } from "../net/guarded-fetch.js";
import type { NetworkGuard } from "../net/network-guard.js";
import type { AttemptOutcome, AttemptRecord, ClaimedDelivery, WebhookRepository } from "./webhook.repository.js";
import { signedHeaders } from "./signing.js";
import type { Log } from "../observability/log-context.js";
import { webhookDeliveries } from "../observability/metrics.js";

/**
 * Waits after failed attempt n (1-based) before attempt n+1: 15 attempts over about 72 h
 * (5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 6 h, 8 h, 10 h, 12 h, 14 h, 14 h; sum 71.7 h),
 * each with ±20 % jitter so a receiver that comes back is not hit by every sender at once.
 */
export const RETRY_SCHEDULE_MS: readonly number[] = [5, 30, 120, 600, 1800, 3600, 7200, 14_400, 21_600, 28_800, 36_000, 43_200, 50_400, 50_400].map((s) => s * 1000);

const SNIPPET_BYTES = 1024;
/** Settled events (and their delivery history) are kept this long. */
export const HISTORY_DAYS = 30;
const PRUNE_EVERY_MS = 3600_000;

export interface DispatcherOptions {
  /** How often due deliveries are looked for when nobody kicks the dispatcher. */
  pollMs: number;
  /** A whole attempt (connect, send, answer) is cut off after this long. */
  timeoutMs: number;
  retryScheduleMs: readonly number[];
  /** Deliveries sent at once by this process. */
  concurrency: number;
  log: Log;
}

/** The current secret and, within its grace period, the previous one: every one of them signs. */
export type SecretsFor = (delivery: ClaimedDelivery) => Promise<string[]>;

/** The wait before the next attempt, or undefined when `attempt` was the last one. */
export function nextDelayMs(attempt: number, schedule: readonly number[], random: () => number = Math.random): number | undefined {
  const base = schedule[attempt - 1];
  if (base === undefined) return undefined;
  return Math.round(base * (0.8 + 0.4 * random()));
}

/** How an answer (or its absence) moves a delivery on. */
export function outcomeOf(status: number, attempt: number, schedule: readonly number[], now = Date.now()): AttemptOutcome {
  if (status >= 200 && status < 300) return { result: "delivered" };
  if (status === 410) return { result: "gone" };
  const delay = nextDelayMs(attempt, schedule);
  return delay === undefined ? { result: "failed" } : { result: "retry", nextAttemptAt: new Date(now + delay) };
}

/**
 * Sends webhook deliveries from the database: claims due rows (a lease, so several API
 * processes share the work and a crashed one's rows come back), POSTs each signed body through
 * the network guard with a timeout, records the attempt and schedules the next. At-least-once:
 * a process killed between sending and recording sends again after the lease (the receiver
 * dedupes on webhook-id); the history shows the interrupted attempt in between.
 */
export class WebhookDispatcher {
  private readonly loop: KickedLoop;
  private readonly fetch: FetchLike;
  private prunedAt = 0;

  constructor(
    private readonly repo: WebhookRepository,
    guard: NetworkGuard,
    private readonly secretsFor: SecretsFor,
    private readonly options: DispatcherOptions,
  ) {
    this.fetch = createGuardedFetch(guard, { socketTimeoutMs: options.timeoutMs });
    this.loop = new KickedLoop(() => this.drain(), options.pollMs, (err) => options.log("webhooks: dispatch failed; will retry", err));
  }

  start(): void {
    this.loop.start();
  }

  /** Look for due deliveries now (after a commit that wrote events); concurrent kicks coalesce. */
  kick(): void {
    this.loop.kick();
  }

  /** Stops claiming; attempts in flight finish (each within the timeout). */
  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** Sends until nothing is due; returns how many attempts were made. */
  async drain(): Promise<number> {
    if (Date.now() - this.prunedAt > PRUNE_EVERY_MS) {
      this.prunedAt = Date.now();
      await this.repo.deleteSettledOlderThan(HISTORY_DAYS);
    }
    let attempts = 0;
    for (;;) {
      if (this.loop.isStopped && attempts > 0) return attempts;
      // The lease outlives an attempt (timeout) with room to record it; a crashed process's rows come back after it.
      const batch = await this.repo.claimDue(this.options.concurrency, 2 * this.options.timeoutMs + 1000);
      if (batch.length === 0) return attempts;
      await Promise.all(batch.map((delivery) => this.attempt(delivery)));
      attempts += batch.length;
    }
  }

  private async attempt(delivery: ClaimedDelivery): Promise<void> {
    const started = performance.now();
    let record: AttemptRecord;
    const deadline = AbortSignal.timeout(this.options.timeoutMs);
    try {
      const secrets = await this.secretsFor(delivery);
      const headers = signedHeaders(delivery.eventId, new Date(), delivery.payload, secrets);
      const response = await this.fetch(delivery.url, { method: "POST", headers, body: delivery.payload, signal: deadline });
      const snippet = await readSnippet(response);
      const redirect = response.status >= 300 && response.status < 400;
      record = {
        responseStatus: response.status,
        latencyMs: performance.now() - started,
        responseSnippet: snippet,
        error: redirect ? `redirects are not followed (Location: ${response.headers.get("location") ?? "none"})` : "",
      };
    } catch (err) {
      const timedOut = deadline.aborted || (err as { code?: string }).code === "ETIMEDOUT";
      record = {
        responseStatus: 0,
        latencyMs: performance.now() - started,
        responseSnippet: "",
        error: timedOut ? `no answer within ${this.options.timeoutMs} ms` : describe(err),
      };
    }
    const outcome = outcomeOf(record.responseStatus, delivery.attemptCount, this.options.retryScheduleMs);
    webhookDeliveries.inc({ result: outcome.result });
    const fields = { organization_id: delivery.organizationId, ...(delivery.jobId ? { job_id: delivery.jobId } : {}), delivery_id: delivery.id };
    this.options.log(`webhooks: attempt ${delivery.attemptCount} of ${delivery.id}: ${outcome.result} (HTTP ${record.responseStatus || "none"}${record.error ? `, ${record.error}` : ""})`, undefined, {
      ...fields,
      level: outcome.result === "delivered" ? "debug" : "info",
    });
    try {
      await this.repo.recordAttempt(delivery, record, outcome);
    } catch (err) {
      // The lease runs out and the delivery is tried again: at least once, never lost.
      this.options.log(`webhooks: could not record attempt ${delivery.attemptCount} of ${delivery.id}`, err, fields);
    }
  }
}

/** The first KiB of an answer, as text; the rest is not read. */
async function readSnippet(response: Response): Promise<string> {
  if (!response.body) return "";
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < SNIPPET_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
    }
  } catch {
    // A body cut off after the status line: the status is what counts.
  } finally {
    void reader.cancel().catch(() => {});
  }
  // PostgreSQL text cannot hold NUL: a receiver answering binary must not make the attempt unrecordable.
  return Buffer.concat(chunks).subarray(0, SNIPPET_BYTES).toString("utf8").replaceAll("\u0000", "");
}

function describe(err: unknown): string {
  const e = err as { message?: string; code?: string; cause?: { code?: string; message?: string } };
  const code = e.code ?? e.cause?.code;
  const message = e.message ?? String(err);
  return code && !message.includes(code) ? `${code}: ${message}` : message;
}
