import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { create, toJson } from "@bufbuild/protobuf";
import { OutputType } from "../../gen/rendition/v1/common_pb.js";
import { InputMetadataSchema, type InputMetadata } from "../../gen/rendition/v1/job_pb.js";
import type { JobRepository } from "../../services/jobs/job.repository.js";
import type { JobRunRepository, Lease } from "../../services/jobs/job-run.repository.js";
import type { JobOutputRecord, JobRecord, JobStatusName } from "../../services/jobs/job.types.js";
import type { NetworkGuard } from "../../services/net/network-guard.js";
import type { OriginManager } from "../../services/origins/origin.service.js";
import { microsToMinor } from "../../services/pricing/pricing.js";
import type { JobEventBus } from "../../services/queue/event-bus.js";
import { enumWord } from "../../services/common/enums.js";
import { NotFoundError, FailedPreconditionError } from "../../services/common/errors.js";
import { createStorageDriver, joinObjectPath, ObjectAccessDeniedError, ObjectNotFoundError, type StorageDriver } from "../../services/storage/storage-driver.js";
import { mp4DurationMs } from "../ffmpeg/mp4-duration.js";
import { buildThumbnailPlan } from "../ffmpeg/thumbnails.js";
import { buildTranscodeCommand, checkTarget, isProgressive, UnsupportedOutputError } from "../ffmpeg/transcode.js";
import { MediaError, type InputLimits, type MediaInfo, type MediaTools, type TranscodeTarget } from "../ffmpeg/types.js";
import { actualCostMicros, estimateCosts } from "./costs.js";
import { classifyInputError, describeError, PermanentFailure } from "./failure.js";
import { inputSource, type DirectInputCredentials } from "./input.js";

export interface JobRunSettings {
  limits: InputLimits & { maxInputBytes: number };
  /** Wall-clock limit for one ffmpeg run: at least `encodeTimeoutMinMs`, else 20x the input's duration. */
  encodeTimeoutMinMs: number;
  inputCredentials: DirectInputCredentials;
  /** How often progress is written to the job row (events go out more often). */
  progressPersistMs: number;
}

export interface JobRunDeps {
  jobs: JobRepository;
  runs: JobRunRepository;
  origins: OriginManager;
  events: JobEventBus;
  tools: MediaTools;
  guard: NetworkGuard;
  settings: JobRunSettings;
  log: (msg: string, err?: unknown) => void;
}

/** The lease was lost mid-run (Cancel, or another worker took over): stop without writing. */
export class LeaseLostError extends Error {
  override name = "LeaseLostError";
}

interface OutputPlan {
  runnable: Array<{ output: JobOutputRecord; target: TranscodeTarget }>;
  failures: Map<string, PermanentFailure>;
}

/** An encoded output waiting for upload. */
interface Encoded {
  output: JobOutputRecord;
  file: string;
}

interface Timings {
  queueDurationMs: number;
  probeDurationMs: number;
  encodeDurationMs: number;
  uploadDurationMs: number;
  totalDurationMs: number;
  attempts: number;
}

const CONTENT_TYPES: Record<string, string> = {
  mp4: "video/mp4",
  webm: "video/webm",
  mkv: "video/x-matroska",
  mov: "video/quicktime",
  jpg: "image/jpeg",
  png: "image/png",
  webp: "image/webp",
  vtt: "text/vtt",
};

function contentTypeOf(file: string): string {
  return CONTENT_TYPES[file.slice(file.lastIndexOf(".") + 1)] ?? "application/octet-stream";
}

