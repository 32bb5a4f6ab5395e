import { create } from "@bufbuild/protobuf";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OutputType, Quality, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { ImageFormat, OutputSpecSchema, ThumbnailMode, ThumbnailSpecSchema } from "../../gen/rendition/v1/job_pb.js";
import { createMediaTools } from "../../workers/ffmpeg/media-tools.js";
import { mp4DurationMs } from "../../workers/ffmpeg/mp4-duration.js";
import { probeMp4Header } from "../../workers/ffmpeg/mp4-probe.js";
import { parseProbe } from "../../workers/ffmpeg/probe.js";
import { buildThumbnailPlan } from "../../workers/ffmpeg/thumbnails.js";
import { buildTranscodeCommand, flattenCommand } from "../../workers/ffmpeg/transcode.js";
import { MediaError, type FfmpegCommand, type MediaInfo, type MediaTools } from "../../workers/ffmpeg/types.js";
import { ffprobeJson, generateClip, testMediaTools } from "../support/media.js";
import { isAlive } from "../support/process.js";
import { INPUT_FORMATS } from "../../workers/ffmpeg/command.js";

const LIMITS = { maxDurationMs: 3600_000, maxWidth: 3840, maxHeight: 2160 };
const FRAME_MS = 40; // 25 fps

let dir: string;
let tools: MediaTools;
let clip: string;
let clipInfo: MediaInfo;
let long: string;
let longInfo: MediaInfo;

async function probeError(file: string): Promise<MediaError> {
  const err = await tools.probe(file, LIMITS).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MediaError);
  return err as MediaError;
}

/** A slow encode of the 10 s clip (premium x264, upscaled to 1080p): seconds of work on 2 cores. */
function slowCommand(name: string): FfmpegCommand {
  return buildTranscodeCommand({ file: long, info: longInfo }, [
    { spec: create(OutputSpecSchema, { type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_1080P, quality: Quality.PREMIUM }] }), file: path.join(dir, name) },
  ]);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "rendition-media-tools-"));
  tools = createMediaTools(await testMediaTools());
  clip = path.join(dir, "clip.mp4");
  long = path.join(dir, "long.mp4");
  await Promise.all([
    generateClip(clip, { durationS: 2, width: 320, height: 240, fps: 25, audio: true }),
    generateClip(long, { durationS: 10, width: 640, height: 360, fps: 25, audio: false }),
  ]);
  [clipInfo, longInfo] = await Promise.all([tools.probe(clip, LIMITS), tools.probe(long, LIMITS)]);
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("MediaTools.probe", () => {
  it("describes a real clip", async () => {
    expect(tools.description).toMatch(/^ffmpeg version \S+ \((env|system|npm): /);
    expect(clipInfo).toMatchObject({ width: 320, height: 240, videoCodec: "h264", framerate: 25, fileSizeBytes: (await stat(clip)).size });
    expect(clipInfo.container).toContain("mp4");
    expect(Math.abs(clipInfo.durationMs - 2000)).toBeLessThanOrEqual(FRAME_MS);
    expect(clipInfo.bitrateKbps).toBeGreaterThan(0);
    expect(clipInfo.audioStreams).toEqual([expect.objectContaining({ index: 0, codec: "aac", channels: 1, sampleRate: 48000 })]);
    expect(longInfo.audioStreams).toEqual([]);
  });

  it("reports empty, truncated, text and still-image inputs as INPUT_UNREADABLE", async () => {
    const empty = path.join(dir, "empty.mp4");
    const truncated = path.join(dir, "truncated.mp4");
    const text = path.join(dir, "notes.mp4");
    const still = path.join(dir, "still.png");
    await writeFile(empty, "");
    await writeFile(truncated, (await readFile(clip)).subarray(0, 10 * 1024));
    await writeFile(text, "hello, this is not a video\n".repeat(20));
    await tools.run({
      global: ["-hide_banner", "-nostdin", "-y", "-loglevel", "error"],
      inputs: [{ options: ["-f", "lavfi"], file: "testsrc2=size=64x48" }],
      outputs: [{ options: ["-frames:v", "1", "-update", "1"], file: still }],
    });

    expect(await probeError(empty)).toMatchObject({ code: "INPUT_UNREADABLE", message: "the input file is empty" });
    expect(await probeError(truncated)).toMatchObject({ code: "INPUT_UNREADABLE", message: expect.stringMatching(/^ffprobe could not read the input: .*moov atom not found/s) });
    const textError = await probeError(text);
    expect(textError).toMatchObject({ code: "INPUT_UNREADABLE", message: expect.stringContaining("Invalid data found when processing input") });
    expect(textError.message).not.toContain(dir); // local paths are shortened
    // Refused before ffprobe parses it: png is not a container on the input format whitelist.
    expect(await probeError(still)).toMatchObject({ code: "INPUT_UNREADABLE", message: expect.stringMatching(/^the input is png_pipe data, not a video container/) });
  });

  it("reports inputs over the limits as INPUT_TOO_LARGE", async () => {
    await expect(tools.probe(clip, { ...LIMITS, maxDurationMs: 1000 })).rejects.toMatchObject({ code: "INPUT_TOO_LARGE" });
    await expect(tools.probe(clip, { ...LIMITS, maxWidth: 300, maxHeight: 200 })).rejects.toMatchObject({ code: "INPUT_TOO_LARGE", message: "the input is 320x240; the limit is 300x200" });
  });

  it("rejects with the signal's reason when aborted", async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(tools.probe(clip, LIMITS, { signal: controller.signal })).rejects.toMatchObject({ name: "AbortError" });
  });
});

