import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Resolution, VideoCodec, VideoVariantSchema } from "../../gen/rendition/v1/common_pb.js";
import { variantPricing } from "../../services/pricing/estimate.js";
import { formatMicros, formatMinor, jobCostMicros, microsToMinor, nearestTier, outputCostMicros } from "../../services/pricing/pricing.js";

describe("pricing table", () => {
  it("prices one minute of 1080p30 h264 at the base price and applies codec and resolution multipliers", () => {
    const minute = (codec: "h264" | "h265" | "vp9" | "av1", tier: "480p" | "1080p" | "2160p", fps = 30) =>
      outputCostMicros(60_000, { variants: [{ codec, tier, fps }] });
    expect(minute("h264", "1080p")).toBe(400_000);
    expect(minute("h265", "1080p")).toBe(600_000);
    expect(minute("vp9", "1080p")).toBeCloseTo(520_000);
    expect(minute("av1", "2160p")).toBe(2_500_000);
    expect(minute("h264", "480p")).toBe(200_000);
    expect(minute("h264", "1080p", 60)).toBe(800_000);
    expect(minute("h264", "1080p", 0)).toBe(400_000); // 0 = source rate, counted as 30 until probed
  });

  it("applies feature multipliers per output and priority and thumbnails per job", () => {
    const output = { variants: [{ codec: "h264" as const, tier: "1080p" as const, fps: 30 }], drm: true, contentAware: true };
    expect(outputCostMicros(60_000, output)).toBeCloseTo(400_000 * 1.25 * 1.15);
    const job = (priority: "economy" | "standard" | "premium", thumbnails = false) =>
      jobCostMicros({ durationMs: 125_000, outputs: [{ variants: [{ codec: "h264", tier: "1080p", fps: 30 }] }], priority, thumbnails }).total;
    expect(job("standard")).toBe(Math.round((125 / 60) * 400_000));
    expect(job("economy")).toBe(Math.round((125 / 60) * 400_000 * 0.75));
    expect(job("premium")).toBe(Math.round((125 / 60) * 400_000 * 2));
    expect(job("standard", true)).toBe(Math.round((125 / 60) * 400_000 * 1.1));
  });

  it("maps custom sizes to the nearest tier by pixel count", () => {
    expect(nearestTier(1920, 800)).toBe("1080p");
    expect(nearestTier(640, 360)).toBe("480p");
    expect(nearestTier(3000, 2000)).toBe("2160p");
    const v = (init: Parameters<typeof create<typeof VideoVariantSchema>>[1]) => variantPricing(create(VideoVariantSchema, init));
    expect(v({ codec: VideoCodec.VP9, resolution: Resolution.RESOLUTION_720P })).toEqual({ codec: "vp9", tier: "720p", fps: 30 });
    expect(v({ codec: VideoCodec.H264, width: 1280 })).toMatchObject({ tier: "720p" });
    expect(v({ codec: VideoCodec.H264, framerate: 24 }, )).toMatchObject({ tier: "1080p", fps: 24 });
  });

  it("formats money as decimal strings, never floats", () => {
    expect(microsToMinor(833_333)).toBe(83);
    expect(microsToMinor(835_000)).toBe(84);
    expect(formatMinor(85)).toBe("0.85");
    expect(formatMinor("12345")).toBe("123.45");
    expect(formatMinor(5n)).toBe("0.05");
    expect(formatMinor(0)).toBe("0.00");
    expect(formatMicros(400_000)).toBe("0.40");
    expect(formatMicros(520_000)).toBe("0.52");
    expect(formatMicros(12_345)).toBe("0.0123");
  });
});
