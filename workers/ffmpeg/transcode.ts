import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { AudioCodec, OutputType, Quality, Resolution, VideoCodec, type AudioSettings, type VideoVariant } from "../../gen/rendition/v1/common_pb.js";
import { AudioTrackSchema, type AudioTrack, type OutputSpec } from "../../gen/rendition/v1/job_pb.js";
import { ContentType } from "../../gen/rendition/v1/preset_pb.js";
import { enumWord } from "../../services/common/enums.js";
import { codecsFor, formatOf, segmentContainerOf, segmentSecondsOf } from "../../services/jobs/output-formats.js";
import { BASE_GLOBAL_OPTIONS, INPUT_SAFETY_OPTIONS, absoluteFile } from "./command.js";
import { av1EncoderOptions, isAv1Encoder } from "./av1-encoders.js";
import { AUDIO_ENCODERS, pickEncoder, VIDEO_ENCODERS, type AudioCodecName, type FfmpegCapabilities, type VideoCodecName } from "./capabilities.js";
import { variantSize, type Size } from "./geometry.js";
import { burnInFilter, SUBTITLE_INPUT_OPTIONS, subtitleStreamOptions, textFormatOfCodec } from "./subtitles.js";
import { isStreamTarget, type EncodeTarget, type FfmpegCommand, type MediaInfo, type StreamTarget, type TranscodeTarget } from "./types.js";

export { flattenCommand } from "./command.js";

export type UnsupportedOutputCode =
  | "OUTPUT_TYPE_UNSUPPORTED" // unspecified type
  | "CODEC_UNSUPPORTED" // the container cannot carry the codec, or this ffmpeg has no encoder for it
  | "FEATURE_UNSUPPORTED" // a setting this encoder does not produce yet (HDR, DRM, subtitles, content-aware)
  | "OUTPUT_SPEC_INVALID"; // e.g. no video variant, or an audio stream the input does not have

/**
 * One output this builder cannot produce. Thrown (not a MediaError: the input is fine) so the
 * caller can fail just that output (`target`) and build the others again without it.
 */
export class UnsupportedOutputError extends Error {
  override name = "UnsupportedOutputError";
  constructor(
    readonly code: UnsupportedOutputCode,
    message: string,
    readonly target?: EncodeTarget,
  ) {
    super(message);
  }
}

const { H264, H265, VP9, AV1 } = VideoCodec;
const { OPUS, AC3 } = AudioCodec;

export interface BuildOptions {
  threads?: number;
  /** What this ffmpeg has (`ffmpeg -encoders` …); unset: assume the first encoder of each list. */
  capabilities?: FfmpegCapabilities;
}

/** The encoder this build uses for a codec (capabilities.ts lists them best first), or undefined. */
function videoEncoder(codec: VideoCodec, caps: FfmpegCapabilities | undefined): string | undefined {
  const list = VIDEO_ENCODERS[enumWord(VideoCodec, codec) as VideoCodecName] ?? [];
  return caps ? pickEncoder(list, caps) : list[0];
}

function audioEncoder(codec: AudioCodec, caps: FfmpegCapabilities | undefined): string | undefined {
  const list = AUDIO_ENCODERS[enumWord(AudioCodec, codec) as AudioCodecName] ?? [];
  return caps ? pickEncoder(list, caps) : list[0];
}

function encoderList(kind: "video" | "audio", codec: number): string {
  const lists: Record<string, readonly string[]> = kind === "video" ? VIDEO_ENCODERS : AUDIO_ENCODERS;
  return (lists[enumWord(kind === "video" ? VideoCodec : AudioCodec, codec)] ?? []).join(", ");
}

/** Target short side of each resolution tier (see `variantSize`). */
const TIER_SHORT_SIDE: Record<Resolution, number | undefined> = {
  [Resolution.RESOLUTION_UNSPECIFIED]: undefined,
  [Resolution.RESOLUTION_480P]: 480,
  [Resolution.RESOLUTION_720P]: 720,
  [Resolution.RESOLUTION_1080P]: 1080,
  [Resolution.RESOLUTION_1440P]: 1440,
  [Resolution.RESOLUTION_2160P]: 2160,
  [Resolution.RESOLUTION_4320P]: 4320,
};

type Tier = "economy" | "standard" | "premium";

