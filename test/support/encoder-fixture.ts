/**
 * What the encoder's own tests need without ffmpeg or servers: the repositories on an in-memory
 * PGlite, the in-process event bus, a local origin (input and output) and a fake MediaTools
 * whose probe / run / capabilities answer what a test tells them to.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { OutputType, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobServiceCreateRequestSchema } from "../../gen/rendition/v1/job_pb.js";
import { AuthRepository } from "../../services/auth/auth.repository.js";
import { connectPglite, type DatabaseHandle } from "../../services/db/connect.js";
import { migrateToLatest } from "../../services/db/migrate.js";
import { JobRunRepository, type Lease } from "../../services/jobs/job-run.repository.js";
import { JobRepository } from "../../services/jobs/job.repository.js";
import { JobManager } from "../../services/jobs/job.service.js";
import type { JobRecord } from "../../services/jobs/job.types.js";
import { createNetworkGuard } from "../../services/net/network-guard.js";
import { CredentialCipher } from "../../services/origins/credential-cipher.js";
import { OriginRepository } from "../../services/origins/origin.repository.js";
import { OriginManager } from "../../services/origins/origin.service.js";
import type { OriginRecord } from "../../services/origins/origin.types.js";
import { PresetRepository } from "../../services/presets/preset.repository.js";
import { PresetManager } from "../../services/presets/preset.service.js";
import { InProcessEventBus, type JobEvent } from "../../services/queue/event-bus.js";
import { createStorageDriver } from "../../services/storage/storage-driver.js";
import type { JobRunDeps } from "../../workers/encoder/job-run.js";
import type { FfmpegCapabilities, FfmpegCommand, InputLimits, MediaInfo, MediaTools, RunOptions } from "../../workers/ffmpeg/types.js";
import type { JobRequestInit } from "./api-harness.js";

/** A 10 s 720p25 H.264 input with one English AAC stream. */
export function sampleInfo(overrides: Partial<MediaInfo> = {}): MediaInfo {
  return {
    durationMs: 10_000,
    width: 1280,
    height: 720,
    videoCodec: "h264",
    bitrateKbps: 2000,
    framerate: 25,
    fileSizeBytes: 4096,
    container: "mov,mp4,m4a,3gp,3g2,mj2",
    audioStreams: [{ index: 0, codec: "aac", channels: 2, sampleRate: 48_000, bitrateKbps: 128, language: "eng" }],
    subtitleStreams: [],
    ...overrides,
  };
}

/** Every encoder the worker knows (AV1: SVT-AV1 only). */
export function fullCapabilities(): FfmpegCapabilities {
  return {
    encoders: new Set(["libx264", "libx265", "libvpx-vp9", "libsvtav1", "aac", "libopus", "ac3", "eac3", "webvtt", "mov_text", "srt", "ass"]),
    muxers: new Set(["mp4", "mov", "webm", "matroska", "hls", "dash", "webvtt", "image2"]),
    filters: new Set(["split", "scale", "fps", "format", "subtitles", "tile"]),
    experimentalEncoders: new Set(),
  };
}

/** A build with no AV1 encoder at all (no SVT-AV1, libaom or rav1e). */
export function capabilitiesWithoutAv1(): FfmpegCapabilities {
  const caps = fullCapabilities();
  return { ...caps, encoders: new Set([...caps.encoders].filter((e) => !["libsvtav1", "libaom-av1", "librav1e"].includes(e))) };
}

/** The smallest mp4 `mp4DurationMs` reads: ftyp, then moov with an mvhd of `durationMs` (timescale 1000). */
export function minimalMp4(durationMs: number): Buffer {
  const box = (type: string, body: Buffer) => {
    const header = Buffer.alloc(8);
    header.writeUInt32BE(8 + body.length, 0);
    header.write(type, 4, "latin1");
    return Buffer.concat([header, body]);
  };
  const mvhd = Buffer.alloc(100); // version 0: flags, creation, modification, timescale, duration, ...
  mvhd.writeUInt32BE(1000, 12);
  mvhd.writeUInt32BE(durationMs, 16);
  return Buffer.concat([box("ftyp", Buffer.from("isom\0\0\x02\0isomavc1", "latin1")), box("moov", box("mvhd", mvhd))]);
}

