/** What both chunked benches check of an output: frames, and PSNR against the 1080p30 source scaled to 720p. */
import { execFileSync, spawnSync } from "node:child_process";
import { join } from "node:path";
import { tmpdir } from "node:os";

const FFMPEG = process.env.FFMPEG_PATH || "ffmpeg";
const FFPROBE = process.env.FFPROBE_PATH || "ffprobe";

/** Where `bench:chunked` keeps its generated source of `seconds` s (bench:chunked-workers reuses it). */
export function chunkedSourceFile(seconds: number): string {
  return join(tmpdir(), "rendition-bench-chunked", `source-${seconds}s.mp4`);
}

/** Video frames of a file, counted from its packets. */
export function frames(file: string): number {
  return Number(execFileSync(FFPROBE, ["-v", "error", "-count_packets", "-select_streams", "v:0", "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", file], { encoding: "utf8" }).trim());
}

/** Average PSNR against the source (scaled to 720p), frames paired by index; ffmpeg prints it on stderr. */
export function psnrOf(file: string, source: string): number {
  const result = spawnSync(FFMPEG, ["-hide_banner", "-i", file, "-i", source, "-lavfi", "[1:v]scale=-2:720[r];[0:v]setpts=N/30/TB[a];[r]setpts=N/30/TB[b];[a][b]psnr", "-f", "null", "-"], { encoding: "utf8" });
  return Number(/average:([\d.]+)/.exec(result.stderr)?.[1] ?? NaN);
}
