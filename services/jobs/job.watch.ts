import type { JobEventBus } from "../queue/event-bus.js";
import { isTerminal, type JobRecord } from "./job.types.js";

export type WatchEventName = "snapshot" | "progress" | "status_change" | "completed" | "heartbeat";

export interface WatchOptions {
  /** Keepalive period (reference: 30 s). */
  heartbeatMs: number;
  /** At most one progress event per this many ms (reference: 200 ms). */
  progressDebounceMs: number;
  /** Ends the stream without an error: the client went away or the server is shutting down. */
  signal: AbortSignal;
}

/**
 * The events of one Watch stream. It subscribes before it reads the snapshot, so a transition
 * between the two is delivered rather than lost. A status event re-reads the job (the committed
 * state); a progress event updates the last state's progress from the event itself. Ends after
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
  const unsubscribe = await bus.subscribe(jobId, (event) => {
    if (event.kind === "status") statusPending = true;
    else progressPending = true;
    reported = { status: event.status, progress: event.progress };
    notify();
  });
  options.signal.addEventListener("abort", notify, { once: true });
  try {
    let job = await load();
    yield { event: "snapshot", job };
    if (isTerminal(job.status)) {
      yield { event: "completed", job };
      return;
    }
    let lastProgressAt = 0;
    let lastSentAt = Date.now();
    while (!options.signal.aborted) {
      const now = Date.now();
      const progressDueIn = progressPending ? Math.max(0, lastProgressAt + options.progressDebounceMs - now) : Infinity;
      const heartbeatDueIn = Math.max(0, lastSentAt + options.heartbeatMs - now);
      if (!statusPending && progressDueIn > 0) {
        const waitMs = Math.min(progressDueIn, heartbeatDueIn);
        const timer = setTimeout(notify, waitMs);
        await new Promise<void>((resolve) => (wake = resolve));
        clearTimeout(timer);
        if (options.signal.aborted) return;
        const woke = Date.now();
        const progressReady = progressPending && woke >= lastProgressAt + options.progressDebounceMs;
        if (!statusPending && !progressReady) {
          if (woke >= lastSentAt + options.heartbeatMs) {
            lastSentAt = woke;
            yield { event: "heartbeat", job };
          }
          continue;
        }
      }
      const previous = job;
      const statusChanged = statusPending;
      statusPending = false;
      progressPending = false;
      if (statusChanged) job = await load();
      if (reported && reported.status === job.status && reported.progress > job.progress) job = { ...job, progress: reported.progress };
      lastSentAt = Date.now();
      if (isTerminal(job.status)) {
        yield { event: "completed", job };
        return;
      }
      if (statusChanged && job.status !== previous.status) {
        yield { event: "status_change", job };
      } else if (job.progress !== previous.progress) {
        lastProgressAt = lastSentAt;
        yield { event: "progress", job };
      }
    }
  } finally {
    unsubscribe();
    options.signal.removeEventListener("abort", notify);
  }
}
