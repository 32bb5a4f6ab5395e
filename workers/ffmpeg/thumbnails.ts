import path from "node:path";
import { ImageFormat, ThumbnailMode, type ThumbnailSpec } from "../../gen/rendition/v1/job_pb.js";
import { BASE_GLOBAL_OPTIONS, INPUT_SAFETY_OPTIONS, absoluteFile, seconds } from "./command.js";
import { thumbnailSize, type Size } from "./geometry.js";
import type { FfmpegCommand, MediaInfo, ThumbnailPlan } from "./types.js";

/** Upper bound on images one spec may produce (interval mode) or tiles in one sprite. */
export const MAX_THUMBNAIL_IMAGES = 1000;
/** Sprite sheets stay within WebP's 16383 px limit (JPEG allows 65535; one rule for all formats). */
const MAX_SPRITE_SIDE = 16383;
/** Sprite tile width when the spec gives neither width nor height. */
const DEFAULT_SPRITE_TILE_WIDTH = 160;
const DEFAULT_SPRITE_COLUMNS = 10;
const DEFAULT_QUALITY = 80;
/** Timestamps mode: inputs per ffmpeg process (each is a separate fast seek into the file). */
const TIMESTAMPS_PER_COMMAND = 10;
/** Frame duration used for clamping when the frame rate is unknown. */
const FALLBACK_FPS = 25;

interface Format {
  ext: string;
  options: (quality: number) => string[];
}

/** Encoder flags per format; quality is 1..100 (higher is better). */
const FORMATS: Record<"jpeg" | "png" | "webp", Format> = {
  // mjpeg's -q:v runs 2 (best) .. 31 (worst): map 1..100 onto 31..2.
  jpeg: { ext: "jpg", options: (q) => ["-c:v", "mjpeg", "-q:v", String(jpegQscale(q))] },
  // PNG is lossless: quality does not apply.
  png: { ext: "png", options: () => ["-c:v", "png"] },
  webp: { ext: "webp", options: (q) => ["-c:v", "libwebp", "-quality", String(q)] },
};

export function jpegQscale(quality: number): number {
  const q = Math.min(100, Math.max(1, quality));
  return Math.round(31 - ((q - 1) * 29) / 99);
}

function formatOf(format: ImageFormat): Format {
  if (format === ImageFormat.PNG) return FORMATS.png;
  if (format === ImageFormat.WEBP) return FORMATS.webp;
  return FORMATS.jpeg; // unset = jpeg
}

/**
 * The ffmpeg commands (and, for sprites, the WebVTT storyboard) for one thumbnail spec, writing
 * into `dir`. Pure. Names: `thumbnail.jpg` (single), `thumb_0001.jpg`... (interval, timestamps),
 * `sprite.jpg` + `storyboard.vtt` (sprite); the extension follows the format.
 *
 * Sizes: one of width/height keeps the aspect ratio; both give exactly that size, scaled to cover
 * it and centre-cropped (never stretched); neither gives the source size, or 160 px wide tiles for
 * sprites.
 *
 * Times beyond the input are clamped to its last frame (duration minus one frame). Interval mode
 * stops after MAX_THUMBNAIL_IMAGES images (the spacing the caller asked for is kept); a sprite
 * that would be too big instead widens its interval so the storyboard still covers the whole
 * input (its cues carry the real times).
 *
 * `files` lists what ffmpeg is expected to write: if the container's duration is longer than its
 * video stream, the last image of an interval set can be missing, so check before uploading.
 */
export function buildThumbnailPlan(input: { file: string; info: MediaInfo }, spec: ThumbnailSpec, dir: string): ThumbnailPlan {
  const format = formatOf(spec.format);
  const quality = spec.quality > 0 ? spec.quality : DEFAULT_QUALITY;
  const ctx: Ctx = { file: absoluteFile(input.file), info: input.info, spec, dir: absoluteFile(dir), format, encode: format.options(quality) };
  switch (spec.mode) {
    case ThumbnailMode.SINGLE:
      return singlePlan(ctx);
    case ThumbnailMode.INTERVAL:
      return intervalPlan(ctx);
    case ThumbnailMode.SPRITE:
      return spritePlan(ctx);
    case ThumbnailMode.TIMESTAMPS:
      return timestampsPlan(ctx);
    default:
      throw new Error(`thumbnail mode ${spec.mode} is not supported`);
  }
}

interface Ctx {
  file: string;
  info: MediaInfo;
  spec: ThumbnailSpec;
  dir: string;
  format: Format;
  encode: string[];
}

