/**
 * The whole pipeline in one process, as `npm start` runs it: API → outbox relay → in-process queue
 * → encoder (real ffmpeg) → local storage, over a real PostgreSQL database.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { AudioCodec, JobStatus, OutputType, Quality, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import {
  ImageFormat,
  JobServiceCreateRequestSchema,
  OutputStatus,
  ThumbnailMode,
  WatchEvent,
  type Job,
  type JobServiceCreateRequest,
} from "../../gen/rendition/v1/job_pb.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { startTestApi, type TestApi } from "../support/api-harness.js";
import { ffprobeJson, generateClip } from "../support/media.js";
import { openMessaging, startWorker } from "../../services/runtime.js";

let database: TestDatabase;
let api: TestApi;
let storage: string;
const tmp = join(tmpdir(), `rendition-encoder-test-${process.pid}`);

type CreateInit = Omit<MessageInitShape<typeof JobServiceCreateRequestSchema>, "$typeName">;

function request(inputPath: string, overrides: Partial<CreateInit> = {}): JobServiceCreateRequest {
  return create(JobServiceCreateRequestSchema, {
    inputOriginId: api.credentials.local_origin_id,
    inputPath,
    outputOriginId: api.credentials.local_origin_id,
    outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 144, quality: Quality.ECONOMY }] }],
    ...overrides,
  });
}

async function waitFor(id: string, done: (job: Job) => boolean, timeoutMs = 60_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { job } = await api.jobs.get({ id });
    if (done(job!)) return job!;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${JobStatus[job!.status]} (progress ${job!.progress}) after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const TERMINAL = new Set([JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.PARTIAL]);
const finished = (job: Job) => TERMINAL.has(job.status);

/** ffmpeg processes whose command line mentions `needle`. */
function ffmpegProcesses(needle: string): string[] {
  const out = execFileSync("ps", ["-eo", "pid,args"], { encoding: "utf8" });
  return out.split("\n").filter((line) => line.includes("ffmpeg") && line.includes(needle));
}

beforeAll(async () => {
  mkdirSync(tmp, { recursive: true });
  database = await createTestDatabase(inject("databaseUrl"));
  api = await startTestApi(database.url, { RENDITION_TMP_DIR: tmp, RENDITION_LEASE_MS: "3000" }, { worker: true });
  storage = join(api.config.dataDir, "storage");
  mkdirSync(join(storage, "in"), { recursive: true });
  await generateClip(join(storage, "in/clip.mp4"), { durationS: 2, width: 320, height: 240, fps: 25, audio: true });
  await generateClip(join(storage, "in/long.mp4"), { durationS: 60, width: 640, height: 360, fps: 30, audio: false });
  writeFileSync(join(storage, "in/empty.mp4"), "");
  writeFileSync(join(storage, "in/notes.txt"), "this is not a video\n".repeat(100));
  // A "video" that is really an HLS playlist naming a file on the worker's disk.
  writeFileSync(join(storage, "in/playlist.mp4"), `#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n${join(storage, "in/clip.mp4")}\n#EXT-X-ENDLIST\n`);
  writeFileSync(join(storage, "in/truncated.mp4"), readFileSync(join(storage, "in/clip.mp4")).subarray(0, 4096));
}, 120_000);

afterAll(async () => {
  await api?.close();
  await database?.drop();
  rmSync(tmp, { recursive: true, force: true });
});

