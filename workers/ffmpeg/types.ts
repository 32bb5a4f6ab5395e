import type { OutputSpec } from "../../gen/rendition/v1/job_pb.js";
import type { FfmpegCapabilities } from "./capabilities.js";
import type { PreparedSubtitle } from "./subtitles.js";

export type { FfmpegCapabilities };

/** What ffprobe told us about an input, already checked against the limits. */
export interface MediaInfo {
  durationMs: number;
  /**
   * Display size: the coded size with a ±90° rotation (phone videos) already applied, because
   * ffmpeg auto-rotates frames before our filters see them.
   */
  width: number;
  height: number;
  /** Video codec name as ffprobe spells it ("h264", "hevc", "vp9", ...). */
  videoCodec: string;
  /** Overall bitrate (format bit_rate), kbps; 0 when unknown. */
  bitrateKbps: number;
  /** Average frame rate of the video stream (e.g. 29.97). */
  framerate: number;
  fileSizeBytes: number;
  /** ffprobe format_name, e.g. "mov,mp4,m4a,3gp,3g2,mj2". */
  container: string;
  /**
   * Audio streams in input order. `index` counts audio streams only (0 = the first), the same
   * numbering as AudioTrack.source_stream_index and ffmpeg's `0:a:N`.
   */
  audioStreams: Array<{ index: number; codec: string; channels: number; sampleRate: number; bitrateKbps: number; language: string }>;
  /** Subtitle streams in input order; `index` is SubtitleTrack.source_stream_index and ffmpeg's `0:s:N`. */
  subtitleStreams?: Array<{ index: number; codec: string; language: string }>;
}

/** Limits an input must respect; past them the job fails with INPUT_TOO_LARGE. */
export interface InputLimits {
  maxDurationMs: number;
  maxWidth: number;
  maxHeight: number;
}

/** Stable machine codes a failed job or output carries (Job.error_code / Output.error_code). */
export type MediaErrorCode =
  | "INPUT_UNREADABLE" // not media, a still image, truncated beyond use, ffprobe failed
  | "INPUT_NO_VIDEO" // media, but audio only (or audio with cover art): every output needs a video stream
  | "INPUT_TOO_LARGE" // over a size / duration / dimension limit
  | "ENCODE_FAILED" // ffmpeg exited non-zero on a readable input
  | "ENCODE_TIMEOUT" // past the wall-clock limit
  | "RESOURCE_LIMIT_EXCEEDED"; // ffmpeg/ffprobe stopped by its CPU-time or memory limit (ProcessLimits)

/** A failure caused by the media itself: permanent, retrying will not help. */
export class MediaError extends Error {
  override name = "MediaError";
  constructor(
    readonly code: MediaErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * One ffmpeg invocation as data: global options, inputs (each with its own options) and outputs
 * (each with its options and file). `flattenCommand` turns it into the argv array; builders are
 * pure and unit-tested on that array. Files are absolute paths (a relative name could be read as
 * a protocol or an option).
 */
export interface FfmpegCommand {
  global: string[];
  inputs: Array<{ options: string[]; file: string }>;
  outputs: Array<{ options: string[]; file: string }>;
}

/** One progressive output to encode: its resolved spec and the local file to write. */
export interface TranscodeTarget {
  spec: OutputSpec;
  file: string;
  /** The spec's subtitle tracks, fetched and converted (one per subtitle_tracks entry, in order). */
  subtitles?: PreparedSubtitle[];
}

/**
 * One segmented output (hls, dash, adaptive) to encode: its resolved spec and the local
 * directory its renditions are written under (`<dir>/v0/…`, `<dir>/a0/…`, see `streamRenditions`).
 */
export interface StreamTarget {
  spec: OutputSpec;
  dir: string;
  subtitles?: PreparedSubtitle[];
}

export type EncodeTarget = TranscodeTarget | StreamTarget;

export function isStreamTarget(target: EncodeTarget): target is StreamTarget {
  return "dir" in target;
}

/** The images (and storyboard) one thumbnail spec produces, as local files in `dir`. */
export interface ThumbnailPlan {
  commands: FfmpegCommand[];
  /** Image files the commands write, in order (basenames are what gets uploaded). */
  files: string[];
  /** Sprite mode: the WebVTT storyboard's file and text (cues point at the sprite image by basename). */
  storyboard?: { file: string; content: string };
}

export interface RunOptions {
  signal?: AbortSignal;
  /** Wall-clock limit; past it ffmpeg is killed and the run fails with ENCODE_TIMEOUT. */
  timeoutMs?: number;
  /** Duration of the media being encoded, to turn ffmpeg's out_time into a fraction. */
  durationMs?: number;
  /**
   * 0..1, called as ffmpeg reports progress (at most 4 times per second), never decreasing;
   * exactly 1 once, after ffmpeg exited successfully.
   */
  onProgress?: (fraction: number) => void;
  /** Called once the process is spawned, with its pid and the argv it really got (without the binary). */
  onStart?: (child: { pid: number; argv: string[] }) => void;
  /**
   * Called with the running count each time ffmpeg reports an error decoding the input
   * (a corrupt packet or slice it concealed or dropped); the run itself goes on.
   */
  onDecodeErrors?: (count: number) => void;
  /** cwd and TMPDIR of the process; default the first input's directory (the job's temp dir). */
  workDir?: string;
}

/**
 * What every ffmpeg/ffprobe process runs under (applied by `prlimit`, `nice` and `env` execs in
 * front of the binary, so the pid stays ffmpeg's). A run stopped by a limit fails with
 * RESOURCE_LIMIT_EXCEEDED naming the limit.
 */
export interface ProcessLimits {
  /** RLIMIT_CPU per process, seconds; 0: the run's wall-clock limit × the machine's cores (never the binding one). */
  cpuSeconds: number;
  /** RLIMIT_DATA per process (heap and private writable mappings, not shared libraries), bytes; 0: none. */
  memoryBytes: number;
  /** Scheduling niceness 0..19 (higher yields the CPU to the API and the worker itself). */
  nice: number;
}


/** The adapter the encoder uses; the only place that starts ffmpeg/ffprobe processes. */
export interface MediaTools {
  readonly ffmpegPath: string;
  readonly ffprobePath: string;
  /** e.g. "ffmpeg version 5.1.6-0+deb12u1 (system: /usr/bin/ffmpeg)". */
  readonly description: string;
  /** Describes a local file: a plain mp4/mov from its movie header (mp4-probe.ts), anything else with ffprobe (protocol and format whitelists, probe limits); MediaError INPUT_UNREADABLE / INPUT_TOO_LARGE. */
  probe(file: string, limits: InputLimits, options?: { signal?: AbortSignal }): Promise<MediaInfo>;
  /** Runs one command. Rejects with MediaError (ENCODE_FAILED with ffmpeg's last stderr lines, ENCODE_TIMEOUT) or the signal's AbortError; the process is always gone when it settles. */
  run(command: FfmpegCommand, options?: RunOptions): Promise<void>;
  /** Asked once of the binary, then cached. */
  capabilities(): Promise<FfmpegCapabilities>;
}