/** What keeps a progressive output from being encoded by this build; undefined when it can be. */
function unsupportedReason(output: JobOutputRecord): PermanentFailure | undefined {
  const spec = output.spec;
  if (!isProgressive(spec.type)) {
    return new PermanentFailure("OUTPUT_TYPE_UNSUPPORTED", `${OutputType[spec.type]} outputs are not supported by this version's encoder yet; use mp4, webm, mkv or mov`);
  }
  if (spec.subtitleTracks.length > 0) return new PermanentFailure("FEATURE_UNSUPPORTED", "subtitle tracks are not supported by this version's encoder yet");
  if (spec.contentAware?.mode) return new PermanentFailure("FEATURE_UNSUPPORTED", "content-aware encoding is not supported by this version's encoder yet");
  if (spec.drm?.systems.length) return new PermanentFailure("FEATURE_UNSUPPORTED", "DRM is not supported by this version's encoder yet");
  return undefined;
}

function toInputMetadata(info: MediaInfo): InputMetadata {
  return create(InputMetadataSchema, {
    durationMs: BigInt(info.durationMs),
    width: info.width,
    height: info.height,
    codec: info.videoCodec,
    bitrateKbps: info.bitrateKbps,
    framerate: info.framerate,
    fileSizeBytes: BigInt(info.fileSizeBytes),
    container: info.container,
    audioStreams: info.audioStreams.map((a) => ({
      index: a.index,
      codec: a.codec,
      channels: a.channels,
      sampleRate: a.sampleRate,
      bitrateKbps: a.bitrateKbps,
      language: a.language,
    })),
  });
}

/**
 * Carries one job from wherever it is (pending, probing, processing) as far as it can go under
 * one lease: probe and estimate, pause for confirmation, encode, thumbnails, upload, finish.
 * Every write is a compare-and-set on the lease; losing it throws LeaseLostError.
 */
export class JobRun {
  private job!: JobRecord;
  private timings!: Timings;
  private lastPersist = 0;
  private lastEvent = 0;
  private readonly actualMicros = new Map<string, number>();

  constructor(
    private readonly deps: JobRunDeps,
    private readonly lease: Lease,
    private readonly tmpDir: string,
    private readonly signal: AbortSignal,
    /** How many times a worker has taken this job, this time included (Execution.attempts). */
    private readonly attempts: number,
  ) {}

  async run(claimedAt: Date): Promise<void> {
    try {
      await this.stages(claimedAt);
    } catch (err) {
      // Keep what this attempt measured (attempts, probe time...) on the row before the worker
      // decides what the failure means; a lost lease refuses the write, as it should.
      if (this.timings && !this.signal.aborted) await this.write({ execution: JSON.stringify(this.timings) }).catch(() => {});
      throw err;
    }
  }

  private async stages(claimedAt: Date): Promise<void> {
    this.job = await this.deps.jobs.get(this.lease.organizationId, this.lease.jobId).then((job) => {
      if (!job) throw new LeaseLostError("the job no longer exists");
      return job;
    });
    this.timings = { ...emptyTimings(), ...(this.job.execution as Partial<Timings> | null) };
    this.timings.attempts = this.attempts;
    // Waiting in the queue: since creation for a new job, since Confirm for a confirmed one.
    const queuedSince = this.job.status === "pending" ? this.job.createdAt : this.job.status === "processing" && !this.job.startedAt ? this.job.confirmedAt : null;
    if (queuedSince) this.timings.queueDurationMs += Math.max(0, claimedAt.getTime() - queuedSince.getTime());

    const input = join(this.tmpDir, "input");
    if (this.job.status === "pending" || this.job.status === "probing") {
      await this.setStatus("probing", {});
      const started = Date.now();
      const info = await this.fetchAndProbe(input);
      this.timings.probeDurationMs += Date.now() - started;
      const costs = estimateCosts(this.job, info);
      const now = new Date();
      const patch = {
        input_metadata: JSON.stringify(toJson(InputMetadataSchema, toInputMetadata(info))),
        estimated_cost_minor: costs.total,
        probed_at: now,
        execution: JSON.stringify(this.timings),
      };
      const outputs = this.job.outputs.map((o, i): [string, { estimated_cost_minor: number }] => [o.id, { estimated_cost_minor: costs.outputs[i]! }]);
      if (this.job.delayedStart) {
        // Paused with the estimate; Confirm queues the encode. The input is fetched again then.
        // Probing is not an attempt at the encode, so the claim is given back.
        this.timings.attempts -= 1;
        await this.setStatus("awaiting_confirmation", { ...patch, execution: JSON.stringify(this.timings), lease_owner: "", lease_expires_at: null }, outputs, {
          refundClaim: true,
        });
        return;
      }
      // One write: the estimate, the status, and which outputs are now being encoded.
      const plan = this.planOutputs(info);
      const encoding = new Set(plan.runnable.map((r) => r.output.id));
      await this.setStatus(
        "processing",
        { ...patch, started_at: now },
        outputs.map(([id, costs]) => [id, encoding.has(id) ? { ...costs, status: "processing" } : costs]),
      );
      await this.encodeAndDeliver(input, info, plan);
    } else if (this.job.status === "processing") {
      const started = Date.now();
      const info = await this.fetchAndProbe(input);
      this.timings.probeDurationMs += Date.now() - started;
      const plan = this.planOutputs(info);
      await this.write(this.job.startedAt ? {} : { started_at: new Date() }, plan.runnable.map(({ output }) => [output.id, { status: "processing" }]));
      await this.encodeAndDeliver(input, info, plan);
    }
  }

