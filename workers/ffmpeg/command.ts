import path from "node:path";
import type { FfmpegCommand } from "./types.js";

/**
 * Global options every command we build starts with:
 * - `-nostdin`: ffmpeg must never wait for keyboard input from a worker;
 * - `-y`: outputs are temp files we own, overwrite them;
 * - `-loglevel error`: stderr then only carries real errors, which we quote in ENCODE_FAILED;
 * - `-progress pipe:1 -nostats`: machine-readable key=value progress on stdout instead of the
 *   human status line on stderr.
 */
export const BASE_GLOBAL_OPTIONS: readonly string[] = [
  "-hide_banner",
  "-nostdin",
  "-y",
  "-loglevel",
  "error",
  "-progress",
  "pipe:1",
  "-nostats",
];

/** Global options of the small helper commands (remuxes, subtitle conversions): no progress, errors only. */
export const QUIET_GLOBAL_OPTIONS: readonly string[] = ["-hide_banner", "-nostdin", "-y", "-loglevel", "error"];

/**
 * Demuxers an input may be read with: media containers and elementary streams only. Playlist
 * and manifest demuxers (hls, concat, dash, image2 patterns...) open other files named inside
 * the input, and with the `file` protocol allowed a hostile "video" that is really an HLS
 * playlist would read the worker's own files (/etc/passwd, other jobs' temp files) into its output.
 */
export const INPUT_FORMATS =
  "mov,matroska,avi,flv,mpegts,mpeg,mxf,asf,ogg,wav,mp3,aac,flac,h264,hevc,m4v,mpegvideo,ivf,obu,av1,dv,nut,gif,yuv4mpegpipe,rm,wtv";

/**
 * Input options that keep ffmpeg on the one local file: no network protocol (SSRF) and no
 * demuxer that follows references inside the input (local file disclosure).
 */
export const INPUT_SAFETY_OPTIONS: readonly string[] = ["-protocol_whitelist", "file", "-format_whitelist", INPUT_FORMATS];

/**
 * The argv (without the binary) for a command.
 *
 * The order is the one fluent-ffmpeg produces, so that what `MediaTools.run` spawns is exactly
 * this array: global options, then each input's options and `-i file`, then `-y` (fluent-ffmpeg
 * always inserts it there for file outputs), then each output's options and file. ffmpeg accepts
 * global options anywhere on the command line, so the position of `-y` changes nothing.
 */
export function flattenCommand(cmd: FfmpegCommand): string[] {
  const overwrite = cmd.global.includes("-y");
  return [
    ...cmd.global.filter((option) => option !== "-y"),
    ...cmd.inputs.flatMap((input) => [...input.options, "-i", input.file]),
    ...(overwrite ? ["-y"] : []),
    ...cmd.outputs.flatMap((output) => [...output.options, output.file]),
  ];
}

/** Absolute paths only: `-foo.mp4` or `http:x` must never be read as an option or a protocol. */
export function absoluteFile(file: string): string {
  return path.resolve(file);
}

/** Seconds for ffmpeg time options, millisecond precision ("12.345"). */
export function seconds(value: number): string {
  return (Math.round(value * 1000) / 1000).toFixed(3);
}

/** Copies a segment's streams into an mp4 (no re-encode), so its sample entries can be read. */
export function remuxToMp4Command(segment: string, mp4: string): FfmpegCommand {
  return {
    global: [...QUIET_GLOBAL_OPTIONS],
    inputs: [{ options: [...INPUT_SAFETY_OPTIONS], file: absoluteFile(segment) }],
    outputs: [{ options: ["-map", "0", "-c", "copy", "-f", "mp4"], file: absoluteFile(mp4) }],
  };
}

/** The first video packet of a segment, timestamps as they are, as framemd5 text (stream, dts, pts, ...). */
export function firstFrameCommand(segment: string, out: string): FfmpegCommand {
  return {
    global: [...QUIET_GLOBAL_OPTIONS],
    inputs: [{ options: ["-copyts", ...INPUT_SAFETY_OPTIONS], file: absoluteFile(segment) }],
    outputs: [{ options: ["-map", "0:v:0", "-c", "copy", "-frames:v", "1", "-f", "framemd5"], file: absoluteFile(out) }],
  };
}
