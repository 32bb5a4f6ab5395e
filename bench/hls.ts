/**
 * The HLS part of `npm run bench` (bench/ladder.ts runs it): an HLS fMP4 ladder (1080p/720p/480p
 * H.264 standard quality, AAC 128 kbps, 6 s segments) from the bench's 1080p30 clip, two or three
 * ways:
 *   (a)  Rendition end to end: Create with one OUTPUT_TYPE_HLS output -> completed, with the
 *        time at which the master playlist appears in the output origin (when a player can start)
 *        and, from the worker's temporary directory, when its ffmpeg closed each rendition's
 *        first segment, finished, and when packaging and upload were done;
 *   (b)  one hand-written ffmpeg command: one decode, split=3, Rendition's streaming encoder
 *        settings, a single `-f hls` output with -var_stream_map and -master_pl_name;
 *   (b') (--hls-outputs) the same encode with one hls output per rendition, as Rendition's worker
 *        writes it (workers/ffmpeg/transcode.ts buildTranscodeCommand), without a master playlist.
 * The output directories (and the worker's temporary one) are polled for each rendition's first
 * complete segment and for the playlists.
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import type { Client } from "@connectrpc/connect";
import { JobStatus, OutputType, Quality, Resolution, VideoCodec } from "../gen/rendition/v1/common_pb.js";
import type { JobService } from "../gen/rendition/v1/job_pb.js";

/** The segment length Rendition uses when a spec sets none (services/jobs/output-formats.ts). */
export const HLS_SEGMENT_S = 6;
const FPS = 30;
const POLL_MS = 25;

export const HLS_LADDER = [
  { id: "v0", width: 1920, height: 1080, resolution: Resolution.RESOLUTION_1080P },
  { id: "v1", width: 1280, height: 720, resolution: Resolution.RESOLUTION_720P },
  // 480p of a 16:9 source: 853.3 wide, rounded to the nearest even number (workers/ffmpeg/geometry.ts).
  { id: "v2", width: 854, height: 480, resolution: Resolution.RESOLUTION_480P },
];
/** Rendition's directory names: one per video variant, then the audio track. (b) uses the same. */
export const HLS_RENDITIONS = [...HLS_LADDER.map((r) => r.id), "a0"];

/**
 * What Rendition's worker passes for an H.264 standard-quality rung of a segmented output
 * (videoCodecOptions + alignedKeyframes in workers/ffmpeg/transcode.ts), written out by hand:
 * x264 medium CRF 23, a keyframe forced on every segment boundary, GOP = one segment, no
 * scene-cut keyframes, forced keyframes as IDR frames.
 */
const X264_STREAMING = [
  "-c:v", "libx264", "-preset", "medium", "-crf", "23",
  "-force_key_frames", `expr:gte(t,n_forced*${HLS_SEGMENT_S})`, "-g", String(FPS * HLS_SEGMENT_S), "-sc_threshold", "0", "-forced-idr", "1",
  "-pix_fmt", "yuv420p",
];
const AAC_128 = ["-c:a", "aac", "-b:a", "128k"];
/** hlsMuxerOptions in workers/ffmpeg/transcode.ts: VOD playlist, fMP4 + init segment, numbers from 1. */
const HLS_MUXER = [
  "-map_metadata", "-1", "-max_muxing_queue_size", "4096",
  "-f", "hls", "-hls_time", String(HLS_SEGMENT_S), "-hls_playlist_type", "vod", "-hls_segment_type", "fmp4",
  "-hls_fmp4_init_filename", "init.mp4", "-hls_flags", "independent_segments", "-start_number", "1",
];
/** One decode, split once per rung, each scaled to Rendition's size for it; timestamps passed through as the worker does. */
const SPLIT_FILTER = [
  "-filter_complex",
  `[0:v:0]split=${HLS_LADDER.length}${HLS_LADDER.map((_, i) => `[s${i}]`).join("")};` + HLS_LADDER.map((r, i) => `[s${i}]scale=${r.width}:${r.height}[v${i}]`).join(";"),
  "-vsync", "passthrough",
];

export type HlsBaseline = "var_stream_map" | "outputs";