/**
 * Quality tiers (docs: api-facts "Quality tiers"). `preset` is the encoder's speed knob: the x264/
 * x265 preset name, libvpx `-cpu-used`, SVT-AV1 `-preset`.
 * The reference leaves two premium cells open; our choices:
 * - VP9 premium: speed 4, CRF 31 (the CRF libvpx's own VOD guide gives for 1080p);
 * - AV1 premium: preset 4, CRF 28 (preset 4 is SVT-AV1's usual "slow, high quality" point).
 * libvpx in good-quality mode treats speeds above 5 like 5, so VP9 economy (8) and standard (6)
 * differ mainly by CRF.
 */
const QUALITY_TIERS: Record<"h264" | "h265" | "vp9" | "av1", Record<Tier, { preset: string; crf: number }>> = {
  h264: { economy: { preset: "veryfast", crf: 26 }, standard: { preset: "medium", crf: 23 }, premium: { preset: "slow", crf: 20 } },
  h265: { economy: { preset: "veryfast", crf: 32 }, standard: { preset: "medium", crf: 26 }, premium: { preset: "slow", crf: 22 } },
  vp9: { economy: { preset: "8", crf: 50 }, standard: { preset: "6", crf: 40 }, premium: { preset: "4", crf: 31 } },
  av1: { economy: { preset: "10", crf: 45 }, standard: { preset: "6", crf: 35 }, premium: { preset: "4", crf: 28 } },
};

function tierOf(quality: Quality): Tier {
  if (quality === Quality.ECONOMY) return "economy";
  if (quality === Quality.PREMIUM) return "premium";
  return "standard"; // unset means standard
}

/** Content-type hints that map onto an x264 / x265 `-tune`; the others have no matching tune. */
const X264_TUNE: Partial<Record<ContentType, string>> = {
  [ContentType.FILM]: "film",
  [ContentType.ANIMATION]: "animation",
  [ContentType.GRAIN]: "grain",
  [ContentType.STILLIMAGE]: "stillimage",
};
const X265_TUNE: Partial<Record<ContentType, string>> = { [ContentType.ANIMATION]: "animation", [ContentType.GRAIN]: "grain" };

const DEFAULT_AUDIO_KBPS = 128;
/** EBU R128 programme loudness for AudioSettings.normalize. */
const LOUDNORM_FILTER = "loudnorm=I=-23:TP=-1:LRA=7";
const OPUS_RATES = [8000, 12000, 16000, 24000, 48000];
const AC3_RATES = [32000, 44100, 48000];

/** One rendition of a segmented output: a video variant or an audio track, in its own directory. */
export interface StreamRendition {
  /** "v0", "v1" … for video, "a0" … for audio: the directory name under the output. */
  id: string;
  kind: "video" | "audio";
  dir: string;
  /** Video renditions: the variant (spec.video[index]). */
  variant?: VideoVariant;
  /** Audio renditions: the track (spec.audio[index]; a default track when the spec lists none). */
  track?: AudioTrack;
  index: number;
}

/**
 * The renditions of a segmented output: one per video variant, one per audio track. With no
 * audio tracks in the spec, the input's first audio stream becomes one default track; an input
 * without audio gives video renditions only (as a progressive output then has no audio).
 */
export function streamRenditions(target: StreamTarget, info: MediaInfo): StreamRendition[] {
  const video = target.spec.video.map((variant, index): StreamRendition => ({ id: `v${index}`, kind: "video", dir: path.join(target.dir, `v${index}`), variant, index }));
  if (info.audioStreams.length === 0) return video;
  const tracks = target.spec.audio.length > 0 ? target.spec.audio : [create(AudioTrackSchema, { default: true })];
  return [...video, ...tracks.map((track, index): StreamRendition => ({ id: `a${index}`, kind: "audio", dir: path.join(target.dir, `a${index}`), track, index }))];
}

/** The audio tracks of a progressive output: the spec's, or one default track. */
function fileTracks(spec: OutputSpec): Array<AudioTrack | undefined> {
  return spec.audio.length > 0 ? spec.audio : [undefined];
}

/**
 * Everything this builder cannot produce for one target, as a thrown UnsupportedOutputError:
 * container/codec pairs, encoders this ffmpeg lacks, audio streams the input does not have, and
 * the settings not encoded yet (each named by its field, so nothing is silently dropped).
 */
