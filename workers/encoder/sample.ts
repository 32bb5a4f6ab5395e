import { existsSync } from "node:fs";
import { rename } from "node:fs/promises";
import type { FfmpegCommand, MediaTools } from "../ffmpeg/types.js";

/**
 * A 10 s 720p30 test pattern with two audio streams, an English (440 Hz) and a French (660 Hz)
 * tone: something to transcode on a fresh install, ladders with two audio languages included.
 */
function sampleClipCommand(file: string): FfmpegCommand {
  return {
    global: ["-hide_banner", "-nostdin", "-y", "-loglevel", "error"],
    inputs: [
      { options: ["-f", "lavfi"], file: "testsrc2=size=1280x720:rate=30:duration=10" },
      { options: ["-f", "lavfi"], file: "sine=frequency=440:sample_rate=48000:duration=10" },
      { options: ["-f", "lavfi"], file: "sine=frequency=660:sample_rate=48000:duration=10" },
    ],
    outputs: [
      {
        options: [
          ...["-map", "0:v", "-map", "1:a", "-map", "2:a", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k"],
          ...["-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra", "-shortest", "-f", "mp4"],
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
  await tools.run(sampleClipCommand(partial), { timeoutMs: 120_000 });
  await rename(partial, file);
  return true;
}