/** (b) / (b'): the argv (after the common -hide_banner … -loglevel error) of the hand-written command. */
export function hlsCommand(input: string, outDir: string, baseline: HlsBaseline): string[] {
  if (baseline === "var_stream_map") {
    return [
      "-i", input, ...SPLIT_FILTER,
      ...HLS_LADDER.flatMap((_, i) => ["-map", `[v${i}]`]), "-map", "0:a:0",
      ...X264_STREAMING, ...AAC_128, ...HLS_MUXER,
      "-hls_segment_filename", join(outDir, "%v", "seg_%05d.m4s"),
      "-master_pl_name", "master.m3u8",
      "-var_stream_map", [...HLS_LADDER.map((r, i) => `v:${i},agroup:aac,name:${r.id}`), "a:0,agroup:aac,name:a0"].join(" "),
      join(outDir, "%v", "index.m3u8"),
    ];
  }
  const output = (id: string) => [...HLS_MUXER, "-hls_segment_filename", join(outDir, id, "seg_%05d.m4s"), join(outDir, id, "index.m3u8")];
  return [
    "-i", input, ...SPLIT_FILTER,
    ...HLS_LADDER.flatMap((r, i) => ["-map", `[v${i}]`, ...X264_STREAMING, ...output(r.id)]),
    "-map", "0:a:0", ...AAC_128, ...output("a0"),
  ];
}

function ffmpegAsync(ffmpeg: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(ffmpeg, ["-hide_banner", "-nostdin", "-y", "-loglevel", "error", ...args], { stdio: ["ignore", "ignore", "inherit"] });
    child.once("error", reject);
    child.once("exit", (code, signal) => (code === 0 ? resolve() : reject(new Error(`ffmpeg exited with ${code ?? signal}`))));
  });
}

/**
 * When (ms after `t0`) each condition first held, checked every POLL_MS on the event loop (so
 * the figures are up to POLL_MS late; the commands measured run in other processes).
 */
class Milestones {
  private readonly at = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  constructor(
    private readonly t0: number,
    private readonly checks: Record<string, () => boolean>,
  ) {
    this.timer = setInterval(() => this.check(), POLL_MS);
  }
  private check(): void {
    const now = performance.now();
    for (const key of Object.keys(this.checks)) {
      if (this.at.has(key)) continue;
      let held = false;
      try {
        held = this.checks[key]();
      } catch {
        // A file that is being replaced or removed: not there yet (or any more).
      }
      if (held) this.at.set(key, now - this.t0);
    }
  }
  stop(): Record<string, number | undefined> {
    this.check();
    clearInterval(this.timer);
    return Object.fromEntries(this.at);
  }
}

/** USER_HZ: the unit of /proc/<pid>/stat times (100 on Linux everywhere that matters). */
const CLOCK_TICKS = 100;

/**
 * CPU seconds from /proc/<pid>/stat: the process's own (utime + stime) and that of its children
 * that have ended and been waited for (cutime + cstime). Less sensitive to other load on the
 * machine than wall time. NaN where there is no /proc.
 */
export function cpuSeconds(pid: number | "self"): { own: number; children: number } {
  try {
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ").at(-1)!.split(" ");
    const field = (n: number) => Number(fields[n - 3]) / CLOCK_TICKS;
    return { own: field(14) + field(15), children: field(16) + field(17) };
  } catch {
    return { own: NaN, children: NaN };
  }
}

function readIfThere(file: string): string | undefined {
  return existsSync(file) ? readFileSync(file, "utf8") : undefined;
}

/**
 * A rendition's first segment is complete. With `-hls_playlist_type vod` (Rendition's and (b)'s)
 * the hls muxer writes the media playlists, and ffmpeg's master playlist, only when the encode
 * ends, so the directory is what shows progress. For fMP4 the muxer buffers each segment and
 * creates its file only when it closes the segment, writing it in one go (the init segment is
 * created empty at the start and filled with the first). So: the init segment is a whole box
 * sequence, and segment 1 exists and is one too (moof + mdat, their sizes adding up to the
 * file's), which rules out catching it mid-write.
 */
function firstSegmentWritten(dir: string): boolean {
  const init = readdirSync(dir).find((name) => /^init.*\.mp4$/.test(name));
  return !!init && wholeBoxes(join(dir, init), "moov") && wholeBoxes(join(dir, "seg_00001.m4s"), "mdat");
}

