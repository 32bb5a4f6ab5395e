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

/** Read-only presets present in every organization. */
export const SYSTEM_PRESETS: readonly PresetRecord[] = [
  system("h264_1080p_standard", "H.264 1080p standard", "MP4, H.264 1080p at the standard quality tier, AAC stereo.", {
    container: Container.MP4,
    faststart: true,
    deliveryFormat: DeliveryFormat.PROGRESSIVE,
    video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_1080P, quality: Quality.STANDARD }],
    audio: aac,
    quality: Quality.STANDARD,
  }),
  system("h264_720p_economy", "H.264 720p economy", "MP4, H.264 720p at the economy tier, AAC stereo.", {
    container: Container.MP4,
    faststart: true,
    deliveryFormat: DeliveryFormat.PROGRESSIVE,
    video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_720P, quality: Quality.ECONOMY }],
    audio: aac,
    quality: Quality.ECONOMY,
  }),
  system("h264_480p_economy", "H.264 480p economy", "MP4, H.264 480p at the economy tier, AAC stereo.", {
    container: Container.MP4,
    faststart: true,
    deliveryFormat: DeliveryFormat.PROGRESSIVE,
    video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_480P, quality: Quality.ECONOMY }],
    audio: aac,
    quality: Quality.ECONOMY,
  }),
  system("h265_1080p_standard", "H.265 1080p standard", "MP4, H.265 1080p at the standard tier, AAC stereo.", {
    container: Container.MP4,
    faststart: true,
    deliveryFormat: DeliveryFormat.PROGRESSIVE,
    video: [{ codec: VideoCodec.H265, resolution: Resolution.RESOLUTION_1080P, quality: Quality.STANDARD }],
    audio: aac,
    quality: Quality.STANDARD,
  }),
  system("vp9_1080p_standard", "VP9 1080p standard", "WebM, VP9 1080p at the standard tier, Opus stereo.", {
    container: Container.WEBM,
    deliveryFormat: DeliveryFormat.PROGRESSIVE,
    video: [{ codec: VideoCodec.VP9, resolution: Resolution.RESOLUTION_1080P, quality: Quality.STANDARD }],
    audio: opus,
    quality: Quality.STANDARD,
  }),
  system("av1_1080p_premium", "AV1 1080p premium", "MP4, AV1 1080p at the premium tier, AAC stereo.", {
    container: Container.MP4,
    faststart: true,
    deliveryFormat: DeliveryFormat.PROGRESSIVE,
    video: [{ codec: VideoCodec.AV1, resolution: Resolution.RESOLUTION_1080P, quality: Quality.PREMIUM }],
    audio: aac,
    quality: Quality.PREMIUM,
  }),
  system("av1_4k_premium", "AV1 4K premium", "MP4, AV1 2160p at the premium tier, AAC stereo.", {
    container: Container.MP4,
    faststart: true,
    deliveryFormat: DeliveryFormat.PROGRESSIVE,
    video: [{ codec: VideoCodec.AV1, resolution: Resolution.RESOLUTION_2160P, quality: Quality.PREMIUM }],
    audio: aac,
    quality: Quality.PREMIUM,
  }),
  system("hls_ladder_standard", "HLS ladder standard", "HLS (fMP4), H.264 1080p/720p/480p ladder at the standard tier, AAC stereo.", {
    container: Container.MP4,
    deliveryFormat: DeliveryFormat.HLS,
    video: [
      { codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_1080P, quality: Quality.STANDARD },
      { codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_720P, quality: Quality.STANDARD },
      { codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_480P, quality: Quality.STANDARD },
    ],
    audio: aac,
    quality: Quality.STANDARD,
  }),
];

export function findSystemPreset(idOrSlug: string): PresetRecord | undefined {
  return SYSTEM_PRESETS.find((p) => p.id === idOrSlug || p.slug === idOrSlug);
}
