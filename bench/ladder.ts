/**
 * `npm run bench`: how much Rendition adds to ffmpeg. Not a test: it prints figures for
 * docs/benchmarks.md. Runs on one machine, in one go:
 *
 *   1. a 3-rendition H.264 ladder (1080p/720p/480p, standard quality, AAC) from a generated
 *      1080p30 clip, three ways:
 *        (a) Rendition end to end: Create -> completed (outputs written), embedded `npm start`
 *        (b) one hand-written ffmpeg command: one decode, split=3, three encoders
 *        (c) three separate ffmpeg runs, one per rendition (what naive scripts do)
 *      and the ratios a/b and a/c;
 *   2. the same ladder as one HLS fMP4 output (6 s segments), bench/hls.ts:
 *        (a) Rendition end to end, and when the master playlist appears in the output origin
 *        (b) one hand-written ffmpeg command, split=3, a single `-f hls` with -var_stream_map,
 *            and when it had written the first segment of every rendition
 *        (b') with --hls-outputs: the same with one hls output per rendition, as the worker does
 *   3. orchestration overhead: a 2 s 360p job, Create -> completed minus the same ffmpeg command
 *      run by hand (median of 10 each), and how much of it is the input's ffprobe run.
 *
 * Options: --duration S (clip length, default 20), --rounds N (rounds of 1 and 2, default 1; the
 * ways are interleaved per round), --skip-ladder, --skip-hls, --hls-outputs, --skip-overhead.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import http from "node:http";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { JobStatus, OutputType, Quality, Resolution, VideoCodec } from "../gen/rendition/v1/common_pb.js";
import { JobService } from "../gen/rendition/v1/job_pb.js";
import { HLS_RENDITIONS, listOutput, runHlsFfmpeg, runHlsJob, type HlsFfmpegTimes, type HlsJobTimes } from "./hls.js";

const { values: opts } = parseArgs({
  options: {
    duration: { type: "string", default: "20" },
    rounds: { type: "string", default: "1" },
    "skip-overhead": { type: "boolean", default: false },
    "skip-ladder": { type: "boolean", default: false },
    "skip-hls": { type: "boolean", default: false },
    "hls-outputs": { type: "boolean", default: false },
  },
});
const DURATION = Number(opts.duration);
const ROUNDS = Number(opts.rounds);
const FFMPEG = process.env.FFMPEG_PATH || "ffmpeg";
const FFPROBE = process.env.FFPROBE_PATH || "ffprobe";

const work = mkdtempSync(join(tmpdir(), "rendition-bench-"));
const storage = join(work, "data", "storage");

function ffmpeg(args: string[]): number {
  const started = performance.now();
  execFileSync(FFMPEG, ["-hide_banner", "-nostdin", "-y", "-loglevel", "error", ...args], { stdio: ["ignore", "ignore", "inherit"] });
  return performance.now() - started;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/** The encoder settings Rendition uses for H.264 standard quality (workers/ffmpeg/transcode.ts), written out by hand. */
const X264_STANDARD = ["-c:v", "libx264", "-preset", "medium", "-crf", "23", "-pix_fmt", "yuv420p"];
const AAC = ["-c:a", "aac", "-b:a", "128k"];
const MP4 = ["-movflags", "+faststart"];
const LADDER = [
  { height: 1080, resolution: Resolution.RESOLUTION_1080P },
  { height: 720, resolution: Resolution.RESOLUTION_720P },
  { height: 480, resolution: Resolution.RESOLUTION_480P },
];

function ladderOneCommand(input: string, outDir: string): number {
  const filter = `[0:v]split=3[s0][s1][s2];` + LADDER.map((r, i) => `[s${i}]scale=-2:${r.height}[v${i}]`).join(";");
  const outputs = LADDER.flatMap((r, i) => ["-map", `[v${i}]`, "-map", "0:a", ...X264_STANDARD, ...AAC, ...MP4, join(outDir, `b-${r.height}.mp4`)]);
  return ffmpeg(["-i", input, "-filter_complex", filter, ...outputs]);
}

function ladderSeparateRuns(input: string, outDir: string): number {
  let total = 0;
  for (const r of LADDER) total += ffmpeg(["-i", input, "-vf", `scale=-2:${r.height}`, ...X264_STANDARD, ...AAC, ...MP4, join(outDir, `c-${r.height}.mp4`)]);
  return total;
}

