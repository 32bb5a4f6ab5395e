/**
 * `npm run bench:small-job`: what Rendition adds to a tiny job. A 2 s 360p clip, one mp4 output
 * at 360p (H.264 standard, AAC), measured three ways, interleaved round by round (the order
 * rotates each round, so a change in the shared machine's load hits all alike):
 *   (a) Rendition, embedded (PGlite, in-process queue and event bus): Create -> `completed` as a
 *       caller sees it, through Watch (no polling), over HTTP on 127.0.0.1;
 *   (a') Rendition in NATS mode (PostgreSQL with a database of its own, JetStream with a prefix
 *       of its own), the same;
 *   (b) the same ffmpeg command by hand: the worker's exact argv, captured from its run of the
 *       warm-up job (input and output paths moved to the bench's directory), stdout discarded,
 *       without the `setpriv` launcher.
 * Overhead = median(a) - median(b). Rendition runs inside the bench's process (bench/in-process.ts)
 * so that each step of the job is timed by wrapping what the domain is handed (queue, event bus,
 * lease-guarded writes, ffprobe, ffmpeg): the breakdown's phases follow one another and add up to
 * (a). The job's own `execution` timings are printed beside them.
 *
 * Options: --rounds N (default 10), --mode embedded|nats|both (default both), --no-warmup-argv.
 */
import { spawn } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { JobStatus, OutputType, Quality, VideoCodec } from "../gen/rendition/v1/common_pb.js";
import { flattenCommand } from "../workers/ffmpeg/command.js";
import { locateMediaTools } from "../workers/ffmpeg/binaries.js";
import { createMediaTools } from "../workers/ffmpeg/media-tools.js";
import type { MediaTools } from "../workers/ffmpeg/types.js";
import { median, startInProcess, Tracer, type InProcessRendition, type Mode } from "./in-process.js";

const { values: opts } = parseArgs({
  options: {
    rounds: { type: "string", default: "10" },
    mode: { type: "string", default: "both" },
  },
});
const ROUNDS = Number(opts.rounds);
const MODES: Mode[] = opts.mode === "both" ? ["embedded", "nats"] : [opts.mode as Mode];
const FFMPEG = process.env.FFMPEG_PATH || "ffmpeg";

function run(binary: string, args: string[]): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ["ignore", "ignore", "inherit"] });
    child.once("error", reject);
    child.once("exit", (code, signal) => (code === 0 ? resolve(performance.now() - started) : reject(new Error(`${binary} exited with ${code ?? signal}`))));
  });
}

interface Instance {
  mode: Mode;
  r: InProcessRendition;
  tracer: Tracer;
  /** The worker's last ffmpeg argv (without binary and launcher) and its temp dir. */
  lastArgv?: string[];
}

/** The real ffmpeg adapter, its probe and run timed, and the argv of each run kept. */
function instrumentedTools(real: MediaTools, tracer: Tracer, onArgv: (argv: string[]) => void): MediaTools {
  return {
    ...real,
    capabilities: () => real.capabilities(),
    probe: async (file, limits, options) => {
      const start = performance.now();
      try {
        return await real.probe(file, limits, options);
      } finally {
        tracer.spans.push({ name: "tools.probe", start, end: performance.now() });
      }
    },
    run: async (command, options) => {
      onArgv(flattenCommand(command));
      const start = performance.now();
      try {
        return await real.run(command, {
          ...options,
          onStart: (child) => {
            tracer.mark("ffmpeg spawned");
            options?.onStart?.(child);
          },
        });
      } finally {
        tracer.spans.push({ name: "tools.run", start, end: performance.now() });
      }
    },
  };
}

async function startInstance(mode: Mode, real: MediaTools): Promise<Instance> {
  const work = mkdtempSync(join(tmpdir(), `rendition-small-${mode}-`));
  const tracer = new Tracer();
  const instance: Partial<Instance> = { mode, tracer };
  const tools = instrumentedTools(real, tracer, (argv) => (instance.lastArgv = argv));
  const r = await startInProcess({
    mode,
    work,
    tools,
    instrument: (app, messaging) => {
      tracer.wrap(app.jobs, "jobs", ["create", "get"]);
      tracer.wrap(app.runs, "runs", ["leaseState", "claim", "renew", "startProbe", "recordProbe", "startEncoding", "completeOutput", "finish", "progress"]);
      tracer.wrap(app.jobRepository, "jobRepository", ["get"]);
      tracer.wrap(app.origins, "origins", ["get"]);
      tracer.wrap(messaging.queue, "queue", ["publish", "take"]);
      tracer.wrap(messaging.events, "events", ["publish", "subscribe"]);
    },
  });
  instance.r = r;
  return instance as Instance;
}

interface JobResult {
  wallMs: number;
  answeredMs: number;
  /** Sequential phases, in order; they add up to wallMs. */
  phases: Array<[string, number]>;
  /** Time inside lease-guarded writes, the Create transaction, and event publishes (some overlap the phases). */
  dbWritesMs: number;
  dbWrites: number;
  eventPublishMs: number;
  execution: { queue: number; probe: number; encode: number; upload: number; total: number };
  serverCreateToCompleteMs: number;
}

