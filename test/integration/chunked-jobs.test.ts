/**
 * Chunked encoding end to end in one process (API → relay → in-process queue → two encoder
 * slots → local storage) over real PostgreSQL and ffmpeg: a long enough input with one mp4
 * output is cut into chunk tasks that the slots encode side by side, then assembled; the result
 * has the frames and duration of a single pass of the same input.
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { JobStatus, OutputType, Quality, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobServiceCreateRequestSchema, OutputStatus, ThumbnailMode, type Job } from "../../gen/rendition/v1/job_pb.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { startTestApi, type TestApi } from "../support/api-harness.js";
import { ffprobeJson, generateClip, testMediaTools } from "../support/media.js";
import { openMessaging, startWorker } from "../../services/runtime.js";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { OriginPermission } from "../../gen/rendition/v1/origin_pb.js";
import { startS3Server } from "../support/s3-server.js";

const exec = promisify(execFile);
let database: TestDatabase;
let api: TestApi;
let storage: string;
const tmp = join(tmpdir(), `rendition-chunked-jobs-${process.pid}`);

const TERMINAL = new Set([JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.PARTIAL]);

async function waitFor(id: string, done: (job: Job) => boolean, timeoutMs = 120_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { job } = await api.jobs.get({ id });
    if (done(job!)) return job!;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${JobStatus[job!.status]} (progress ${job!.progress}) after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function request(inputPath: string, extra: { thumbnails?: boolean; preset?: string } = {}) {
  return create(JobServiceCreateRequestSchema, {
    inputOriginId: api.credentials.local_origin_id,
    inputPath,
    outputOriginId: api.credentials.local_origin_id,
    outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 240, quality: Quality.ECONOMY, ...(extra.preset ? { h264: { encoderPreset: extra.preset } } : {}) }] }],
    // A thumbnail makes a job ineligible for chunking: the same output, encoded in one pass.
    ...(extra.thumbnails ? { thumbnails: [{ mode: ThumbnailMode.SINGLE, timestamp: 1, width: 160 }] } : {}),
  });
}

async function frameCount(file: string): Promise<number> {
  const { ffprobePath } = await testMediaTools();
  const { stdout } = await exec(ffprobePath, ["-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", file]);
  return Number(stdout.trim());
}

function tasksOf(jobId: string) {
  return database.db.selectFrom("job_tasks").selectAll().where("job_id", "=", jobId).orderBy("kind", "desc").orderBy("position").execute();
}

/** Waits until `done()` holds; fails with `what()` if it never does. */
async function eventually(done: () => boolean, what: () => string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(what());
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** ffmpeg processes whose command line mentions `needle`. */
function ffmpegProcesses(needle: string): string[] {
  const out = execFileSync("ps", ["-eo", "pid,args"], { encoding: "utf8" });
  return out.split("\n").filter((line) => line.includes("ffmpeg") && line.includes(needle));
}

beforeAll(async () => {
  mkdirSync(tmp, { recursive: true });
  database = await createTestDatabase(inject("databaseUrl"));
  api = await startTestApi(
    database.url,
    { RENDITION_TMP_DIR: tmp, RENDITION_LEASE_MS: "3000", RENDITION_WORKER_CONCURRENCY: "2", RENDITION_CHUNK_MIN_INPUT_S: "5", RENDITION_CHUNK_SECONDS: "4" },
    { worker: true },
  );
  storage = join(api.config.dataDir, "storage");
  await generateClip(join(storage, "in/cuts.mp4"), { durationS: 16, width: 640, height: 360, fps: 25, audio: true, sceneCutEveryS: 1.3 });
  await generateClip(join(storage, "in/short.mp4"), { durationS: 3, width: 320, height: 240, fps: 25, audio: true });
}, 120_000);

afterAll(async () => {
  await api?.close();
  await database?.drop();
  rmSync(tmp, { recursive: true, force: true });
});

describe("chunked encoding", () => {
  it("encodes a long input in chunks on two slots: frames and duration of a single pass, tasks done, staging removed, progress rising", async () => {
    const { job: created } = await api.jobs.create(request("in/cuts.mp4"));
    const progress: number[] = [];
    for await (const message of api.jobs.watch({ id: created!.id })) progress.push(message.job!.progress);
    const job = await waitFor(created!.id, (j) => TERMINAL.has(j.status));
    expect(job.status).toBe(JobStatus.COMPLETED);
    expect(job.outputs[0]!.status).toBe(OutputStatus.COMPLETED);
    // Watch saw the job move through the chunks.
    expect(progress.some((p) => p > 0 && p < 100)).toBe(true);
    expect(progress.at(-1)).toBe(100);

    const tasks = await tasksOf(job.id);
    expect(tasks.map((t) => [t.kind, t.status])).toEqual([...[0, 1, 2, 3].map(() => ["chunk", "completed"]), ["assemble", "completed"]]);
    expect(tasks.filter((t) => t.kind === "chunk").map((t) => t.position)).toEqual([0, 1, 2, 3]);
    expect(tasks.every((t) => t.claims === 1)).toBe(true);
    // The staged chunks and the worker's cache of the job go (right after the job's final write).
    await eventually(() => !existsSync(join(storage, ".rendition", job.id)) && readdirSync(tmp).every((name) => !name.includes(job.id)), () => `left: ${readdirSync(tmp).join(", ")}`);

    // The same input and output in one pass (a thumbnail makes the job ineligible).
    const { job: single } = await api.jobs.create(request("in/cuts.mp4", { thumbnails: true }));
    const reference = await waitFor(single!.id, (j) => TERMINAL.has(j.status));
    expect(reference.status).toBe(JobStatus.COMPLETED);
    expect(await tasksOf(reference.id)).toEqual([]);

    const chunked = fileURLToPath(job.outputs[0]!.outputUrl);
    const whole = fileURLToPath(reference.outputs[0]!.outputUrl);
    expect(await frameCount(chunked)).toBe(await frameCount(whole));
    expect(await frameCount(chunked)).toBe(16 * 25);
    const [a, b] = [await ffprobeJson(chunked), await ffprobeJson(whole)];
    const video = (p: typeof a) => p.streams.find((s) => s.codec_type === "video");
    const audio = (p: typeof a) => p.streams.find((s) => s.codec_type === "audio");
    expect(video(a)).toMatchObject({ codec_name: "h264", width: video(b).width, height: 240, profile: video(b).profile, pix_fmt: video(b).pix_fmt });
    expect(Math.abs(Number(video(a).duration) - Number(video(b).duration))).toBeLessThanOrEqual(0.04);
    expect(audio(a)).toMatchObject({ codec_name: "aac", sample_rate: audio(b).sample_rate, channels: audio(b).channels });
    expect(Math.abs(Number(a.format.duration) - Number(b.format.duration))).toBeLessThanOrEqual(0.05);
    expect(Math.abs(Number(job.outputs[0]!.durationMs) - Number(reference.outputs[0]!.durationMs))).toBeLessThanOrEqual(40);
    expect(job.execution!.attempts).toBe(1);
  }, 240_000);

  it("sweeps a chunked job's cache directory once the job has ended, not while it runs", async () => {
    const { job: created } = await api.jobs.create(request("in/short.mp4"));
    const ended = await waitFor(created!.id, (j) => TERMINAL.has(j.status));
    const { job: waiting } = await api.jobs.create(create(JobServiceCreateRequestSchema, { ...request("in/short.mp4"), delayedStart: true }));
    await waitFor(waiting!.id, (j) => j.status === JobStatus.AWAITING_CONFIRMATION);
    const stale = join(tmp, `rendition-cache-${ended.id}`);
    const live = join(tmp, `rendition-cache-${waiting!.id}`);
    mkdirSync(stale, { recursive: true });
    mkdirSync(live, { recursive: true });
    // A second worker starting on the same database and temp directory sweeps at start.
    const messaging = await openMessaging(api.config, "test", () => {});
    const { worker } = await startWorker(api.app, messaging, api.config, () => {});
    await worker.stop();
    await messaging.close();
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(live)).toBe(true);
    await api.jobs.cancel({ id: waiting!.id });
    rmSync(live, { recursive: true, force: true });
  }, 60_000);

  it("stages chunks under the base path of an S3 output origin and deletes them after delivery", async () => {
    const s3 = await startS3Server();
    try {
      await s3.createBucket("media");
      const { origin } = await api.origins.create({
        name: "s3 renders",
        permissions: [OriginPermission.READ, OriginPermission.WRITE],
        basePath: "renders",
        s3: { bucket: "media", region: "us-east-1", endpoint: s3.endpoint },
        s3Credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      });
      const { job: created } = await api.jobs.create(create(JobServiceCreateRequestSchema, { ...request("in/cuts.mp4"), outputOriginId: origin!.id }));
      const job = await waitFor(created!.id, (j) => TERMINAL.has(j.status));
      expect(job.status, `${job.errorCode}: ${job.errorMessage}`).toBe(JobStatus.COMPLETED);
      expect((await tasksOf(job.id)).filter((t) => t.kind === "chunk").map((t) => (t.result as { path: string }).path)).toEqual(
        [0, 1, 2, 3].map((n) => `renders/.rendition/${job.id}/chunk-${n}.mp4`),
      );
      // Chunks were written there (s3rver saw the PUTs) and are gone now; only the output is left.
      expect(s3.requests.some((r) => r.startsWith(`PUT /media/renders/.rendition/${job.id}/chunk-0.mp4`))).toBe(true);
      const keys = async () => ((await s3.admin.send(new ListObjectsV2Command({ Bucket: "media" }))).Contents ?? []).map((o) => o.Key!);
      const deadline = Date.now() + 15_000;
      while ((await keys()).some((k) => k.includes(".rendition")) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(await keys()).toEqual([`renders/${job.outputs[0]!.path}`]);
    } finally {
      await s3.close();
    }
  }, 120_000);

  it("keeps short inputs on the single-pass path", async () => {
    const { job: created } = await api.jobs.create(request("in/short.mp4"));
    const job = await waitFor(created!.id, (j) => TERMINAL.has(j.status));
    expect(job.status).toBe(JobStatus.COMPLETED);
    expect(await tasksOf(job.id)).toEqual([]);
  }, 120_000);

  it("fails the job through its one terminal write when ffmpeg fails on a chunk: the other tasks end with it", async () => {
    // Paused for Confirm first, so the job id is known before any chunk runs.
    const { job: created } = await api.jobs.create(create(JobServiceCreateRequestSchema, { ...request("in/cuts.mp4"), delayedStart: true }));
    const id = created!.id;
    await waitFor(id, (j) => j.status === JobStatus.AWAITING_CONFIRMATION);
    // A directory where chunk 2's first attempt writes its file: that ffmpeg run fails for real.
    mkdirSync(join(tmp, `rendition-cache-${id}`, "chunk-2.partial-1.mp4"), { recursive: true });
    await api.jobs.confirm({ id });
    const job = await waitFor(id, (j) => TERMINAL.has(j.status));
    expect(job.status).toBe(JobStatus.FAILED);
    expect(job.errorCode).toBe("ENCODE_FAILED");
    expect(job.outputs[0]!.status).toBe(OutputStatus.FAILED);
    const tasks = await tasksOf(id);
    expect(tasks.find((t) => t.position === 2 && t.kind === "chunk")!.status).toBe("failed");
    expect(tasks.filter((t) => t.status === "pending" || t.status === "running")).toEqual([]);
    expect(tasks.some((t) => t.kind === "assemble")).toBe(false);
    const gone = Date.now() + 10_000;
    while (ffmpegProcesses(id).length > 0) {
      if (Date.now() > gone) throw new Error(`ffmpeg still running for ${id}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }, 120_000);

  it("cancels a job while its chunks encode: every unfinished task ends canceled and no ffmpeg is left", async () => {
    // A slow preset keeps the chunks busy long enough to cancel in the middle.
    const { job: created } = await api.jobs.create(request("in/cuts.mp4", { preset: "veryslow" }));
    const id = created!.id;
    const deadline = Date.now() + 60_000;
    while (!(await tasksOf(id)).some((t) => t.kind === "chunk" && t.status === "running") || ffmpegProcesses(id).length === 0) {
      if (Date.now() > deadline) throw new Error("no chunk of the job started encoding");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await api.jobs.cancel({ id });
    const job = await waitFor(id, (j) => TERMINAL.has(j.status));
    expect(job.status).toBe(JobStatus.CANCELED);
    const tasks = await tasksOf(id);
    expect(tasks.length).toBeGreaterThan(0);
    expect(tasks.filter((t) => t.status === "pending" || t.status === "running")).toEqual([]);
    expect(tasks.some((t) => t.status === "canceled")).toBe(true);
    expect(tasks.every((t) => t.status === "canceled" || (t.kind === "chunk" && t.status === "completed"))).toBe(true);
    const gone = Date.now() + 10_000;
    while (ffmpegProcesses(id).length > 0) {
      if (Date.now() > gone) throw new Error(`ffmpeg still running for ${id}: ${ffmpegProcesses(id).join("; ")}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }, 120_000);
});

describe("chunked encoding on embedded PGlite (npm start with no DATABASE_URL)", () => {
  let embedded: TestApi;
  const embeddedTmp = join(tmp, "embedded");

  beforeAll(async () => {
    mkdirSync(embeddedTmp, { recursive: true });
    embedded = await startTestApi(
      undefined,
      { RENDITION_TMP_DIR: embeddedTmp, RENDITION_WORKER_CONCURRENCY: "2", RENDITION_CHUNK_MIN_INPUT_S: "5", RENDITION_CHUNK_SECONDS: "4", RENDITION_MAX_ATTEMPTS: "2" },
      { worker: true },
    );
    await generateClip(join(embedded.config.dataDir, "storage", "in/cuts.mp4"), { durationS: 9, width: 320, height: 240, fps: 25, audio: true });
  }, 120_000);
  afterAll(async () => {
    await embedded?.close();
  });

  async function finish(id: string): Promise<Job> {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const { job } = await embedded.jobs.get({ id });
      if (TERMINAL.has(job!.status)) return job!;
      if (Date.now() > deadline) throw new Error(`job ${id} still ${JobStatus[job!.status]}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  const tasksHere = (jobId: string) =>
    embedded.app.database.db.selectFrom("job_tasks").select(["kind", "status", "claims"]).where("job_id", "=", jobId).orderBy("kind", "desc").orderBy("position").execute();

  it("completes a chunked job", async () => {
    const { job: created } = await embedded.jobs.create(create(JobServiceCreateRequestSchema, { ...request("in/cuts.mp4"), inputOriginId: embedded.credentials.local_origin_id, outputOriginId: embedded.credentials.local_origin_id }));
    const job = await finish(created!.id);
    expect(job.status).toBe(JobStatus.COMPLETED);
    expect(await tasksHere(job.id)).toEqual([
      { kind: "chunk", status: "completed", claims: 1 },
      { kind: "chunk", status: "completed", claims: 1 },
      { kind: "assemble", status: "completed", claims: 1 },
    ]);
    expect(await frameCount(fileURLToPath(job.outputs[0]!.outputUrl))).toBe(9 * 25);
  }, 180_000);

  it("retries a chunk whose upload fails with a transient error, then fails the job with RETRIES_EXHAUSTED at the attempt limit", async () => {
    const s3 = await startS3Server();
    await s3.createBucket("media");
    const { origin } = await embedded.origins.create({
      name: "s3 renders",
      permissions: [OriginPermission.READ, OriginPermission.WRITE],
      s3: { bucket: "media", region: "us-east-1", endpoint: s3.endpoint },
      s3Credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
    // The store goes away after the origin was checked: every chunk upload is refused a connection.
    await s3.close();
    const { job: created } = await embedded.jobs.create(create(JobServiceCreateRequestSchema, { ...request("in/cuts.mp4"), inputOriginId: embedded.credentials.local_origin_id, outputOriginId: origin!.id }));
    const job = await finish(created!.id);
    expect(job.status).toBe(JobStatus.FAILED);
    expect(job.errorCode).toBe("RETRIES_EXHAUSTED");
    expect(job.errorMessage).toMatch(/gave up on a chunk after 2 attempts; last error: /);
    const tasks = await tasksHere(job.id);
    // Given back after the first failure and taken again: the second claim hit the limit.
    expect(tasks.some((t) => t.claims === 2)).toBe(true);
    expect(tasks.every((t) => t.kind === "chunk" && t.status === "failed")).toBe(true);
  }, 180_000);
});