interface Server {
  child: ChildProcess;
  jobs: ReturnType<typeof createClient<typeof JobService>>;
  originId: string;
}

async function startRendition(): Promise<Server> {
  const child = spawn(process.execPath, ["--import", "tsx", "services/main.ts", "all"], {
    env: { ...process.env, RENDITION_DATA_DIR: join(work, "data"), PORT: "0", HOST: "127.0.0.1", RENDITION_TMP_DIR: work },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const port = await new Promise<number>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      log += chunk.toString();
      const match = /listening on [^\s:]+:(\d+)/.exec(log);
      if (match) resolve(Number(match[1]));
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => reject(new Error(`rendition exited with ${code}:\n${log}`)));
  });
  const credentials = JSON.parse(readFileSync(join(work, "data", "credentials.json"), "utf8"));
  const transport = createConnectTransport({
    baseUrl: `http://127.0.0.1:${port}`,
    httpVersion: "1.1",
    // A fresh connection per call: between calls the bench runs ffmpeg for longer than any
    // keep-alive timeout, and a reused socket the server has just closed would fail the call.
    nodeOptions: { agent: new http.Agent({ keepAlive: false }) },
    interceptors: [
      (next) => (req) => {
        req.header.set("authorization", `Bearer ${credentials.api_key}`);
        req.header.set("x-organization-id", credentials.organization_id);
        return next(req);
      },
    ],
  });
  return { child, jobs: createClient(JobService, transport), originId: credentials.local_origin_id };
}

/** Create -> completed, following the job with Watch (no polling). */
interface JobTimes {
  wallMs: number;
  queueMs: number;
  probeMs: number;
  encodeMs: number;
  uploadMs: number;
}

async function runJob(server: Server, inputPath: string, outputs: Array<{ resolution?: Resolution; height?: number }>): Promise<JobTimes> {
  const started = performance.now();
  const { job } = await server.jobs.create({
    inputOriginId: server.originId,
    inputPath,
    outputOriginId: server.originId,
    outputs: outputs.map((o) => ({ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, quality: Quality.STANDARD, ...o }] })),
  });
  let last;
  for await (const event of server.jobs.watch({ id: job!.id })) last = event.job;
  const wallMs = performance.now() - started;
  if (last?.status !== JobStatus.COMPLETED) throw new Error(`job ${job!.id} ended ${JobStatus[last?.status ?? 0]}: ${last?.errorCode} ${last?.errorMessage}`);
  const e = last.execution;
  return {
    wallMs,
    queueMs: Number(e?.queueDurationMs ?? 0),
    probeMs: Number(e?.probeDurationMs ?? 0),
    encodeMs: Number(e?.encodeDurationMs ?? 0),
    uploadMs: Number(e?.uploadDurationMs ?? 0),
  };
}

const breakdown = (t: JobTimes) =>
  `queue ${t.queueMs} ms, fetch+probe ${t.probeMs} ms, encode ${t.encodeMs} ms, upload ${t.uploadMs} ms`;

interface HlsRounds {
  /** The 1-minute load average before each measurement: how busy the shared machine was. */
  load: number[];
  a: HlsJobTimes[];
  b: HlsFfmpegTimes[];
  bOutputs: HlsFfmpegTimes[];
  /** The last round's output directories: (a) in the origin, (b) in the bench's directory. */
  aDir?: string;
  bDir?: string;
}

const HLS_B_DIR = join(work, "hls-b");
const HLS_B_OUTPUTS_DIR = join(work, "hls-b-outputs");
const perRendition = (t: HlsFfmpegTimes) => HLS_RENDITIONS.map((id) => `${id} ${s(t.firstMs[id]!)}`).join(", ");

/** Where (a)'s time went, from its milestones: each phase ends where the next begins, and they add up to the wall time. */
function hlsPhases(t: HlsJobTimes) {
  return {
    "before ffmpeg": t.ffmpegStartMs,
    ffmpeg: t.encodedMs - t.ffmpegStartMs,
    // From the playlists' end (written in ffmpeg's trailer) to the master playlist in the temp dir.
    "ffmpeg exit + packaging": t.packagedMs - t.encodedMs,
    upload: t.masterInOriginMs - t.packagedMs,
    "completion seen": t.wallMs - t.masterInOriginMs,
  };
}

/**
 * One HLS round: (b), (a) and, with --hls-outputs, (b'). Odd rounds run (b) first, even rounds
 * last, so that a change in the machine's load during a round does not always favour one side.
 */
