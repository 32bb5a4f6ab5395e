import type { JobEvent, JobEventBus, Unsubscribe } from "../queue/event-bus.js";
import { isTerminal, type JobRecord } from "./job.types.js";

export type WatchEventName = "snapshot" | "progress" | "status_change" | "completed" | "heartbeat";

export interface WatchOptions {
  /** Keepalive period (reference: 30 s). The row is re-read at this pace too, as a backstop. */
  heartbeatMs: number;
  /** At most one progress event per this many ms (reference: 200 ms). */
  progressDebounceMs: number;
  /** While the bus cannot deliver (or the last read failed), the row is re-read this often. */
  pollMs: number;
  /** Ends the stream without an error: the client went away or the server is shutting down. */
  signal: AbortSignal;
}

/** A subscription the bus has not confirmed in this long is given up: the stream polls instead. */
const SUBSCRIBE_TIMEOUT_MS = 2_000;

/**
 * The events of one Watch stream. The database is the truth; the bus only makes the stream
 * prompt. It subscribes before it reads the snapshot, so a transition between the two is
 * delivered rather than lost. A status event re-reads the job (the committed state); a progress
 * event updates the last state's progress from the event itself. The row is also re-read every
 * heartbeat, and every `pollMs` while the bus is down or the subscription failed, so a change
 * whose event was lost (NATS down when it was published) still reaches the stream. Ends after
 * the `completed` event of a terminal state.
 */
export async function* watchJob(
  bus: JobEventBus,
  load: () => Promise<JobRecord>,
  jobId: string,
  options: WatchOptions,
): AsyncGenerator<{ event: WatchEventName; job: JobRecord }> {
  let wake: (() => void) | undefined;
  let statusPending = false;
  let progressPending = false;
  // Progress comes with its event: workers persist it to the row only now and then, so re-reading
  // the row for every progress event would be both slower and staler.
  let reported: { status: JobRecord["status"]; progress: number } | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const handler = (event: JobEvent) => {
    if (event.kind === "status") statusPending = true;
    else progressPending = true;
    reported = { status: event.status, progress: event.progress };
    notify();
  };
  // The bus may have missed events (NATS reconnected): re-read the job.
  const resync = () => {
    statusPending = true;
    notify();
  };
  let unsubscribe: Unsubscribe | undefined;
  /** Subscribes when the bus can deliver; a failure or a slow answer leaves the stream polling. */
  const subscribe = async () => {
    if (unsubscribe || !bus.isLive()) return;
    const pending = bus.subscribe(jobId, handler, resync);
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      pending,
      new Promise<undefined>((resolve) => (timer = setTimeout(resolve, SUBSCRIBE_TIMEOUT_MS, undefined))),
    ]).catch(() => undefined);
    clearTimeout(timer);
    if (result) unsubscribe = result;
    // Confirmed too late: drop it (the next read tries again).
    else pending.then((late) => late(), () => undefined);
  };
  options.signal.addEventListener("abort", notify, { once: true });
  try {
    await subscribe();
    let job = await load();
    yield { event: "snapshot", job };
    if (isTerminal(job.status)) {
      yield { event: "completed", job };
      return;
    }
    let lastProgressAt = 0;
    let lastSentAt = Date.now();
    let lastReadAt = Date.now();
    let readFailed = false;
    const readEvery = () => (unsubscribe && bus.isLive() && !readFailed ? options.heartbeatMs : options.pollMs);
    while (!options.signal.aborted) {
      const now = Date.now();
      const readDueIn = lastReadAt + readEvery() - now;
      const progressDueIn = progressPending ? lastProgressAt + options.progressDebounceMs - now : Infinity;
      const heartbeatDueIn = lastSentAt + options.heartbeatMs - now;
      // Wakes at least every pollMs to notice the bus going down (a cheap check; no read while it is up).
      const waitMs = Math.min(readDueIn, progressDueIn, heartbeatDueIn, options.pollMs);
      if (!statusPending && waitMs > 0) {
        const timer = setTimeout(notify, waitMs);
        await new Promise<void>((resolve) => (wake = resolve));
        clearTimeout(timer);
        continue;
      }
      const previous = job;
      const woke = Date.now();
      const progressReady = progressPending && woke >= lastProgressAt + options.progressDebounceMs;
      const statusChanged = statusPending;
      if (statusChanged || woke >= lastReadAt + readEvery()) {
        statusPending = false;
        await subscribe();
        try {
          job = await load();
          readFailed = false;
          // The row's progress lags the events': a re-read never takes a stream backwards.
          if (job.status === previous.status && job.progress < previous.progress) job = { ...job, progress: previous.progress };
        } catch {
          // The database is unreachable for now: keep the stream, try again in pollMs.
          readFailed = true;
        }
        lastReadAt = Date.now();
      }
      if (progressReady || statusChanged) {
        progressPending = false;
        if (reported && reported.status === job.status && reported.progress > job.progress) job = { ...job, progress: reported.progress };
      }
      const sentAt = Date.now();
      if (isTerminal(job.status)) {
        yield { event: "completed", job };
        return;
      }
      if (job.status !== previous.status) {
        lastSentAt = sentAt;
        yield { event: "status_change", job };
      } else if (job.progress !== previous.progress) {
        lastSentAt = lastProgressAt = sentAt;
        yield { event: "progress", job };
      } else if (sentAt >= lastSentAt + options.heartbeatMs) {
        lastSentAt = sentAt;
        yield { event: "heartbeat", job };
      }
    }
  } finally {
    unsubscribe?.();
    options.signal.removeEventListener("abort", notify);
  }
}