async function runJob(inst: Instance): Promise<JobResult> {
  const { r, tracer } = inst;
  tracer.reset();
  const t0 = performance.now();
  const { job } = await r.jobs.create({
    inputOriginId: r.credentials.local_origin_id,
    inputPath: "small.mp4",
    outputOriginId: r.credentials.local_origin_id,
    outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, quality: Quality.STANDARD, height: 360 }] }],
  });
  const answered = performance.now();
  let last;
  for await (const event of r.jobs.watch({ id: job!.id })) last = event.job;
  const done = performance.now();
  if (last?.status !== JobStatus.COMPLETED) throw new Error(`job ${job!.id} ended ${JobStatus[last?.status ?? 0]}: ${last?.errorCode} ${last?.errorMessage}`);
  // Let the last fire-and-forget writes land before the next measurement resets the tracer.
  await new Promise((resolve) => setTimeout(resolve, 20));

  const need = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`no ${what} in the trace of ${job!.id}`);
    return value;
  };
  const create = need(tracer.first("jobs.create", t0), "jobs.create");
  const publish = need(tracer.first("queue.publish", create.start), "queue.publish");
  const take = need(tracer.all("queue.take").find((s) => s.end >= publish.start), "queue.take");
  const claim = need(tracer.first("runs.claim", take.end), "runs.claim");
  const startProbe = need(tracer.first("runs.startProbe", claim.end), "runs.startProbe");
  const probe = need(tracer.first("tools.probe", startProbe.end), "tools.probe");
  const recordProbe = need(tracer.first("runs.recordProbe", probe.end), "runs.recordProbe");
  const ffmpeg = need(tracer.first("tools.run", recordProbe.end), "tools.run");
  const spawned = need(tracer.marks.find((m) => m.name === "ffmpeg spawned" && m.at >= ffmpeg.start), "ffmpeg spawn").at;
  const complete = need(tracer.first("runs.completeOutput", ffmpeg.end), "runs.completeOutput");
  const finish = need(tracer.first("runs.finish", complete.end), "runs.finish");
  const phases: Array<[string, number]> = [
    ["HTTP in, auth, validation", create.start - t0],
    ["Create (presets, origins, transaction)", create.end - create.start],
    ["relay: kick, read outbox", publish.start - create.end],
    ["queue publish", publish.end - publish.start],
    ["queue -> worker slot", take.end - publish.end],
    ["lease check + claim", claim.end - take.end],
    ["temp dir, subscribe, load job, startProbe write", startProbe.end - claim.end],
    ["status event, input origin, input copy", probe.start - startProbe.end],
    ["ffprobe", probe.end - probe.start],
    ["plan, recordProbe write", recordProbe.end - probe.end],
    ["status event, output origin, command", ffmpeg.start - recordProbe.end],
    ["ffmpeg spawn (fluent-ffmpeg, setpriv)", spawned - ffmpeg.start],
    ["ffmpeg run until exit seen", ffmpeg.end - spawned],
    ["upload (copy, mp4 duration)", complete.start - ffmpeg.end],
    ["completeOutput write", complete.end - complete.start],
    ["finish write", finish.end - complete.end],
    ["status event -> Watch completed", done - finish.end],
  ];
  const inJob = (s: { start: number; end: number }) => s.start >= t0 && s.end <= done;
  const writes = tracer.spans.filter((s) => inJob(s) && (s.name === "jobs.create" || (s.name.startsWith("runs.") && s.name !== "runs.leaseState")));
  const e = last.execution!;
  return {
    wallMs: done - t0,
    answeredMs: answered - t0,
    phases,
    dbWritesMs: writes.reduce((sum, s) => sum + (s.end - s.start), 0),
    dbWrites: writes.length,
    eventPublishMs: tracer.spans.filter((s) => inJob(s) && s.name === "events.publish").reduce((sum, s) => sum + (s.end - s.start), 0),
    execution: {
      queue: Number(e.queueDurationMs),
      probe: Number(e.probeDurationMs),
      encode: Number(e.encodeDurationMs),
      upload: Number(e.uploadDurationMs),
      total: Number(e.totalDurationMs),
    },
    serverCreateToCompleteMs: last.completedAt && last.createdAt ? Number(last.completedAt.seconds - last.createdAt.seconds) * 1000 + (last.completedAt.nanos - last.createdAt.nanos) / 1e6 : NaN,
  };
}

const ms = (v: number) => `${v.toFixed(0)} ms`;