export function checkTarget(target: EncodeTarget, info: MediaInfo, caps?: FfmpegCapabilities): void {
  const { spec } = target;
  const format = formatOf(spec.type);
  const codecs = codecsFor(spec);
  const fail = (code: UnsupportedOutputCode, message: string) => {
    throw new UnsupportedOutputError(code, message, target);
  };
  const type = enumWord(OutputType, spec.type);
  if (!format || !codecs) return fail("OUTPUT_TYPE_UNSUPPORTED", `output type ${type || "unspecified"} is not one this encoder writes (mp4, webm, mkv, mov, hls, dash, adaptive)`);
  if (format.kind === "progressive" && isStreamTarget(target)) throw new Error(`a ${type} output is one file, not a directory`);
  if (format.kind === "segmented" && !isStreamTarget(target)) throw new Error(`a ${type} output is a directory, not one file`);
  if (spec.video.length === 0 || (format.kind === "progressive" && spec.video.length !== 1)) {
    return fail("OUTPUT_SPEC_INVALID", `a ${type} output takes ${format.kind === "progressive" ? "exactly one video variant" : "1 to 20 video variants"} (got ${spec.video.length})`);
  }
  for (const [i, variant] of spec.video.entries()) {
    if (!codecs.video.includes(variant.codec)) {
      return fail("CODEC_UNSUPPORTED", `${type} cannot carry ${enumWord(VideoCodec, variant.codec)} video (allowed: ${codecs.video.map((c) => enumWord(VideoCodec, c)).join(", ")})`);
    }
    if (!videoEncoder(variant.codec, caps)) {
      return fail("CODEC_UNSUPPORTED", `this worker's ffmpeg has no ${enumWord(VideoCodec, variant.codec)} encoder (looked for ${encoderList("video", variant.codec)})`);
    }
    if (variant.hdr?.mode) return fail("FEATURE_UNSUPPORTED", `video[${i}].hdr.mode "${variant.hdr.mode}" is not supported by this version's encoder yet`);
  }
  for (const track of spec.audio.length > 0 ? spec.audio : [undefined]) {
    const audioCodec = track?.settings?.codec || codecs.defaultAudio;
    if (!codecs.audio.includes(audioCodec)) {
      return fail("CODEC_UNSUPPORTED", `${type} cannot carry ${enumWord(AudioCodec, audioCodec)} audio (allowed: ${codecs.audio.map((c) => enumWord(AudioCodec, c)).join(", ")})`);
    }
    if (info.audioStreams.length > 0 && audioCodec === OPUS && format.kind === "segmented" && segmentContainerOf(spec) === "fmp4" && caps?.opusInMp4 === false) {
      return fail("CODEC_UNSUPPORTED", `this worker's ffmpeg cannot put opus audio into fMP4 segments (ffmpeg 4.1 calls it experimental); use aac, or a worker with ffmpeg 5 or later`);
    }
    if (info.audioStreams.length > 0 && !audioEncoder(audioCodec, caps)) {
      return fail("CODEC_UNSUPPORTED", `this worker's ffmpeg has no ${enumWord(AudioCodec, audioCodec)} encoder (looked for ${encoderList("audio", audioCodec)})`);
    }
    const wanted = track?.sourceStreamIndex ?? 0;
    // An input without audio is fine (the output has none); naming a stream that is not there is not.
    if (info.audioStreams.length > 0 && wanted >= info.audioStreams.length) {
      return fail("OUTPUT_SPEC_INVALID", `audio source_stream_index ${wanted} does not exist: the input has ${info.audioStreams.length} audio stream(s)`);
    }
  }
  for (const [i, track] of spec.subtitleTracks.entries()) {
    if (track.sourceStreamIndex === undefined) continue; // a URL: checked once fetched
    const stream = info.subtitleStreams?.[track.sourceStreamIndex];
    if (!stream) {
      return fail("OUTPUT_SPEC_INVALID", `subtitle_tracks[${i}].source_stream_index ${track.sourceStreamIndex} does not exist: the input has ${info.subtitleStreams?.length ?? 0} subtitle stream(s)`);
    }
    if (!textFormatOfCodec(stream.codec)) {
      return fail("FEATURE_UNSUPPORTED", `subtitle_tracks[${i}]: the input's subtitle stream ${track.sourceStreamIndex} is ${stream.codec}, a bitmap format; only text subtitles (SubRip, WebVTT, ASS, mov_text) are converted`);
    }
  }
  if (spec.subtitleTracks.length > 0 && target.subtitles && target.subtitles.length !== spec.subtitleTracks.length) throw new Error("every subtitle track must be prepared");
  if (spec.contentAware?.mode) return fail("FEATURE_UNSUPPORTED", "content_aware encoding is not supported by this version's encoder yet");
  if (spec.drm?.systems.length) return fail("FEATURE_UNSUPPORTED", "drm is not supported by this version's encoder yet");
}

