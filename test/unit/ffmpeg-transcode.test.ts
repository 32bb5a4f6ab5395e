import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { AudioCodec, OutputType, Quality, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { OutputSpecSchema } from "../../gen/rendition/v1/job_pb.js";
import { ContentType } from "../../gen/rendition/v1/preset_pb.js";
import { variantSize } from "../../workers/ffmpeg/geometry.js";
import { buildTranscodeCommand, flattenCommand, UnsupportedOutputError } from "../../workers/ffmpeg/transcode.js";
import type { MediaInfo, TranscodeTarget } from "../../workers/ffmpeg/types.js";
import { INPUT_FORMATS } from "../../workers/ffmpeg/command.js";

const UHD: MediaInfo = {
  durationMs: 10_000,
  width: 3840,
  height: 2160,
  videoCodec: "h264",
  bitrateKbps: 20_000,
  framerate: 29.97,
  fileSizeBytes: 25_000_000,
  container: "mov,mp4,m4a,3gp,3g2,mj2",
  audioStreams: [{ index: 0, codec: "aac", channels: 2, sampleRate: 48000, bitrateKbps: 128, language: "eng" }],
};

const GLOBAL = ["-hide_banner", "-nostdin", "-loglevel", "error", "-progress", "pipe:1", "-nostats"];

function target(spec: MessageInitShape<typeof OutputSpecSchema>, file = "/out/a.mp4"): TranscodeTarget {
  return { spec: create(OutputSpecSchema, spec), file };
}

function build(spec: MessageInitShape<typeof OutputSpecSchema>, info: MediaInfo = UHD, file?: string) {
  return buildTranscodeCommand({ file: "/in/source.mp4", info }, [target(spec, file)]);
}

/** The options of the only output. */
function outputOf(spec: MessageInitShape<typeof OutputSpecSchema>, info: MediaInfo = UHD): string[] {
  return build(spec, info).outputs[0]!.options;
}

function valueAfter(options: string[], flag: string): string | undefined {
  const i = options.indexOf(flag);
  return i < 0 ? undefined : options[i + 1];
}

describe("buildTranscodeCommand", () => {
  it("encodes h264 standard 1080p from a 4K source as one exact argv", () => {
    const cmd = build({ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_1080P, quality: Quality.STANDARD }] });
    expect(flattenCommand(cmd)).toEqual([
      ...GLOBAL,
      "-filter_complex",
      "[0:v:0]scale=1920:1080[v0]",
      "-protocol_whitelist",
      "file",
      "-format_whitelist",
      INPUT_FORMATS,
      "-i",
      "/in/source.mp4",
      "-y",
      "-map",
      "[v0]",
      "-map",
      "0:a:0?",
      "-c:v",
      "libx264",
      "-preset",
      "medium",
      "-crf",
      "23",
      "-pix_fmt",
      "yuv420p",
      "-c:a:0",
      "aac",
      "-b:a:0",
      "128k",
      "-map_metadata",
      "-1",
      "-movflags",
      "+faststart",
      "-max_muxing_queue_size",
      "4096",
      "-f",
      "mp4",
      "/out/a.mp4",
    ]);
    expect(cmd.global).toContain("-y");
  });

  it("treats an unset quality as standard", () => {
    const options = outputOf({ type: OutputType.MP4, video: [{ codec: VideoCodec.H264 }] });
    expect(valueAfter(options, "-preset")).toBe("medium");
    expect(valueAfter(options, "-crf")).toBe("23");
  });

  it.each([
    [VideoCodec.H264, Quality.ECONOMY, ["-preset", "veryfast", "-crf", "26"]],
    [VideoCodec.H264, Quality.PREMIUM, ["-preset", "slow", "-crf", "20"]],
    [VideoCodec.H265, Quality.ECONOMY, ["-preset", "veryfast", "-crf", "32"]],
    [VideoCodec.H265, Quality.STANDARD, ["-preset", "medium", "-crf", "26"]],
    [VideoCodec.H265, Quality.PREMIUM, ["-preset", "slow", "-crf", "22"]],
    [VideoCodec.VP9, Quality.ECONOMY, ["-cpu-used", "8", "-crf", "50", "-b:v", "0"]],
    [VideoCodec.VP9, Quality.STANDARD, ["-cpu-used", "6", "-crf", "40", "-b:v", "0"]],
    [VideoCodec.VP9, Quality.PREMIUM, ["-cpu-used", "4", "-crf", "31", "-b:v", "0"]],
    [VideoCodec.AV1, Quality.ECONOMY, ["-preset", "10", "-crf", "45"]],
    [VideoCodec.AV1, Quality.STANDARD, ["-preset", "6", "-crf", "35"]],
    [VideoCodec.AV1, Quality.PREMIUM, ["-preset", "4", "-crf", "28"]],
  ])("applies the quality tier table (codec %i, quality %i)", (codec, quality, expected) => {
    const options = outputOf({ type: OutputType.MKV, video: [{ codec, quality }] });
    const start = options.indexOf(expected[0]!);
    expect(options.slice(start, start + expected.length)).toEqual(expected);
  });

  it("encodes webm as VP9 + Opus with row-mt and constant quality", () => {
    const cmd = build({ type: OutputType.WEBM, video: [{ codec: VideoCodec.VP9, resolution: Resolution.RESOLUTION_720P, quality: Quality.ECONOMY }] }, UHD, "/out/b.webm");
    expect(cmd.outputs[0]).toEqual({
      options: [
        "-map",
        "[v0]",
        "-map",
        "0:a:0?",
        "-c:v",
        "libvpx-vp9",
        "-cpu-used",
        "8",
        "-crf",
        "50",
        "-b:v",
        "0",
        "-row-mt",
        "1",
        "-pix_fmt",
        "yuv420p",
        "-c:a:0",
        "libopus",
        "-b:a:0",
        "128k",
        "-ar:a:0",
        "48000",
        "-map_metadata",
        "-1",
        "-max_muxing_queue_size",
        "4096",
        "-f",
        "webm",
      ],
      file: "/out/b.webm",
    });
    expect(cmd.global).toContain("[0:v:0]scale=1280:720[v0]");
  });

  it("lets an explicit bitrate override the CRF (also an explicit codec crf) with a constrained VBR", () => {
    const h264 = outputOf({ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, bitrate: 3000, h264: { crf: 18 } }] });
    expect(h264).not.toContain("-crf");
    const start = h264.indexOf("-b:v");
    expect(h264.slice(start, start + 6)).toEqual(["-b:v", "3000k", "-maxrate", "4500k", "-bufsize", "6000k"]);

    const vp9 = outputOf({ type: OutputType.WEBM, video: [{ codec: VideoCodec.VP9, bitrate: 1000 }] });
    expect(vp9).not.toContain("-crf");
    expect(valueAfter(vp9, "-b:v")).toBe("1000k");
    const av1 = outputOf({ type: OutputType.MP4, video: [{ codec: VideoCodec.AV1, bitrate: 800 }] });
    expect(av1).not.toContain("-crf");
    expect(valueAfter(av1, "-maxrate")).toBe("1200k"); // SVT-AV1 refuses maxrate == bitrate
  });

  it("lets codec options override the tier defaults", () => {
    const h264 = outputOf({
      type: OutputType.MP4,
      video: [{ codec: VideoCodec.H264, quality: Quality.ECONOMY, h264: { profile: "high", level: "4.1", encoderPreset: "ultrafast", crf: 30, gopSize: 48, bFrames: 2, tune: "film" } }],
    });
    const start = h264.indexOf("-c:v");
    expect(h264.slice(start, h264.indexOf("-pix_fmt"))).toEqual([
      "-c:v", "libx264", "-preset", "ultrafast", "-crf", "30", "-profile:v", "high", "-level:v", "4.1", "-tune", "film", "-g", "48", "-bf", "2",
    ]);

    const h265 = outputOf({ type: OutputType.MP4, video: [{ codec: VideoCodec.H265, h265: { profile: "main10", encoderPreset: "fast", crf: 24, gopSize: 60 } }] });
    expect(h265.slice(h265.indexOf("-c:v"), h265.indexOf("-c:a:0"))).toEqual([
      "-c:v", "libx265", "-preset", "fast", "-crf", "24", "-profile:v", "main10", "-g", "60", "-x265-params", "log-level=error", "-tag:v", "hvc1", "-pix_fmt", "yuv420p10le",
    ]);

    const vp9 = outputOf({ type: OutputType.WEBM, video: [{ codec: VideoCodec.VP9, vp9: { speed: 2, crf: 33, gopSize: 120 } }] });
    expect(vp9.slice(vp9.indexOf("-c:v"), vp9.indexOf("-pix_fmt"))).toEqual(["-c:v", "libvpx-vp9", "-cpu-used", "2", "-crf", "33", "-b:v", "0", "-row-mt", "1", "-g", "120"]);

    // av1.encoder_preset is `optional`: 0 (slowest) is a real choice, not "unset".
    const av1 = outputOf({ type: OutputType.MKV, video: [{ codec: VideoCodec.AV1, quality: Quality.ECONOMY, av1: { encoderPreset: 0, crf: 20, gopSize: 240 } }] });
    expect(av1.slice(av1.indexOf("-c:v"), av1.indexOf("-pix_fmt"))).toEqual(["-c:v", "libsvtav1", "-preset", "0", "-crf", "20", "-g", "240"]);
  });

  it("maps the content-type hint onto -tune unless the variant sets one", () => {
    const film = outputOf({ type: OutputType.MP4, contentType: ContentType.ANIMATION, video: [{ codec: VideoCodec.H264 }] });
    expect(valueAfter(film, "-tune")).toBe("animation");
    const explicit = outputOf({ type: OutputType.MP4, contentType: ContentType.ANIMATION, video: [{ codec: VideoCodec.H264, h264: { tune: "grain" } }] });
    expect(valueAfter(explicit, "-tune")).toBe("grain");
    const gaming = outputOf({ type: OutputType.MP4, contentType: ContentType.GAMING, video: [{ codec: VideoCodec.H264 }] });
    expect(gaming).not.toContain("-tune");
  });

  it("tags HEVC hvc1 in mp4/mov only", () => {
    expect(outputOf({ type: OutputType.MOV, video: [{ codec: VideoCodec.H265 }] })).toContain("hvc1");
    expect(outputOf({ type: OutputType.MKV, video: [{ codec: VideoCodec.H265 }] })).not.toContain("-tag:v");
  });

  it("turns faststart off only when the spec says false (and never for mkv/webm)", () => {
    expect(outputOf({ type: OutputType.MP4, faststart: false, video: [{ codec: VideoCodec.H264 }] })).not.toContain("-movflags");
    expect(outputOf({ type: OutputType.MOV, faststart: true, video: [{ codec: VideoCodec.H264 }] })).toContain("+faststart");
    expect(outputOf({ type: OutputType.MKV, video: [{ codec: VideoCodec.H264 }] })).not.toContain("-movflags");
  });

  it("rounds a custom odd width down to even and derives an even height from the aspect", () => {
    const cmd = build({ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, width: 1281 }] });
    expect(cmd.global).toContain("[0:v:0]scale=1280:720[v0]");
    const height = build({ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 301 }] });
    expect(height.global).toContain("[0:v:0]scale=534:300[v0]");
  });

  it("adds fps before scale, and keeps the source rate for framerate 0", () => {
    expect(build({ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, framerate: 24, resolution: Resolution.RESOLUTION_480P }] }).global).toContain(
      "[0:v:0]fps=24,scale=854:480[v0]",
    );
    expect(build({ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, framerate: 0 }] }).global).toContain("[0:v:0]scale=3840:2160[v0]");
  });

  it("encodes two targets from one decode: one input, split=2, one labelled pad per output", () => {
    const cmd = buildTranscodeCommand({ file: "/in/source.mp4", info: UHD }, [
      target({ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_1080P }] }, "/out/a.mp4"),
      target({ type: OutputType.WEBM, video: [{ codec: VideoCodec.VP9, resolution: Resolution.RESOLUTION_480P, framerate: 15 }] }, "/out/b.webm"),
    ], { threads: 2 });
    expect(cmd.inputs).toEqual([{ options: ["-threads", "2", "-protocol_whitelist", "file", "-format_whitelist", INPUT_FORMATS], file: "/in/source.mp4" }]);
    expect(valueAfter(cmd.global, "-filter_complex")).toBe("[0:v:0]split=2[s0][s1];[s0]scale=1920:1080[v0];[s1]fps=15,scale=854:480[v1]");
    expect(valueAfter(cmd.global, "-filter_complex_threads")).toBe("2");
    expect(cmd.outputs.map((o) => o.file)).toEqual(["/out/a.mp4", "/out/b.webm"]);
    expect(cmd.outputs.map((o) => o.options.slice(0, 4))).toEqual([
      ["-map", "[v0]", "-map", "0:a:0?"],
      ["-map", "[v1]", "-map", "0:a:0?"],
    ]);
    expect(cmd.outputs.every((o) => valueAfter(o.options, "-threads") === "2")).toBe(true);
  });

  it("honours the audio track: source stream, codec, bitrate, rate, channels, loudness, language", () => {
    const info = { ...UHD, audioStreams: [UHD.audioStreams[0]!, { ...UHD.audioStreams[0]!, index: 1, language: "fra" }] };
    const options = outputOf(
      {
        type: OutputType.MKV,
        video: [{ codec: VideoCodec.H264 }],
        audio: [{ sourceStreamIndex: 1, language: "fra", label: "Français", default: true, settings: { codec: AudioCodec.EAC3, bitrateKbps: 384, channels: 6, normalize: true } }],
      },
      info,
    );
    expect(options.slice(2, 4)).toEqual(["-map", "0:a:1?"]);
    expect(options.slice(options.indexOf("-c:a:0"), options.indexOf("-map_metadata"))).toEqual([
      "-c:a:0", "eac3", "-b:a:0", "384k", "-ar:a:0", "48000", "-ac:a:0", "6", "-filter:a:0", "loudnorm=I=-23:TP=-1:LRA=7",
      "-metadata:s:a:0", "language=fra", "-metadata:s:a:0", "title=Français", "-disposition:a:0", "default",
    ]);
  });

  it("moves Opus and AC-3 to a sample rate they can encode", () => {
    expect(valueAfter(outputOf({ type: OutputType.WEBM, video: [{ codec: VideoCodec.VP9 }], audio: [{ settings: { sampleRate: 44100 } }] }), "-ar:a:0")).toBe("48000");
    expect(valueAfter(outputOf({ type: OutputType.MP4, video: [{ codec: VideoCodec.H264 }], audio: [{ settings: { codec: AudioCodec.AC3, sampleRate: 22050 } }] }), "-ar:a:0")).toBe("48000");
    expect(valueAfter(outputOf({ type: OutputType.MP4, video: [{ codec: VideoCodec.H264 }], audio: [{ settings: { sampleRate: 44100 } }] }), "-ar:a:0")).toBe("44100");
  });

  it("throws UnsupportedOutputError for unspecified types, container/codec mismatches and settings not encoded yet", () => {
    const attempt = () => build({ type: OutputType.UNSPECIFIED, video: [{ codec: VideoCodec.H264 }] });
    expect(attempt).toThrow(UnsupportedOutputError);
    try {
      attempt();
    } catch (err) {
      expect((err as UnsupportedOutputError).code).toBe("OUTPUT_TYPE_UNSUPPORTED");
      expect((err as UnsupportedOutputError).target).toMatchObject({ file: "/out/a.mp4" });
    }
    expect(() => build({ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, hdr: { mode: "hdr10" } }] })).toThrow(
      expect.objectContaining({ code: "FEATURE_UNSUPPORTED", message: expect.stringContaining("video[0].hdr.mode") }),
    );
    expect(() => build({ type: OutputType.MKV, video: [{ codec: VideoCodec.H264 }], subtitleTracks: [{ operation: "convert", sourceStreamIndex: 0 }] })).toThrow(
      expect.objectContaining({ code: "OUTPUT_SPEC_INVALID", message: expect.stringContaining("subtitle_tracks[0].source_stream_index 0 does not exist") }),
    );
    const withPgs = { ...UHD, subtitleStreams: [{ index: 0, codec: "hdmv_pgs_subtitle", language: "eng" }] };
    expect(() => build({ type: OutputType.MKV, video: [{ codec: VideoCodec.H264 }], subtitleTracks: [{ operation: "convert", sourceStreamIndex: 0 }] }, withPgs)).toThrow(
      expect.objectContaining({ code: "FEATURE_UNSUPPORTED", message: expect.stringContaining("bitmap") }),
    );
    expect(() => build({ type: OutputType.WEBM, video: [{ codec: VideoCodec.H264 }] })).toThrow(expect.objectContaining({ code: "CODEC_UNSUPPORTED" }));
    expect(() => build({ type: OutputType.MOV, video: [{ codec: VideoCodec.AV1 }] })).toThrow(/mov cannot carry av1/);
    expect(() => build({ type: OutputType.WEBM, video: [{ codec: VideoCodec.VP9 }], audio: [{ settings: { codec: AudioCodec.AAC } }] })).toThrow(/webm cannot carry aac audio/);
    expect(() => build({ type: OutputType.MP4, video: [] })).toThrow(expect.objectContaining({ code: "OUTPUT_SPEC_INVALID" }));
    expect(() => build({ type: OutputType.MP4, video: [{ codec: VideoCodec.H264 }], audio: [{ sourceStreamIndex: 2 }] })).toThrow(/source_stream_index 2 does not exist/);
  });

  it("keeps an input without audio working (the optional map), whatever the requested stream", () => {
    const silent = { ...UHD, audioStreams: [] };
    expect(outputOf({ type: OutputType.MP4, video: [{ codec: VideoCodec.H264 }], audio: [{ sourceStreamIndex: 3 }] }, silent).slice(2, 4)).toEqual(["-map", "0:a:3?"]);
  });

  it("makes relative paths absolute so they can never read as options or protocols", () => {
    const cmd = buildTranscodeCommand({ file: "-in.mp4", info: UHD }, [target({ type: OutputType.MP4, video: [{ codec: VideoCodec.H264 }] }, "http:out.mp4")]);
    expect(cmd.inputs[0]!.file).toBe(`${process.cwd()}/-in.mp4`);
    expect(cmd.outputs[0]!.file).toBe(`${process.cwd()}/http:out.mp4`);
  });
});

