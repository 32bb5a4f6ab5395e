import { create } from "@bufbuild/protobuf";
import { Quality, Resolution, VideoCodec, AudioCodec } from "../../gen/rendition/v1/common_pb.js";
import { Container, DeliveryFormat, PresetSpecSchema, type PresetSpec } from "../../gen/rendition/v1/preset_pb.js";
import type { PresetRecord } from "./preset.types.js";

const EPOCH = new Date("2026-01-01T00:00:00Z");

function system(slug: string, name: string, description: string, spec: Parameters<typeof create<typeof PresetSpecSchema>>[1]): PresetRecord {
  return {
    // Fixed ids so a reference to a system preset is stable across installs.
    id: `pst_system_${slug}`,
    organizationId: null,
    slug,
    name,
    description,
    spec: create(PresetSpecSchema, spec) as PresetSpec,
    system: true,
    createdAt: EPOCH,
    updatedAt: EPOCH,
  };
}

const aac = { codec: AudioCodec.AAC, bitrateKbps: 128, sampleRate: 48000, channels: 2 };
const opus = { codec: AudioCodec.OPUS, bitrateKbps: 96, sampleRate: 48000, channels: 2 };

/** One file, one variant: MP4 (fast start) with AAC, or WebM with Opus. */
function progressive(slug: string, video: string, codec: VideoCodec, resolution: Resolution, quality: Quality): PresetRecord {
  const webm = codec === VideoCodec.VP9;
  const tier = Quality[quality]!.toLowerCase();
  const description = `${webm ? "WebM" : "MP4"}, ${video} at the ${tier} quality tier, ${webm ? "Opus" : "AAC"} stereo.`;
  return system(slug, `${video} ${tier}`, description, {
    container: webm ? Container.WEBM : Container.MP4,
    faststart: !webm,
    deliveryFormat: DeliveryFormat.PROGRESSIVE,
    video: [{ codec, resolution, quality }],
    audio: webm ? opus : aac,
    quality,
  });
}

/** Read-only presets present in every organization. */
export const SYSTEM_PRESETS: readonly PresetRecord[] = [
  progressive("h264_1080p_standard", "H.264 1080p", VideoCodec.H264, Resolution.RESOLUTION_1080P, Quality.STANDARD),
  progressive("h264_720p_economy", "H.264 720p", VideoCodec.H264, Resolution.RESOLUTION_720P, Quality.ECONOMY),
  progressive("h264_480p_economy", "H.264 480p", VideoCodec.H264, Resolution.RESOLUTION_480P, Quality.ECONOMY),
  progressive("h265_1080p_standard", "H.265 1080p", VideoCodec.H265, Resolution.RESOLUTION_1080P, Quality.STANDARD),
  progressive("vp9_1080p_standard", "VP9 1080p", VideoCodec.VP9, Resolution.RESOLUTION_1080P, Quality.STANDARD),
  progressive("av1_1080p_premium", "AV1 1080p", VideoCodec.AV1, Resolution.RESOLUTION_1080P, Quality.PREMIUM),
  progressive("av1_4k_premium", "AV1 4K", VideoCodec.AV1, Resolution.RESOLUTION_2160P, Quality.PREMIUM),
  system("hls_ladder_standard", "HLS ladder standard", "HLS (fMP4), H.264 1080p/720p/480p ladder at the standard tier, AAC stereo.", {
    container: Container.MP4,
    deliveryFormat: DeliveryFormat.HLS,
    video: [Resolution.RESOLUTION_1080P, Resolution.RESOLUTION_720P, Resolution.RESOLUTION_480P].map((resolution) => ({
      codec: VideoCodec.H264,
      resolution,
      quality: Quality.STANDARD,
    })),
    audio: aac,
    quality: Quality.STANDARD,
  }),
];

export function findSystemPreset(idOrSlug: string): PresetRecord | undefined {
  return SYSTEM_PRESETS.find((p) => p.id === idOrSlug || p.slug === idOrSlug);
}