/**
 * One ffmpeg command encoding every target from a single decode of the input: `split` fans the
 * decoded video out to one scale/fps chain per video rendition (a progressive output has one, a
 * segmented output one per variant), and every audio track is encoded from its source stream.
 * A segmented output's renditions are each an output of the `hls` muxer in single-variant mode
 * (segments + a media playlist in the rendition's directory); the master playlist and the MPD
 * are written afterwards from the measured segments (workers/packaging). Pure: the same input
 * gives the same argv.
 *
 * Throws UnsupportedOutputError for the first target it cannot produce (see `checkTarget`).
 */
export function buildTranscodeCommand(input: { file: string; info: MediaInfo }, targets: EncodeTarget[], opts: BuildOptions = {}): FfmpegCommand {
  if (targets.length === 0) throw new Error("buildTranscodeCommand needs at least one target");
  for (const target of targets) checkTarget(target, input.info, opts.capabilities);

  const threads = opts.threads && opts.threads > 0 ? ["-threads", String(opts.threads)] : [];
  const filterThreads = threads.length ? ["-filter_complex_threads", String(opts.threads)] : [];
  // One video chain per rendition; a burned-in subtitle is drawn on every chain of its output.
  const chains: Array<{ variant: VideoVariant; burnIn?: string }> = [];
  const subtitleInputs: FfmpegCommand["inputs"] = [];
  const outputs: FfmpegCommand["outputs"] = [];
  for (const target of targets) {
    const burnIn = target.subtitles?.find((s) => s.track.operation === "burn_in")?.file;
    if (!isStreamTarget(target)) {
      const pad = chains.push({ variant: target.spec.video[0]!, burnIn }) - 1;
      // Passthrough and convert tracks become subtitle streams of the file, each read from its own input.
      const embedded = (target.subtitles ?? []).filter((s) => s.track.operation === "passthrough" || s.track.operation === "convert");
      const subtitleMaps = embedded.flatMap((prepared, n) => {
        const inputIndex = 1 + subtitleInputs.push({ options: [...SUBTITLE_INPUT_OPTIONS], file: absoluteFile(prepared.file) }) - 1;
        return ["-map", `${inputIndex}:s:0`, ...subtitleStreamOptions(target.spec.type, prepared, n)];
      });
      outputs.push({ options: [...fileOutputOptions(target.spec, pad, input.info, opts.capabilities, subtitleMaps), ...threads], file: absoluteFile(target.file) });
      continue;
    }
    const segmentSeconds = segmentSecondsOf(target.spec);
    const segments = segmentContainerOf(target.spec);
    for (const rendition of streamRenditions(target, input.info)) {
      let options: string[];
      if (rendition.kind === "video") {
        const pad = chains.push({ variant: rendition.variant!, burnIn }) - 1;
        const fps = rendition.variant!.framerate || input.info.framerate || 30;
        options = ["-map", `[v${pad}]`, ...videoCodecOptions(rendition.variant!, target.spec, input.info, opts.capabilities, { segmentSeconds, fps })];
      } else {
        const track = rendition.track!;
        const defaultAudio = codecsFor(target.spec)!.defaultAudio;
        options = ["-map", `0:a:${track.sourceStreamIndex}`, ...audioOptions(track, 0, { defaultCodec: defaultAudio, mp4Family: isMp4Family(target.spec) }, opts.capabilities), ...opusInMp4(target.spec, [track], defaultAudio)];
      }
      outputs.push({ options: [...options, "-map_metadata", "-1", ...hlsMuxerOptions(rendition.dir, segmentSeconds, segments), ...threads], file: absoluteFile(path.join(rendition.dir, "index.m3u8")) });
    }
  }
  // The hls muxer has no variable-frame-rate flag, so by default ffmpeg duplicates the last
  // frame to fill the frame rate: a forced keyframe there made a 0.033 s last segment. Passing
  // timestamps through removes it (STREAMING.md; `-vsync` is what both ffmpeg 4.1 and 5.1 take).
  const vsync = targets.some(isStreamTarget) ? ["-vsync", "passthrough"] : [];
  return {
    global: [...BASE_GLOBAL_OPTIONS, "-filter_complex", videoFilterGraph(input.info, chains), ...filterThreads, ...vsync],
    // -threads before -i limits the decoder.
    inputs: [{ options: [...threads, ...INPUT_SAFETY_OPTIONS], file: absoluteFile(input.file) }, ...subtitleInputs],
    outputs,
  };
}

