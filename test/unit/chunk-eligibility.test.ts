import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { OutputType, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { OutputSpecSchema, type OutputSpec } from "../../gen/rendition/v1/job_pb.js";
import type { JobOutputRecord } from "../../services/jobs/job.types.js";
import { chunkedJobProgress, chunkPlan, isConstantFrameRate, whyNotChunked, type ChunkingSettings } from "../../workers/chunking/chunk-eligibility.js";
import { progressiveParts, buildTranscodeCommand } from "../../workers/ffmpeg/transcode.js";
import type { MediaInfo } from "../../workers/ffmpeg/types.js";

const settings: ChunkingSettings = { minInputSeconds: 120, chunkSeconds: 60, maxConcurrent: 4 };
const info: MediaInfo = {
  durationMs: 600_000,
  width: 1920,
  height: 1080,
  videoCodec: "h264",
  bitrateKbps: 5000,
  framerate: 25,
  fileSizeBytes: 1,
  container: "mov,mp4,m4a,3gp,3g2,mj2",
  audioStreams: [{ index: 0, codec: "aac", channels: 2, sampleRate: 48000, bitrateKbps: 128, language: "" }],
};

function output(spec: MessageInitShape<typeof OutputSpecSchema> = {}): JobOutputRecord {
  return { id: "out_1", status: "processing", spec: create(OutputSpecSchema, { type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 720 }], ...spec }) } as JobOutputRecord;
}

const frames = (n: number, step = 512n, den = 12800) => Array.from({ length: n }, (_, i) => ({ pts: BigInt(i) * step, num: 1, den }));

describe("chunking eligibility", () => {
  it("chunks a long input with one progressive output of one variant, and nothing else", () => {
    expect(whyNotChunked([output()], 1, 0, info, settings)).toBeUndefined();
    expect(whyNotChunked([output({ type: OutputType.MKV })], 1, 0, info, settings)).toBeUndefined();
    expect(whyNotChunked([output({ type: OutputType.MOV })], 1, 0, info, settings)).toBeUndefined();
    expect(whyNotChunked([output()], 1, 0, { ...info, durationMs: 119_999 }, settings)).toMatch(/shorter than 120 s/);
    expect(whyNotChunked([output(), { ...output(), id: "out_2" }], 2, 0, info, settings)).toMatch(/one output/);
    // Another output still to do (not runnable now) keeps the job in one pass too.
    expect(whyNotChunked([output()], 2, 0, info, settings)).toMatch(/one output/);
    expect(whyNotChunked([output()], 1, 1, info, settings)).toMatch(/thumbnails/);
    expect(whyNotChunked([output({ type: OutputType.WEBM, video: [{ codec: VideoCodec.VP9 }] })], 1, 0, info, settings)).toMatch(/mp4, mov and mkv/);
    expect(whyNotChunked([output({ type: OutputType.HLS })], 1, 0, info, settings)).toMatch(/mp4, mov and mkv/);
    expect(whyNotChunked([output({ video: [{ codec: VideoCodec.H264, height: 720 }, { codec: VideoCodec.H264, height: 360 }] })], 1, 0, info, settings)).toMatch(/one video variant/);
    expect(whyNotChunked([output({ video: [{ codec: VideoCodec.H264, framerate: 30 }] })], 1, 0, info, settings)).toMatch(/frame rate/);
    expect(whyNotChunked([output({ subtitleTracks: [{ sourceStreamIndex: 0 }] })], 1, 0, info, settings)).toMatch(/subtitles/);
    expect(whyNotChunked([output({ audio: [{}, {}] })], 1, 0, info, settings)).toMatch(/one audio track/);
    expect(whyNotChunked([output({ audio: [{ sourceStreamIndex: 1 }] })], 1, 0, info, settings)).toMatch(/first audio stream/);
  });

  it("needs a constant frame rate: equal gaps, one tick of rounding allowed", () => {
    expect(isConstantFrameRate(frames(100))).toBe(true);
    // 29.97 fps in a 1/1000 time base: 33 and 34 ms.
    expect(isConstantFrameRate(Array.from({ length: 100 }, (_, i) => ({ pts: BigInt(Math.round((i * 1001) / 30)), num: 1, den: 1000 })))).toBe(true);
    // Decode order (B-frames) is sorted first.
    expect(isConstantFrameRate([...frames(100)].reverse())).toBe(true);
    const variable = frames(100);
    variable[50] = { ...variable[50]!, pts: variable[50]!.pts + 200n };
    expect(isConstantFrameRate(variable)).toBe(false);
    expect(isConstantFrameRate([...frames(10), frames(10)[3]!])).toBe(false); // a duplicate time
    expect(isConstantFrameRate(frames(1))).toBe(false);
    expect(chunkPlan(variable, { ...settings, minInputSeconds: 1, chunkSeconds: 1 })).toBeUndefined();
    // 300 s at 25 fps: five chunks of 60 s, cut on any frame.
    const plan = chunkPlan(frames(7500), settings)!;
    expect(plan.map((c) => [c.startFrame, c.frames])).toEqual([0, 1, 2, 3, 4].map((i) => [i * 1500, 1500]));
  });

  it("weights chunk progress by duration into the first 90 % of the job's", () => {
    expect(chunkedJobProgress([])).toBe(0);
    expect(chunkedJobProgress([{ durationSeconds: 60, progress: 0 }, { durationSeconds: 60, progress: 0 }])).toBe(0);
    expect(chunkedJobProgress([{ durationSeconds: 60, progress: 100 }, { durationSeconds: 60, progress: 0 }])).toBe(45);
    // A long chunk half done counts more than a short one finished.
    expect(chunkedJobProgress([{ durationSeconds: 90, progress: 50 }, { durationSeconds: 10, progress: 100 }])).toBe(Math.floor(((45 + 10) / 100) * 90));
    expect(chunkedJobProgress([{ durationSeconds: 60, progress: 100 }, { durationSeconds: 30, progress: 100 }])).toBe(90);
    expect(chunkedJobProgress([{ durationSeconds: 60, progress: 150 }])).toBe(90);
  });

  it("takes the chunk encoder options from the single-pass command of the same output", () => {
    const spec: OutputSpec = create(OutputSpecSchema, { type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 720, bitrate: 2500 }] });
    const parts = progressiveParts({ spec, file: "/tmp/o.mp4" }, info);
    const single = buildTranscodeCommand({ file: "/tmp/in.mp4", info }, [{ spec, file: "/tmp/o.mp4" }]).outputs[0]!.options;
    const encoder = parts.video.slice(2); // after -vf <chain>
    expect(parts.video.slice(0, 2)).toEqual(["-vf", "scale=1280:720"]);
    const at = single.indexOf("-c:v");
    expect(single.slice(at, at + encoder.length)).toEqual(encoder);
    expect(encoder).toEqual(expect.arrayContaining(["libx264", "-b:v", "2500k"]));
    const audioAt = single.indexOf("-c:a:0");
    expect(single.slice(audioAt, audioAt + parts.audio.length)).toEqual(parts.audio);
    expect(parts.muxer).toEqual(["-map_metadata", "-1", "-movflags", "+faststart", "-f", "mp4"]);
  });
});