/** Scale (and crop when both sides are fixed) to the thumbnail size. */
export function thumbnailScaleFilter(info: MediaInfo, spec: Pick<ThumbnailSpec, "width" | "height">, fallback: { width?: number } = {}): { size: Size; filter: string } {
  const size = thumbnailSize(info, spec.width, spec.height, fallback);
  const filter =
    spec.width > 0 && spec.height > 0
      ? `scale=${size.width}:${size.height}:force_original_aspect_ratio=increase,crop=${size.width}:${size.height}`
      : `scale=${size.width}:${size.height}`;
  return { size, filter };
}

/** The latest time (seconds) at which a frame is still there to grab. */
function lastFrameTime(info: MediaInfo): number {
  const frame = 1 / (info.framerate > 0 ? info.framerate : FALLBACK_FPS);
  return Math.max(0, info.durationMs / 1000 - frame);
}

function clampTime(t: number, info: MediaInfo): number {
  return Math.min(Math.max(0, Number.isFinite(t) ? t : 0), lastFrameTime(info));
}

/** Options for one image from a seeked input (input index `n`). */
function oneImageOptions(n: number, filter: string, ctx: Ctx): string[] {
  return ["-map", `${n}:v:0`, "-an", "-sn", "-dn", "-vf", filter, "-frames:v", "1", ...ctx.encode, "-update", "1", "-f", "image2"];
}

/** `-ss` before `-i`: a fast keyframe seek, then exact decoding up to the time. */
function seekedInput(t: number, ctx: Ctx): FfmpegCommand["inputs"][number] {
  return { options: ["-ss", seconds(t), ...INPUT_SAFETY_OPTIONS], file: ctx.file };
}

function singlePlan(ctx: Ctx): ThumbnailPlan {
  const { filter } = thumbnailScaleFilter(ctx.info, ctx.spec);
  const file = path.join(ctx.dir, `thumbnail.${ctx.format.ext}`);
  const command: FfmpegCommand = {
    global: [...BASE_GLOBAL_OPTIONS],
    inputs: [seekedInput(clampTime(ctx.spec.timestamp, ctx.info), ctx)],
    outputs: [{ options: oneImageOptions(0, filter, ctx), file }],
  };
  return { commands: [command], files: [file] };
}

function numbered(ctx: Ctx, n: number): string {
  return path.join(ctx.dir, `thumb_${String(n).padStart(4, "0")}.${ctx.format.ext}`);
}

/** One image per timestamp, in the order given; several seeks share one process. */
function timestampsPlan(ctx: Ctx): ThumbnailPlan {
  const { filter } = thumbnailScaleFilter(ctx.info, ctx.spec);
  const times = ctx.spec.timestamps.slice(0, MAX_THUMBNAIL_IMAGES).map((t) => clampTime(t, ctx.info));
  const files = times.map((_, i) => numbered(ctx, i + 1));
  const commands: FfmpegCommand[] = [];
  for (let start = 0; start < times.length; start += TIMESTAMPS_PER_COMMAND) {
    const chunk = times.slice(start, start + TIMESTAMPS_PER_COMMAND);
    commands.push({
      global: [...BASE_GLOBAL_OPTIONS],
      inputs: chunk.map((t) => seekedInput(t, ctx)),
      outputs: chunk.map((_, n) => ({ options: oneImageOptions(n, filter, ctx), file: files[start + n]! })),
    });
  }
  return { commands, files };
}

/** Frames at 0, I, 2I, ... strictly before the end. */
function frameCount(durationMs: number, intervalMs: number): number {
  return Math.max(1, Math.ceil(durationMs / intervalMs));
}

/** Interval in ms (ms precision keeps the fps filter and the storyboard cues in step). */
function intervalMsOf(spec: ThumbnailSpec): number {
  // 0 means unset; validation allows 0.5..300 s. Default: 10 s.
  const seconds = spec.intervalSeconds > 0 ? spec.intervalSeconds : 10;
  return Math.max(1, Math.round(seconds * 1000));
}

/** fps filter taking one frame every `intervalMs` (nearest frame to 0, I, 2I, ...). */
function fpsFilter(intervalMs: number): string {
  return `fps=1000/${intervalMs}`;
}

