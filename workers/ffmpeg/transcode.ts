import { AudioCodec, OutputType, Quality, Resolution, VideoCodec, type AudioSettings, type VideoVariant } from "../../gen/rendition/v1/common_pb.js";
import type { AudioTrack, OutputSpec } from "../../gen/rendition/v1/job_pb.js";
import { ContentType } from "../../gen/rendition/v1/preset_pb.js";
import { enumWord } from "../../services/common/enums.js";
import { BASE_GLOBAL_OPTIONS, INPUT_SAFETY_OPTIONS, absoluteFile } from "./command.js";
import { variantSize, type Size } from "./geometry.js";
import type { FfmpegCommand, MediaInfo, TranscodeTarget } from "./types.js";

export { flattenCommand } from "./command.js";

export type UnsupportedOutputCode =
  | "OUTPUT_TYPE_UNSUPPORTED" // hls / dash / adaptive / unspecified: not a progressive file
  | "CODEC_UNSUPPORTED" // the container cannot carry the codec (h264 in webm, opus in mov, ...)
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
    readonly target?: TranscodeTarget,
  ) {
    super(message);
  }
}

interface Container {
  /** ffmpeg muxer name (`-f`): temp files need not have the right extension. */
  muxer: string;
  video: readonly VideoCodec[];
  audio: readonly AudioCodec[];
  defaultAudio: AudioCodec;
  /** mp4/mov only: `-movflags +faststart`. */
  faststart: boolean;
}

const { H264, H265, VP9, AV1 } = VideoCodec;
const { AAC, OPUS, AC3, EAC3 } = AudioCodec;

/** What each progressive container can carry with ffmpeg 5.1 (checked by muxing each pair). */
const CONTAINERS: Partial<Record<OutputType, Container>> = {
  [OutputType.MP4]: { muxer: "mp4", video: [H264, H265, VP9, AV1], audio: [AAC, OPUS, AC3, EAC3], defaultAudio: AAC, faststart: true },
  // The mov muxer refuses VP9, AV1 and Opus.
  [OutputType.MOV]: { muxer: "mov", video: [H264, H265], audio: [AAC, AC3, EAC3], defaultAudio: AAC, faststart: true },
  [OutputType.MKV]: { muxer: "matroska", video: [H264, H265, VP9, AV1], audio: [AAC, OPUS, AC3, EAC3], defaultAudio: AAC, faststart: false },
  [OutputType.WEBM]: { muxer: "webm", video: [VP9, AV1], audio: [OPUS], defaultAudio: OPUS, faststart: false },
};

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

const AUDIO_ENCODER: Partial<Record<AudioCodec, string>> = { [AAC]: "aac", [OPUS]: "libopus", [AC3]: "ac3", [EAC3]: "eac3" };
const DEFAULT_AUDIO_KBPS = 128;
/** EBU R128 programme loudness for AudioSettings.normalize. */
const LOUDNORM_FILTER = "loudnorm=I=-23:TP=-1:LRA=7";
const OPUS_RATES = [8000, 12000, 16000, 24000, 48000];
const AC3_RATES = [32000, 44100, 48000];

export function isProgressive(type: OutputType): boolean {
  return CONTAINERS[type] !== undefined;
}