describe("MediaTools.probe from the mp4 movie header", () => {
  const ffmpeg = async (args: string[]) => {
    const { ffmpegPath } = await testMediaTools();
    await promisify(execFile)(ffmpegPath, ["-hide_banner", "-nostdin", "-loglevel", "error", "-y", ...args]);
  };
  const src = (size: string, rate: string) => ["-f", "lavfi", "-i", `testsrc2=size=${size}:rate=${rate}:duration=2`];
  const tone = (rate: number, frequency = 440) => ["-f", "lavfi", "-i", `sine=frequency=${frequency}:sample_rate=${rate}:duration=2`];
  const x264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"];
  const asFfprobeSays = async (file: string) => parseProbe(await ffprobeJson(file), (await stat(file)).size, LIMITS);

  it("describes plain mp4/mov files exactly as ffprobe does, without starting it", async () => {
    const files = {
      // moov at the end, mono AAC (the muxer writes 2 channels in the sample entry), an edit list for the B-frames
      "mono.mp4": [...src("320x240", "25"), ...tone(48000), "-map", "0:v", "-map", "1:a", ...x264, "-c:a", "aac", "-b:a", "64k"],
      // faststart, 29.97 fps, stereo, a language
      "ntsc.mp4": [...src("640x360", "30000/1001"), ...tone(44100), "-map", "0:v", "-map", "1:a", ...x264, "-c:a", "aac", "-ac", "2", "-metadata:s:a:0", "language=fra", "-movflags", "+faststart"],
      // two audio tracks at two rates, no B-frames
      "two-tracks.mp4": [...src("426x240", "24"), ...tone(48000), ...tone(44100, 880), "-map", "0:v", "-map", "1:a", "-map", "2:a", ...x264, "-bf", "0", "-c:a", "aac"],
      // QuickTime, video only
      "video.mov": [...src("320x240", "30"), ...x264],
      // HEVC without audio
      "hevc.mp4": [...src("320x240", "30"), "-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1", "-x265-params", "log-level=error"],
    };
    for (const [name, args] of Object.entries(files)) {
      const file = path.join(dir, name);
      await ffmpeg([...args, file]);
      const fromHeader = await probeMp4Header(file);
      expect(fromHeader, name).toBeDefined();
      const expected = await asFfprobeSays(file);
      expect(parseProbe(fromHeader, (await stat(file)).size, LIMITS), name).toEqual(expected);
      expect(await tools.probe(file, LIMITS), name).toEqual(expected);
    }
  });

  it("leaves to ffprobe what the header alone cannot tell or ffprobe reads differently", async () => {
    const mono = path.join(dir, "plain.mp4");
    await ffmpeg([...src("320x240", "25"), ...tone(48000), "-map", "0:v", "-map", "1:a", ...x264, "-c:a", "aac", mono]);
    const subtitles = path.join(dir, "subtitles.srt");
    await writeFile(subtitles, "1\n00:00:00,000 --> 00:00:01,000\nhello\n");
    const others = {
      // fragmented
      "fragmented.mp4": ["-i", mono, "-c", "copy", "-movflags", "+frag_keyframe+empty_moov"],
      // a subtitle track
      "subtitled.mp4": ["-i", mono, "-i", subtitles, "-map", "0", "-map", "1", "-c", "copy", "-c:s", "mov_text"],
      // QuickTime audio (a version 1 sound description, the esds inside a wave box)
      "audio.mov": [...src("320x240", "25"), ...tone(48000), "-map", "0:v", "-map", "1:a", ...x264, "-c:a", "aac"],
      // AAC below 32 kHz (may carry SBR signalled in-band only)
      "low-rate.mp4": [...src("320x240", "25"), ...tone(22050), "-map", "0:v", "-map", "1:a", ...x264, "-c:a", "aac"],
      // another container
      "clip.webm": [...src("320x240", "25"), "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"],
    };
    for (const [name, args] of Object.entries(others)) {
      const file = path.join(dir, name);
      await ffmpeg([...args, file]);
      expect(await probeMp4Header(file), name).toBeUndefined();
      expect(await tools.probe(file, LIMITS), name).toEqual(await asFfprobeSays(file));
    }
    // A display rotation (a phone's portrait video): the video track's matrix turned a quarter;
    // ffprobe reports it as side data and the worker swaps width and height.
    const rotated = path.join(dir, "rotated.mp4");
    const bytes = await readFile(mono);
    const tkhd = bytes.indexOf("tkhd");
    const matrix = tkhd + 4 + 40; // version 0 tkhd: 40 bytes of fields before the matrix
    [0, 0x00010000, 0, 0xffff0000, 0, 0, 0, 0, 0x40000000].forEach((value, i) => bytes.writeUInt32BE(value, matrix + i * 4));
    await writeFile(rotated, bytes);
    expect(await probeMp4Header(rotated)).toBeUndefined();
    expect(await tools.probe(rotated, LIMITS)).toMatchObject({ width: 240, height: 320 });
    // No movie header within the file (cut short before the moov): ffprobe says what is wrong.
    const truncated = path.join(dir, "cut.mp4");
    await writeFile(truncated, (await readFile(mono)).subarray(0, 10 * 1024));
    expect(await probeMp4Header(truncated)).toBeUndefined();
    expect(await tools.probe(truncated, LIMITS).catch((err: MediaError) => err.message)).toMatch(/^ffprobe could not read the input: .*moov atom not found/s);
  });
});

