import { MediaError, type InputLimits, type MediaInfo } from "./types.js";

/** The parts of `ffprobe -show_format -show_streams -of json` we read (everything optional: inputs are hostile). */
interface ProbeStream {
  index?: number;
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  avg_frame_rate?: string;
  r_frame_rate?: string;
  duration?: string;
  bit_rate?: string;
  sample_rate?: string;
  channels?: number;
  disposition?: { attached_pic?: number; still_image?: number };
  tags?: Record<string, string>;
  side_data_list?: Array<{ rotation?: number | string }>;
}

interface ProbeOutput {
  streams?: ProbeStream[];
  format?: { format_name?: string; duration?: string; bit_rate?: string };
}

/** Codecs that, in an image demuxer, mean "a picture": a still image is not a video to transcode. */
const IMAGE_CODECS = new Set(["png", "mjpeg", "jpeg2000", "bmp", "webp", "tiff", "gif", "apng", "pam", "ppm", "pgm", "sgi", "targa", "qoi", "jpegls", "exr", "svg", "psd", "dpx"]);

const unreadable = (message: string) => new MediaError("INPUT_UNREADABLE", message);

/**
 * ffprobe JSON (object or text) → MediaInfo, checked against `limits`.
 * Throws MediaError INPUT_UNREADABLE (not media, no video, a still image, no duration or size),
 * INPUT_NO_VIDEO (audio only)
 * or INPUT_TOO_LARGE (over a duration or dimension limit).
 */
export function parseProbe(json: unknown, fileSizeBytes: number, limits: InputLimits): MediaInfo {
  const probe = asProbeOutput(json);
  const streams = probe.streams ?? [];
  const video = streams.find((s) => s.codec_type === "video" && !s.disposition?.attached_pic);
  const formatName = probe.format?.format_name ?? "";
  if (!video) {
    const onlyCoverArt = streams.some((s) => s.codec_type === "video");
    // Media, just not a video: a code of its own, so a caller can tell "wrong file" from "broken file".
    if (streams.some((s) => s.codec_type === "audio")) {
      throw new MediaError("INPUT_NO_VIDEO", onlyCoverArt ? "the input is audio with cover art, no video stream" : "the input is audio only, no video stream");
    }
    throw unreadable(onlyCoverArt ? "the input has no video stream, only cover art" : "the input has no video stream");
  }
  if (isStillImage(video, formatName)) {
    throw unreadable(`the input is a still image (${video.codec_name}), not a video`);
  }
  // Frame size first: a header claiming huge frames is refused as too large whatever else it lacks.
  const size = displaySize(video);
  if (size) checkDimensions(size, limits);
  const durationMs = durationOf(probe, video);
  if (!durationMs) throw unreadable("could not determine the input's duration");
  if (!size) throw unreadable("could not determine the input's frame size");

  const info: MediaInfo = {
    durationMs,
    width: size.width,
    height: size.height,
    videoCodec: video.codec_name ?? "",
    bitrateKbps: kbps(probe.format?.bit_rate),
    framerate: frameRate(video.avg_frame_rate) || frameRate(video.r_frame_rate),
    fileSizeBytes,
    container: formatName,
    audioStreams: streams
      .filter((s) => s.codec_type === "audio")
      .map((s, index) => ({
        index,
        codec: s.codec_name ?? "",
        channels: positiveInt(s.channels),
        sampleRate: positiveInt(Number(s.sample_rate)),
        bitrateKbps: kbps(s.bit_rate),
        language: s.tags?.language ?? "",
      })),
    subtitleStreams: streams
      .filter((s) => s.codec_type === "subtitle")
      .map((s, index) => ({ index, codec: s.codec_name ?? "", language: s.tags?.language ?? "" })),
  };
  checkLimits(info, limits);
  return info;
}