function intervalPlan(ctx: Ctx): ThumbnailPlan {
  const intervalMs = intervalMsOf(ctx.spec);
  const count = Math.min(MAX_THUMBNAIL_IMAGES, frameCount(ctx.info.durationMs, intervalMs));
  const { filter } = thumbnailScaleFilter(ctx.info, ctx.spec);
  const pattern = path.join(ctx.dir, `thumb_%04d.${ctx.format.ext}`);
  const command: FfmpegCommand = {
    global: [...BASE_GLOBAL_OPTIONS],
    inputs: [{ options: [...INPUT_SAFETY_OPTIONS], file: ctx.file }],
    outputs: [
      {
        options: ["-map", "0:v:0", "-an", "-sn", "-dn", "-vf", `${fpsFilter(intervalMs)},${filter}`, "-frames:v", String(count), ...ctx.encode, "-start_number", "1", "-f", "image2"],
        file: pattern,
      },
    ],
  };
  return { commands: [command], files: Array.from({ length: count }, (_, i) => numbered(ctx, i + 1)) };
}

/** The sprite grid: how many tiles, columns, rows and the (possibly widened) interval. */
export interface SpriteLayout {
  tile: Size;
  columns: number;
  rows: number;
  count: number;
  intervalMs: number;
}

export function spriteLayout(info: MediaInfo, spec: ThumbnailSpec): { layout: SpriteLayout; filter: string } {
  const { size: tile, filter } = thumbnailScaleFilter(info, spec, { width: DEFAULT_SPRITE_TILE_WIDTH });
  const maxColumns = Math.max(1, Math.floor(MAX_SPRITE_SIDE / tile.width));
  const maxRows = Math.max(1, Math.floor(MAX_SPRITE_SIDE / tile.height));
  const wantedColumns = Math.min(spec.spriteColumns > 0 ? spec.spriteColumns : DEFAULT_SPRITE_COLUMNS, maxColumns);
  const maxTiles = Math.min(MAX_THUMBNAIL_IMAGES, wantedColumns * maxRows);
  let intervalMs = intervalMsOf(spec);
  if (frameCount(info.durationMs, intervalMs) > maxTiles) intervalMs = Math.ceil(info.durationMs / maxTiles);
  const count = Math.min(maxTiles, frameCount(info.durationMs, intervalMs));
  // Fewer tiles than columns: a one-row sprite exactly as wide as its tiles, no empty cells.
  const columns = Math.min(wantedColumns, count);
  const rows = Math.ceil(count / columns);
  return { layout: { tile, columns, rows, count, intervalMs }, filter };
}

function spritePlan(ctx: Ctx): ThumbnailPlan {
  const { layout, filter } = spriteLayout(ctx.info, ctx.spec);
  const image = path.join(ctx.dir, `sprite.${ctx.format.ext}`);
  const command: FfmpegCommand = {
    global: [...BASE_GLOBAL_OPTIONS],
    inputs: [{ options: [...INPUT_SAFETY_OPTIONS], file: ctx.file }],
    outputs: [
      {
        options: [
          "-map",
          "0:v:0",
          "-an",
          "-sn",
          "-dn",
          // tile emits the grid when full, or what it has (rest black) when the input ends early.
          "-vf",
          `${fpsFilter(layout.intervalMs)},${filter},tile=${layout.columns}x${layout.rows}`,
          "-frames:v",
          "1",
          ...ctx.encode,
          "-update",
          "1",
          "-f",
          "image2",
        ],
        file: image,
      },
    ],
  };
  return {
    commands: [command],
    files: [image],
    storyboard: { file: path.join(ctx.dir, "storyboard.vtt"), content: storyboardVtt(layout, ctx.info.durationMs, path.basename(image)) },
  };
}

/**
 * WebVTT storyboard: tile i covers [i*I, min((i+1)*I, duration)) and points at its cell with a
 * media fragment, `sprite.jpg#xywh=x,y,w,h` (relative to the VTT, so the pair can move together).
 */
export function storyboardVtt(layout: SpriteLayout, durationMs: number, imageName: string): string {
  const cues: string[] = [];
  for (let i = 0; i < layout.count; i++) {
    const start = i * layout.intervalMs;
    const end = Math.min((i + 1) * layout.intervalMs, durationMs);
    if (end <= start) break;
    const x = (i % layout.columns) * layout.tile.width;
    const y = Math.floor(i / layout.columns) * layout.tile.height;
    cues.push(`${vttTime(start)} --> ${vttTime(end)}\n${imageName}#xywh=${x},${y},${layout.tile.width},${layout.tile.height}`);
  }
  return `WEBVTT\n\n${cues.join("\n\n")}\n`;
}

/** 3723004 → "01:02:03.004". */
export function vttTime(ms: number): string {
  const total = Math.max(0, Math.round(ms));
  const h = Math.floor(total / 3_600_000);
  const m = Math.floor((total % 3_600_000) / 60_000);
  const s = Math.floor((total % 60_000) / 1000);
  const rest = total % 1000;
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  return `${pad(h)}:${pad(m)}:${pad(s)}.${pad(rest, 3)}`;
}