  /** Which unfinished outputs this build can encode from this input; the others fail alone, with why. */
  private planOutputs(info: MediaInfo): OutputPlan {
    const failures = new Map<string, PermanentFailure>();
    const runnable: OutputPlan["runnable"] = [];
    for (const output of this.job.outputs.filter((o) => o.status === "pending" || o.status === "processing")) {
      const target = { spec: output.spec, file: join(this.tmpDir, `${output.id}.${enumWord(OutputType, output.spec.type)}`) };
      try {
        const reason = unsupportedReason(output);
        if (reason) throw reason;
        checkTarget(target, info); // a setting this input or container cannot take fails its output alone
        runnable.push({ output, target });
      } catch (err) {
        failures.set(output.id, toOutputFailure(err));
      }
    }
    return { runnable, failures };
  }

  private async fetchAndProbe(file: string): Promise<MediaInfo> {
    const { origins, settings, guard } = this.deps;
    let origin;
    if (this.job.inputOriginId) {
      try {
        const record = await origins.get(this.job.organizationId, this.job.inputOriginId);
        origin = { config: origins.configOf(record), basePath: record.basePath };
      } catch (err) {
        throw originFailure(err, `the input origin ${this.job.inputOriginId}`);
      }
    }
    const source = inputSource(this.job, origin, settings.inputCredentials, guard);
    try {
      await source.driver.download(source.path, file, { maxBytes: settings.limits.maxInputBytes, signal: this.signal });
      return await this.deps.tools.probe(file, settings.limits, { signal: this.signal });
    } catch (err) {
      this.signal.throwIfAborted();
      throw classifyInputError(err, source.description);
    } finally {
      source.driver.destroy?.();
    }
  }

  private async outputDriver(): Promise<{ driver: StorageDriver; basePath: string }> {
    const { origins, guard } = this.deps;
    try {
      const origin = await origins.get(this.job.organizationId, this.job.outputOriginId);
      return { driver: createStorageDriver(origins.configOf(origin), { guard }), basePath: origin.basePath };
    } catch (err) {
      throw originFailure(err, `the output origin ${this.job.outputOriginId}`);
    }
  }

  private async encodeAndDeliver(input: string, info: MediaInfo, { runnable, failures }: OutputPlan): Promise<void> {
    const { driver, basePath } = await this.outputDriver();
    try {
      const encodeStarted = Date.now();
      const encoded = await this.encode(input, info, runnable, failures);
      const thumbnails = await this.thumbnails(input, info, driver, basePath);
      this.timings.encodeDurationMs += Date.now() - encodeStarted - thumbnails.uploadMs;
      const uploadStarted = Date.now();
      await this.upload(encoded, info, driver, basePath);
      this.timings.uploadDurationMs += Date.now() - uploadStarted + thumbnails.uploadMs;
      await this.finish(failures, thumbnails.failed);
    } finally {
      driver.destroy?.();
    }
  }

