/**
 * Whether a job is encoded in chunks on several workers, and how far along a chunked job is
 * (pure). Everything that is not eligible keeps the single-pass path unchanged.
 */
import { OutputType } from "../../gen/rendition/v1/common_pb.js";
import type { JobOutputRecord } from "../../services/jobs/job.types.js";
import type { MediaInfo } from "../ffmpeg/types.js";
import { planChunks, type Chunk, type FrameTime } from "./chunk-plan.js";

export interface ChunkingSettings {
  /** Inputs shorter than this are encoded in one pass (RENDITION_CHUNK_MIN_INPUT_S, default 120). */
  minInputSeconds: number;
  /** Target length of a chunk (RENDITION_CHUNK_SECONDS, default 60). */
  chunkSeconds: number;
  /** Chunks of one job encoding at once, over all workers (RENDITION_CHUNK_MAX_CONCURRENT, default 4). */
  maxConcurrent: number;
}

export const DEFAULT_CHUNKING: ChunkingSettings = { minInputSeconds: 120, chunkSeconds: 60, maxConcurrent: 4 };

const CHUNKABLE_TYPES: readonly OutputType[] = [OutputType.MP4, OutputType.MOV, OutputType.MKV];

/**
 * Why this job is not chunked, or undefined when it may be (frame times permitting, see
 * `chunkPlan`). `runnable` are the outputs the plan will encode now; `unfinished` every output
 * not yet done (one the plan failed is done); `pendingThumbnails` thumbnail sets still to render.
 */
export function whyNotChunked(
  runnable: readonly JobOutputRecord[],
  unfinished: number,
  pendingThumbnails: number,
  info: MediaInfo,
  settings: ChunkingSettings,
): string | undefined {
  if (info.durationMs < settings.minInputSeconds * 1000) return `the input is shorter than ${settings.minInputSeconds} s`;
  if (runnable.length !== 1 || unfinished !== 1) return "a chunked job has exactly one output to encode";
  if (pendingThumbnails > 0) return "thumbnails are rendered in the single pass";
  const { spec } = runnable[0]!;
  if (!CHUNKABLE_TYPES.includes(spec.type)) return "only mp4, mov and mkv outputs are chunked";
  if (spec.video.length !== 1) return "a chunked output has one video variant";
  if (spec.video[0]!.framerate > 0) return "a frame rate change is encoded in one pass";
  if (spec.subtitleTracks.length > 0) return "subtitles are encoded in one pass";
  if (spec.audio.length > 1) return "a chunked output has at most one audio track";
  if ((spec.audio[0]?.sourceStreamIndex ?? 0) !== 0) return "a chunked output's audio is the input's first audio stream";
  return undefined;
}

/**
 * Constant frame rate: the gaps between consecutive presentation times (sorted) differ by at
 * most one tick of the time base (a 29.97 fps stream in a 1/1000 time base alternates 33 and 34).
 */
export function isConstantFrameRate(times: readonly FrameTime[]): boolean {
  if (times.length < 2) return false;
  const pts = times.map((t) => t.pts).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  let min: bigint | undefined;
  let max: bigint | undefined;
  for (let i = 1; i < pts.length; i++) {
    const gap = pts[i]! - pts[i - 1]!;
    if (gap <= 0n) return false;
    if (min === undefined || gap < min) min = gap;
    if (max === undefined || gap > max) max = gap;
  }
  return max! - min! <= 1n;
}

/** The chunks of an eligible job's input, or undefined when its frames say one pass (variable frame rate, too short). */
export function chunkPlan(times: readonly FrameTime[], settings: ChunkingSettings): Chunk[] | undefined {
  if (!isConstantFrameRate(times)) return undefined;
  // A progressive output has no segment grid to respect: any frame is a cut (each chunk starts with its own IDR frame).
  return planChunks(times, { chunkSeconds: settings.chunkSeconds, alignSeconds: 0, minInputSeconds: settings.minInputSeconds });
}

// The job-progress weighting lives with the task rows that apply it (services/jobs).
export { chunkedJobProgress } from "../../services/jobs/chunk-progress.js";