/**
 * One progressive output's single-pass encode taken apart, for chunked encoding: the video
 * options (scale chain + encoder, rate control, keyframes: what `buildTranscodeCommand` gives the
 * same target), the options of its one audio track, and the muxer options of the joined file.
 * Built from the same functions as the single pass, so a chunked encode has identical settings.
 */
export function progressiveParts(target: TranscodeTarget, info: MediaInfo, caps?: FfmpegCapabilities): { video: string[]; audio: string[]; muxer: string[] } {
  checkTarget(target, info, caps);
  const { spec } = target;
  const format = formatOf(spec.type)!;
  const tracks = fileTracks(spec);
  if (tracks.length !== 1 || spec.video.length !== 1) throw new Error("progressiveParts takes an output with one video variant and one audio track");
  const faststart = format.faststart === true && spec.faststart !== false;
  return {
    video: ["-vf", videoChain(spec.video[0]!, info), ...videoCodecOptions(spec.video[0]!, spec, info, caps)],
    audio: audioOptions(tracks[0], 0, { defaultCodec: format.defaultAudio, mp4Family: isMp4Family(spec) }, caps),
    muxer: [...opusInMp4(spec, tracks, format.defaultAudio), "-map_metadata", "-1", ...(faststart ? ["-movflags", "+faststart"] : []), "-f", format.muxer!],
  };
}

/**
 * Keeping MPEG-TS renditions in sync. Each rendition is its own ffmpeg output, and the ts muxer
 * shifts each stream so that its first decode time is not negative: by the B-frame delay for
 * video (2 frames with x264's defaults), by the encoder priming for audio (1024 AAC samples).
 * Shifted independently, audio ran ~45 ms ahead of video. Offsetting every rendition by the same
 * amount first, more than any such delay (16 B-frames at 10 fps is 1.6 s), leaves nothing
 * negative to shift (measured: video pts 11.400 s, audio 11.379 s = 11.4 minus the AAC priming,
 * the source's own timing).
 * fMP4 renditions keep ffmpeg's default: the mp4 muxer writes each track's start as an edit list.
 * An offset there becomes a 10 s empty edit, and `-avoid_negative_ts disabled` made hls.js stall
 * before the end, so fMP4 keeps the per-track shift (docs/api.md: known limitations).
 */
export const TS_TIME_OFFSET_S = 10;

/**
 * The `hls` muxer writing one rendition: VOD media playlist, fixed-length segments (cut at the
 * keyframes the encoder places on every segment boundary), fMP4 with its init segment or
 * MPEG-TS. Segment numbers start at 1.
 */
function hlsMuxerOptions(dir: string, segmentSeconds: number, segments: "fmp4" | "ts"): string[] {
  const dirAbs = absoluteFile(dir);
  return [
    ...(segments === "ts" ? ["-output_ts_offset", String(TS_TIME_OFFSET_S)] : []),
    // Renditions fed by one split start at different times; a deeper queue avoids
    // "Too many packets buffered for output stream".
    "-max_muxing_queue_size",
    "4096",
    "-f",
    "hls",
    "-hls_time",
    String(segmentSeconds),
    "-hls_playlist_type",
    "vod",
    "-hls_segment_type",
    segments === "ts" ? "mpegts" : "fmp4",
    ...(segments === "fmp4" ? ["-hls_fmp4_init_filename", "init.mp4"] : []),
    "-hls_flags",
    "independent_segments",
    "-start_number",
    "1",
    "-hls_segment_filename",
    path.join(dirAbs, `seg_%05d.${segments === "ts" ? "ts" : "m4s"}`),
  ];
}