  /**
   * Encodes every runnable output in one ffmpeg run (one decode). If that run fails and there
   * were several outputs, each is tried alone, so one bad setting fails only its own output.
   */
  private async encode(
    input: string,
    info: MediaInfo,
    runnable: Array<{ output: JobOutputRecord; target: TranscodeTarget }>,
    failures: Map<string, PermanentFailure>,
  ): Promise<Encoded[]> {
    if (runnable.length === 0) return [];
    const timeoutMs = Math.max(this.deps.settings.encodeTimeoutMinMs, info.durationMs * 20);
    const run = async (group: typeof runnable): Promise<Encoded[]> => {
      const command = buildTranscodeCommand({ file: input, info }, group.map((r) => r.target));
      await this.deps.tools.run(command, {
        signal: this.signal,
        timeoutMs,
        durationMs: info.durationMs,
        onProgress: (fraction) => this.onEncodeProgress(fraction, group.map((r) => r.output.id)),
      });
      return group.map(({ output, target }) => ({ output, file: target.file }));
    };
    try {
      return await run(runnable);
    } catch (err) {
      this.signal.throwIfAborted();
      // Not the media's fault (the OOM killer, no process slots): let the job be retried.
      if (!(err instanceof MediaError || err instanceof UnsupportedOutputError)) throw err;
      // One output alone or a timeout: trying each again would only repeat it.
      if (runnable.length === 1 || (err instanceof MediaError && err.code === "ENCODE_TIMEOUT")) {
        const failure = toOutputFailure(err);
        for (const { output } of runnable) failures.set(output.id, failure);
        return [];
      }
      this.deps.log(`job ${this.job.id}: the combined encode failed (${describeError(err)}); trying each output alone`);
    }
    const done: Encoded[] = [];
    for (const one of runnable) {
      try {
        done.push(...(await run([one])));
      } catch (err) {
        this.signal.throwIfAborted();
        if (!(err instanceof MediaError || err instanceof UnsupportedOutputError)) throw err;
        failures.set(one.output.id, toOutputFailure(err));
      }
    }
    return done;
  }

  private onEncodeProgress(fraction: number, outputIds: string[]): void {
    // Never backwards, even when outputs are retried one by one after a failed combined run.
    const progress = Math.max(this.job.progress, Math.min(90, Math.floor(fraction * 90)));
    this.job.progress = progress;
    const outputProgress = Math.min(99, Math.floor(fraction * 100));
    const now = Date.now();
    if (now - this.lastEvent >= 250) {
      this.lastEvent = now;
      void this.deps.events
        .publish({ jobId: this.job.id, organizationId: this.job.organizationId, kind: "progress", status: "processing", progress })
        .catch((err) => this.deps.log(`job ${this.job.id}: progress event failed`, err));
    }
    if (now - this.lastPersist >= this.deps.settings.progressPersistMs) {
      this.lastPersist = now;
      void this.deps.runs.progress(this.lease, progress, outputIds.map((id) => [id, outputProgress])).catch((err) =>
        this.deps.log(`job ${this.job.id}: saving progress failed`, err),
      );
    }
  }

