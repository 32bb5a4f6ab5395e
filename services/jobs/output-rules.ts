import { OutputType, VideoCodec, type VideoVariant } from "../../gen/rendition/v1/common_pb.js";
import type { OutputSpec } from "../../gen/rendition/v1/job_pb.js";
import type { FieldViolation } from "../common/errors.js";

export const PROGRESSIVE_TYPES = new Set([OutputType.MP4, OutputType.WEBM, OutputType.MKV, OutputType.MOV]);

/**
 * Rules across fields of one output that protovalidate cannot express: a progressive file holds
 * exactly one video variant, and WebM only carries VP9 and AV1.
 */
export function checkOutputShape(type: OutputType, video: VideoVariant[], path: string): FieldViolation[] {
  const violations: FieldViolation[] = [];
  if (type === OutputType.UNSPECIFIED) {
    violations.push({ field: `${path}.type`, rule: "output.type_required", message: "is required unless the output references a preset" });
    return violations;
  }
  if (video.length === 0) {
    violations.push({ field: `${path}.video`, rule: "output.video_required", message: "needs at least one video variant unless the output references a preset" });
  } else if (PROGRESSIVE_TYPES.has(type) && video.length > 1) {
    violations.push({
      field: `${path}.video`,
      rule: "output.progressive_single_variant",
      message: `a ${OutputType[type]!.toLowerCase()} output holds one video variant; add one output per variant or use hls/dash/adaptive for a ladder`,
    });
  }
  if (type === OutputType.WEBM) {
    video.forEach((v, i) => {
      if (v.codec !== VideoCodec.VP9 && v.codec !== VideoCodec.AV1) {
        violations.push({ field: `${path}.video[${i}].codec`, rule: "output.webm_codec", message: "webm outputs take VIDEO_CODEC_VP9 or VIDEO_CODEC_AV1" });
      }
    });
  }
  return violations;
}

const STREAMING_TYPES = new Set([OutputType.HLS, OutputType.DASH, OutputType.ADAPTIVE]);

/** Every cross-field rule of one output, inline or with its preset applied. */
export function checkOutput(output: OutputSpec, path: string): FieldViolation[] {
  const violations = checkOutputShape(output.type, output.video, path);
  if (output.drm && !STREAMING_TYPES.has(output.type)) {
    violations.push({ field: `${path}.drm`, rule: "output.drm_streaming_only", message: "DRM applies to streaming outputs (hls, dash, adaptive) only" });
  }
  if (output.hls && output.type !== OutputType.HLS && output.type !== OutputType.ADAPTIVE) {
    violations.push({ field: `${path}.hls`, rule: "output.hls_config_type", message: "only applies to hls and adaptive outputs" });
  }
  if (output.dash && output.type !== OutputType.DASH && output.type !== OutputType.ADAPTIVE) {
    violations.push({ field: `${path}.dash`, rule: "output.dash_config_type", message: "only applies to dash and adaptive outputs" });
  }
  if (output.segments && !STREAMING_TYPES.has(output.type)) {
    violations.push({ field: `${path}.segments`, rule: "output.segments_streaming_only", message: "only applies to streaming outputs" });
  }
  return violations;
}