/**
 * `[0:v:0]split=2[s0][s1];[s0]scale=1920:1080[v0];[s1]fps=30,scale=1280:720[v1]`, or without
 * the split for one rendition. fps comes before scale so dropped frames are never scaled.
 */
function videoFilterGraph(info: MediaInfo, renditions: Array<{ variant: VideoVariant; burnIn?: string }>): string {
  const chains = renditions.map(({ variant, burnIn }) => videoChain(variant, info, burnIn));
  if (chains.length === 1) return `[0:v:0]${chains[0]}[v0]`;
  const split = `[0:v:0]split=${chains.length}${chains.map((_, i) => `[s${i}]`).join("")}`;
  return [split, ...chains.map((chain, i) => `[s${i}]${chain}[v${i}]`)].join(";");
}

/** fps, scale, then (burn_in) the subtitles drawn at the output size, so text stays sharp. */
function videoChain(variant: VideoVariant, info: MediaInfo, burnIn?: string): string {
  const size = targetSize(variant, info);
  const fps = variant.framerate > 0 ? [`fps=${variant.framerate}`] : [];
  return [...fps, `scale=${size.width}:${size.height}`, ...(burnIn ? [burnInFilter(burnIn)] : [])].join(",");
}

/** The encoded size of a variant for this input (see `variantSize` for the rules). */
export function targetSize(variant: VideoVariant, info: MediaInfo): Size {
  return variantSize(info, TIER_SHORT_SIDE[variant.resolution], variant.width, variant.height);
}

function fileOutputOptions(spec: OutputSpec, pad: number, info: MediaInfo, caps: FfmpegCapabilities | undefined, subtitleMaps: string[]): string[] {
  const format = formatOf(spec.type)!;
  const faststart = format.faststart === true && spec.faststart !== false;
  const tracks = fileTracks(spec);
  // The default track: the one the spec marks, else the first (players start with it).
  const defaultTrack = Math.max(0, tracks.findIndex((t) => t?.default));
  return [
    "-map",
    `[v${pad}]`,
    // "?" keeps inputs without audio working: the output then simply has no audio.
    ...tracks.flatMap((track) => ["-map", `0:a:${track?.sourceStreamIndex ?? 0}?`]),
    ...videoCodecOptions(spec.video[0]!, spec, info, caps),
    ...tracks.flatMap((track, i) => audioOptions(track, i, { defaultCodec: format.defaultAudio, mp4Family: isMp4Family(spec) }, caps, tracks.length > 1 ? i === defaultTrack : undefined)),
    ...opusInMp4(spec, tracks, format.defaultAudio),
    ...subtitleMaps,
    // Drops the source's global tags (GPS position, device and software names): privacy, and a
    // clean file. Chapters and the per-stream language we set below are kept.
    "-map_metadata",
    "-1",
    ...(faststart ? ["-movflags", "+faststart"] : []),
    "-max_muxing_queue_size",
    "4096",
    "-f",
    format.muxer!,
  ];
}

/**
 * Keyframes on every segment boundary, identical in every rendition: forced keyframes at
 * multiples of the segment length, a GOP no longer than a segment (SVT-AV1 in ffmpeg 5.1
 * ignores forced keyframes, so its GOP does the job), and no scene-cut keyframes (x264/x265)
 * or open GOPs (x265), so each segment starts with an IDR frame. Measured: x264 defaults gave
 * 5.3/3.1/3.6 s segments on a clip with scene cuts; these give exactly the segment length.
 */
function alignedKeyframes(codec: VideoCodec, userGop: number | undefined, segment: { segmentSeconds: number; fps: number }): string[] {
  const gopFrames = userGop || Math.max(1, Math.round(segment.fps * segment.segmentSeconds));
  const common = ["-force_key_frames", `expr:gte(t,n_forced*${segment.segmentSeconds})`, "-g", String(gopFrames)];
  if (codec === H264) return [...common, "-sc_threshold", "0", "-forced-idr", "1"];
  if (codec === H265) return [...common, "-forced-idr", "1"];
  return common;
}

/**
 * Opus in mp4 is "experimental" to ffmpeg 4.1's mp4 muxer (the npm-shipped build), which then
 * refuses it; 5.1 takes it as it is. The flag only unlocks that.
 */