/** The file is a sequence of complete ISO BMFF boxes, one of them `needed`. */
function wholeBoxes(file: string, needed: string): boolean {
  if (!existsSync(file)) return false;
  const fd = openSync(file, "r");
  try {
    const size = fstatSync(fd).size;
    const header = Buffer.alloc(16);
    let offset = 0;
    let seen = false;
    while (offset + 8 <= size) {
      readSync(fd, header, 0, 16, offset);
      let boxSize = header.readUInt32BE(0);
      if (boxSize === 1) boxSize = Number(header.readBigUInt64BE(8));
      if (boxSize < 8) return false;
      seen ||= header.toString("latin1", 4, 8) === needed;
      offset += boxSize;
    }
    return seen && offset === size;
  } finally {
    closeSync(fd);
  }
}

/** The muxer wrote the playlist's end: ffmpeg has finished this rendition. */
function renditionFinished(dir: string): boolean {
  return readIfThere(join(dir, "index.m3u8"))?.includes("#EXT-X-ENDLIST") ?? false;
}

const firstKeys = HLS_RENDITIONS.map((id) => `first:${id}`);
/** One check per rendition: `first:v0` … holds once that rendition's first segment is complete in `dir()`. */
function firstSegmentChecks(dir: () => string | undefined): Record<string, () => boolean> {
  return Object.fromEntries(HLS_RENDITIONS.map((id) => [`first:${id}`, () => { const d = dir(); return !!d && firstSegmentWritten(join(d, id)); }]));
}
/** The last of `keys` to have held, or NaN if one never did. */
const maxOf = (at: Record<string, number | undefined>, keys: readonly string[]) => (keys.every((k) => at[k] !== undefined) ? Math.max(...keys.map((k) => at[k]!)) : NaN);

export interface HlsFfmpegTimes {
  wallMs: number;
  /** Every rendition's first segment complete on disk (not yet in a playlist: see firstSegmentWritten). */
  firstSegmentsMs: number;
  /** (b) only: ffmpeg's master playlist exists (written with the VOD media playlists, at the end). */
  masterMs?: number;
  /** Per rendition, when its first segment was complete. */
  firstMs: Record<string, number>;
  /** CPU seconds ffmpeg used. */
  cpuS: number;
  /** CPU seconds the (idle) Rendition server used meanwhile: its background work (outbox relay, queue polling). */
  idleServerCpuS: number;
}

/** (b) or (b'): the hand-written command, its output directory polled while it runs. */
export async function runHlsFfmpeg(ffmpeg: string, input: string, outDir: string, baseline: HlsBaseline, serverPid: number): Promise<HlsFfmpegTimes> {
  rmSync(outDir, { recursive: true, force: true });
  // The hls muxer creates %v directories itself; one output per rendition needs them to exist (as the worker does).
  if (baseline === "outputs") for (const id of HLS_RENDITIONS) mkdirSync(join(outDir, id), { recursive: true });
  const cpuBefore = cpuSeconds("self").children;
  const serverBefore = cpuSeconds(serverPid).own;
  const t0 = performance.now();
  const milestones = new Milestones(t0, { ...firstSegmentChecks(() => outDir), master: () => existsSync(join(outDir, "master.m3u8")) });
  let at: Record<string, number | undefined> = {};
  try {
    await ffmpegAsync(ffmpeg, hlsCommand(input, outDir, baseline));
  } finally {
    at = milestones.stop();
  }
  const wallMs = performance.now() - t0;
  return {
    wallMs,
    firstSegmentsMs: maxOf(at, firstKeys),
    masterMs: baseline === "var_stream_map" ? at.master : undefined,
    firstMs: Object.fromEntries(HLS_RENDITIONS.map((id) => [id, at[`first:${id}`] ?? NaN])),
    cpuS: cpuSeconds("self").children - cpuBefore,
    idleServerCpuS: cpuSeconds(serverPid).own - serverBefore,
  };
}

export interface HlsJobTimes {
  wallMs: number;
  /** Create answered. */
  createdMs: number;
  /** The worker made the renditions' directories: ffmpeg starts right after. */
  ffmpegStartMs: number;
  /** The worker's ffmpeg had completed the first segment of every rendition (in its temporary directory, invisible to callers). */
  firstSegmentsMs: number;
  /** Every media playlist ended: ffmpeg has finished. */
  encodedMs: number;
  /** The master playlist written in the temporary directory: packaging done, upload starts. */
  packagedMs: number;
  /** The master playlist in the output origin (uploaded last, after every segment and media playlist): a player can start. */
  masterInOriginMs: number;
  /** The job's own Execution figures. */
  queueMs: number;
  probeMs: number;
  encodeMs: number;
  /** Packaging (measuring segments, writing the master) and upload: Rendition counts both as upload. */
  uploadMs: number;
  /** CPU seconds during the job: the server process itself (API, PGlite, queue, worker, packaging, copies) and its child processes (ffprobe, ffmpeg). */
  serverCpuS: number;
  childrenCpuS: number;
}