describe("variantSize", () => {
  const landscape = { width: 3840, height: 2160 };
  const portrait = { width: 1080, height: 1920 };

  it("gives a tier's short side and derives the other from the aspect (upscaling allowed)", () => {
    expect(variantSize(landscape, 720, 0, 0)).toEqual({ width: 1280, height: 720 });
    expect(variantSize(portrait, 720, 0, 0)).toEqual({ width: 720, height: 1280 });
    expect(variantSize({ width: 640, height: 360 }, 1080, 0, 0)).toEqual({ width: 1920, height: 1080 });
    expect(variantSize({ width: 1440, height: 1080 }, 480, 0, 0)).toEqual({ width: 640, height: 480 });
  });

  it("fits a custom box keeping the aspect, every side even and within the box", () => {
    expect(variantSize(landscape, undefined, 1000, 1000)).toEqual({ width: 1000, height: 562 });
    expect(variantSize(portrait, undefined, 1001, 1001)).toEqual({ width: 564, height: 1000 });
    expect(variantSize(landscape, undefined, 129, 4000)).toEqual({ width: 128, height: 72 });
  });

  it("keeps an odd source even without growing it", () => {
    expect(variantSize({ width: 321, height: 241 }, undefined, 0, 0)).toEqual({ width: 320, height: 240 });
  });
});