async function hlsRound(round: number, server: Server, input: string, r: HlsRounds): Promise<void> {
  const ways: Array<() => Promise<void>> = [
    async () => {
      const t = await runHlsFfmpeg(FFMPEG, input, HLS_B_DIR, "var_stream_map", server.child.pid!);
      r.b.push(t);
      r.bDir = HLS_B_DIR;
      console.log(`round ${round}: HLS (b) one ffmpeg -f hls (var_stream_map): ${s(t.wallMs)}; its master.m3u8 at ${s(t.masterMs ?? NaN)}; first segment of every rendition written at ${s(t.firstSegmentsMs)} (${perRendition(t)}); CPU ${t.cpuS.toFixed(2)} s (the idle Rendition process meanwhile ${t.idleServerCpuS.toFixed(2)} s)`);
    },
    async () => {
      const { times: t, outputDir } = await runHlsJob(server.jobs, server.originId, "ladder.mp4", storage, work, server.child.pid!);
      r.a.push(t);
      r.aDir = outputDir;
      const phases = Object.entries(hlsPhases(t)).map(([k, v]) => `${k} ${s(v)}`).join(", ");
      console.log(`round ${round}: HLS (a) Rendition Create -> completed: ${s(t.wallMs)}; master.m3u8 in the origin at ${s(t.masterInOriginMs)}`);
      console.log(`  phases: ${phases}; its ffmpeg had written the first segment of every rendition at ${s(t.firstSegmentsMs)}`);
      console.log(`  execution: queue ${t.queueMs} ms, fetch+probe ${t.probeMs} ms, encode ${t.encodeMs} ms, packaging+upload ${t.uploadMs} ms; CPU: ffprobe+ffmpeg ${t.childrenCpuS.toFixed(2)} s, Rendition's process ${t.serverCpuS.toFixed(2)} s`);
    },
  ];
  if (opts["hls-outputs"]) {
    ways.push(async () => {
      const t = await runHlsFfmpeg(FFMPEG, input, HLS_B_OUTPUTS_DIR, "outputs", server.child.pid!);
      r.bOutputs.push(t);
      console.log(`round ${round}: HLS (b') ffmpeg, one hls output per rendition: ${s(t.wallMs)}; first segment of every rendition written at ${s(t.firstSegmentsMs)} (${perRendition(t)}); CPU ${t.cpuS.toFixed(2)} s`);
    });
  }
  for (const way of round % 2 ? ways : ways.reverse()) {
    r.load.push(loadavg()[0]!);
    await way();
  }
}