export interface RunCall {
  command: FfmpegCommand;
  options: RunOptions | undefined;
  /** The files the command's outputs name. */
  files: string[];
}

/**
 * A MediaTools that starts no process. `probe` answers `info` for the job's input (the worker
 * downloads it to `<tmp>/input`) and `outputInfo` for a produced file; `run` writes every output
 * the command names (a minimal mp4 of `outputDurationMs` for .mp4/.mov, a few bytes otherwise),
 * reporting progress 0.5 then 1. Replace `onProbe` / `onRun` to throw or wait.
 */
export class FakeMediaTools implements MediaTools {
  readonly ffmpegPath = "/fake/ffmpeg";
  readonly ffprobePath = "/fake/ffprobe";
  readonly description = "fake media tools (no process)";
  info: MediaInfo = sampleInfo();
  outputDurationMs = 9_960;
  caps: FfmpegCapabilities = fullCapabilities();
  readonly probes: string[] = [];
  readonly runs: RunCall[] = [];
  onProbe: ((file: string, call: number) => MediaInfo | Promise<MediaInfo>) | undefined;
  onRun: ((call: RunCall, index: number) => void | Promise<void>) | undefined;
  /** Free for a test: the job a fake acting on it mid-run should touch. */
  jobId: string | undefined;

  async probe(file: string, _limits: InputLimits, options?: { signal?: AbortSignal }): Promise<MediaInfo> {
    options?.signal?.throwIfAborted();
    this.probes.push(file);
    if (this.onProbe) return this.onProbe(file, this.probes.length);
    return basename(file) === "input" ? this.info : { ...this.info, durationMs: this.outputDurationMs };
  }

  async run(command: FfmpegCommand, options?: RunOptions): Promise<void> {
    options?.signal?.throwIfAborted();
    const call = { command, options, files: command.outputs.map((o) => o.file) };
    this.runs.push(call);
    if (this.onRun) return this.onRun(call, this.runs.length);
    await this.writeOutputs(call);
  }

  /** What a successful run leaves behind. */
  async writeOutputs(call: RunCall): Promise<void> {
    call.options?.onProgress?.(0.5);
    for (const file of call.files) await writeFile(file, /\.(mp4|mov)$/.test(file) ? minimalMp4(this.outputDurationMs) : Buffer.from("fake media\n"));
    call.options?.onProgress?.(1);
  }

  async capabilities(): Promise<FfmpegCapabilities> {
    return this.caps;
  }
}

/** Resolves once `signal` aborts, rejecting with its reason: how the real run ends when killed. */
export function untilAborted(signal: AbortSignal | undefined): Promise<never> {
  return new Promise((_, reject) => {
    if (!signal) return;
    if (signal.aborted) return reject(signal.reason);
    signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}

/** JobRunRepository method names that write under the lease (not leaseState/claim/isAbandoned). */
const WRITES = new Set([
  "startProbe",
  "recordProbe",
  "startEncoding",
  "completeOutput",
  "completeThumbnail",
  "failThumbnail",
  "saveExecution",
  "finish",
  "progress",
  "fail",
  "release",
  "renew",
]);

export interface RecordedWrite {
  name: string;
  args: unknown[];
  /** The write's answer: true / a status when the lease held, false / undefined when refused. */
  result: unknown;
}

/** A JobRunRepository whose top-level named writes (and their answers) are recorded in order. */
export function recordingRuns(runs: JobRunRepository): { runs: JobRunRepository; writes: RecordedWrite[] } {
  const writes: RecordedWrite[] = [];
  const proxy = new Proxy(runs, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== "function") return value;
      if (typeof prop !== "string" || !WRITES.has(prop)) return value.bind(target);
      return async (...args: unknown[]) => {
        const entry: RecordedWrite = { name: prop, args, result: undefined };
        writes.push(entry);
        entry.result = await value.apply(target, args);
        return entry.result;
      };
    },
  });
  return { runs: proxy, writes };
}

