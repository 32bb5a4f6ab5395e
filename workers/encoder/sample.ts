import { existsSync } from "node:fs";
import { rename, rm, writeFile } from "node:fs/promises";
import { QUIET_GLOBAL_OPTIONS } from "../ffmpeg/command.js";
import type { FfmpegCommand, MediaTools } from "../ffmpeg/types.js";

/** English captions of the sample, one every few seconds, so subtitle tracks have something to carry. */
const SAMPLE_CAPTIONS = [
  [0.5, 3, "This is the Rendition sample clip."],
  [3.5, 6.5, "Two audio languages: English and French."],
  [7, 9.5, "And this caption track."],
] as const;

function srtTime(seconds: number): string {
  const ms = Math.round(seconds * 1000);
  return `00:00:${String(Math.floor(ms / 1000)).padStart(2, "0")},${String(ms % 1000).padStart(3, "0")}`;
}

/**
 * A 10 s 720p30 test pattern with two audio streams, an English (440 Hz) and a French (660 Hz)
 * tone, and an English caption stream (mov_text): something to transcode on a fresh install,
 * ladders with two audio languages and a subtitle track included.
 */
function sampleClipCommand(file: string, captions: string): FfmpegCommand {
  return {
    global: [...QUIET_GLOBAL_OPTIONS],
    inputs: [
      { options: ["-f", "lavfi"], file: "testsrc2=size=1280x720:rate=30:duration=10" },
      { options: ["-f", "lavfi"], file: "sine=frequency=440:sample_rate=48000:duration=10" },
      { options: ["-f", "lavfi"], file: "sine=frequency=660:sample_rate=48000:duration=10" },
      { options: ["-f", "srt"], file: captions },
    ],
    outputs: [
      {
        options: [
          ...["-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k"],
          ...["-c:s", "mov_text", "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra", "-metadata:s:s:0", "language=eng"],
          ...["-t", "10", "-f", "mp4"],
        ],
        file,
      },
    ],
  };
}

/** Writes the sample clip unless it is there; returns whether it exists afterwards. */
export async function ensureSampleClip(tools: MediaTools, file: string): Promise<boolean> {
  if (existsSync(file)) return true;
  const partial = `${file}.partial`;
  const captions = `${file}.captions.srt`;
  await writeFile(captions, SAMPLE_CAPTIONS.map(([from, to, text], i) => `${i + 1}\n${srtTime(from)} --> ${srtTime(to)}\n${text}\n`).join("\n"));
  try {
    await tools.run(sampleClipCommand(partial, captions), { timeoutMs: 120_000 });
  } finally {
    await rm(captions, { force: true });
  }
  await rename(partial, file);
  return true;
}
