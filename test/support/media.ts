import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { locateMediaTools, type LocatedMediaTools } from "../../workers/ffmpeg/binaries.js";

const run = promisify(execFile);

let located: Promise<LocatedMediaTools> | undefined;

/** The ffmpeg/ffprobe pair the tests use (same search as the workers), found once per process. */
export function testMediaTools(): Promise<LocatedMediaTools> {
  located ??= locateMediaTools(process.env);
  return located;
}

export interface ClipOptions {
  durationS: number;
  width: number;
  height: number;
  fps: number;
  /** A 440 Hz sine tone (AAC in mp4/mov/mkv, Opus in webm). */
  audio: boolean;
  /** Video codec; default h264. */
  codec?: "h264" | "h265" | "vp9";
  /** Several audio streams (with `audio`), one per language tag, each a tone of its own pitch. */
  audioLanguages?: string[];
  /** Hard cuts between test patterns every this many seconds (what makes encoders place scene-cut keyframes). */
  sceneCutEveryS?: number;
}

const ENCODERS: Record<NonNullable<ClipOptions["codec"]>, string[]> = {
  h264: ["-c:v", "libx264", "-preset", "ultrafast"],
  h265: ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"],
  vp9: ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"],
};

/**
 * Writes a synthetic test clip (lavfi testsrc2 pattern, optional sine audio). The container
 * follows the extension. No faststart: the moov box is at the end, so a truncated copy is
 * unreadable, like a real interrupted upload.
 */
export async function generateClip(file: string, options: ClipOptions): Promise<string> {
  const { ffmpegPath } = await testMediaTools();
  await mkdir(path.dirname(file), { recursive: true });
  const { durationS, width, height, fps } = options;
  const webm = file.endsWith(".webm");
  const languages = options.audio ? (options.audioLanguages ?? [""]) : [];
  // Alternating sources (testsrc2 / smptebars / mandelbrot) give real scene cuts.
  const video = options.sceneCutEveryS
    ? `testsrc2=size=${width}x${height}:rate=${fps}:duration=${durationS}[a];smptebars=size=${width}x${height}:rate=${fps}:duration=${durationS}[b];[a][b]blend=all_expr='if(lt(mod(T,${2 * options.sceneCutEveryS}),${options.sceneCutEveryS}),A,B)'`
    : `testsrc2=size=${width}x${height}:rate=${fps}:duration=${durationS}`;
  const args = [
    "-hide_banner",
    "-nostdin",
    "-loglevel",
    "error",
    "-y",
    "-f",
    "lavfi",
    "-i",
    video,
    ...languages.flatMap((_, i) => ["-f", "lavfi", "-i", `sine=frequency=${440 * (i + 1)}:sample_rate=48000:duration=${durationS}`]),
    "-map",
    "0:v",
    ...languages.flatMap((language, i) => ["-map", `${i + 1}:a`, ...(language ? [`-metadata:s:a:${i}`, `language=${language}`] : [])]),
    ...ENCODERS[options.codec ?? (webm ? "vp9" : "h264")],
    "-pix_fmt",
    "yuv420p",
    ...(options.audio ? (webm ? ["-c:a", "libopus", "-b:a", "64k"] : ["-c:a", "aac", "-b:a", "64k"]) : []),
    "-t",
    String(durationS),
    file,
  ];
  await run(ffmpegPath, args, { timeout: 120_000 });
  return file;
}

/** ffprobe's JSON for a file (format + streams), loosely typed for assertions. */
export interface FfprobeJson {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  streams: any[];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  format: any;
}

export async function ffprobeJson(file: string): Promise<FfprobeJson> {
  const { ffprobePath } = await testMediaTools();
  const { stdout } = await run(ffprobePath, ["-v", "error", "-show_format", "-show_streams", "-of", "json", file], {
    timeout: 60_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  return JSON.parse(stdout) as FfprobeJson;
}
