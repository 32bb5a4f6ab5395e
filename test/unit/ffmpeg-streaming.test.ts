import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { AudioCodec, OutputType, Quality, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { OutputSpecSchema } from "../../gen/rendition/v1/job_pb.js";
import { buildTranscodeCommand, streamRenditions, UnsupportedOutputError } from "../../workers/ffmpeg/transcode.js";
import type { MediaInfo, StreamTarget } from "../../workers/ffmpeg/types.js";

const SOURCE: MediaInfo = {
  durationMs: 20_000,
  width: 1920,
  height: 1080,
  videoCodec: "h264",
  bitrateKbps: 8000,
  framerate: 30,
  fileSizeBytes: 20_000_000,
  container: "mov,mp4,m4a,3gp,3g2,mj2",
  audioStreams: [
    { index: 0, codec: "aac", channels: 2, sampleRate: 48000, bitrateKbps: 128, language: "eng" },
    { index: 1, codec: "aac", channels: 2, sampleRate: 48000, bitrateKbps: 128, language: "fra" },
  ],
};

const ladder = [Resolution.RESOLUTION_1080P, Resolution.RESOLUTION_720P, Resolution.RESOLUTION_480P].map((resolution) => ({ codec: VideoCodec.H264, resolution, quality: Quality.STANDARD }));

function stream(spec: MessageInitShape<typeof OutputSpecSchema>, dir = "/tmp/job/out_1"): StreamTarget {
  return { spec: create(OutputSpecSchema, spec), dir };
}

const valueAfter = (options: string[], flag: string) => options[options.indexOf(flag) + 1];

describe("segmented outputs in the one ffmpeg command", () => {
  it("splits one decode into every rung and writes each rendition with the hls muxer", () => {
    const target = stream({ type: OutputType.HLS, video: ladder, audio: [{ language: "eng", default: true }, { language: "fra", sourceStreamIndex: 1, label: "Français" }] });
    const cmd = buildTranscodeCommand({ file: "/in/source.mp4", info: SOURCE }, [target]);
    expect(valueAfter(cmd.global, "-filter_complex")).toBe("[0:v:0]split=3[s0][s1][s2];[s0]scale=1920:1080[v0];[s1]scale=1280:720[v1];[s2]scale=854:480[v2]");
    expect(valueAfter(cmd.global, "-vsync")).toBe("passthrough");
    expect(cmd.inputs).toHaveLength(1);
    expect(cmd.outputs.map((o) => o.file)).toEqual(["v0", "v1", "v2", "a0", "a1"].map((id) => `/tmp/job/out_1/${id}/index.m3u8`));
    const [v0, , , a0, a1] = cmd.outputs.map((o) => o.options);
    expect(v0!.slice(0, 2)).toEqual(["-map", "[v0]"]);
    // Keyframes on every 6 s boundary (the default segment), IDR, no scene cuts; 6 s GOP at 30 fps.
    expect(valueAfter(v0!, "-force_key_frames")).toBe("expr:gte(t,n_forced*6)");
    expect(valueAfter(v0!, "-g")).toBe("180");
    expect(valueAfter(v0!, "-sc_threshold")).toBe("0");
    expect(valueAfter(v0!, "-forced-idr")).toBe("1");
    expect(v0!.slice(v0!.indexOf("-f"))).toEqual([
      "-f", "hls", "-hls_time", "6", "-hls_playlist_type", "vod", "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
      "-hls_flags", "independent_segments", "-start_number", "1", "-hls_segment_filename", "/tmp/job/out_1/v0/seg_%05d.m4s",
    ]);
    expect(a0!.slice(0, 2)).toEqual(["-map", "0:a:0"]);
    expect(a1!.slice(0, 2)).toEqual(["-map", "0:a:1"]);
    expect(a1).toEqual(expect.arrayContaining(["-metadata:s:a:0", "language=fra", "title=Français"]));
    expect(v0).not.toContain("-c:a:0");
  });

  it("honours segments.duration_seconds, ts segments, and the variant's own frame rate", () => {
    const target = stream({ type: OutputType.HLS, hls: { segmentFormat: "ts" }, segments: { durationSeconds: 4 }, video: [{ codec: VideoCodec.H264, height: 360, framerate: 25 }] });
    const [video, audio] = buildTranscodeCommand({ file: "/in/source.mp4", info: SOURCE }, [target]).outputs.map((o) => o.options);
    expect(valueAfter(video!, "-force_key_frames")).toBe("expr:gte(t,n_forced*4)");
    expect(valueAfter(video!, "-g")).toBe("100");
    expect(valueAfter(video!, "-hls_segment_type")).toBe("mpegts");
    expect(video).not.toContain("-hls_fmp4_init_filename");
    expect(valueAfter(video!, "-hls_segment_filename")).toBe("/tmp/job/out_1/v0/seg_%05d.ts");
    expect(valueAfter(audio!, "-c:a:0")).toBe("aac");
  });

  it("aligns x265 (no scene cuts, closed GOPs, hvc1), VP9 and AV1 (GOP = one segment) too", () => {
    const target = stream({ type: OutputType.DASH, video: [{ codec: VideoCodec.H265 }, { codec: VideoCodec.VP9 }, { codec: VideoCodec.AV1 }] });
    const [hevc, vp9, av1] = buildTranscodeCommand({ file: "/in/source.mp4", info: SOURCE }, [target]).outputs.map((o) => o.options);
    expect(valueAfter(hevc!, "-x265-params")).toBe("log-level=error:scenecut=0:open-gop=0");
    expect(valueAfter(hevc!, "-tag:v")).toBe("hvc1");
    expect(valueAfter(hevc!, "-forced-idr")).toBe("1");
    for (const options of [vp9!, av1!]) {
      expect(valueAfter(options, "-g")).toBe("180");
      expect(valueAfter(options, "-force_key_frames")).toBe("expr:gte(t,n_forced*6)");
    }
  });

  it("mixes progressive files and ladders in one command, labelling pads in order", () => {
    const cmd = buildTranscodeCommand({ file: "/in/source.mp4", info: SOURCE }, [
      { spec: create(OutputSpecSchema, { type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_720P }] }), file: "/tmp/job/a.mp4" },
      stream({ type: OutputType.ADAPTIVE, video: ladder.slice(1) }),
    ]);
    expect(valueAfter(cmd.global, "-filter_complex")).toBe("[0:v:0]split=3[s0][s1][s2];[s0]scale=1280:720[v0];[s1]scale=1280:720[v1];[s2]scale=854:480[v2]");
    expect(cmd.outputs.map((o) => o.options[1])).toEqual(["[v0]", "[v1]", "[v2]", "0:a:0"]);
  });

  it("lists renditions: a default audio track from the first stream, none for a silent input", () => {
    const target = stream({ type: OutputType.HLS, video: ladder.slice(0, 2) });
    expect(streamRenditions(target, SOURCE).map((r) => [r.id, r.kind, r.dir, r.track?.default])).toEqual([
      ["v0", "video", "/tmp/job/out_1/v0", undefined],
      ["v1", "video", "/tmp/job/out_1/v1", undefined],
      ["a0", "audio", "/tmp/job/out_1/a0", true],
    ]);
    expect(streamRenditions(target, { ...SOURCE, audioStreams: [] }).map((r) => r.id)).toEqual(["v0", "v1"]);
  });

  it("refuses what the segments cannot carry, and encoders this ffmpeg lacks", () => {
    const build = (spec: MessageInitShape<typeof OutputSpecSchema>, encoders?: Set<string>) => () =>
      buildTranscodeCommand({ file: "/in/a.mp4", info: SOURCE }, [stream(spec)], { capabilities: encoders && { encoders, muxers: new Set(), filters: new Set() } });
    expect(build({ type: OutputType.HLS, hls: { segmentFormat: "ts" }, video: [{ codec: VideoCodec.VP9 }] })).toThrow(/hls cannot carry vp9 video/);
    expect(build({ type: OutputType.HLS, hls: { segmentFormat: "ts" }, video: [{ codec: VideoCodec.H264 }], audio: [{ settings: { codec: AudioCodec.OPUS } }] })).toThrow(/cannot carry opus audio/);
    expect(build({ type: OutputType.HLS, video: [{ codec: VideoCodec.H264 }], audio: [{ sourceStreamIndex: 5 }] })).toThrow(/source_stream_index 5 does not exist/);
    const aomOnly = buildTranscodeCommand({ file: "/in/a.mp4", info: SOURCE }, [stream({ type: OutputType.HLS, video: [{ codec: VideoCodec.AV1, height: 360 }] })], {
      capabilities: { encoders: new Set(["libaom-av1", "aac"]), muxers: new Set(), filters: new Set() },
    });
    expect(valueAfter(aomOnly.outputs[0]!.options, "-c:v")).toBe("libaom-av1");
    expect(valueAfter(aomOnly.outputs[0]!.options, "-g")).toBe("180");
    const noAv1 = build({ type: OutputType.DASH, video: [{ codec: VideoCodec.AV1 }] }, new Set(["libx264", "aac"]));
    expect(noAv1).toThrow(UnsupportedOutputError);
    expect(noAv1).toThrow(/no av1 encoder \(looked for libsvtav1, libaom-av1, librav1e\)/);
  });
});

describe("several audio tracks in a progressive file", () => {
  it("maps every track with its own codec options, language, title and one default", () => {
    const spec = create(OutputSpecSchema, {
      type: OutputType.MKV,
      video: [{ codec: VideoCodec.H264 }],
      audio: [
        { language: "eng", label: "English" },
        { language: "fra", label: "Français", sourceStreamIndex: 1, default: true, settings: { codec: AudioCodec.OPUS, bitrateKbps: 96 } },
      ],
    });
    const [options] = buildTranscodeCommand({ file: "/in/a.mp4", info: SOURCE }, [{ spec, file: "/out/a.mkv" }]).outputs.map((o) => o.options);
    expect(options!.slice(0, 6)).toEqual(["-map", "[v0]", "-map", "0:a:0?", "-map", "0:a:1?"]);
    expect(options).toEqual(expect.arrayContaining(["-c:a:0", "aac", "-c:a:1", "libopus", "-b:a:1", "96k", "-ar:a:1", "48000"]));
    expect(options).toEqual(expect.arrayContaining(["-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "title=Français"]));
    expect(valueAfter(options!, "-disposition:a:0")).toBe("0");
    expect(valueAfter(options!, "-disposition:a:1")).toBe("default");
  });
});