function opusInMp4(spec: OutputSpec, tracks: Array<AudioTrack | undefined>, defaultCodec: AudioCodec): string[] {
  const opus = tracks.some((t) => (t?.settings?.codec || defaultCodec) === OPUS);
  return opus && isMp4Family(spec) ? ["-strict", "experimental"] : [];
}

/** mp4/mov files and fMP4 segments: the ISO BMFF family, where sample entry tags matter. */
function isMp4Family(spec: Pick<OutputSpec, "type" | "hls">): boolean {
  if (spec.type === OutputType.MP4 || spec.type === OutputType.MOV) return true;
  return formatOf(spec.type)?.kind === "segmented" && segmentContainerOf(spec) === "fmp4";
}

/** Encoder, rate control and codec-option flags for one video stream. */
function videoCodecOptions(
  variant: VideoVariant,
  spec: Pick<OutputSpec, "type" | "contentType" | "hls">,
  info: MediaInfo,
  caps: FfmpegCapabilities | undefined,
  segment?: { segmentSeconds: number; fps: number },
): string[] {
  const tier = tierOf(variant.quality);
  const rate = bitrateOptions(variant.bitrate);
  const keyframes = (gopSize: number | undefined) => (segment ? alignedKeyframes(variant.codec, gopSize, segment) : gop(gopSize));
  switch (variant.codec) {
    case H264: {
      const o = variant.h264;
      const defaults = QUALITY_TIERS.h264[tier];
      const tune = o?.tune || X264_TUNE[spec.contentType];
      return [
        "-c:v",
        "libx264",
        "-preset",
        o?.encoderPreset || defaults.preset,
        // A variant's explicit bitrate overrides CRF, including h264.crf.
        ...(rate ?? ["-crf", String(o?.crf || defaults.crf)]),
        ...(o?.profile ? ["-profile:v", o.profile] : []),
        ...(o?.level ? ["-level:v", o.level] : []),
        ...(tune ? ["-tune", tune] : []),
        ...keyframes(o?.gopSize),
        // proto3 cannot tell "0 B-frames" from unset: 0 keeps the preset's default.
        ...(o?.bFrames ? ["-bf", String(o.bFrames)] : []),
        "-pix_fmt",
        "yuv420p",
      ];
    }
    case H265: {
      const o = variant.h265;
      const defaults = QUALITY_TIERS.h265[tier];
      const tune = X265_TUNE[spec.contentType];
      const tenBit = o?.profile === "main10";
      return [
        "-c:v",
        "libx265",
        "-preset",
        o?.encoderPreset || defaults.preset,
        ...(rate ?? ["-crf", String(o?.crf || defaults.crf)]),
        ...(o?.profile ? ["-profile:v", o.profile] : []),
        ...(tune ? ["-tune", tune] : []),
        ...keyframes(o?.gopSize),
        // x265 logs to stderr whatever -loglevel says; keep stderr for real errors.
        "-x265-params",
        segment ? "log-level=error:scenecut=0:open-gop=0" : "log-level=error",
        // Apple players only play HEVC tagged hvc1 (ffmpeg's default is hev1), in files and segments.
        ...(isMp4Family(spec) ? ["-tag:v", "hvc1"] : []),
        // main10 needs a 10-bit pixel format; everything else stays 8-bit 4:2:0 for players.
        "-pix_fmt",
        tenBit ? "yuv420p10le" : "yuv420p",
      ];
    }
    case VP9: {
      const o = variant.vp9;
      const defaults = QUALITY_TIERS.vp9[tier];
      return [
        "-c:v",
        "libvpx-vp9",
        "-cpu-used",
        String(o?.speed || defaults.preset),
        // Constant quality in libvpx needs -b:v 0 next to -crf (otherwise CRF is capped by a default bitrate).
        ...(rate ?? ["-crf", String(o?.crf || defaults.crf), "-b:v", "0"]),
        // Row multithreading: several times faster on multi-core machines, same output quality.
        "-row-mt",
        "1",
        ...keyframes(o?.gopSize),
        "-pix_fmt",
        "yuv420p",
      ];
    }
    case AV1: {
      const o = variant.av1;
      const defaults = QUALITY_TIERS.av1[tier];
      const encoder = videoEncoder(AV1, caps);
      if (!isAv1Encoder(encoder)) throw new UnsupportedOutputError("CODEC_UNSUPPORTED", `this worker's ffmpeg has no AV1 encoder (looked for ${encoderList("video", AV1)})`);
      const settings = {
        // encoder_preset is `optional`: 0 (the slowest preset) is a real value here.
        preset: o?.encoderPreset ?? Number(defaults.preset),
        crf: o?.crf || defaults.crf,
        bitrateKbps: variant.bitrate || undefined,
        width: targetSize(variant, info).width,
      };
      return [...av1EncoderOptions(encoder, settings, caps), ...keyframes(o?.gopSize), "-pix_fmt", "yuv420p"];
    }
    default:
      throw new UnsupportedOutputError("CODEC_UNSUPPORTED", `video codec ${variant.codec} is not supported`);
  }
}

