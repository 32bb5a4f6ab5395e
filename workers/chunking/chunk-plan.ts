/**
 * Where a long input is cut so that parts of one encode can run side by side and be joined
 * without a visible seam (pure). Cuts fall on frames, at multiples of `alignSeconds` (a streaming
 * output's segment duration, where the single-pass encode forces a keyframe anyway), so a chunk's
 * segments are output segments and a joined file has exactly the frames of a single pass.
 */

/** A frame's presentation time as an exact fraction of a second: pts × num / den. */
export interface FrameTime {
  pts: bigint;
  num: number;
  den: number;
}

export interface Chunk {
  index: number;
  /** Index of the chunk's first frame in presentation order. */
  startFrame: number;
  /** How many frames the chunk encodes. */
  frames: number;
  /**
   * Where to seek (ffmpeg `-ss` before `-i`), in microseconds: the first frame's time rounded
   * down, so that frame and none before it is decoded into the chunk.
   */
  seekUs: number;
  /** The first frame's time in seconds (for progress weighting and logs). */
  startSeconds: number;
  durationSeconds: number;
}

export interface ChunkOptions {
  /** Target length of a chunk; actual chunks are this long, rounded to `alignSeconds`. */
  chunkSeconds: number;
  /** Cuts land on multiples of this (0: any frame). */
  alignSeconds: number;
  /** Inputs shorter than this stay one piece. */
  minInputSeconds: number;
}

/** Microseconds, rounded down, of an exact frame time. */
export function floorMicroseconds(t: FrameTime): number {
  const micros = (t.pts * BigInt(t.num) * 1_000_000n) / BigInt(t.den);
  // BigInt division truncates toward zero; presentation times before 0 round down too.
  const exact = t.pts * BigInt(t.num) * 1_000_000n;
  return Number(exact < 0n && exact % BigInt(t.den) !== 0n ? micros - 1n : micros);
}

function seconds(t: FrameTime): number {
  return (Number(t.pts) * t.num) / t.den;
}

/**
 * The chunks of a video whose frames present at `times` (any order; sorted here), or undefined
 * when it should stay one piece: too short, or too few frames to cut. Every frame belongs to
 * exactly one chunk, in order; a chunk starts at the first frame at or after its cut time.
 */
export function planChunks(times: readonly FrameTime[], options: ChunkOptions): Chunk[] | undefined {
  if (times.length < 2) return undefined;
  const sorted = [...times].sort((a, b) => (a.pts * BigInt(b.den) * BigInt(a.num) < b.pts * BigInt(a.den) * BigInt(b.num) ? -1 : 1));
  const first = seconds(sorted[0]!);
  const last = seconds(sorted[sorted.length - 1]!);
  const total = last - first;
  if (total < options.minInputSeconds || options.chunkSeconds <= 0) return undefined;
  const step = options.alignSeconds > 0 ? Math.max(1, Math.round(options.chunkSeconds / options.alignSeconds)) * options.alignSeconds : options.chunkSeconds;
  const starts: number[] = [0];
  for (let cut = step; first + cut < last; cut += step) {
    // The first frame at or after the cut (relative to the first frame, as the encoder sees time).
    const frame = sorted.findIndex((t, i) => i > starts[starts.length - 1]! && seconds(t) - first >= cut - 1e-9);
    if (frame < 0) break;
    starts.push(frame);
  }
  // A sliver of a last chunk (less than half a step) joins the one before it.
  if (starts.length > 1 && last - seconds(sorted[starts[starts.length - 1]!]!) < step / 2) starts.pop();
  if (starts.length < 2) return undefined;
  return starts.map((startFrame, index) => {
    const end = starts[index + 1] ?? sorted.length;
    const startSeconds = seconds(sorted[startFrame]!) - first;
    const endSeconds = end < sorted.length ? seconds(sorted[end]!) - first : total + (total / (sorted.length - 1));
    return {
      index,
      startFrame,
      frames: end - startFrame,
      seekUs: index === 0 ? 0 : floorMicroseconds(sorted[startFrame]!),
      startSeconds,
      durationSeconds: endSeconds - startSeconds,
    };
  });
}