describe("MediaTools.run", () => {
  it("encodes mp4 h264 and webm vp9 in one run, spawning exactly the flattened argv, with rising progress", async () => {
    const mp4 = path.join(dir, "out.mp4");
    const webm = path.join(dir, "out.webm");
    const command = buildTranscodeCommand({ file: clip, info: clipInfo }, [
      { spec: create(OutputSpecSchema, { type: OutputType.MP4, video: [{ codec: VideoCodec.H264, quality: Quality.ECONOMY, width: 160 }] }), file: mp4 },
      { spec: create(OutputSpecSchema, { type: OutputType.WEBM, video: [{ codec: VideoCodec.VP9, quality: Quality.ECONOMY, height: 180, framerate: 10 }] }), file: webm },
    ], { threads: 2 });
    const fractions: number[] = [];
    let spawned: { pid: number; argv: string[] } | undefined;
    await tools.run(command, { durationMs: clipInfo.durationMs, onProgress: (f) => fractions.push(f), onStart: (c) => (spawned = c) });

    expect(spawned!.argv).toEqual(flattenCommand(command));
    expect(isAlive(spawned!.pid)).toBe(false);
    expect(fractions.at(-1)).toBe(1);
    expect(fractions.filter((f) => f === 1)).toHaveLength(1);
    expect([...fractions].sort((a, b) => a - b)).toEqual(fractions);

    const [mp4Probe, webmProbe] = await Promise.all([ffprobeJson(mp4), ffprobeJson(webm)]);
    const mp4Video = mp4Probe.streams.find((s) => s.codec_type === "video");
    expect(mp4Video).toMatchObject({ codec_name: "h264", width: 160, height: 120, pix_fmt: "yuv420p", codec_tag_string: "avc1" });
    expect(Math.abs(Number(mp4Video.duration) * 1000 - 2000)).toBeLessThanOrEqual(FRAME_MS);
    expect(mp4Probe.streams.find((s) => s.codec_type === "audio")).toMatchObject({ codec_name: "aac" });
    // The worker reads mp4 durations from the movie header instead of starting ffprobe: the same number.
    expect(await mp4DurationMs(mp4)).toBe(Math.round(Number(mp4Probe.format.duration) * 1000));
    expect(webmProbe.streams.find((s) => s.codec_type === "video")).toMatchObject({ codec_name: "vp9", width: 240, height: 180, avg_frame_rate: "10/1" });
    expect(webmProbe.streams.find((s) => s.codec_type === "audio")).toMatchObject({ codec_name: "opus" });
    expect(Math.abs(Number(webmProbe.format.duration) * 1000 - 2000)).toBeLessThanOrEqual(100); // 10 fps frame
  });

  it("reports intermediate progress at most 4 times a second, never decreasing", async () => {
    const calls: Array<{ at: number; fraction: number }> = [];
    const command = buildTranscodeCommand({ file: long, info: longInfo }, [
      { spec: create(OutputSpecSchema, { type: OutputType.MP4, video: [{ codec: VideoCodec.H264, quality: Quality.ECONOMY, h264: { encoderPreset: "faster" } }] }), file: path.join(dir, "progress.mp4") },
    ]);
    await tools.run(command, { durationMs: longInfo.durationMs, onProgress: (fraction) => calls.push({ at: Date.now(), fraction }) });
    const fractions = calls.map((c) => c.fraction);
    expect(fractions.at(-1)).toBe(1);
    expect(fractions.some((f) => f > 0 && f < 1)).toBe(true);
    expect([...fractions].sort((a, b) => a - b)).toEqual(fractions);
    const running = calls.slice(0, -1); // the final 1 comes on exit, outside the throttle
    for (let i = 1; i < running.length; i++) expect(running[i]!.at - running[i - 1]!.at).toBeGreaterThanOrEqual(250);
  });

  it("encodes an input without audio (the audio map is optional)", async () => {
    const out = path.join(dir, "silent.mkv");
    const short = path.join(dir, "short.mp4");
    await generateClip(short, { durationS: 1, width: 160, height: 120, fps: 25, audio: false });
    const info = await tools.probe(short, LIMITS);
    await tools.run(buildTranscodeCommand({ file: short, info }, [{ spec: create(OutputSpecSchema, { type: OutputType.MKV, video: [{ codec: VideoCodec.H264, quality: Quality.ECONOMY }] }), file: out }]));
    const probe = await ffprobeJson(out);
    expect(probe.streams.map((s) => s.codec_type)).toEqual(["video"]);
  });

  it("kills ffmpeg within a second of an abort and rejects with the signal's reason", async () => {
    const controller = new AbortController();
    let pid = 0;
    let onStarted: () => void = () => {};
    const started = new Promise<void>((resolve) => (onStarted = resolve));
    const result = tools
      .run(slowCommand("aborted.mp4"), {
        signal: controller.signal,
        durationMs: longInfo.durationMs,
        onStart: (c) => {
          pid = c.pid;
          onStarted();
        },
      })
      .then(
        () => "resolved",
        (err: unknown) => err,
      );
    await started;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(isAlive(pid)).toBe(true);
    const abortedAt = Date.now();
    controller.abort();
    const err = await result;
    expect(Date.now() - abortedAt).toBeLessThan(1000);
    expect(err).toBe(controller.signal.reason);
    expect((err as Error).name).toBe("AbortError");
    expect(isAlive(pid)).toBe(false);
  });

  it("handles an abort that lands before ffmpeg is spawned: killed at once, nothing left running", async () => {
    const controller = new AbortController();
    let pid = 0;
    const run = tools.run(slowCommand("aborted-early.mp4"), { signal: controller.signal, onStart: (c) => (pid = c.pid) });
    controller.abort(new Error("job canceled"));
    await expect(run).rejects.toThrow("job canceled");
    if (pid) expect(isAlive(pid)).toBe(false);
    // Already aborted: nothing is started at all.
    await expect(tools.run(slowCommand("never.mp4"), { signal: controller.signal })).rejects.toThrow("job canceled");
  });

  it("stops a run past its time limit with ENCODE_TIMEOUT, process gone", async () => {
    let pid = 0;
    const err = await tools.run(slowCommand("timeout.mp4"), { timeoutMs: 400, onStart: (c) => (pid = c.pid) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MediaError);
    expect(err).toMatchObject({ code: "ENCODE_TIMEOUT", message: "ffmpeg ran longer than the 0.4s limit and was stopped" });
    expect(pid).toBeGreaterThan(0);
    expect(isAlive(pid)).toBe(false);
  });

  it("reports a failing ffmpeg as ENCODE_FAILED with its last stderr lines", async () => {
    const command: FfmpegCommand = {
      global: ["-hide_banner", "-nostdin", "-y", "-loglevel", "error"],
      inputs: [{ options: ["-protocol_whitelist", "file", "-format_whitelist", INPUT_FORMATS], file: clip }],
      outputs: [{ options: ["-c:v", "libx264", "-preset", "no-such-preset", "-f", "mp4"], file: path.join(dir, "failed.mp4") }],
    };
    const err = await tools.run(command).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MediaError);
    expect(err).toMatchObject({ code: "ENCODE_FAILED", message: expect.stringMatching(/^ffmpeg exited with code \d+: .*no-such-preset/s) });
    expect((err as Error).message.length).toBeLessThan(600);
  });
});