function hlsSummary(r: HlsRounds): void {
  const m = (values: number[]) => median(values);
  const rounds = (values: number[]) => values.map((v) => (v / 1000).toFixed(2)).join(" / ") + " s";
  const aWall = r.a.map((t) => t.wallMs);
  const bWall = r.b.map((t) => t.wallMs);
  const bOutWall = r.bOutputs.map((t) => t.wallMs);
  console.log(`\nHLS fMP4 ladder (${DURATION} s 1080p30 -> 1080p/720p/480p H.264 standard + AAC 128k, 6 s segments), median of ${ROUNDS}:`);
  const col = (values: number[]) => `${s(m(values))} (${rounds(values)})`;
  console.log("| | wall time (median) | per round | master playlist there (playable) | first segment of every rendition written |");
  console.log("|---|---|---|---|---|");
  console.log(`| (a) Rendition, Create -> completed | ${s(m(aWall))} | ${rounds(aWall)} | ${col(r.a.map((t) => t.masterInOriginMs))}, in the origin | ${col(r.a.map((t) => t.firstSegmentsMs))}, in the worker's temp dir |`);
  console.log(`| (b) one ffmpeg -f hls, var_stream_map | ${s(m(bWall))} | ${rounds(bWall)} | ${col(r.b.map((t) => t.masterMs ?? NaN))} | ${col(r.b.map((t) => t.firstSegmentsMs))} |`);
  if (r.bOutputs.length) {
    console.log(`| (b') ffmpeg, one hls output per rendition | ${s(m(bOutWall))} | ${rounds(bOutWall)} | (writes none) | ${col(r.bOutputs.map((t) => t.firstSegmentsMs))} |`);
  }
  const ratios = (x: number[], y: number[]) => x.map((v, i) => (v / y[i]!).toFixed(2)).join(", ");
  console.log(`  a/b = ${(m(aWall) / m(bWall)).toFixed(3)} (goal <= 1.05; per round ${ratios(aWall, bWall)})`);
  if (r.bOutputs.length) console.log(`  a/b' = ${(m(aWall) / m(bOutWall)).toFixed(3)}   b'/b = ${(m(bOutWall) / m(bWall)).toFixed(3)} (per round ${ratios(bOutWall, bWall)})`);
  const phases = r.a.map(hlsPhases);
  const keys = Object.keys(phases[0]!) as Array<keyof ReturnType<typeof hlsPhases>>;
  console.log(`  (a) where the time goes (medians): ${keys.map((k) => `${k} ${s(m(phases.map((p) => p[k])))}`).join(", ")}`);
  console.log(`      (before ffmpeg, from the job's execution: queue ${m(r.a.map((t) => t.queueMs))} ms, fetch+probe ${m(r.a.map((t) => t.probeMs))} ms; Create answered after ${m(r.a.map((t) => t.createdMs)).toFixed(0)} ms)`);
  console.log(`  (a) its ffmpeg phase vs (b): ${s(m(phases.map((p) => p.ffmpeg)))} vs ${s(m(bWall))}`);
  // CPU time: what each way costs the machine, much less sensitive than wall time to other load.
  const [aChildren, aServer, bCpu] = [m(r.a.map((t) => t.childrenCpuS)), m(r.a.map((t) => t.serverCpuS)), m(r.b.map((t) => t.cpuS))];
  console.log(`  CPU seconds (medians): (a) ffprobe+ffmpeg ${aChildren.toFixed(2)} + Rendition's process ${aServer.toFixed(2)} = ${(aChildren + aServer).toFixed(2)}; (b) ${bCpu.toFixed(2)}${r.bOutputs.length ? `; (b') ${m(r.bOutputs.map((t) => t.cpuS)).toFixed(2)}` : ""}; a/b by CPU = ${((aChildren + aServer) / bCpu).toFixed(3)}`);
  const idlePerS = m(r.b.map((t) => t.idleServerCpuS / (t.wallMs / 1000)));
  console.log(`      the idle Rendition process uses ${(idlePerS * 1000).toFixed(0)} ms CPU per second (during (b)), i.e. ${(idlePerS * m(aWall) / 1000).toFixed(2)} s of (a)'s ${aServer.toFixed(2)} s; the rest is the job's`);
  console.log(`  1-minute load average before each HLS measurement (${cpus().length} CPUs): ${r.load.map((l) => l.toFixed(1)).join(", ")}`);
  if (r.aDir && r.bDir && existsSync(r.aDir) && existsSync(r.bDir)) {
    const [aFiles, bFiles] = [listOutput(r.aDir), listOutput(r.bDir)];
    const media = (files: Map<string, number>, id: string) => [...files].filter(([f]) => f.startsWith(`${id}/`) && /\.(m4s|mp4)$/.test(f));
    const sizes = HLS_RENDITIONS.map((id) => {
      const [ma, mb] = [media(aFiles, id), media(bFiles, id)];
      const bytes = (list: Array<[string, number]>) => list.reduce((sum, [, n]) => sum + n, 0);
      return `${id} ${ma.length - 1}/${mb.length - 1} segments, ${(bytes(ma) / 1e6).toFixed(2)}/${(bytes(mb) / 1e6).toFixed(2)} MB`;
    });
    console.log(`  outputs (a)/(b), last round: ${sizes.join("; ")}`);
    for (const [way, dir] of [["(a)", r.aDir], ["(b)", r.bDir]] as const) {
      const streams = execFileSync(FFPROBE, ["-v", "error", "-show_entries", "stream=codec_type,width,height", "-of", "csv=p=0", join(dir, "master.m3u8")], { encoding: "utf8" });
      const unique = [...new Set(streams.split("\n").map((line) => line.replace(/,+$/, "")).filter(Boolean))];
      console.log(`  ffprobe ${way} master.m3u8: ${unique.join("; ")}`);
    }
    const master = readFileSync(join(r.bDir, "master.m3u8"), "utf8").split("\n").find((line) => line.startsWith("#EXT-X-STREAM-INF"));
    const ours = readFileSync(join(r.aDir, "master.m3u8"), "utf8").split("\n").find((line) => line.startsWith("#EXT-X-STREAM-INF"));
    console.log(`  first variant, (a): ${ours}\n                 (b): ${master}`);
  }
}

async function main(): Promise<void> {
  const ffmpegVersion = execFileSync(FFMPEG, ["-version"], { encoding: "utf8" }).split("\n")[0];
  console.log(`machine: ${cpus().length} x ${cpus()[0]?.model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB; node ${process.version}; ${ffmpegVersion}`);
  const server = await startRendition();
  try {
    const input = join(storage, "ladder.mp4");
    if (!opts["skip-ladder"] || !opts["skip-hls"]) {
      console.log(`\ngenerating a ${DURATION} s 1080p30 clip with audio...`);
      ffmpeg(["-f", "lavfi", "-i", `testsrc2=size=1920x1080:rate=30:duration=${DURATION}`, "-f", "lavfi", "-i", `sine=frequency=440:duration=${DURATION}`,
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", input]);
    }
    const a: number[] = [];
    const b: number[] = [];
    const c: number[] = [];
    const hls: HlsRounds = { load: [], a: [], b: [], bOutputs: [] };
    for (let round = 1; round <= ROUNDS; round++) {
      if (!opts["skip-ladder"]) {
        const load = loadavg()[0]!;
        b.push(ladderOneCommand(input, work));
        console.log(`round ${round}: (b) one ffmpeg command, split=3: ${s(b.at(-1)!)} (1-minute load average before it: ${load.toFixed(1)})`);
        const times = await runJob(server, "ladder.mp4", LADDER.map((r) => ({ resolution: r.resolution })));
        a.push(times.wallMs);
        console.log(`round ${round}: (a) Rendition Create -> completed: ${s(times.wallMs)} (${breakdown(times)})`);
        c.push(ladderSeparateRuns(input, work));
        console.log(`round ${round}: (c) three separate ffmpeg runs: ${s(c.at(-1)!)}`);
      }
      if (!opts["skip-hls"]) await hlsRound(round, server, input, hls);
    }
    if (!opts["skip-ladder"]) {
      const [ma, mb, mc] = [median(a), median(b), median(c)];
      console.log(`\nladder (${DURATION} s 1080p30 -> 1080p/720p/480p H.264 standard + AAC), median of ${ROUNDS}:`);
      console.log(`  (a) Rendition ${s(ma)}   (b) one command ${s(mb)}   (c) three runs ${s(mc)}`);
      console.log(`  a/b = ${(ma / mb).toFixed(3)}   a/c = ${(ma / mc).toFixed(3)}   b/c = ${(mb / mc).toFixed(3)}`);
    }
    if (!opts["skip-hls"]) hlsSummary(hls);
    if (!opts["skip-overhead"]) {
      const small = join(storage, "small.mp4");
      ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=2", "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", small]);
      const e2e: JobTimes[] = [];
      const bare: number[] = [];
      const probes: number[] = [];
      for (let i = 0; i < 10; i++) {
        bare.push(ffmpeg(["-i", small, "-vf", "scale=-2:360", ...X264_STANDARD, ...AAC, ...MP4, join(work, "bare.mp4")]));
        e2e.push(await runJob(server, "small.mp4", [{ height: 360 }]));
        const started = performance.now();
        execFileSync(FFPROBE, ["-v", "error", "-show_format", "-show_streams", "-of", "json", small], { stdio: "ignore" });
        probes.push(performance.now() - started);
      }
      const [me, mf] = [median(e2e.map((t) => t.wallMs)), median(bare)];
      const pick = (key: keyof JobTimes) => median(e2e.map((t) => t[key])).toFixed(0);
      console.log(`\noverhead (2 s 360p job), median of 10: Create -> completed ${me.toFixed(0)} ms, the same ffmpeg command by hand ${mf.toFixed(0)} ms`);
      console.log(`  inside the job (medians): queue ${pick("queueMs")} ms, fetch+probe ${pick("probeMs")} ms, encode ${pick("encodeMs")} ms, upload ${pick("uploadMs")} ms`);
      const probe = median(probes);
      // The job probes its input with ffprobe; an mp4 output's duration comes from its header.
      console.log(`  orchestration overhead = ${(me - mf).toFixed(0)} ms, of which the input's ffprobe run takes about ${probe.toFixed(0)} ms (by hand); the rest is ${(me - mf - probe).toFixed(0)} ms`);
    }
  } finally {
    server.child.kill("SIGTERM");
    await new Promise((resolve) => server.child.once("exit", resolve));
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
