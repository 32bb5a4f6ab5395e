/**
 * Hostile media, each run as a real job through the embedded pipeline (API → relay → in-process
 * queue → encoder with real ffmpeg → local storage, over a real PostgreSQL): inputs built at test
 * time with ffmpeg or written byte by byte. Each ends with a stable error code (or completes with
 * its problem surfaced), and none reads a file outside its job's temp dir. Then ffmpeg under
 * limits: CPU time, memory and the wall clock, each exceeded by an input built to, and what one
 * ffmpeg process really runs with (rlimits, niceness, cwd, TMPDIR, environment), read from /proc.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { JobStatus, OutputType, Quality, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobServiceCreateRequestSchema, OutputStatus, type Job } from "../../gen/rendition/v1/job_pb.js";
import { buildTranscodeCommand } from "../../workers/ffmpeg/transcode.js";
import { createMediaTools } from "../../workers/ffmpeg/media-tools.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { startTestApi, type TestApi } from "../support/api-harness.js";
import { ffprobeJson, generateClip, testMediaTools } from "../support/media.js";
import { fullCapabilities } from "../support/encoder-fixture.js";

const run = promisify(execFile);
const scratch = mkdtempSync(join(tmpdir(), "rendition-hostile-"));
/** Job temp dirs of every API here go below this. */
const workerTmp = join(scratch, "worker-tmp");
/** Outside every job's temp dir and every origin: what a followed playlist would read. */
const sentinelDir = join(scratch, "elsewhere");
const sentinel = join(sentinelDir, "secret.mp4");
/** Built once, copied into each API's storage. */
const inputs = join(scratch, "inputs");

type CreateInit = Omit<MessageInitShape<typeof JobServiceCreateRequestSchema>, "$typeName">;

const TERMINAL = new Set([JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.PARTIAL]);

async function ffmpeg(args: string[]): Promise<void> {
  const { ffmpegPath } = await testMediaTools();
  await run(ffmpegPath, ["-hide_banner", "-nostdin", "-loglevel", "error", "-y", ...args], { timeout: 120_000 });
}

/** Overwrites `count` runs of 2000 bytes inside the file's media data with seeded noise (the moov, at the front, stays whole). */
function corruptMiddle(source: string, target: string, count: number): void {
  const bytes = Buffer.from(readFileSync(source));
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
  for (let k = 0; k < count; k++) {
    const offset = Math.floor(bytes.length * (0.3 + (0.5 * k) / count));
    for (let i = offset; i < offset + 2000; i++) bytes[i] = next();
  }
  writeFileSync(target, bytes);
}

/** Rewrites a Matroska Segment Duration (EBML 0x4489, an 8-byte float in ms) to `ms`. */
function lieAboutDuration(source: string, target: string, ms: number): void {
  const bytes = Buffer.from(readFileSync(source));
  const at = bytes.indexOf(Buffer.from([0x44, 0x89, 0x88]));
  if (at < 0) throw new Error("no 8-byte Duration element in the mkv");
  bytes.writeDoubleBE(ms, at + 3);
  writeFileSync(target, bytes);
}