describe("thumbnails", () => {
  async function runPlan(spec: Parameters<typeof create<typeof ThumbnailSpecSchema>>[1], name: string) {
    const out = path.join(dir, name);
    await mkdir(out, { recursive: true });
    const plan = buildThumbnailPlan({ file: clip, info: clipInfo }, create(ThumbnailSpecSchema, spec), out);
    for (const command of plan.commands) await tools.run(command);
    const sizes = await Promise.all(plan.files.map(async (file) => {
      const probe = await ffprobeJson(file);
      return { codec: probe.streams[0].codec_name as string, width: probe.streams[0].width as number, height: probe.streams[0].height as number };
    }));
    return { plan, sizes };
  }

  it("single: one jpeg of the requested width, even at a timestamp past the end", async () => {
    const { plan, sizes } = await runPlan({ mode: ThumbnailMode.SINGLE, width: 160, timestamp: 30 }, "single");
    expect(plan.files.map((f) => path.basename(f))).toEqual(["thumbnail.jpg"]);
    expect(sizes).toEqual([{ codec: "mjpeg", width: 160, height: 120 }]);
  });

  it("interval: one png per interval at the source size", async () => {
    const { plan, sizes } = await runPlan({ mode: ThumbnailMode.INTERVAL, format: ImageFormat.PNG, intervalSeconds: 0.5 }, "interval");
    expect(plan.files.map((f) => path.basename(f))).toEqual(["thumb_0001.png", "thumb_0002.png", "thumb_0003.png", "thumb_0004.png"]);
    expect(sizes).toEqual(Array(4).fill({ codec: "png", width: 320, height: 240 }));
  });

  it("timestamps: one image per timestamp, clamped into the input", async () => {
    const { plan, sizes } = await runPlan({ mode: ThumbnailMode.TIMESTAMPS, height: 60, timestamps: [0.1, 1, 99] }, "timestamps");
    expect(plan.files).toHaveLength(3);
    expect(sizes).toEqual(Array(3).fill({ codec: "mjpeg", width: 80, height: 60 }));
  });

  it("sprite: one webp grid and a WebVTT storyboard pointing into it", async () => {
    const { plan, sizes } = await runPlan({ mode: ThumbnailMode.SPRITE, format: ImageFormat.WEBP, width: 80, intervalSeconds: 0.5, spriteColumns: 3 }, "sprite");
    expect(plan.files.map((f) => path.basename(f))).toEqual(["sprite.webp"]);
    expect(sizes).toEqual([{ codec: "webp", width: 240, height: 120 }]); // 4 tiles of 80x60 in a 3x2 grid
    await writeFile(plan.storyboard!.file, plan.storyboard!.content);
    const vtt = await readFile(plan.storyboard!.file, "utf8");
    expect(vtt.startsWith("WEBVTT\n\n00:00:00.000 --> 00:00:00.500\nsprite.webp#xywh=0,0,80,60\n")).toBe(true);
    expect(vtt).toContain("00:00:01.500 --> 00:00:02.000\nsprite.webp#xywh=0,60,80,60\n");
  });
});
