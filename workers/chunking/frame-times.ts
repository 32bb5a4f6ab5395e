import { execFile } from "node:child_process";
import { absoluteFile, INPUT_SAFETY_OPTIONS } from "../ffmpeg/command.js";
import type { FrameTime } from "./chunk-plan.js";

/**
 * Every video frame's presentation time, read from the packets (no decoding: seconds for an
 * hour of video), as exact fractions of the stream's time base.
 */
export function videoFrameTimes(ffprobePath: string, file: string, options: { signal?: AbortSignal } = {}): Promise<FrameTime[]> {
  const args = ["-v", "error", ...INPUT_SAFETY_OPTIONS, "-select_streams", "v:0", "-show_entries", "stream=time_base:packet=pts", "-of", "json", absoluteFile(file)];
  return new Promise((resolve, reject) => {
    execFile(ffprobePath, args, { maxBuffer: 512 * 1024 * 1024, signal: options.signal }, (err, stdout) => {
      if (err) return reject(err);
      const parsed = JSON.parse(stdout) as { streams?: Array<{ time_base?: string }>; packets?: Array<{ pts?: number }> };
      const [num, den] = (parsed.streams?.[0]?.time_base ?? "").split("/").map(Number);
      if (!num || !den) return reject(new Error(`ffprobe gave no time base for ${file}`));
      resolve((parsed.packets ?? []).filter((p) => p.pts !== undefined).map((p) => ({ pts: BigInt(p.pts!), num, den })));
    });
  });
}