function asProbeOutput(json: unknown): ProbeOutput {
  let value = json;
  if (typeof json === "string") {
    try {
      value = JSON.parse(json);
    } catch {
      throw unreadable("could not parse ffprobe's output");
    }
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw unreadable("could not parse ffprobe's output");
  const probe = value as ProbeOutput;
  if (probe.streams !== undefined && !Array.isArray(probe.streams)) throw unreadable("could not parse ffprobe's output");
  return probe;
}

/** A single picture read by an image demuxer (png_pipe, image2, ...): no duration worth encoding. */
function isStillImage(video: ProbeStream, formatName: string): boolean {
  const imageDemuxer = formatName === "image2" || formatName.endsWith("_pipe");
  return imageDemuxer && IMAGE_CODECS.has(video.codec_name ?? "");
}

/** The container's duration, else the video stream's, else the Matroska DURATION tag. */
function durationOf(probe: ProbeOutput, video: ProbeStream): number {
  const candidates = [Number(probe.format?.duration), Number(video.duration), clockSeconds(video.tags?.DURATION ?? video.tags?.duration)];
  const seconds = candidates.find((s) => Number.isFinite(s) && s > 0);
  return seconds === undefined ? 0 : Math.round(seconds * 1000);
}

/** "00:00:02.000000000" → 2. */
function clockSeconds(value: string | undefined): number {
  const match = value ? /^(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$/.exec(value) : null;
  return match ? Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3]) : NaN;
}

/** Coded size, swapped for a ±90° display rotation (ffmpeg auto-rotates while decoding). */
function displaySize(video: ProbeStream): { width: number; height: number } | undefined {
  const width = positiveInt(video.width);
  const height = positiveInt(video.height);
  if (!width || !height) return undefined;
  const rotation = Number(video.side_data_list?.find((d) => d.rotation !== undefined)?.rotation ?? video.tags?.rotate ?? 0);
  const quarterTurn = Number.isFinite(rotation) && Math.abs(Math.round(rotation)) % 180 === 90;
  return quarterTurn ? { width: height, height: width } : { width, height };
}

/** "30000/1001" → 29.97 (3 decimals); 0 for "0/0" or garbage. */
export function frameRate(value: string | undefined): number {
  if (!value) return 0;
  const [num, den = "1"] = value.split("/");
  const rate = Number(num) / Number(den);
  return Number.isFinite(rate) && rate > 0 ? Math.round(rate * 1000) / 1000 : 0;
}

function kbps(bitsPerSecond: string | undefined): number {
  const value = Number(bitsPerSecond);
  return Number.isFinite(value) && value > 0 ? Math.round(value / 1000) : 0;
}

function positiveInt(value: number | undefined): number {
  return typeof value === "number" && Number.isFinite(value) && value > 0 ? Math.round(value) : 0;
}

/**
 * Dimension limits are orientation-free: a 2160x3840 phone video passes 3840x2160 limits
 * (long side against the larger limit, short side against the smaller).
 */
function checkLimits(info: MediaInfo, limits: InputLimits): void {
  if (info.durationMs > limits.maxDurationMs) {
    throw new MediaError("INPUT_TOO_LARGE", `the input is ${formatDuration(info.durationMs)} long; the limit is ${formatDuration(limits.maxDurationMs)}`);
  }
  checkDimensions(info, limits);
}

function checkDimensions(info: { width: number; height: number }, limits: InputLimits): void {
  const long = Math.max(info.width, info.height);
  const short = Math.min(info.width, info.height);
  const maxLong = Math.max(limits.maxWidth, limits.maxHeight);
  const maxShort = Math.min(limits.maxWidth, limits.maxHeight);
  if (long > maxLong || short > maxShort) {
    throw new MediaError("INPUT_TOO_LARGE", `the input is ${info.width}x${info.height}; the limit is ${limits.maxWidth}x${limits.maxHeight}`);
  }
}

/** 7384000 → "2h 3m 4s"; 2500 → "2.5s". */
export function formatDuration(ms: number): string {
  if (ms < 60_000) return `${Math.round(ms / 100) / 10}s`;
  const total = Math.round(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return [h ? `${h}h` : "", m ? `${m}m` : "", s ? `${s}s` : ""].filter(Boolean).join(" ");
}
