/**
 * The streaming path on the ffmpeg shipped on npm (the 2018 static build `npm start` falls back to
 * when the system has none), which segfaults when asked to write a multi-variant master itself:
 * our per-rendition hls outputs and our own manifests must work there too.
 */
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { AudioCodec, OutputType, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { OutputSpecSchema, type OutputSpec } from "../../gen/rendition/v1/job_pb.js";
import { ensureExecutable, locateMediaTools } from "../../workers/ffmpeg/binaries.js";
import { remuxToMp4Command } from "../../workers/ffmpeg/command.js";
import { createMediaTools } from "../../workers/ffmpeg/media-tools.js";
import { buildTranscodeCommand, streamRenditions } from "../../workers/ffmpeg/transcode.js";
import type { MediaTools, StreamTarget } from "../../workers/ffmpeg/types.js";
import { packageStream } from "../../workers/packaging/package-stream.js";
import { generateClip } from "../support/media.js";
import { readMaster, readMediaPlaylist, readMpd } from "../support/stream-checks.js";

const require = createRequire(import.meta.url);
let dir: string;
let tools: MediaTools;
let input: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "rendition-npm-ffmpeg-"));
  const ffmpegPath = await ensureExecutable((require("@ffmpeg-installer/ffmpeg") as { path: string }).path, { tmpDir: dir });
  const ffprobePath = await ensureExecutable((require("@ffprobe-installer/ffprobe") as { path: string }).path, { tmpDir: dir });
  tools = createMediaTools(await locateMediaTools({ PATH: process.env.PATH, FFMPEG_PATH: ffmpegPath, FFPROBE_PATH: ffprobePath }));
  expect(tools.description).toMatch(/N-47683/);
  input = await generateClip(path.join(dir, "clip.mp4"), { durationS: 4, width: 320, height: 180, fps: 30, audio: true, audioLanguages: ["eng", "fra"] });
}, 60_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function encode(spec: OutputSpec, name: string): Promise<StreamTarget & { out: Awaited<ReturnType<typeof packageStream>> }> {
  const info = await tools.probe(input, { maxDurationMs: 60_000, maxWidth: 4096, maxHeight: 4096 });
  const target: StreamTarget = { spec, dir: path.join(dir, name) };
  for (const r of streamRenditions(target, info)) await mkdir(r.dir, { recursive: true });
  await tools.run(buildTranscodeCommand({ file: input, info }, [target], { capabilities: await tools.capabilities() }), { timeoutMs: 120_000 });
  const out = await packageStream(target, streamRenditions(target, info), info, {
    remuxToMp4: (segment, mp4) => tools.run(remuxToMp4Command(segment, mp4)),
    firstVideoPts: () => Promise.resolve(0),
  });
  return { ...target, out };
}

describe("streaming outputs on the npm-shipped ffmpeg 4.1", () => {
  it("writes an H.264 HLS ladder with two audio languages; the master is ours, with CODECS and measured BANDWIDTH", async () => {
    const spec = create(OutputSpecSchema, {
      type: OutputType.HLS,
      segments: { durationSeconds: 2 },
      video: [{ codec: VideoCodec.H264, height: 180 }, { codec: VideoCodec.H264, height: 144 }],
      audio: [{ language: "eng", default: true }, { language: "fra", sourceStreamIndex: 1 }],
    });
    const { dir: out } = await encode(spec, "hls");
    const master = readMaster(path.join(out, "master.m3u8"));
    expect(master.variants.map((v) => [v.height, v.codecs.split(",")[0]!.slice(0, 5), v.bandwidth > 0])).toEqual([
      [180, "avc1.", true],
      [144, "avc1.", true],
    ]);
    expect(master.audio.map((a) => a.language)).toEqual(["en", "fr"]);
    for (const v of master.variants) expect(readMediaPlaylist(path.join(out, v.uri)).segments.map((s) => s.duration)).toEqual([2, 2]);
  });

  it("knows it cannot put Opus into fMP4 segments, and says so", async () => {
    const caps = await tools.capabilities();
    expect(caps.opusInMp4).toBe(false);
    const info = await tools.probe(input, { maxDurationMs: 60_000, maxWidth: 4096, maxHeight: 4096 });
    const spec = create(OutputSpecSchema, { type: OutputType.DASH, video: [{ codec: VideoCodec.VP9, height: 144 }], audio: [{ settings: { codec: AudioCodec.OPUS } }] });
    expect(() => buildTranscodeCommand({ file: input, info }, [{ spec, dir: path.join(dir, "x") }], { capabilities: caps })).toThrow(
      expect.objectContaining({ code: "CODEC_UNSUPPORTED", message: expect.stringContaining("cannot put opus audio into fMP4 segments") }),
    );
  });

  it("writes TS segments and a VP9 DASH output", async () => {
    const ts = await encode(create(OutputSpecSchema, { type: OutputType.HLS, hls: { segmentFormat: "ts" }, segments: { durationSeconds: 2 }, video: [{ codec: VideoCodec.H264, height: 144 }] }), "ts");
    expect(readMaster(path.join(ts.dir, "master.m3u8")).variants[0]!.codecs).toMatch(/^avc1\.\w+,mp4a\.40\.2$/);
    const dash = await encode(
      create(OutputSpecSchema, { type: OutputType.DASH, segments: { durationSeconds: 2 }, video: [{ codec: VideoCodec.VP9, height: 144 }] }),
      "dash",
    );
    const mpd = await readFile(path.join(dash.dir, "manifest.mpd"), "utf8");
    expect(mpd).toMatch(/codecs="vp09\.[\d.]+"/);
    expect(mpd).toContain('codecs="mp4a.40.2"');
    expect(readMpd(path.join(dash.dir, "manifest.mpd")).playlists[0].segments).toHaveLength(2);
  });
});
