/**
 * `npm run bench:chunked`: what cutting one encode into chunks buys when two cores encode them,
 * measured side by side on one machine (not a test; figures for docs/benchmarks.md).
 *
 * A generated 1080p30 source (two test patterns cut every 3.5 s, with moving grain) and audio → 720p H.264 standard (x264 medium,
 * CRF 23, AAC 128 kbps), x264 and the decoder on one thread per process so that "a worker" is
 * one core:
 *   (a) one process pinned to core 0 (`taskset -c 0`): the single-pass encode;
 *   (b) two "workers" pinned to cores 0 and 1, each taking the next chunk as it frees up
 *       (chunks planned by workers/chunking on segment-aligned frames, --chunk seconds long),
 *       the audio encoded once, then the chunks joined with the concat demuxer and the audio
 *       muxed in: the commands the chunked path runs, without the queue and the database.
 * Reports wall-clock times, the speed-up a/b, frame counts and PSNR against the source.
 *
 * Options: --seconds S (source length, default 300), --chunk S (default 60), --rounds N (default 1).
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, join } from "node:path";
import { chunkedSourceFile, frames, psnrOf } from "./chunked-checks.js";
import { parseArgs } from "node:util";
import { flattenCommand } from "../workers/ffmpeg/command.js";
import type { FfmpegCommand } from "../workers/ffmpeg/types.js";
import { assembleCommand, audioCommand, chunkVideoCommand, concatList } from "../workers/chunking/chunk-commands.js";
import { planChunks, type Chunk } from "../workers/chunking/chunk-plan.js";
import { videoFrameTimes } from "../workers/chunking/frame-times.js";

const { values: opts } = parseArgs({
  options: { seconds: { type: "string", default: "300" }, chunk: { type: "string", default: "60" }, rounds: { type: "string", default: "1" } },
});
const SECONDS = Number(opts.seconds);
const CHUNK = Number(opts.chunk);
const ROUNDS = Number(opts.rounds);
const FFMPEG = process.env.FFMPEG_PATH || "ffmpeg";
const FFPROBE = process.env.FFPROBE_PATH || "ffprobe";
const VIDEO = ["-vf", "scale=-2:720", "-c:v", "libx264", "-preset", "medium", "-crf", "23", "-pix_fmt", "yuv420p", "-threads", "1", "-filter_threads", "1"];
const AUDIO = ["-c:a", "aac", "-b:a", "128k"];

if (!existsSync("/usr/bin/taskset")) {
  console.error("bench:chunked needs taskset (util-linux) to pin each process to one core");
  process.exit(2);
}

const work = dirname(chunkedSourceFile(SECONDS));
mkdirSync(work, { recursive: true });

function pinned(core: number, command: FfmpegCommand): Promise<number> {
  const started = performance.now();
  // -threads 1 before -i: one decoder thread too.
  const argv = flattenCommand({ ...command, inputs: command.inputs.map((input, i) => (i === 0 ? { ...input, options: ["-threads", "1", ...input.options] } : input)) });
  return new Promise((resolve, reject) =>
    execFile("taskset", ["-c", String(core), FFMPEG, ...argv], { maxBuffer: 64 * 1024 * 1024 }, (err, _stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(performance.now() - started))),
  );
}

function sourceFile(): string {
  const file = chunkedSourceFile(SECONDS);
  if (existsSync(file)) return file;
  console.log(`generating a ${SECONDS} s 1080p30 source with scene cuts and grain (once; cached in ${work})`);
  // Scene cuts every 3.5 s between two patterns, with moving grain so the encoder has real work.
  const video = `testsrc2=size=1920x1080:rate=30:duration=${SECONDS}[a];smptehdbars=size=1920x1080:rate=30:duration=${SECONDS}[b];[a][b]blend=all_expr='if(lt(mod(T,7),3.5),A,B)',noise=alls=3:allf=t`;
  execFileSync(FFMPEG, ["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", video, "-f", "lavfi", "-i", `sine=frequency=440:sample_rate=48000:duration=${SECONDS}`, "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-c:a", "aac", "-t", String(SECONDS), file], { stdio: "inherit" });
  return file;
}

async function single(source: string, out: string): Promise<number> {
  return pinned(0, { global: ["-hide_banner", "-nostdin", "-y", "-loglevel", "error"], inputs: [{ options: [], file: source }], outputs: [{ options: ["-map", "0:v:0", "-map", "0:a:0", ...VIDEO, ...AUDIO, "-movflags", "+faststart"], file: out }] });
}

async function chunked(source: string, chunks: Chunk[], out: string): Promise<{ total: number; encode: number; assemble: number }> {
  const started = performance.now();
  const dir = join(work, "chunks");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const parts = chunks.map((c) => join(dir, `chunk-${c.index}.mp4`));
  const audio = join(dir, "audio.m4a");
  // Two workers, each on its own core, each taking the next piece as it frees up.
  const pieces: FfmpegCommand[] = [audioCommand(source, AUDIO, audio), ...chunks.map((c, i) => chunkVideoCommand(source, c, VIDEO, parts[i]!))];
  const worker = async (core: number) => {
    for (let piece = pieces.shift(); piece; piece = pieces.shift()) await pinned(core, piece);
  };
  await Promise.all([worker(0), worker(1)]);
  const encode = performance.now() - started;
  const list = join(dir, "list.txt");
  writeFileSync(list, concatList(parts));
  const assembleStarted = performance.now();
  await pinned(0, assembleCommand(list, audio, out, ["-movflags", "+faststart"]));
  return { total: performance.now() - started, encode, assemble: performance.now() - assembleStarted };
}

async function main(): Promise<void> {
  const source = sourceFile();
  const chunks = planChunks(await videoFrameTimes(FFPROBE, source), { chunkSeconds: CHUNK, alignSeconds: 2, minInputSeconds: 0 });
  if (!chunks) throw new Error("the source is too short to cut");
  console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model}), load ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  console.log(`source: ${SECONDS} s 1080p30, ${frames(source)} frames; ${chunks.length} chunks of ~${CHUNK} s`);
  for (let round = 1; round <= ROUNDS; round++) {
    const a = join(work, "single.mp4");
    const b = join(work, "chunked.mp4");
    const tSingle = await single(source, a);
    const tChunked = await chunked(source, chunks, b);
    console.log(
      `round ${round}: (a) 1 core single pass ${(tSingle / 1000).toFixed(1)} s | (b) 2 cores chunked ${(tChunked.total / 1000).toFixed(1)} s ` +
        `(encode ${(tChunked.encode / 1000).toFixed(1)} s, assemble ${(tChunked.assemble / 1000).toFixed(2)} s) | speed-up a/b ${(tSingle / tChunked.total).toFixed(2)}x`,
    );
    const [fa, fb] = [frames(a), frames(b)];
    const [pa, pb] = [psnrOf(a, source), psnrOf(b, source)];
    const size = (f: string) => readFileSync(f).length;
    console.log(`  frames ${fa} vs ${fb}; PSNR vs source ${pa.toFixed(3)} vs ${pb.toFixed(3)} dB (Δ ${(pb - pa).toFixed(3)}); size ${size(a)} vs ${size(b)} bytes (${((size(b) / size(a) - 1) * 100).toFixed(2)} %)`);
  }
}

await main();