export interface EncoderFixture {
  handle: DatabaseHandle;
  runs: JobRunRepository;
  jobRepository: JobRepository;
  jobs: JobManager;
  /** The same API, but its events go nowhere: a Cancel whose event a worker never hears. */
  quietJobs: JobManager;
  origins: OriginManager;
  events: InProcessEventBus;
  organizationId: string;
  origin: OriginRecord;
  /** The origin's root directory; its base path is `out`, so objects live in `<originRoot>/out/`. */
  originRoot: string;
  /** A scratch directory for the test (job temp dirs go below it). */
  scratch: string;
  /** A job on the local origin (input `in.mp4`, written at start), one 720p H.264 mp4 unless `init` says otherwise. */
  createJob(init?: JobRequestInit): Promise<JobRecord>;
  /** The job's row, lease columns included. */
  row(jobId: string): Promise<Record<string, unknown>>;
  /** Every event published for `jobId` from now on. */
  recordEvents(jobId: string): Promise<JobEvent[]>;
  /** Claims the job as worker `workerId` would (all running states). */
  claim(jobId: string, workerId?: string, leaseMs?: number): Promise<Lease>;
  /** Deps for a JobRun or an EncoderWorker, with `tools`. */
  deps(tools: MediaTools, overrides?: Partial<JobRunDeps>): JobRunDeps;
  close(): Promise<void>;
}

/** The pieces createApp wires, on a fresh in-memory PGlite (a few seconds to start: one per file). */
export async function createEncoderFixture(): Promise<EncoderFixture> {
  const scratch = mkdtempSync(join(tmpdir(), "rendition-encoder-fixture-"));
  const handle = await connectPglite(); // in memory
  await migrateToLatest(handle.db);
  const events = new InProcessEventBus();
  const origins = new OriginManager(
    new OriginRepository(handle.db),
    new CredentialCipher(randomBytes(32)),
    (config, basePath, permissions) => createStorageDriver(config).probe(basePath, permissions),
    { allowLocalOrigins: true, localOriginRoots: [join(scratch, "origins")] },
  );
  const jobRepository = new JobRepository(handle.db);
  const presets = new PresetManager(new PresetRepository(handle.db));
  const jobs = new JobManager(jobRepository, origins, presets, events);
  const quietJobs = new JobManager(jobRepository, origins, presets, { publish: async () => {}, subscribe: async () => () => {}, isLive: () => true, close: async () => {} });
  const runs = new JobRunRepository(handle.db);
  const org = await new AuthRepository(handle.db).createOrganization("Encoder tests");
  const originRoot = join(scratch, "origins", org.id, "media");
  mkdirSync(join(originRoot, "out"), { recursive: true });
  writeFileSync(join(originRoot, "out", "in.mp4"), minimalMp4(10_000));
  const origin = await origins.create(org.id, {
    name: "local",
    description: "",
    permissions: ["read", "write"],
    basePath: "out",
    pathTemplate: "",
    local: { rootDir: originRoot },
    httpHeaders: {},
  });
  const guard = createNetworkGuard();

  return {
    handle,
    runs,
    jobRepository,
    jobs,
    quietJobs,
    origins,
    events,
    organizationId: org.id,
    origin,
    originRoot: origin.location.local!.rootDir,
    scratch,
    createJob(init = {}) {
      return jobs.create(
        org.id,
        create(JobServiceCreateRequestSchema, {
          inputOriginId: origin.id,
          inputPath: "in.mp4",
          outputOriginId: origin.id,
          outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_720P }] }],
          ...init,
        }),
      );
    },
    async row(jobId) {
      return (await handle.db.selectFrom("jobs").selectAll().where("id", "=", jobId).executeTakeFirstOrThrow()) as Record<string, unknown>;
    },
    async recordEvents(jobId) {
      const seen: JobEvent[] = [];
      await events.subscribe(jobId, (event) => seen.push(event));
      return seen;
    },
    async claim(jobId, workerId = "test-worker", leaseMs = 60_000) {
      const lease = await runs.claim(org.id, jobId, workerId, leaseMs, ["pending", "probing", "processing"]);
      if (!lease) throw new Error(`job ${jobId} could not be claimed`);
      return lease;
    },
    deps(tools, overrides = {}) {
      return {
        jobs: jobRepository,
        runs,
        origins,
        events,
        tools,
        guard,
        settings: {
          limits: { maxInputBytes: 1 << 30, maxDurationMs: 12 * 3600_000, maxWidth: 8192, maxHeight: 8192 },
          encodeTimeoutMinMs: 600_000,
          inputCredentials: {},
          progressPersistMs: 0,
        },
        log: () => {},
        ...overrides,
      };
    },
    async close() {
      await events.close();
      await handle.close();
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}