beforeAll(async () => {
  mkdirSync(workerTmp, { recursive: true });
  mkdirSync(sentinelDir, { recursive: true });
  mkdirSync(inputs, { recursive: true });
  const at = (name: string) => join(inputs, name);
  await generateClip(at("clip.mp4"), { durationS: 2, width: 320, height: 240, fps: 25, audio: true });
  // A real video, the kind a followed playlist would splice into the output.
  copyFileSync(at("clip.mp4"), sentinel);
  // moov at the end (generateClip's default): cut, the header is gone.
  writeFileSync(at("truncated.mp4"), readFileSync(at("clip.mp4")).subarray(0, 4096));
  // moov at the front: cut, the header promises 4 s of which 0.6 s remain.
  await ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-movflags", "+faststart", at("faststart.mp4")]);
  writeFileSync(at("truncated-faststart.mp4"), readFileSync(at("faststart.mp4")).subarray(0, 60_000));
  corruptMiddle(at("faststart.mp4"), at("corrupt.mp4"), 5);
  writeFileSync(at("empty.mp4"), "");
  writeFileSync(at("random.mp4"), randomBytes(64 * 1024));
  writeFileSync(at("notes.mp4"), "this is not a video\n".repeat(200));
  writeFileSync(at("playlist.mp4"), `#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n${sentinel}\n#EXTINF:2.0,\nfile://${sentinel}\n#EXT-X-ENDLIST\n`);
  writeFileSync(at("concat.mp4"), `ffconcat version 1.0\nfile '${sentinel}'\nfile 'file:${sentinel}'\n`);
  await ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=320x240", "-frames:v", "1", "-f", "image2", "-c:v", "png", at("image.mp4")]);
  // yuv4mpegpipe headers claiming huge frames, and a few bytes of "frame".
  writeFileSync(at("huge-claim.mp4"), Buffer.concat([Buffer.from("YUV4MPEG2 W30000 H30000 F25:1 Ip A1:1 C420jpeg\nFRAME\n"), randomBytes(4096)]));
  writeFileSync(at("large-claim.mp4"), Buffer.concat([Buffer.from("YUV4MPEG2 W16000 H16000 F25:1 Ip A1:1 C420jpeg\nFRAME\n"), randomBytes(4096)]));
  // Two hours in 120 frames (one a minute): quick to make, over the 1 h limit set below.
  await ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=64x64:rate=1/60:duration=7200", "-c:v", "libx264", "-preset", "ultrafast", at("two-hours.mp4")]);
  await ffmpeg(["-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-c:a", "aac", "-f", "mp4", at("audio-only.mp4")]);
  // 20 s of 640x360: a few CPU-seconds of encoding at the premium preset.
  await generateClip(at("cpu.mp4"), { durationS: 20, width: 640, height: 360, fps: 25, audio: false });
  await generateClip(at("clip.mkv"), { durationS: 2, width: 320, height: 240, fps: 25, audio: false });
  // 600 s of 160x120 frames in an mkv whose header says 40 ms: the wall-clock limit is sized for 40 ms.
  await generateClip(at("ten-s.mp4"), { durationS: 10, width: 160, height: 120, fps: 25, audio: false });
  await ffmpeg(["-stream_loop", "59", "-i", at("ten-s.mp4"), "-c", "copy", "-t", "600", at("long.mkv")]);
  lieAboutDuration(at("long.mkv"), at("liar.mkv"), 40);
}, 240_000);

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

/** An API with an in-process worker on its own database, its storage holding every input (`in/<name>`). */
async function startPipeline(env: Record<string, string>): Promise<{ api: TestApi; close(): Promise<void> }> {
  const database: TestDatabase = await createTestDatabase(inject("databaseUrl"));
  const api = await startTestApi(database.url, { RENDITION_TMP_DIR: workerTmp, RENDITION_LEASE_MS: "3000", ...env }, { worker: true });
  const storageIn = join(api.config.dataDir, "storage", "in");
  mkdirSync(storageIn, { recursive: true });
  for (const name of [
    "clip.mp4",
    "truncated.mp4",
    "truncated-faststart.mp4",
    "corrupt.mp4",
    "empty.mp4",
    "random.mp4",
    "notes.mp4",
    "playlist.mp4",
    "concat.mp4",
    "image.mp4",
    "huge-claim.mp4",
    "large-claim.mp4",
    "two-hours.mp4",
    "audio-only.mp4",
    "cpu.mp4",
    "clip.mkv",
    "liar.mkv",
  ]) {
    copyFileSync(join(inputs, name), join(storageIn, name));
  }
  return {
    api,
    async close() {
      await api.close();
      await database.drop();
    },
  };
}

function request(api: TestApi, inputPath: string, overrides: Partial<CreateInit> = {}) {
  return create(JobServiceCreateRequestSchema, {
    inputOriginId: api.credentials.local_origin_id,
    inputPath,
    outputOriginId: api.credentials.local_origin_id,
    outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 144, quality: Quality.ECONOMY }] }],
    ...overrides,
  });
}

