/**
 * Speed, frame rate and ETA of a running job, derived from its progress over time: the Job
 * message carries `progress` (0-100) and the input's duration and frame rate, but no speed, fps
 * or ETA of its own. Pure, so it is unit-tested with made-up samples.
 *
 * The baseline is the first sample seen while the job is processing; the rate is the average
 * since then, measured on the server's clock (Watch's `server_time`), so a slow terminal or
 * network does not skew it. Progress covers encoding and then the upload of the outputs, so the
 * speed ("× realtime": seconds of input per second) is approximate: about 10 % low while encoding.
 */
export interface JobRate {
  /** Seconds of input per wall-clock second. */
  speed?: number;
  /** speed × the input's frame rate. */
  fps?: number;
  /** Seconds until 100 % at the average rate so far. */
  etaSeconds?: number;
}

/** Below this much elapsed time or progress the average is noise: nothing is shown yet. */
const MIN_ELAPSED_MS = 500;

export class ProgressRate {
  private baseline?: { atMs: number; progress: number };

  /** One observation of the job; `processing` is whether it is encoding now. */
  observe(sample: { atMs: number; progress: number; processing: boolean; durationMs?: number; framerate?: number }): JobRate {
    if (!sample.processing) return {};
    if (!this.baseline || sample.progress < this.baseline.progress) {
      this.baseline = { atMs: sample.atMs, progress: sample.progress };
      return {};
    }
    const elapsedMs = sample.atMs - this.baseline.atMs;
    const gained = sample.progress - this.baseline.progress;
    if (elapsedMs < MIN_ELAPSED_MS || gained <= 0) return {};
    const percentPerMs = gained / elapsedMs;
    const rate: JobRate = { etaSeconds: Math.max(0, (100 - sample.progress) / percentPerMs / 1000) };
    if (sample.durationMs && sample.durationMs > 0) {
      rate.speed = (percentPerMs / 100) * sample.durationMs;
      if (sample.framerate && sample.framerate > 0) rate.fps = rate.speed * sample.framerate;
    }
    return rate;
  }
}

/** `0:07`, `1:02:03`. */
export function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

/** `2.4x 58 fps ETA 0:12`, with `--` for what is not known yet. */
export function formatRate(rate: JobRate): { speed: string; fps: string; eta: string } {
  return {
    speed: rate.speed === undefined ? "--" : `${rate.speed < 10 ? rate.speed.toFixed(1) : Math.round(rate.speed)}x`,
    fps: rate.fps === undefined ? "-- fps" : `${Math.round(rate.fps)} fps`,
    eta: rate.etaSeconds === undefined ? "--" : formatDuration(rate.etaSeconds),
  };
}
