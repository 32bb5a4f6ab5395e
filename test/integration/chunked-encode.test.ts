/**
 * Chunked encoding, exactly: one input cut at segment-aligned frames, the chunks encoded apart,
 * joined with the concat demuxer and the audio muxed in, compared with a single-pass encode of
 * the same input by real ffmpeg: frame count, duration (±1 frame), no frame duplicated or
 * dropped at a seam, PSNR within 0.1 dB, audio unchanged.
 */
import { execFile } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMediaTools } from "../../workers/ffmpeg/media-tools.js";
import type { MediaTools } from "../../workers/ffmpeg/types.js";
import { assembleCommand, audioCommand, chunkVideoCommand, concatList } from "../../workers/chunking/chunk-commands.js";
import { planChunks } from "../../workers/chunking/chunk-plan.js";
import { videoFrameTimes } from "../../workers/chunking/frame-times.js";
import { ffprobeJson, generateClip, testMediaTools } from "../support/media.js";

const exec = promisify(execFile);
const dir = join(tmpdir(), `rendition-chunked-${process.pid}`);
let tools: MediaTools;

const VIDEO = ["-c:v", "libx264", "-preset", "medium", "-crf", "23", "-pix_fmt", "yuv420p", "-threads", "1"];
const AUDIO = ["-c:a", "aac", "-b:a", "128k"];

beforeAll(async () => {
  mkdirSync(dir, { recursive: true });
  tools = createMediaTools(await testMediaTools());
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function frames(file: string): Promise<number> {
  const probe = await ffprobeJson(file);
  const { stdout } = await exec(tools.ffprobePath, ["-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", file]);
  expect(probe.streams.length).toBeGreaterThan(0);
  return Number(stdout.trim());
}

/** Average PSNR against the source, and the worst single frame, frames paired by index. */
async function psnr(file: string, source: string, fps: string): Promise<{ average: number; worst: number }> {
  const stats = join(dir, `psnr-${Math.random().toString(36).slice(2)}.log`);
  const { stderr } = await exec(tools.ffmpegPath, ["-hide_banner", "-i", file, "-i", source, "-lavfi", `[0:v]setpts=N/(${fps})/TB[a];[1:v]setpts=N/(${fps})/TB[b];[a][b]psnr=stats_file=${stats}`, "-f", "null", "-"]);
  const average = Number(/average:([\d.]+)/.exec(stderr)![1]);
  const { readFileSync } = await import("node:fs");
  const perFrame = readFileSync(stats, "utf8").trim().split("\n").map((l) => Number(/psnr_avg:([\d.inf]+)/.exec(l)![1]));
  return { average, worst: Math.min(...perFrame) };
}

async function encodeBoth(name: string, fps: string, chunkSeconds: number) {
  const source = await generateClip(join(dir, `${name}.mp4`), { durationS: 12, width: 640, height: 360, fps: fps as never, audio: true, sceneCutEveryS: 1.3 });
  const single = join(dir, `${name}-single.mp4`);
  await tools.run({ global: ["-hide_banner", "-nostdin", "-y", "-loglevel", "error"], inputs: [{ options: [], file: source }], outputs: [{ options: ["-map", "0:v:0", "-map", "0:a:0", ...VIDEO, ...AUDIO, "-movflags", "+faststart"], file: single }] });

  const chunks = planChunks(await videoFrameTimes(tools.ffprobePath, source), { chunkSeconds, alignSeconds: 2, minInputSeconds: 5 })!;
  const parts = chunks.map((c) => join(dir, `${name}-chunk${c.index}.mp4`));
  await Promise.all(chunks.map((c, i) => tools.run(chunkVideoCommand(source, c, VIDEO, parts[i]!))));
  const audio = join(dir, `${name}-audio.m4a`);
  await tools.run(audioCommand(source, AUDIO, audio));
  const list = join(dir, `${name}.txt`);
  writeFileSync(list, concatList(parts));
  const joined = join(dir, `${name}-chunked.mp4`);
  await tools.run(assembleCommand(list, audio, joined, ["-movflags", "+faststart"]));
  return { source, single, joined, chunks };
}

describe("chunked encoding", () => {
  for (const [fps, label] of [["25", "25 fps"], ["30000/1001", "29.97 fps"]] as const) {
    it(`equals a single-pass encode at ${label}: frames, duration, seams, quality, audio`, async () => {
      const { source, single, joined, chunks } = await encodeBoth(`clip${label.replace(/\W/g, "")}`, fps, 4);
      expect(chunks.length).toBe(3);
      expect(chunks.map((c) => c.startSeconds.toFixed(2))).toEqual(["0.00", "4.00", "8.00"].map((s, i) => (fps === "25" ? s : ((i * 120 * 1001) / 30000).toFixed(2))));
      expect(chunks.reduce((n, c) => n + c.frames, 0)).toBe(await frames(source));

      expect(await frames(joined)).toBe(await frames(single));
      const [a, b] = [await ffprobeJson(single), await ffprobeJson(joined)];
      const frameS = fps === "25" ? 0.04 : 1001 / 30000;
      const video = (p: typeof a) => p.streams.find((s) => s.codec_type === "video");
      const audio = (p: typeof a) => p.streams.find((s) => s.codec_type === "audio");
      expect(Math.abs(Number(video(a).duration) - Number(video(b).duration))).toBeLessThanOrEqual(frameS + 1e-6);
      // The audio is the single pass's: same start, same length (A/V sync unchanged).
      expect(Number(audio(b).start_time)).toBeCloseTo(Number(audio(a).start_time), 3);
      expect(Math.abs(Number(audio(a).duration) - Number(audio(b).duration))).toBeLessThanOrEqual(0.022);
      expect(Number(video(b).start_time)).toBeCloseTo(Number(video(a).start_time), 3);

      const [p1, p2] = [await psnr(single, source, fps), await psnr(joined, source, fps)];
      expect(Math.abs(p1.average - p2.average)).toBeLessThanOrEqual(0.1);
      // A duplicated or dropped frame at a seam shifts every frame after it against the source:
      // the worst frame would fall to the level of two different frames (~10–25 dB here).
      expect(p2.worst).toBeGreaterThan(35);
    }, 180_000);
  }
});
