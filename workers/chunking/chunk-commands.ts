import { absoluteFile, INPUT_SAFETY_OPTIONS, QUIET_GLOBAL_OPTIONS } from "../ffmpeg/command.js";
import type { FfmpegCommand } from "../ffmpeg/types.js";
import type { Chunk } from "./chunk-plan.js";

/** ffmpeg's -ss from microseconds, exactly ("4.003999"). */
export function seekOption(us: number): string {
  const whole = Math.floor(us / 1_000_000);
  return `${whole}.${String(us - whole * 1_000_000).padStart(6, "0")}`;
}

/**
 * One chunk's video: seek (input side, so decoding starts at the keyframe before and frames
 * before the seek point are dropped), exactly `frames` frames, timestamps passed through so no
 * frame is duplicated or dropped to fill a rate, no audio. `videoArgs` are the encoder options
 * of a single-pass encode (codec, preset, CRF or bitrate + VBV, scaling filter, pixel format).
 */
export function chunkVideoCommand(input: string, chunk: Chunk, videoArgs: readonly string[], file: string, threads = 0): FfmpegCommand {
  const t = threadOptions(threads);
  return {
    global: [...QUIET_GLOBAL_OPTIONS, "-vsync", "passthrough", ...t.global],
    inputs: [{ options: [...(chunk.seekUs > 0 ? ["-ss", seekOption(chunk.seekUs)] : []), ...t.input, ...INPUT_SAFETY_OPTIONS], file: absoluteFile(input) }],
    outputs: [{ options: ["-map", "0:v:0", "-an", "-sn", "-dn", ...videoArgs, ...t.output, "-frames:v", String(chunk.frames)], file: absoluteFile(file) }],
  };
}

/** `threads` > 0: the decoder (before -i), the filter graph and the encoder each on that many threads. */
function threadOptions(threads: number): { global: string[]; input: string[]; output: string[] } {
  if (!(threads > 0)) return { global: [], input: [], output: [] };
  const n = String(threads);
  return { global: ["-filter_threads", n], input: ["-threads", n], output: ["-threads", n] };
}

/** The audio of the whole input, encoded once (audio is cheap and must not be cut). */
export function audioCommand(input: string, audioArgs: readonly string[], file: string, threads = 0): FfmpegCommand {
  const t = threadOptions(threads);
  return {
    global: [...QUIET_GLOBAL_OPTIONS],
    inputs: [{ options: [...t.input, ...INPUT_SAFETY_OPTIONS], file: absoluteFile(input) }],
    outputs: [{ options: ["-map", "0:a:0", "-vn", "-sn", "-dn", ...audioArgs, ...t.output], file: absoluteFile(file) }],
  };
}

/**
 * The concat demuxer's list for our own chunk files. Only ever built from files this worker
 * wrote (never from user input: the demuxer can name any file, which is why inputs are read
 * with a format whitelist that leaves it out).
 */
export function concatList(files: readonly string[]): string {
  return files.map((f) => `file '${absoluteFile(f).replaceAll("'", "'\\''")}'\n`).join("");
}

/** Joins the chunks (stream copy) and muxes the audio in: the finished progressive file. */
export function assembleCommand(listFile: string, audioFile: string | undefined, file: string, extraOutputOptions: readonly string[] = []): FfmpegCommand {
  return {
    global: [...QUIET_GLOBAL_OPTIONS],
    inputs: [
      // Our list, read by the demuxer named here: no probing, no other format, files only.
      { options: ["-f", "concat", "-safe", "0", "-protocol_whitelist", "file"], file: absoluteFile(listFile) },
      ...(audioFile ? [{ options: ["-protocol_whitelist", "file"], file: absoluteFile(audioFile) }] : []),
    ],
    outputs: [{ options: ["-map", "0:v:0", ...(audioFile ? ["-map", "1:a:0"] : []), "-c", "copy", ...extraOutputOptions], file: absoluteFile(file) }],
  };
}