/**
 * Explicit bitrate (kbps) → constrained VBR: peaks up to 1.5x the target over a 2 s buffer.
 * (SVT-AV1 refuses a maxrate equal to the target, so the headroom also keeps AV1 working.)
 */
function bitrateOptions(kbps: number): string[] | undefined {
  if (!kbps || kbps <= 0) return undefined;
  return ["-b:v", `${kbps}k`, "-maxrate", `${Math.round(kbps * 1.5)}k`, "-bufsize", `${kbps * 2}k`];
}

function gop(size: number | undefined): string[] {
  return size ? ["-g", String(size)] : [];
}

/**
 * Encoder flags for the output's audio stream `n` (`-c:a:n` …). The stream may not exist (input
 * without audio): these flags are then unused and harmless. `isDefault` sets the disposition
 * when an output has several tracks (undefined: leave ffmpeg's, the first track is default).
 */
function audioOptions(
  track: AudioTrack | undefined,
  n: number,
  target: { defaultCodec: AudioCodec; mp4Family: boolean },
  caps: FfmpegCapabilities | undefined,
  isDefault?: boolean,
): string[] {
  const { defaultCodec, mp4Family } = target;
  const settings: Partial<AudioSettings> = track?.settings ?? {};
  const codec = settings.codec || defaultCodec;
  const encoder = audioEncoder(codec, caps);
  if (!encoder) throw new UnsupportedOutputError("CODEC_UNSUPPORTED", `audio codec ${enumWord(AudioCodec, codec)} is not supported`);
  let kbps = settings.bitrateKbps || DEFAULT_AUDIO_KBPS;
  if (codec === AC3) kbps = Math.min(kbps, 640); // the AC-3 maximum
  const sampleRate = audioSampleRate(codec, settings.sampleRate ?? 0, settings.normalize ?? false);
  const a = `a:${n}`;
  const disposition = isDefault === undefined ? (track?.default ? "default" : undefined) : isDefault ? "default" : "0";
  return [
    `-c:${a}`,
    encoder,
    `-b:${a}`,
    `${kbps}k`,
    ...(sampleRate ? [`-ar:${a}`, String(sampleRate)] : []),
    ...(settings.channels ? [`-ac:${a}`, String(settings.channels)] : []),
    ...(settings.normalize ? [`-filter:${a}`, LOUDNORM_FILTER] : []),
    ...(track?.language ? [`-metadata:s:${a}`, `language=${track.language}`] : []),
    ...(track?.label ? [`-metadata:s:${a}`, `title=${track.label}`] : []),
    // mp4/mov keep a track's name in its handler box, not in a title tag.
    ...(track?.label && mp4Family ? [`-metadata:s:${a}`, `handler_name=${track.label}`] : []),
    ...(disposition ? [`-disposition:${a}`, disposition] : []),
  ];
}

/**
 * The `-ar` to ask for, or 0 to keep the source rate.
 * - Opus only encodes 8/12/16/24/48 kHz and AC-3 only 32/44.1/48 kHz: other requests become 48 kHz.
 * - loudnorm resamples to 192 kHz internally, so normalised audio always gets an explicit rate.
 */
function audioSampleRate(codec: AudioCodec, requested: number, normalize: boolean): number {
  const allowed = codec === OPUS ? OPUS_RATES : codec === AC3 ? AC3_RATES : undefined;
  if (requested && allowed && !allowed.includes(requested)) return 48000;
  if (requested) return requested;
  if (codec === OPUS) return 48000; // libopus refuses 44.1 kHz sources unless told
  return normalize ? 48000 : 0;
}