/** Files under `dir`, relative, with their sizes. */
export function listOutput(dir: string): Map<string, number> {
  const files = new Map<string, number>();
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const file = join(d, entry.name);
      if (entry.isDirectory()) walk(file);
      else files.set(relative(dir, file), statSync(file).size);
    }
  };
  walk(dir);
  return files;
}

/**
 * (a): Create with one HLS output of the three rungs (default segments), followed with Watch
 * until completed. `storage` is the local origin's directory, `workerTmp` RENDITION_TMP_DIR.
 * Returns the times and the output's directory in the origin.
 */
export async function runHlsJob(
  jobs: Client<typeof JobService>,
  originId: string,
  inputPath: string,
  storage: string,
  workerTmp: string,
  serverPid: number,
): Promise<{ times: HlsJobTimes; outputDir: string }> {
  const cpuBefore = cpuSeconds(serverPid);
  const t0 = performance.now();
  const { job } = await jobs.create({
    inputOriginId: originId,
    inputPath,
    outputOriginId: originId,
    outputs: [{ type: OutputType.HLS, video: HLS_LADDER.map((r) => ({ codec: VideoCodec.H264, quality: Quality.STANDARD, resolution: r.resolution })) }],
  });
  const createdMs = performance.now() - t0;
  const output = job!.outputs[0]!;
  const outputDir = join(storage, output.path);
  // The worker encodes into RENDITION_TMP_DIR/rendition-<job id>-XXXXXX/<output id>/<rendition>.
  let tmpDir: string | undefined;
  const tmp = () => {
    if (!tmpDir) {
      const name = readdirSync(workerTmp).find((n) => n.startsWith(`rendition-${job!.id}-`));
      if (name) tmpDir = join(workerTmp, name, output.id);
    }
    return tmpDir;
  };
  const milestones = new Milestones(t0, {
    ffmpegStart: () => HLS_RENDITIONS.every((id) => existsSync(join(tmp() ?? "/nonexistent", id))),
    ...firstSegmentChecks(tmp),
    encoded: () => !!tmp() && HLS_RENDITIONS.every((id) => renditionFinished(join(tmp()!, id))),
    packaged: () => !!tmp() && existsSync(join(tmp()!, "master.m3u8")),
    masterInOrigin: () => existsSync(join(outputDir, "master.m3u8")),
  });
  let last;
  let at: Record<string, number | undefined> = {};
  try {
    for await (const event of jobs.watch({ id: job!.id })) last = event.job;
  } finally {
    at = milestones.stop();
  }
  const wallMs = performance.now() - t0;
  const cpuAfter = cpuSeconds(serverPid);
  if (last?.status !== JobStatus.COMPLETED) throw new Error(`job ${job!.id} ended ${JobStatus[last?.status ?? 0]}: ${last?.errorCode} ${last?.errorMessage}`);
  const url = last.outputs[0]?.outputUrl ?? "";
  if (!url.endsWith(`${output.path}/master.m3u8`)) throw new Error(`the output's URL ${url} is not ${outputDir}/master.m3u8, where the bench looks`);
  const e = last.execution;
  return {
    outputDir,
    times: {
      wallMs,
      createdMs,
      ffmpegStartMs: at.ffmpegStart ?? NaN,
      firstSegmentsMs: maxOf(at, firstKeys),
      encodedMs: at.encoded ?? NaN,
      packagedMs: at.packaged ?? NaN,
      masterInOriginMs: at.masterInOrigin ?? NaN,
      queueMs: Number(e?.queueDurationMs ?? 0),
      probeMs: Number(e?.probeDurationMs ?? 0),
      encodeMs: Number(e?.encodeDurationMs ?? 0),
      uploadMs: Number(e?.uploadDurationMs ?? 0),
      serverCpuS: cpuAfter.own - cpuBefore.own,
      childrenCpuS: cpuAfter.children - cpuBefore.children,
    },
  };
}
