import { Resolution, VideoCodec, type VideoVariant } from "../../gen/rendition/v1/common_pb.js";
import { nearestTier, type CodecName, type ResolutionTier, type VariantPricing } from "./pricing.js";

const CODEC: Record<VideoCodec, CodecName | undefined> = {
  [VideoCodec.UNSPECIFIED]: undefined,
  [VideoCodec.H264]: "h264",
  [VideoCodec.H265]: "h265",
  [VideoCodec.VP9]: "vp9",
  [VideoCodec.AV1]: "av1",
};

const TIER: Record<Resolution, ResolutionTier | undefined> = {
  [Resolution.RESOLUTION_UNSPECIFIED]: undefined,
  [Resolution.RESOLUTION_480P]: "480p",
  [Resolution.RESOLUTION_720P]: "720p",
  [Resolution.RESOLUTION_1080P]: "1080p",
  [Resolution.RESOLUTION_1440P]: "1440p",
  [Resolution.RESOLUTION_2160P]: "2160p",
  [Resolution.RESOLUTION_4320P]: "4320p",
};

export interface SourceVideo {
  width: number;
  height: number;
  fps: number;
}

/** 1080p30 stands in for the source until a probe tells the truth (preset rates, previews). */
export const ASSUMED_SOURCE: SourceVideo = { width: 1920, height: 1080, fps: 30 };

/**
 * What a variant costs is decided by what it produces: its tier (or the nearest tier to its
 * custom size, or the source's size) and its frame rate (or the source's).
 */
export function variantPricing(v: VideoVariant, source: SourceVideo = ASSUMED_SOURCE): VariantPricing {
  const codec = CODEC[v.codec] ?? "h264";
  let tier = TIER[v.resolution];
  if (!tier) {
    if (v.width && v.height) tier = nearestTier(v.width, v.height);
    else if (v.width) tier = nearestTier(v.width, Math.round((v.width * source.height) / source.width));
    else if (v.height) tier = nearestTier(Math.round((v.height * source.width) / source.height), v.height);
    else tier = nearestTier(source.width, source.height);
  }
  return { codec, tier, fps: v.framerate || source.fps };
}