async function main(): Promise<void> {
  const located = await locateMediaTools(process.env);
  const real = createMediaTools(located);
  console.log(`machine: ${cpus().length} x ${cpus()[0]?.model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB; node ${process.version}; ${located.description}; launcher ${located.launcher?.join(" ") || "none"}`);
  const hand = mkdtempSync(join(tmpdir(), "rendition-small-hand-"));
  const instances: Instance[] = [];
  try {
    for (const mode of MODES) instances.push(await startInstance(mode, real));
    const clip = join(hand, "small.mp4");
    await run(FFMPEG, ["-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=2", "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
      "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", clip]);
    for (const inst of instances) copyFileSync(clip, join(inst.r.config.dataDir, "storage", "small.mp4"));

    // Warm-up (not counted): JIT, first queries, capabilities; and the worker's argv for (b).
    for (const inst of instances) await runJob(inst);
    const argv = instances[0]!.lastArgv!;
    const input = argv[argv.indexOf("-i") + 1]!;
    const workerDir = input.slice(0, input.lastIndexOf("/"));
    const byHand = argv.map((a) => a.split(workerDir).join(hand));
    mkdirSync(hand, { recursive: true });
    copyFileSync(clip, join(hand, input.slice(workerDir.length + 1)));
    console.log(`(b) by hand: ${FFMPEG} ${byHand.join(" ")}`);

    const results = new Map<Mode, JobResult[]>(MODES.map((m) => [m, []]));
    const bare: number[] = [];
    const load: number[] = [];
    type Way = { name: string; go: () => Promise<void> };
    const ways: Way[] = [
      { name: "(b)", go: async () => void bare.push(await run(FFMPEG, byHand)) },
      ...instances.map((inst) => ({ name: inst.mode, go: async () => void results.get(inst.mode)!.push(await runJob(inst)) })),
    ];
    for (let round = 1; round <= ROUNDS; round++) {
      load.push(loadavg()[0]!);
      const shift = (round - 1) % ways.length;
      const order = [...ways.slice(shift), ...ways.slice(0, shift)];
      const line: string[] = [];
      for (const way of order) {
        await way.go();
        line.push(`${way.name} ${ms(way.name === "(b)" ? bare.at(-1)! : results.get(way.name as Mode)!.at(-1)!.wallMs)}`);
      }
      console.log(`round ${round}: ${line.join(", ")} (load ${load.at(-1)!.toFixed(1)})`);
    }

    const mb = median(bare);
    console.log(`\n2 s 360p job, median of ${ROUNDS} (1-minute load average before the rounds: ${load.map((l) => l.toFixed(1)).join(", ")}; ${cpus().length} CPUs)`);
    console.log(`(b) the same ffmpeg command by hand: ${ms(mb)}`);
    for (const inst of instances) {
      const rs = results.get(inst.mode)!;
      const wall = median(rs.map((x) => x.wallMs));
      console.log(`\n### ${inst.mode}: Create -> completed (Watch) ${ms(wall)}; overhead (a) - (b) = ${ms(wall - mb)} (goal <= 100 ms)`);
      console.log(`Create answered after ${ms(median(rs.map((x) => x.answeredMs)))}; server's completed_at - created_at ${ms(median(rs.map((x) => x.serverCreateToCompleteMs)))}`);
      console.log(`execution (medians): queue ${ms(median(rs.map((x) => x.execution.queue)))}, probe ${ms(median(rs.map((x) => x.execution.probe)))}, encode ${ms(median(rs.map((x) => x.execution.encode)))}, upload ${ms(median(rs.map((x) => x.execution.upload)))}, total ${ms(median(rs.map((x) => x.execution.total)))}`);
      console.log(`lease-guarded writes + Create transaction: ${median(rs.map((x) => x.dbWrites))} writes, ${ms(median(rs.map((x) => x.dbWritesMs)))}; event publishes ${ms(median(rs.map((x) => x.eventPublishMs)))}`);
      console.log("| phase | median | per round |");
      console.log("|---|---|---|");
      const names = rs[0]!.phases.map(([name]) => name);
      names.forEach((name, i) => {
        const values = rs.map((x) => x.phases[i]![1]);
        console.log(`| ${name} | ${median(values).toFixed(1)} ms | ${values.map((v) => v.toFixed(0)).join(" ")} |`);
      });
      const ff = rs.map((x) => x.phases[11]![1] + x.phases[12]![1]);
      const outside = rs.map((x, i) => x.wallMs - ff[i]!);
      console.log(`| **(a), median** (phases of one round add up to its (a)) | ${ms(wall)} | ${rs.map((x) => x.wallMs.toFixed(0)).join(" ")} |`);
      // Less sensitive to the load than (a) - (b): the same command's wall time varies from run to run.
      console.log(`ffmpeg inside the worker (spawn + run) ${ms(median(ff))} vs by hand ${ms(mb)}; outside ffmpeg (per round: (a) minus its own ffmpeg): ${ms(median(outside))} (${outside.map((v) => v.toFixed(0)).join(" ")})`);
    }
  } finally {
    for (const inst of instances) await inst.r.stop().catch((err) => console.error("stop failed", err));
    for (const inst of instances) rmSync(inst.r.config.worker.tmpDir, { recursive: true, force: true });
    rmSync(hand, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