/** The container, codec and audio checks for one target, as a thrown UnsupportedOutputError. */
export function checkTarget(target: TranscodeTarget, info: MediaInfo): void {
  const { spec } = target;
  const container = CONTAINERS[spec.type];
  const fail = (code: UnsupportedOutputCode, message: string) => {
    throw new UnsupportedOutputError(code, message, target);
  };
  if (!container) {
    return fail("OUTPUT_TYPE_UNSUPPORTED", `output type ${enumWord(OutputType, spec.type)} is not a progressive file; this encoder writes mp4, webm, mkv and mov`);
  }
  if (spec.video.length !== 1) {
    return fail("OUTPUT_SPEC_INVALID", `a ${enumWord(OutputType, spec.type)} output takes exactly one video variant (got ${spec.video.length})`);
  }
  const codec = spec.video[0]!.codec;
  if (!container.video.includes(codec)) {
    return fail("CODEC_UNSUPPORTED", `${enumWord(OutputType, spec.type)} cannot carry ${enumWord(VideoCodec, codec)} video (allowed: ${container.video.map((c) => enumWord(VideoCodec, c)).join(", ")})`);
  }
  const track = spec.audio[0];
  const audioCodec = track?.settings?.codec || container.defaultAudio;
  if (!container.audio.includes(audioCodec)) {
    return fail("CODEC_UNSUPPORTED", `${enumWord(OutputType, spec.type)} cannot carry ${enumWord(AudioCodec, audioCodec)} audio (allowed: ${container.audio.map((c) => enumWord(AudioCodec, c)).join(", ")})`);
  }
  const wanted = track?.sourceStreamIndex ?? 0;
  // An input without audio is fine (the output has none); naming a stream that is not there is not.
  if (info.audioStreams.length > 0 && wanted >= info.audioStreams.length) {
    return fail("OUTPUT_SPEC_INVALID", `audio source_stream_index ${wanted} does not exist: the input has ${info.audioStreams.length} audio stream(s)`);
  }
}

/**
 * One ffmpeg command encoding every progressive target from a single decode of the input:
 * `split` fans the decoded video out to one scale/fps chain per target, each output maps its
 * chain plus (optionally) one source audio stream. Pure: the same input gives the same argv.
 *
 * Throws UnsupportedOutputError for the first target it cannot produce (see `checkTarget`).
 */
export function buildTranscodeCommand(
  input: { file: string; info: MediaInfo },
  targets: TranscodeTarget[],
  opts: { threads?: number } = {},
): FfmpegCommand {
  if (targets.length === 0) throw new Error("buildTranscodeCommand needs at least one target");
  for (const target of targets) checkTarget(target, input.info);

  const threads = opts.threads && opts.threads > 0 ? ["-threads", String(opts.threads)] : [];
  const filterThreads = threads.length ? ["-filter_complex_threads", String(opts.threads)] : [];
  return {
    global: [...BASE_GLOBAL_OPTIONS, "-filter_complex", videoFilterGraph(input.info, targets), ...filterThreads],
    // -threads before -i limits the decoder.
    inputs: [{ options: [...threads, ...INPUT_SAFETY_OPTIONS], file: absoluteFile(input.file) }],
    outputs: targets.map((target, i) => ({
      options: [...outputOptions(target.spec, i, input.info), ...threads],
      file: absoluteFile(target.file),
    })),
  };
}

/**
 * `[0:v:0]split=2[s0][s1];[s0]scale=1920:1080[v0];[s1]fps=30,scale=1280:720[v1]`, or without
 * the split for one target. fps comes before scale so dropped frames are never scaled.
 */
function videoFilterGraph(info: MediaInfo, targets: TranscodeTarget[]): string {
  const chains = targets.map((target) => videoChain(target.spec.video[0]!, info));
  if (chains.length === 1) return `[0:v:0]${chains[0]}[v0]`;
  const split = `[0:v:0]split=${chains.length}${chains.map((_, i) => `[s${i}]`).join("")}`;
  return [split, ...chains.map((chain, i) => `[s${i}]${chain}[v${i}]`)].join(";");
}

function videoChain(variant: VideoVariant, info: MediaInfo): string {
  const size = targetSize(variant, info);
  const fps = variant.framerate > 0 ? [`fps=${variant.framerate}`] : [];
  return [...fps, `scale=${size.width}:${size.height}`].join(",");
}

/** The encoded size of a variant for this input (see `variantSize` for the rules). */
function targetSize(variant: VideoVariant, info: MediaInfo): Size {
  return variantSize(info, TIER_SHORT_SIDE[variant.resolution], variant.width, variant.height);
}

