import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ImageFormat, ThumbnailMode, ThumbnailSpecSchema } from "../../gen/rendition/v1/job_pb.js";
import { OutputType, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { OutputSpecSchema } from "../../gen/rendition/v1/job_pb.js";
import { stderrTail, toFluentCommand } from "../../workers/ffmpeg/media-tools.js";
import { buildThumbnailPlan } from "../../workers/ffmpeg/thumbnails.js";
import { buildTranscodeCommand, flattenCommand } from "../../workers/ffmpeg/transcode.js";
import type { FfmpegCommand, MediaInfo } from "../../workers/ffmpeg/types.js";

const INFO: MediaInfo = {
  durationMs: 2000,
  width: 320,
  height: 240,
  videoCodec: "h264",
  bitrateKbps: 700,
  framerate: 25,
  fileSizeBytes: 200_000,
  container: "mov,mp4,m4a,3gp,3g2,mj2",
  audioStreams: [],
};

/** What fluent-ffmpeg would spawn, without spawning. */
function fluentArgv(cmd: FfmpegCommand, launcher: string[] = []): string[] {
  return toFluentCommand(cmd, "/usr/bin/ffmpeg", launcher)._getArguments();
}

describe("toFluentCommand", () => {
  it("makes fluent-ffmpeg build exactly flattenCommand's argv for a multi-output transcode", () => {
    const cmd = buildTranscodeCommand({ file: "/in/a b.mp4", info: INFO }, [
      // A label with one space: fluent would split "title=Main audio" if given an array.
      { spec: create(OutputSpecSchema, { type: OutputType.MP4, video: [{ codec: VideoCodec.H264 }], audio: [{ label: "Main audio" }] }), file: "/out/x.mp4" },
      { spec: create(OutputSpecSchema, { type: OutputType.WEBM, video: [{ codec: VideoCodec.VP9, width: 160 }] }), file: "/out/y.webm" },
    ], { threads: 2 });
    expect(fluentArgv(cmd)).toEqual(flattenCommand(cmd));
    expect(flattenCommand(cmd)).toContain("title=Main audio");
  });

  it("does the same for multi-input thumbnail commands", () => {
    const plan = buildThumbnailPlan({ file: "/in/a.mp4", info: INFO }, create(ThumbnailSpecSchema, { mode: ThumbnailMode.TIMESTAMPS, format: ImageFormat.PNG, timestamps: [0, 1, 1.5] }), "/out");
    for (const cmd of plan.commands) expect(fluentArgv(cmd)).toEqual(flattenCommand(cmd));
  });

  it("puts the launcher's arguments and ffmpeg's path first when one is used", () => {
    const plan = buildThumbnailPlan({ file: "/in/a.mp4", info: INFO }, create(ThumbnailSpecSchema, { mode: ThumbnailMode.SINGLE }), "/out");
    const launcher = ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--"];
    expect(fluentArgv(plan.commands[0]!, launcher)).toEqual(["--pdeathsig", "KILL", "--", "/usr/bin/ffmpeg", ...flattenCommand(plan.commands[0]!)]);
  });

  it("refuses a command fluent would change (no -y: fluent always adds one for files)", () => {
    const cmd: FfmpegCommand = { global: ["-nostdin"], inputs: [{ options: [], file: "/in/a.mp4" }], outputs: [{ options: ["-f", "null"], file: "/out/x" }] };
    expect(() => fluentArgv(cmd)).toThrow(/fluent-ffmpeg would run/);
  });
});

describe("stderrTail", () => {
  it("keeps the last ~500 characters without encoder chatter, pointers or local paths", () => {
    const cmd: FfmpegCommand = { global: [], inputs: [{ options: [], file: "/tmp/job-1/input.mp4" }], outputs: [{ options: [], file: "/tmp/job-1/out_1.mp4" }] };
    const stderr = [
      "Svt[info]: SVT [config]: preset 10",
      "x265 [info]: HEVC encoder version 3.5",
      "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d8c2f1a280] moov atom not found",
      "/tmp/job-1/input.mp4: Invalid data found when processing input",
      "",
    ].join("\n");
    expect(stderrTail(stderr, cmd)).toBe("[mov,mp4,m4a,3gp,3g2,mj2] moov atom not found\ninput.mp4: Invalid data found when processing input");
    const long = stderrTail(`${"x".repeat(2000)}\nthe real error`, undefined, 50);
    expect(long).toHaveLength(50);
    expect(long.endsWith("the real error")).toBe(true);
    expect(long.startsWith("…")).toBe(true);
  });
});
