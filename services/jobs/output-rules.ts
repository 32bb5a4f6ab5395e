import { AudioCodec, OutputType, VideoCodec, type VideoVariant } from "../../gen/rendition/v1/common_pb.js";
import type { OutputSpec } from "../../gen/rendition/v1/job_pb.js";
import { enumWord } from "../common/enums.js";
import type { FieldViolation } from "../common/errors.js";
import { codecsFor, formatOf, isProgressive, isSegmented, segmentContainerOf } from "./output-formats.js";

function describeType(spec: Pick<OutputSpec, "type" | "hls">): string {
  const word = enumWord(OutputType, spec.type);
  return isSegmented(spec.type) && segmentContainerOf(spec) === "ts" ? `${word} (ts segments)` : word;
}

/**
 * Rules across fields of one output that protovalidate cannot express: a progressive file holds
 * exactly one video variant, and every video codec must be one the output's container carries
 * (see output-formats.ts).
 */
export function checkOutputShape(type: OutputType, video: VideoVariant[], path: string, hls?: OutputSpec["hls"]): FieldViolation[] {
  const violations: FieldViolation[] = [];
  if (type === OutputType.UNSPECIFIED) {
    violations.push({ field: `${path}.type`, rule: "output.type_required", message: "is required unless the output references a preset" });
    return violations;
  }
  if (video.length === 0) {
    violations.push({ field: `${path}.video`, rule: "output.video_required", message: "needs at least one video variant unless the output references a preset" });
  } else if (isProgressive(type) && video.length > 1) {
    violations.push({
      field: `${path}.video`,
      rule: "output.progressive_single_variant",
      message: `a ${enumWord(OutputType, type)} output holds one video variant; add one output per variant or use hls/dash/adaptive for a ladder`,
    });
  }
  const codecs = codecsFor({ type, hls });
  if (codecs) {
    video.forEach((v, i) => {
      if (v.codec && !codecs.video.includes(v.codec)) {
        violations.push({
          field: `${path}.video[${i}].codec`,
          rule: "output.container_video_codec",
          message: `${describeType({ type, hls })} outputs take ${codecs.video.map((c) => `VIDEO_CODEC_${VideoCodec[c]}`).join(", ")}`,
        });
      }
    });
  }
  return violations;
}

/** Every cross-field rule of one output, inline or with its preset applied. */
export function checkOutput(output: OutputSpec, path: string): FieldViolation[] {
  const violations = checkOutputShape(output.type, output.video, path, output.hls);
  const codecs = codecsFor(output);
  if (codecs) {
    output.audio.forEach((track, i) => {
      const codec = track.settings?.codec;
      if (codec && !codecs.audio.includes(codec)) {
        violations.push({
          field: `${path}.audio[${i}].settings.codec`,
          rule: "output.container_audio_codec",
          message: `${describeType(output)} outputs take ${codecs.audio.map((c) => `AUDIO_CODEC_${AudioCodec[c]}`).join(", ")}`,
        });
      }
    });
  }
  const defaults = output.audio.filter((track) => track.default).length;
  if (defaults > 1) {
    violations.push({ field: `${path}.audio`, rule: "output.single_default_audio", message: `marks ${defaults} tracks default; at most one can be` });
  }
  violations.push(...checkSubtitles(output, path));
  const segmented = isSegmented(output.type);
  if (output.drm && !segmented) {
    violations.push({ field: `${path}.drm`, rule: "output.drm_streaming_only", message: "DRM applies to streaming outputs (hls, dash, adaptive) only" });
  }
  if (output.hls && !formatOf(output.type)?.manifests?.hls) {
    violations.push({ field: `${path}.hls`, rule: "output.hls_config_type", message: "only applies to hls and adaptive outputs" });
  }
  if (output.hls?.segmentFormat === "ts" && output.type !== OutputType.HLS) {
    violations.push({ field: `${path}.hls.segment_format`, rule: "output.ts_hls_only", message: "ts segments are for hls outputs; adaptive outputs share fMP4 (CMAF) segments between HLS and DASH" });
  }
  if (output.dash && !formatOf(output.type)?.manifests?.dash) {
    violations.push({ field: `${path}.dash`, rule: "output.dash_config_type", message: "only applies to dash and adaptive outputs" });
  }
  if (output.segments && !segmented) {
    violations.push({ field: `${path}.segments`, rule: "output.segments_streaming_only", message: "only applies to streaming outputs" });
  }
  return violations;
}

/** The formats `convert` can deliver a subtitle track in, per output type ("" = the type's own). */
function convertFormats(type: OutputType): readonly string[] {
  if (type === OutputType.MP4 || type === OutputType.MOV) return [""]; // mov_text
  if (type === OutputType.MKV) return ["", "srt", "webvtt", "ass"];
  return ["", "webvtt"]; // webm, hls, dash, adaptive
}

function checkSubtitles(output: OutputSpec, path: string): FieldViolation[] {
  const violations: FieldViolation[] = [];
  output.subtitleTracks.forEach((track, i) => {
    const field = `${path}.subtitle_tracks[${i}]`;
    if (track.sourceStreamIndex === undefined && !track.sourceUrl) {
      violations.push({ field, rule: "subtitle.source_required", message: "needs source_stream_index or source_url" });
    }
    if (track.sourceUrl && !/^(https|s3|gs):\/\//.test(track.sourceUrl)) {
      violations.push({ field: `${field}.source_url`, rule: "subtitle.source_url_scheme", message: "must be an https://, s3:// or gs:// URL" });
    }
    if (track.operation === "convert" && !convertFormats(output.type).includes(track.format)) {
      const allowed = convertFormats(output.type).filter(Boolean);
      violations.push({
        field: `${field}.format`,
        rule: "subtitle.convert_format",
        message: allowed.length
          ? `${enumWord(OutputType, output.type)} outputs carry subtitles as ${allowed.join(", ")}`
          : `${enumWord(OutputType, output.type)} outputs carry subtitles as mov_text: leave format empty`,
      });
    }
    if (track.operation === "burn_in" && track.format) {
      violations.push({ field: `${field}.format`, rule: "subtitle.burn_in_format", message: "is not used when subtitles are burned into the video" });
    }
  });
  const burned = output.subtitleTracks.filter((t) => t.operation === "burn_in").length;
  if (burned > 1) violations.push({ field: `${path}.subtitle_tracks`, rule: "subtitle.single_burn_in", message: `burns ${burned} tracks into the video; at most one can be` });
  return violations;
}