function outputOptions(spec: OutputSpec, index: number, info: MediaInfo): string[] {
  const container = CONTAINERS[spec.type]!;
  const variant = spec.video[0]!;
  const track = spec.audio[0];
  const faststart = container.faststart && spec.faststart !== false;
  return [
    "-map",
    `[v${index}]`,
    // "?" keeps inputs without audio working: the output then simply has no audio.
    "-map",
    `0:a:${track?.sourceStreamIndex ?? 0}?`,
    ...videoCodecOptions(variant, spec),
    ...audioOptions(track, container),
    // Drops the source's global tags (GPS position, device and software names): privacy, and a
    // clean file. Chapters and the per-stream language we set below are kept.
    "-map_metadata",
    "-1",
    ...(faststart ? ["-movflags", "+faststart"] : []),
    // Outputs fed by one split start at different times; a deeper queue avoids
    // "Too many packets buffered for output stream".
    "-max_muxing_queue_size",
    "4096",
    "-f",
    container.muxer,
  ];
}

/** Encoder, rate control and codec-option flags for the one video stream of an output. */
function videoCodecOptions(variant: VideoVariant, spec: Pick<OutputSpec, "type" | "contentType">): string[] {
  const tier = tierOf(variant.quality);
  const rate = bitrateOptions(variant.bitrate);
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
        ...gop(o?.gopSize),
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
        ...gop(o?.gopSize),
        // x265 logs to stderr whatever -loglevel says; keep stderr for real errors.
        "-x265-params",
        "log-level=error",
        // Apple players only play HEVC in mp4/mov tagged hvc1 (ffmpeg's default is hev1).
        ...(spec.type === OutputType.MP4 || spec.type === OutputType.MOV ? ["-tag:v", "hvc1"] : []),
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
        ...gop(o?.gopSize),
        "-pix_fmt",
        "yuv420p",
      ];
    }
    case AV1: {
      const o = variant.av1;
      const defaults = QUALITY_TIERS.av1[tier];
      return [
        "-c:v",
        "libsvtav1",
        "-preset",
        // encoder_preset is `optional`: 0 (the slowest preset) is a real value here.
        String(o?.encoderPreset ?? defaults.preset),
        ...(rate ?? ["-crf", String(o?.crf || defaults.crf)]),
        ...gop(o?.gopSize),
        "-pix_fmt",
        "yuv420p",
      ];
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
 * Audio encoder flags for the first audio track of the spec (progressive outputs carry one).
 * The stream may not exist (input without audio): these flags are then unused and harmless.
 */
function audioOptions(track: AudioTrack | undefined, container: Pick<Container, "defaultAudio">): string[] {
  const settings: Partial<AudioSettings> = track?.settings ?? {};
  const codec = settings.codec || container.defaultAudio;
  const encoder = AUDIO_ENCODER[codec];
  if (!encoder) throw new UnsupportedOutputError("CODEC_UNSUPPORTED", `audio codec ${codec} is not supported`);
  let kbps = settings.bitrateKbps || DEFAULT_AUDIO_KBPS;
  if (codec === AC3) kbps = Math.min(kbps, 640); // the AC-3 maximum
  const sampleRate = audioSampleRate(codec, settings.sampleRate ?? 0, settings.normalize ?? false);
  return [
    "-c:a",
    encoder,
    "-b:a",
    `${kbps}k`,
    ...(sampleRate ? ["-ar", String(sampleRate)] : []),
    ...(settings.channels ? ["-ac", String(settings.channels)] : []),
    ...(settings.normalize ? ["-af", LOUDNORM_FILTER] : []),
    ...(track?.language ? ["-metadata:s:a:0", `language=${track.language}`] : []),
    ...(track?.label ? ["-metadata:s:a:0", `title=${track.label}`] : []),
    ...(track?.default ? ["-disposition:a:0", "default"] : []),
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
