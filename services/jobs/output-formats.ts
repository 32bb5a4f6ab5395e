import { AudioCodec, OutputType, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import type { OutputSpec } from "../../gen/rendition/v1/job_pb.js";

/**
 * What each output type is, in one table: Create's rules, output paths, the ffmpeg command
 * builders and delivery all read it.
 *
 * - progressive: one file (`extension`, `contentType`), written by ffmpeg's `muxer`, one variant;
 * - segmented: a directory of init segments, media segments and playlists/manifests; a ladder of
 *   up to 20 variants plus up to 8 audio renditions. The segment container depends on the spec
 *   (`hls.segment_format`: fMP4 unless "ts"), see `segmentContainerOf`.
 *
 * Codec lists are what the container can carry and what players play from it, checked by muxing
 * each pair with ffmpeg 5.1 (the mov muxer refuses VP9, AV1 and Opus; MPEG-TS has no VP9/AV1
 * mapping and players do not play Opus from TS).
 */
export interface OutputFormat {
  kind: "progressive" | "segmented";
  video: readonly VideoCodec[];
  audio: readonly AudioCodec[];
  /** The audio codec of a track that names none. */
  defaultAudio: AudioCodec;
  /** Progressive only. */
  extension?: string;
  contentType?: string;
  muxer?: string;
  /** mp4/mov: `-movflags +faststart` unless the spec says faststart: false. */
  faststart?: boolean;
  /** Segmented only: which manifests the output gets. */
  manifests?: { hls: boolean; dash: boolean };
}

const { H264, H265, VP9, AV1 } = VideoCodec;
const { AAC, OPUS, AC3, EAC3 } = AudioCodec;
const ALL_VIDEO = [H264, H265, VP9, AV1] as const;
const ALL_AUDIO = [AAC, OPUS, AC3, EAC3] as const;

const FORMATS: Partial<Record<OutputType, OutputFormat>> = {
  [OutputType.MP4]: { kind: "progressive", extension: "mp4", contentType: "video/mp4", muxer: "mp4", video: ALL_VIDEO, audio: ALL_AUDIO, defaultAudio: AAC, faststart: true },
  [OutputType.MOV]: { kind: "progressive", extension: "mov", contentType: "video/quicktime", muxer: "mov", video: [H264, H265], audio: [AAC, AC3, EAC3], defaultAudio: AAC, faststart: true },
  [OutputType.MKV]: { kind: "progressive", extension: "mkv", contentType: "video/x-matroska", muxer: "matroska", video: ALL_VIDEO, audio: ALL_AUDIO, defaultAudio: AAC },
  [OutputType.WEBM]: { kind: "progressive", extension: "webm", contentType: "video/webm", muxer: "webm", video: [VP9, AV1], audio: [OPUS], defaultAudio: OPUS },
  [OutputType.HLS]: { kind: "segmented", video: ALL_VIDEO, audio: ALL_AUDIO, defaultAudio: AAC, manifests: { hls: true, dash: false } },
  [OutputType.DASH]: { kind: "segmented", video: ALL_VIDEO, audio: ALL_AUDIO, defaultAudio: AAC, manifests: { hls: false, dash: true } },
  [OutputType.ADAPTIVE]: { kind: "segmented", video: ALL_VIDEO, audio: ALL_AUDIO, defaultAudio: AAC, manifests: { hls: true, dash: true } },
};

/**
 * MPEG-TS segments (hls.segment_format "ts") carry fewer codecs than fMP4: H.264 only (Apple's
 * HLS authoring specification requires fMP4 for HEVC, and nothing plays VP9/AV1 from TS), and no
 * Opus.
 */
const TS_SEGMENTS = { video: [H264] as readonly VideoCodec[], audio: [AAC, AC3, EAC3] as readonly AudioCodec[] };

export function formatOf(type: OutputType): OutputFormat | undefined {
  return FORMATS[type];
}

export function isProgressive(type: OutputType): boolean {
  return FORMATS[type]?.kind === "progressive";
}

export function isSegmented(type: OutputType): boolean {
  return FORMATS[type]?.kind === "segmented";
}

/** fMP4 (CMAF) segments, or MPEG-TS for an HLS output that asks for them. */
export function segmentContainerOf(spec: Pick<OutputSpec, "type" | "hls">): "fmp4" | "ts" {
  return spec.type === OutputType.HLS && spec.hls?.segmentFormat === "ts" ? "ts" : "fmp4";
}

/** The codecs one output spec can carry: its format's, narrowed by TS segments. */
export function codecsFor(spec: Pick<OutputSpec, "type" | "hls">): { video: readonly VideoCodec[]; audio: readonly AudioCodec[]; defaultAudio: AudioCodec } | undefined {
  const format = FORMATS[spec.type];
  if (!format) return undefined;
  if (format.kind === "segmented" && segmentContainerOf(spec) === "ts") return { ...TS_SEGMENTS, defaultAudio: AAC };
  return { video: format.video, audio: format.audio, defaultAudio: format.defaultAudio };
}

/** Segment length when the spec does not set one (reference: segments.duration_seconds 0 = 6 s). */
export const DEFAULT_SEGMENT_SECONDS = 6;

export function segmentSecondsOf(spec: Pick<OutputSpec, "segments">): number {
  return spec.segments?.durationSeconds || DEFAULT_SEGMENT_SECONDS;
}

/** Content types of every file an output or thumbnail set writes, by extension. */
const CONTENT_TYPES: Record<string, string> = {
  mp4: "video/mp4",
  m4s: "video/mp4",
  webm: "video/webm",
  mkv: "video/x-matroska",
  mov: "video/quicktime",
  ts: "video/mp2t",
  m3u8: "application/vnd.apple.mpegurl",
  mpd: "application/dash+xml",
  vtt: "text/vtt",
  srt: "application/x-subrip",
  jpg: "image/jpeg",
  png: "image/png",
  webp: "image/webp",
};

export function contentTypeOf(file: string): string {
  return CONTENT_TYPES[file.slice(file.lastIndexOf(".") + 1).toLowerCase()] ?? "application/octet-stream";
}
