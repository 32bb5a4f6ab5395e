import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { AudioCodec, OutputType, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobServiceCreateRequestSchema, ThumbnailMode } from "../../gen/rendition/v1/job_pb.js";
import { checkCreateJobRequest } from "../../services/jobs/job.validation.js";

type Init = Parameters<typeof create<typeof JobServiceCreateRequestSchema>>[1];
const rules = (init: Init) => checkCreateJobRequest(create(JobServiceCreateRequestSchema, init)).map((v) => `${v.field} ${v.rule}`);
const mp4 = { type: OutputType.MP4, video: [{ codec: VideoCodec.H264 }] };

describe("Create cross-field rules", () => {
  it("accepts a plain request", () => {
    expect(rules({ inputUrl: "https://x/y.mp4", outputOriginId: "ori_1", outputs: [mp4] })).toEqual([]);
  });

  it("needs input_path with an origin, and only then", () => {
    expect(rules({ inputOriginId: "ori_1", outputs: [mp4] })).toEqual(["input_path job.input_path_required"]);
    expect(rules({ inputUrl: "https://x/y", inputPath: "a", outputs: [mp4] })).toEqual(["input_path job.input_path_with_url"]);
    expect(rules({ inputOriginId: "ori_1", inputPath: "../etc/passwd", outputs: [mp4] })).toEqual(["input_path job.input_path_relative"]);
    expect(rules({ inputOriginId: "ori_1", inputPath: "uploads\\..\\..\\secret.mp4", outputs: [mp4] })).toEqual(["input_path job.input_path_relative"]);
  });

  it("checks output shape unless a preset fills it in", () => {
    expect(rules({ inputUrl: "https://x", outputs: [{ video: [{ codec: VideoCodec.H264 }] }] })).toEqual(["outputs[0].type output.type_required"]);
    expect(rules({ inputUrl: "https://x", outputs: [{ type: OutputType.MP4 }] })).toEqual(["outputs[0].video output.video_required"]);
    expect(rules({ inputUrl: "https://x", outputs: [{ preset: "h264_1080p_standard" }] })).toEqual([]);
    expect(rules({ inputUrl: "https://x", outputs: [{ type: OutputType.WEBM, video: [{ codec: VideoCodec.H264 }] }] })).toEqual([
      "outputs[0].video[0].codec output.container_video_codec",
    ]);
    expect(rules({ inputUrl: "https://x", outputs: [{ type: OutputType.HLS, video: [{ codec: VideoCodec.H264 }, { codec: VideoCodec.H264 }] }] })).toEqual([]);
    expect(rules({ inputUrl: "https://x", outputs: [{ ...mp4, drm: { systems: ["widevine"], scheme: "cenc" } }] })).toEqual([
      "outputs[0].drm output.drm_streaming_only",
    ]);
  });

  it("refuses codecs the container cannot carry, with the field at fault", () => {
    const out = (init: Record<string, unknown>) => rules({ inputUrl: "https://x", outputs: [init] });
    expect(out({ type: OutputType.MOV, video: [{ codec: VideoCodec.VP9 }] })).toEqual(["outputs[0].video[0].codec output.container_video_codec"]);
    expect(out({ type: OutputType.MOV, video: [{ codec: VideoCodec.H264 }], audio: [{ settings: { codec: AudioCodec.OPUS } }] })).toEqual([
      "outputs[0].audio[0].settings.codec output.container_audio_codec",
    ]);
    expect(out({ type: OutputType.HLS, hls: { segmentFormat: "ts" }, video: [{ codec: VideoCodec.H264 }, { codec: VideoCodec.AV1 }] })).toEqual([
      "outputs[0].video[1].codec output.container_video_codec",
    ]);
    expect(out({ type: OutputType.HLS, hls: { segmentFormat: "ts" }, video: [{ codec: VideoCodec.H265 }] })).toEqual(["outputs[0].video[0].codec output.container_video_codec"]);
    expect(out({ type: OutputType.HLS, video: [{ codec: VideoCodec.AV1 }], audio: [{ settings: { codec: AudioCodec.OPUS } }] })).toEqual([]);
    expect(out({ type: OutputType.ADAPTIVE, hls: { segmentFormat: "ts" }, video: [{ codec: VideoCodec.H264 }] })).toEqual(["outputs[0].hls.segment_format output.ts_hls_only"]);
  });

  it("needs a source for every subtitle track and at most one default audio track", () => {
    expect(rules({ inputUrl: "https://x", outputs: [{ ...mp4, subtitleTracks: [{ operation: "convert" }, { operation: "extract", sourceStreamIndex: 0 }] }] })).toEqual([
      "outputs[0].subtitle_tracks[0] subtitle.source_required",
    ]);
    expect(rules({ inputUrl: "https://x", outputs: [{ ...mp4, audio: [{ default: true }, { default: true }] }] })).toEqual(["outputs[0].audio output.single_default_audio"]);
  });

  it("checks templates and thumbnail modes", () => {
    expect(rules({ inputUrl: "https://x", outputs: [{ ...mp4, pathTemplate: "{bad}" }], outputPathTemplate: "{worse}" })).toEqual([
      "output_path_template path_template.unknown_variable",
      "outputs[0].path_template path_template.unknown_variable",
    ]);
    expect(rules({ inputUrl: "https://x", outputs: [mp4], thumbnails: [{ mode: ThumbnailMode.TIMESTAMPS }] })).toEqual([
      "thumbnails[0].timestamps thumbnail.timestamps_required",
    ]);
    expect(rules({ inputUrl: "https://x", outputs: [mp4], thumbnails: [{ mode: ThumbnailMode.SINGLE, timestamps: [1] }] })).toEqual([
      "thumbnails[0].timestamps thumbnail.timestamps_mode",
    ]);
  });
});