  /** Renders and uploads each thumbnail set; a failure fails that set only. Counts failed sets, earlier attempts' too. */
  private async thumbnails(input: string, info: MediaInfo, driver: StorageDriver, basePath: string): Promise<{ failed: number; uploadMs: number }> {
    let failed = this.job.thumbnails.filter((t) => t.status === "failed").length;
    let uploadMs = 0;
    for (const thumb of this.job.thumbnails.filter((t) => t.status === "pending" || t.status === "processing")) {
      const dir = join(this.tmpDir, thumb.id);
      try {
        await mkdir(dir, { recursive: true });
        const plan = buildThumbnailPlan({ file: input, info }, thumb.spec, dir);
        for (const command of plan.commands) await this.deps.tools.run(command, { signal: this.signal, timeoutMs: this.deps.settings.encodeTimeoutMinMs });
        if (plan.storyboard) {
          await writeFile(plan.storyboard.file, plan.storyboard.content);
        }
        // A container longer than its video track can leave the last requested image unwritten.
        const files = plan.files.filter((file) => existsSync(file));
        if (files.length === 0) throw new MediaError("ENCODE_FAILED", "no thumbnail image could be taken from the input at the requested times");
        const started = Date.now();
        const urls: string[] = [];
        for (const file of files) urls.push((await this.put(driver, file, joinObjectPath(basePath, thumb.path, basename(file)))).url);
        const storyboardUrl = plan.storyboard ? (await this.put(driver, plan.storyboard.file, joinObjectPath(basePath, thumb.path, basename(plan.storyboard.file)))).url : "";
        uploadMs += Date.now() - started;
        await this.write({}, [], [[thumb.id, { status: "completed", urls: JSON.stringify(urls), storyboard_url: storyboardUrl }]]);
      } catch (err) {
        this.signal.throwIfAborted();
        if (err instanceof LeaseLostError) throw err;
        if (!(err instanceof MediaError)) throw err; // storage trouble: retry the job
        failed++;
        await this.write({}, [], [[thumb.id, { status: "failed", error_message: err.message }]]);
      }
    }
    return { failed, uploadMs };
  }

  private async upload(encoded: Encoded[], info: MediaInfo, driver: StorageDriver, basePath: string): Promise<void> {
    let done = 0;
    for (const { output, file } of encoded) {
      const [durationMs, { bytes: size, url }] = await Promise.all([this.durationOf(output, file), this.put(driver, file, joinObjectPath(basePath, output.path))]);
      const micros = actualCostMicros(this.job, output.spec, info, durationMs);
      const cost = microsToMinor(micros);
      done++;
      await this.write({ progress: 90 + Math.floor((done / encoded.length) * 10) - 1 }, [
        [output.id, { status: "completed", output_url: url, file_size_bytes: size, duration_ms: durationMs, progress: 100, actual_cost_minor: cost, error_code: "", error_message: "" }],
      ]);
      output.status = "completed";
      output.actualCostMinor = String(cost);
      this.actualMicros.set(output.id, micros);
    }
  }

  /**
   * An output's own duration, which prices it and is reported. mp4/mov: the movie header, read
   * in process (the same number ffprobe reports, without its ~90 ms start-up); else ffprobe.
   * Not ffmpeg's last progress time, which lags the real end by the encoder's delay.
   */
  private async durationOf(output: JobOutputRecord, file: string): Promise<number> {
    if (output.spec.type === OutputType.MP4 || output.spec.type === OutputType.MOV) {
      const fromHeader = await mp4DurationMs(file);
      if (fromHeader !== undefined) return fromHeader;
    }
    const produced = await this.deps.tools.probe(file, { maxDurationMs: Number.MAX_SAFE_INTEGER, maxWidth: 1 << 16, maxHeight: 1 << 16 }, { signal: this.signal });
    return produced.durationMs;
  }