describe("the embedded pipeline", () => {
  it("encodes mp4 h264 and webm vp9 outputs with thumbnails from one input, with Watch following along", async () => {
    const { job: created } = await api.jobs.create(
      request("in/clip.mp4", {
        outputs: [
          { type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_480P, quality: Quality.ECONOMY }] },
          { type: OutputType.WEBM, video: [{ codec: VideoCodec.VP9, width: 160, quality: Quality.ECONOMY }], audio: [{ settings: { codec: AudioCodec.OPUS } }] },
        ],
        thumbnails: [
          { mode: ThumbnailMode.SINGLE, timestamp: 1, width: 160 },
          { mode: ThumbnailMode.SPRITE, intervalSeconds: 0.5, spriteColumns: 2, format: ImageFormat.PNG },
        ],
      }),
    );
    const events: Array<{ event: WatchEvent; status: JobStatus; progress: number }> = [];
    for await (const message of api.jobs.watch({ id: created!.id })) {
      events.push({ event: message.event, status: message.job!.status, progress: message.job!.progress });
    }
    expect(events[0]!.event).toBe(WatchEvent.SNAPSHOT);
    expect(events.at(-1)).toMatchObject({ event: WatchEvent.COMPLETED, status: JobStatus.COMPLETED, progress: 100 });
    const statuses = events.map((e) => e.status).filter((s, i, all) => s !== all[i - 1]);
    expect(statuses.slice(-2)).toEqual([JobStatus.PROCESSING, JobStatus.COMPLETED]);

    const { job } = await api.jobs.get({ id: created!.id });
    expect(job!.inputMetadata).toMatchObject({ width: 320, height: 240, codec: "h264", framerate: 25 });
    expect(Number(job!.inputMetadata!.durationMs)).toBeGreaterThanOrEqual(1950);
    expect(job!.inputMetadata!.audioStreams).toHaveLength(1);
    expect(job!.totalEstimatedCost).toMatch(/^\d+\.\d{2}$/);
    expect(job!.totalActualCost).toMatch(/^\d+\.\d{2}$/);
    expect(job!.execution!.attempts).toBe(1);
    expect(Number(job!.execution!.totalDurationMs)).toBeGreaterThan(0);
    expect(Number(job!.execution!.encodeDurationMs)).toBeGreaterThan(0);

    const [mp4, webm] = job!.outputs;
    for (const output of [mp4!, webm!]) {
      expect(output.status).toBe(OutputStatus.COMPLETED);
      expect(output.outputUrl).toMatch(/^file:\/\//);
      expect(Number(output.fileSizeBytes)).toBeGreaterThan(0);
      expect(Math.abs(Number(output.durationMs) - 2000)).toBeLessThanOrEqual(40 + 21); // one frame (25 fps) plus audio priming
    }
    const mp4Probe = await ffprobeJson(fileURLToPath(mp4!.outputUrl));
    const mp4Video = mp4Probe.streams.find((s: { codec_type: string }) => s.codec_type === "video");
    expect(mp4Video).toMatchObject({ codec_name: "h264", height: 480, width: 640 });
    expect(mp4Probe.streams.some((s: { codec_type: string; codec_name: string }) => s.codec_type === "audio" && s.codec_name === "aac")).toBe(true);
    const webmProbe = await ffprobeJson(fileURLToPath(webm!.outputUrl));
    expect(webmProbe.streams.find((s: { codec_type: string }) => s.codec_type === "video")).toMatchObject({ codec_name: "vp9", width: 160, height: 120 });
    expect(webmProbe.streams.some((s: { codec_type: string; codec_name: string }) => s.codec_type === "audio" && s.codec_name === "opus")).toBe(true);

    const [single, sprite] = job!.thumbnails;
    expect(single!.status).toBe(OutputStatus.COMPLETED);
    expect(single!.urls).toHaveLength(1);
    const still = await ffprobeJson(fileURLToPath(single!.urls[0]!));
    expect(still.streams[0]).toMatchObject({ width: 160, height: 120 });
    expect(sprite!.urls).toHaveLength(1);
    expect(sprite!.urls[0]).toMatch(/\.png$/);
    expect(readFileSync(fileURLToPath(sprite!.storyboardUrl), "utf8")).toMatch(/^WEBVTT/);

    // Temp files are gone.
    expect(readdirSync(tmp).filter((name) => name.includes(created!.id))).toEqual([]);
  });

  it("pauses a delayed-start job with its estimate; Confirm completes it", async () => {
    const { job: created } = await api.jobs.create(request("in/clip.mp4", { delayedStart: true }));
    const waiting = await waitFor(created!.id, (j) => j.status === JobStatus.AWAITING_CONFIRMATION || finished(j));
    expect(waiting.status).toBe(JobStatus.AWAITING_CONFIRMATION);
    expect(waiting.totalEstimatedCost).toMatch(/^\d+\.\d{2}$/);
    expect(waiting.outputs[0]!.estimatedCost).toMatch(/^\d+\.\d{2}$/);
    expect(waiting.totalActualCost).toBe("");
    expect(waiting.inputMetadata!.width).toBe(320);

    await api.jobs.confirm({ id: created!.id });
    const done = await waitFor(created!.id, finished);
    expect(done.status).toBe(JobStatus.COMPLETED);
    expect(done.outputs[0]!.status).toBe(OutputStatus.COMPLETED);
    expect(done.confirmedAt).toBeDefined();
    // Probing before the pause is not an attempt: one encode, one attempt.
    expect(done.execution!.attempts).toBe(1);
  });

  it("cancels a delayed-start job while it waits: no actual cost", async () => {
    const { job: created } = await api.jobs.create(request("in/clip.mp4", { delayedStart: true }));
    await waitFor(created!.id, (j) => j.status === JobStatus.AWAITING_CONFIRMATION);
    const { job } = await api.jobs.cancel({ id: created!.id });
    expect(job!.status).toBe(JobStatus.CANCELED);
    expect(job!.totalActualCost).toBe("");
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await api.jobs.get({ id: created!.id })).job!.status).toBe(JobStatus.CANCELED);
  });

  it("stops ffmpeg within a second when a running encode is canceled", async () => {
    const { job: created } = await api.jobs.create(
      request("in/long.mp4", { outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_720P, quality: Quality.PREMIUM }] }] }),
    );
    await waitFor(created!.id, (j) => (j.status === JobStatus.PROCESSING && j.progress > 0) || finished(j));
    expect(ffmpegProcesses(created!.id).length).toBeGreaterThan(0);
    await api.jobs.cancel({ id: created!.id });
    const deadline = Date.now() + 1000;
    while (ffmpegProcesses(created!.id).length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(ffmpegProcesses(created!.id)).toEqual([]);
    const job = await waitFor(created!.id, finished);
    expect(job.status).toBe(JobStatus.CANCELED);
    expect(job.outputs[0]!.status).toBe(OutputStatus.CANCELED);
  });

  it.each([
    ["a zero-byte file", "in/empty.mp4", "INPUT_UNREADABLE"],
    ["a text file", "in/notes.txt", "INPUT_UNREADABLE"],
    ["a truncated mp4", "in/truncated.mp4", "INPUT_UNREADABLE"],
    ["a missing file", "in/nothing-here.mp4", "INPUT_NOT_FOUND"],
    ["an HLS playlist naming a local file", "in/playlist.mp4", "INPUT_UNREADABLE"],
  ])("fails %s with %s and a readable message", async (_what, path, code) => {
    const { job: created } = await api.jobs.create(request(path));
    const job = await waitFor(created!.id, finished);
    expect(job.status).toBe(JobStatus.FAILED);
    expect(job.errorCode).toBe(code);
    expect(job.errorMessage.length).toBeGreaterThan(10);
    expect(job.outputs[0]!.status).toBe(OutputStatus.FAILED);
    expect(job.totalActualCost).toBe("");
  });

  it("refuses an https input that resolves to a loopback address (INPUT_URL_FORBIDDEN)", async () => {
    // This server's guard allows loopback for the test storage servers; a second one with the default guard does not.
    const strictDatabase = await createTestDatabase(inject("databaseUrl"));
    const strict = await startTestApi(strictDatabase.url, { RENDITION_NETWORK_ALLOW: "", RENDITION_TMP_DIR: tmp }, { worker: true });
    try {
      const { job: created } = await strict.jobs.create(
        create(JobServiceCreateRequestSchema, {
          inputUrl: "https://127.0.0.1:9/video.mp4",
          outputOriginId: strict.credentials.local_origin_id,
          outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264 }] }],
        }),
      );
      let job: Job | undefined;
      for (let i = 0; i < 300; i++) {
        job = (await strict.jobs.get({ id: created!.id })).job!;
        if (finished(job)) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(job!.status).toBe(JobStatus.FAILED);
      expect(job!.errorCode).toBe("INPUT_URL_FORBIDDEN");
      expect(job!.errorMessage).toMatch(/private or reserved address/);
    } finally {
      await strict.close();
      await strictDatabase.drop();
    }
  });

  it("completes what it can: an output asking for what the encoder cannot do fails alone, naming the field", async () => {
    const { job: created } = await api.jobs.create(
      request("in/clip.mp4", {
        outputs: [
          { type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 144, quality: Quality.ECONOMY }] },
          { type: OutputType.HLS, video: [{ codec: VideoCodec.H264, height: 144 }, { codec: VideoCodec.H264, height: 180, hdr: { mode: "hdr10" } }] },
        ],
      }),
    );
    const job = await waitFor(created!.id, finished);
    expect(job.status).toBe(JobStatus.PARTIAL);
    expect(job.outputs[0]!.status).toBe(OutputStatus.COMPLETED);
    expect(job.outputs[1]).toMatchObject({ status: OutputStatus.FAILED, errorCode: "FEATURE_UNSUPPORTED", errorMessage: expect.stringContaining("video[1].hdr.mode") });
    expect(existsSync(fileURLToPath(job.outputs[0]!.outputUrl))).toBe(true);
    expect(Number(job.totalActualCost)).toBeGreaterThanOrEqual(0);
  });

  it("removes temp directories that dead workers left for its own jobs, and only those", async () => {
    const { job: created } = await api.jobs.create(request("in/clip.mp4"));
    await waitFor(created!.id, finished);
    const leftover = join(tmp, `rendition-${created!.id}-dead`);
    const foreign = join(tmp, "rendition-job_01m80000000000000000000000-other"); // another installation's
    mkdirSync(leftover, { recursive: true });
    mkdirSync(foreign, { recursive: true });
    // A second worker starting on the same database and temp directory sweeps at start.
    const messaging = await openMessaging(api.config, "test", () => {});
    const { worker } = await startWorker(api.app, messaging, api.config, () => {});
    await worker.stop();
    await messaging.close();
    expect(existsSync(leftover)).toBe(false);
    expect(existsSync(foreign)).toBe(true);
  });
});