/** Creates the job and waits for its end (a bound, not a timing assertion: a hung job fails the test). */
async function runJob(api: TestApi, inputPath: string, overrides: Partial<CreateInit> = {}, boundMs = 90_000): Promise<Job> {
  const { job: created } = await api.jobs.create(request(api, inputPath, overrides));
  const deadline = Date.now() + boundMs;
  for (;;) {
    const { job } = await api.jobs.get({ id: created!.id });
    if (TERMINAL.has(job!.status)) return job!;
    if (Date.now() > deadline) throw new Error(`job ${created!.id} on ${inputPath} still ${JobStatus[job!.status]} after ${boundMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("hostile inputs, each a real job", () => {
  let pipeline: Awaited<ReturnType<typeof startPipeline>>;
  const ANCIENT = new Date("2000-01-01T00:00:00Z");
  const OLD = new Date("2001-01-01T00:00:00Z");

  beforeAll(async () => {
    pipeline = await startPipeline({ RENDITION_MAX_INPUT_DURATION_S: "3600" });
    // atime older than mtime: any read of the sentinel moves its atime (relatime included).
    utimesSync(sentinel, ANCIENT, OLD);
  }, 120_000);
  afterAll(async () => {
    await pipeline?.close();
  });

  it.each([
    ["a zero-byte file", "in/empty.mp4", "INPUT_UNREADABLE", /empty/],
    ["random bytes", "in/random.mp4", "INPUT_UNREADABLE", /./],
    ["a text file", "in/notes.mp4", "INPUT_UNREADABLE", /./],
    ["a truncated mp4 (moov lost)", "in/truncated.mp4", "INPUT_UNREADABLE", /moov atom not found/],
    ["an HLS playlist disguised as mp4, naming a file outside the job", "in/playlist.mp4", "INPUT_UNREADABLE", /hls data, not a video container/],
    ["an ffconcat file disguised as mp4, naming a file outside the job", "in/concat.mp4", "INPUT_UNREADABLE", /concat data, not a video container/],
    ["a png disguised as mp4", "in/image.mp4", "INPUT_UNREADABLE", /png_pipe data|still image/],
    ["a stream header claiming 30000x30000 frames", "in/huge-claim.mp4", "INPUT_TOO_LARGE", /30000x30000/],
    ["a stream header claiming 16000x16000 frames (over the 8192 limit)", "in/large-claim.mp4", "INPUT_TOO_LARGE", /16000x16000; the limit is 8192x8192/],
    ["a two-hour input (the limit is one hour)", "in/two-hours.mp4", "INPUT_TOO_LARGE", /2h long; the limit is 1h/],
    ["an audio-only input asked for video", "in/audio-only.mp4", "INPUT_NO_VIDEO", /audio only/],
  ])("%s → %s", async (_what, path, code, message) => {
    const job = await runJob(pipeline.api, path);
    expect(job.status).toBe(JobStatus.FAILED);
    expect(job.errorCode).toBe(code);
    expect(job.errorMessage).toMatch(message);
    expect(job.outputs[0]).toMatchObject({ status: OutputStatus.FAILED });
    expect(job.totalActualCost).toBe("");
  });

  it("followed no playlist: the file they name was never read (its atime did not move), and a read of it would have shown", async () => {
    expect(statSync(sentinel).atime.getTime()).toBe(ANCIENT.getTime());
    readFileSync(sentinel); // the control: this filesystem does record reads
    expect(statSync(sentinel).atime.getTime()).toBeGreaterThan(OLD.getTime());
    utimesSync(sentinel, ANCIENT, OLD);
  });

  it("corrupt frames mid-file: the job completes and says how many decode errors ffmpeg concealed", async () => {
    const job = await runJob(pipeline.api, "in/corrupt.mp4");
    expect(job.status).toBe(JobStatus.COMPLETED);
    const decodeErrors = job.inputMetadata!.decodeErrors;
    expect(decodeErrors).toBeGreaterThan(0);
    expect(job.warnings).toEqual([expect.stringMatching(new RegExp(`^INPUT_DECODE_ERRORS: ffmpeg reported ${decodeErrors} decode errors? in the input`))]);
    const output = await ffprobeJson(new URL(job.outputs[0]!.outputUrl).pathname);
    expect(output.streams.some((s) => s.codec_type === "video")).toBe(true);
  });

  it("a truncated mp4 whose header survived: completes with what is there, and the missing data is a warning", async () => {
    const job = await runJob(pipeline.api, "in/truncated-faststart.mp4");
    expect(job.status).toBe(JobStatus.COMPLETED);
    expect(job.inputMetadata!.decodeErrors).toBeGreaterThan(0);
    expect(job.warnings).toHaveLength(1);
    expect(job.warnings[0]).toMatch(/^INPUT_DECODE_ERRORS: /);
    // The header said 4 s; what could be decoded is much shorter, and the output says so.
    expect(Number(job.inputMetadata!.durationMs)).toBe(4000);
    expect(Number(job.outputs[0]!.durationMs)).toBeLessThan(2000);
  });

  it("a clean input: no decode errors, no warnings", async () => {
    const job = await runJob(pipeline.api, "in/clip.mp4");
    expect(job.status).toBe(JobStatus.COMPLETED);
    expect(job.inputMetadata!.decodeErrors).toBe(0);
    expect(job.warnings).toEqual([]);
  });
});

describe("ffmpeg under limits, each exceeded by an input built to", () => {
  it("a CPU-time limit: an encode needing more CPU seconds fails with RESOURCE_LIMIT_EXCEEDED naming it; a small one fits", async () => {
    const pipeline = await startPipeline({ RENDITION_FFMPEG_CPU_LIMIT_S: "1" });
    try {
      const heavy = await runJob(pipeline.api, "in/cpu.mp4", { outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 360, quality: Quality.PREMIUM }] }] });
      expect(heavy.status).toBe(JobStatus.FAILED);
      expect(heavy.errorCode).toBe("RESOURCE_LIMIT_EXCEEDED");
      expect(heavy.errorMessage).toMatch(/CPU-time limit of 1 s \(RENDITION_FFMPEG_CPU_LIMIT_S\)/);
      expect(heavy.outputs[0]).toMatchObject({ status: OutputStatus.FAILED, errorCode: "RESOURCE_LIMIT_EXCEEDED" });
      const small = await runJob(pipeline.api, "in/clip.mp4", { outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 144, quality: Quality.ECONOMY }] }] });
      expect(small.status).toBe(JobStatus.COMPLETED);
    } finally {
      await pipeline.close();
    }
  }, 180_000);

  it("a memory limit too low to start: ffprobe (mkv) and ffmpeg (mp4, described from its header) fail with RESOURCE_LIMIT_EXCEEDED naming it", async () => {
    const pipeline = await startPipeline({ RENDITION_FFMPEG_MEMORY_LIMIT_MB: "32" });
    try {
      const probed = await runJob(pipeline.api, "in/clip.mkv");
      expect(probed).toMatchObject({ status: JobStatus.FAILED, errorCode: "RESOURCE_LIMIT_EXCEEDED" });
      expect(probed.errorMessage).toMatch(/^ffprobe ran out of memory under its 32 MiB memory limit \(RENDITION_FFMPEG_MEMORY_LIMIT_MB\)/);
      const encoded = await runJob(pipeline.api, "in/clip.mp4");
      expect(encoded).toMatchObject({ status: JobStatus.FAILED, errorCode: "RESOURCE_LIMIT_EXCEEDED" });
      expect(encoded.errorMessage).toMatch(/^ffmpeg ran out of memory under its 32 MiB memory limit/);
    } finally {
      await pipeline.close();
    }
  }, 180_000);

  it("the wall-clock limit: an input whose header says 40 ms but holds 10 minutes of frames is stopped with ENCODE_TIMEOUT", async () => {
    const pipeline = await startPipeline({ RENDITION_ENCODE_TIMEOUT_MIN_S: "1" });
    try {
      const job = await runJob(pipeline.api, "in/liar.mkv");
      expect(Number(job.inputMetadata!.durationMs)).toBe(40);
      expect(job).toMatchObject({ status: JobStatus.FAILED, errorCode: "ENCODE_TIMEOUT" });
      expect(job.errorMessage).toMatch(/longer than the 1s limit/);
    } finally {
      await pipeline.close();
    }
  }, 180_000);

  it("one ffmpeg process as the kernel sees it: its rlimits, niceness, cwd and TMPDIR (the job's dir), a cleaned environment, file protocol only", async () => {
    const located = await testMediaTools();
    expect(located.sandbox).toBeDefined(); // prlimit, env and nice are on this machine
    const tools = createMediaTools(located, { limits: { cpuSeconds: 120, memoryBytes: 2 * 2 ** 30, nice: 7 } });
    const jobDir = mkdtempSync(join(workerTmp, "rendition-job_direct-"));
    copyFileSync(join(inputs, "cpu.mp4"), join(jobDir, "input"));
    const info = await tools.probe(join(jobDir, "input"), { maxDurationMs: 3600_000, maxWidth: 8192, maxHeight: 8192 });
    const command = buildTranscodeCommand({ file: join(jobDir, "input"), info }, [
      { spec: create(JobServiceCreateRequestSchema, { outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 360, quality: Quality.PREMIUM }] }] }).outputs[0]!, file: join(jobDir, "out.mp4") },
    ], { capabilities: fullCapabilities() });
    process.env.RENDITION_HOSTILE_TEST_SECRET = "must-not-reach-ffmpeg";
    const controller = new AbortController();
    let seen: { exe: string; limits: string; environ: string[]; cwd: string; nice: number; argv: string[] } | undefined;
    const running = tools.run(command, {
      signal: controller.signal,
      onStart: ({ pid, argv }) => {
        void (async () => {
          // The chain (prlimit → env → nice) execs in place: wait until the pid is ffmpeg itself.
          for (let i = 0; i < 200 && !seen; i++) {
            try {
              const exe = readlinkSync(`/proc/${pid}/exe`);
              if (exe === located.ffmpegPath || exe.endsWith("/ffmpeg")) {
                const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
                seen = {
                  exe,
                  limits: readFileSync(`/proc/${pid}/limits`, "utf8"),
                  environ: readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").filter(Boolean),
                  cwd: readlinkSync(`/proc/${pid}/cwd`),
                  // Fields after "(comm)": state is 3rd, nice the 19th.
                  nice: Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]),
                  argv,
                };
              }
            } catch {
              // not there yet
            }
            if (!seen) await new Promise((resolve) => setTimeout(resolve, 10));
          }
          controller.abort(new Error("seen enough"));
        })();
      },
    });
    await expect(running).rejects.toThrow("seen enough");
    delete process.env.RENDITION_HOSTILE_TEST_SECRET;
    expect(seen).toBeDefined();
    expect(seen!.limits).toMatch(/^Max cpu time\s+120\s+121\s+seconds/m);
    expect(seen!.limits).toMatch(new RegExp(`^Max data size\\s+${2 * 2 ** 30}\\s+${2 * 2 ** 30}\\s+bytes`, "m"));
    expect(seen!.nice).toBe(7);
    expect(seen!.cwd).toBe(jobDir);
    expect(seen!.environ).toContain(`TMPDIR=${jobDir}`);
    expect(seen!.environ.some((v) => v.startsWith("RENDITION_") || v.startsWith("DATABASE_URL="))).toBe(false);
    const i = seen!.argv.indexOf("-protocol_whitelist");
    expect(seen!.argv[i + 1]).toBe("file");
    rmSync(jobDir, { recursive: true, force: true });
  }, 60_000);
});