  /**
   * Uploads with a few quick retries; what still fails is left to the job's redelivery, unless
   * the store refuses outright (no access, no bucket), which no retry will change.
   */
  private async put(driver: StorageDriver, file: string, path: string): Promise<{ bytes: number; url: string }> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await driver.upload(file, path, { contentType: contentTypeOf(file), signal: this.signal });
      } catch (err) {
        this.signal.throwIfAborted();
        if (err instanceof ObjectAccessDeniedError || err instanceof ObjectNotFoundError) throw new PermanentFailure("UPLOAD_FAILED", `the output origin refused ${path}: ${describeError(err)}`, { cause: err });
        if (attempt >= 3) throw new Error(`upload of ${path} failed: ${describeError(err)}`, { cause: err });
        await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      }
    }
  }

  private async finish(failures: Map<string, PermanentFailure>, failedThumbnails: number): Promise<void> {
    const outputs: Array<[string, Record<string, unknown>]> = [...failures].map(([id, f]) => [id, { status: "failed", error_code: f.code, error_message: f.message, progress: 0 }]);
    const completed = this.job.outputs.filter((o) => o.status === "completed");
    const status: JobStatusName = failures.size === 0 && failedThumbnails === 0 ? "completed" : completed.length > 0 ? "partial" : "failed";
    const firstFailure = [...failures.values()][0];
    const now = new Date();
    this.timings.totalDurationMs = now.getTime() - this.job.createdAt.getTime();
    // Rounded once: outputs finished by this run at their exact price, earlier runs' at theirs.
    const actual = microsToMinor(completed.reduce((sum, o) => sum + (this.actualMicros.get(o.id) ?? Number(o.actualCostMinor ?? 0) * 10_000), 0));
    await this.setStatus(
      status,
      {
        progress: 100,
        completed_at: now,
        actual_cost_minor: actual,
        execution: JSON.stringify(this.timings),
        error_code: status === "failed" ? (firstFailure?.code ?? "") : "",
        error_message: status === "failed" ? (firstFailure?.message ?? "") : "",
        lease_owner: "",
        lease_expires_at: null,
      },
      outputs as never,
    );
  }

  private async write(
    patch: Parameters<JobRunRepository["update"]>[1],
    outputs: Array<[string, Record<string, unknown>]> = [],
    thumbnails: Array<[string, Record<string, unknown>]> = [],
    options: { refundClaim?: boolean } = {},
  ): Promise<void> {
    const ok = await this.deps.runs.update(this.lease, patch, { outputs: outputs as never, thumbnails: thumbnails as never, ...options });
    if (!ok) throw new LeaseLostError(`job ${this.job.id} was canceled or taken over by another worker`);
  }

  private async setStatus(
    status: JobStatusName,
    patch: Parameters<JobRunRepository["update"]>[1],
    outputs: Array<[string, Record<string, unknown>]> = [],
    options: { refundClaim?: boolean } = {},
  ): Promise<void> {
    const unchanged = this.job.status === status;
    await this.write({ ...patch, status }, outputs, [], options);
    this.job.status = status;
    if (unchanged) return;
    await this.deps.events.publish({
      jobId: this.job.id,
      organizationId: this.job.organizationId,
      kind: "status",
      status,
      progress: typeof patch.progress === "number" ? patch.progress : this.job.progress,
    });
  }
}

function emptyTimings(): Timings {
  return { queueDurationMs: 0, probeDurationMs: 0, encodeDurationMs: 0, uploadDurationMs: 0, totalDurationMs: 0, attempts: 0 };
}

/** Only a missing origin or unreadable credentials are the job's problem; a database blip is retried. */
function originFailure(err: unknown, what: string): unknown {
  if (err instanceof NotFoundError || err instanceof FailedPreconditionError) {
    return new PermanentFailure("ORIGIN_UNAVAILABLE", `${what} cannot be used: ${describeError(err)}`, { cause: err });
  }
  return err;
}

function toOutputFailure(err: unknown): PermanentFailure {
  if (err instanceof PermanentFailure) return err;
  if (err instanceof MediaError) return new PermanentFailure(err.code, err.message, { cause: err });
  if (err instanceof UnsupportedOutputError) return new PermanentFailure(err.code, err.message, { cause: err });
  return new PermanentFailure("ENCODE_FAILED", describeError(err), { cause: err });
}
