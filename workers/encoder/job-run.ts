import { existsSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { create, toJson } from "@bufbuild/protobuf";
import { InputMetadataSchema, type InputMetadata } from "../../gen/rendition/v1/job_pb.js";
import type { JobRepository } from "../../services/jobs/job.repository.js";
import type { JobRunRepository, Lease } from "../../services/jobs/job-run.repository.js";
import type { JobOutputRecord, JobRecord, JobStatusName } from "../../services/jobs/job.types.js";
import type { NetworkGuard } from "../../services/net/network-guard.js";
import type { OriginManager } from "../../services/origins/origin.service.js";
import { microsToMinor } from "../../services/pricing/pricing.js";
import type { JobEventBus } from "../../services/queue/event-bus.js";
import { NotFoundError, FailedPreconditionError } from "../../services/common/errors.js";
import { createStorageDriver, joinObjectPath, type StorageDriver } from "../../services/storage/storage-driver.js";
import { buildThumbnailPlan } from "../ffmpeg/thumbnails.js";
import { buildTranscodeCommand, streamRenditions, UnsupportedOutputError } from "../ffmpeg/transcode.js";
import { isStreamTarget, MediaError, type InputLimits, type MediaInfo, type MediaTools } from "../ffmpeg/types.js";
import { actualCostMicros, estimateCosts } from "./costs.js";
import { classifyInputError, describeError, PermanentFailure, toOutputFailure } from "./failure.js";
import { OutputDelivery, type Delivered, type RenderedSprite } from "./delivery.js";
import { planOutputs, type OutputPlan, type PlannedOutput } from "./output-plan.js";
import { prepareSubtitles } from "./subtitle-prep.js";
import type { ChunkSpec, JobTaskRepository } from "../../services/jobs/job-task.repository.js";
import { formatOf } from "../../services/jobs/output-formats.js";
import { chunkPlan, whyNotChunked, type ChunkingSettings } from "../chunking/chunk-eligibility.js";
import { videoFrameTimes } from "../chunking/frame-times.js";
import { chunkCacheDir } from "./chunk-input.js";
import { inputSource, type DirectInputCredentials } from "./input.js";

export interface JobRunSettings {
  limits: InputLimits & { maxInputBytes: number };
  /** Wall-clock limit for one ffmpeg run: at least `encodeTimeoutMinMs`, else 20x the input's duration. */
  encodeTimeoutMinMs: number;
  inputCredentials: DirectInputCredentials;
  /** How often progress is written to the job row (events go out more often). */
  progressPersistMs: number;
  /** Chunked encoding across workers (with `JobRunDeps.tasks`); unset: every job in one pass. */
  chunking?: ChunkingSettings;
  /** Threads of each ffmpeg run; 0 or unset: ffmpeg's choice. */
  ffmpegThreads?: number;
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
  /** The chunked jobs' task rows (chunked encoding is on when this and `settings.chunking` are set). */
  tasks?: JobTaskRepository;
  /** Relay outbox rows now, where this process runs the relay (else it polls). */
  kickOutbox?: () => void;
}

/** The lease was lost mid-run (Cancel, or another worker took over): stop without writing. */
export class LeaseLostError extends Error {
  override name = "LeaseLostError";
}

interface Timings {
  queueDurationMs: number;
  probeDurationMs: number;
  encodeDurationMs: number;
  uploadDurationMs: number;
  totalDurationMs: number;
  attempts: number;
}

function toInputMetadata(info: MediaInfo, decodeErrors = 0): InputMetadata {
  return create(InputMetadataSchema, {
    decodeErrors,
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
    subtitleStreams: (info.subtitleStreams ?? []).map((s) => ({ index: s.index, codec: s.codec, language: s.language })),
  });
}

/** An encoded output waiting for delivery. */
type Encoded = PlannedOutput;

/**
 * Carries one job from wherever it is (pending, probing, processing) as far as it can go under
 * one lease: probe and estimate, pause for confirmation, encode, thumbnails, upload, finish.
 * Every write is a named compare-and-set on the lease (JobRunRepository); losing the lease
 * throws LeaseLostError.
 */
export class JobRun {
  private job!: JobRecord;
  private timings!: Timings;
  private lastPersist = 0;
  private lastEvent = 0;
  private readonly actualMicros = new Map<string, number>();
  /** Sprite sheets rendered by this run (thumbnails mode sprite), for the storyboards of streaming outputs. */
  private readonly sprites: RenderedSprite[] = [];
  /** The most decode errors one encode run of this attempt reported (each run decodes the whole input). */
  private decodeErrors = 0;

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
      if (this.timings && !this.signal.aborted) await this.deps.runs.saveExecution(this.lease, this.timings).catch(() => {});
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
      await this.held(this.deps.runs.startProbe(this.lease, this.timings));
      await this.statusChanged("probing");
      const info = await this.timedProbe(input);
      // Planned before the estimate: an output that cannot be made fails now, with its reason,
      // and is not in the price a delayed-start caller confirms.
      const plan = await this.plan(info);
      const producible = this.job.outputs.filter((o) => !plan.failures.has(o.id));
      const costs = estimateCosts({ ...this.job, outputs: producible }, info);
      const probe = {
        inputMetadata: toJson(InputMetadataSchema, toInputMetadata(info)),
        estimatedCostMinor: costs.total,
        outputCostsMinor: producible.map((o, i): [string, number] => [o.id, costs.outputs[i]!]),
        failedOutputs: failureRows(plan.failures),
        execution: this.timings,
        probedAt: new Date(),
      };
      for (const output of this.job.outputs) if (plan.failures.has(output.id)) output.status = "failed";
      if (this.job.delayedStart) {
        // Paused with the estimate; Confirm queues the encode. The input is fetched again then.
        // Probing is not an attempt at the encode, so the claim is given back.
        this.timings.attempts -= 1;
        await this.held(this.deps.runs.recordProbe(this.lease, probe, { pause: true }));
        await this.statusChanged("awaiting_confirmation");
        return;
      }
      // One write: the estimate, the status, which outputs are now being encoded, which cannot be.
      await this.held(this.deps.runs.recordProbe(this.lease, probe, { pause: false, encoding: plan.runnable.map((r) => r.output.id) }));
      await this.statusChanged("processing");
      if (await this.handOffToChunks(input, info, plan)) return;
      await this.encodeAndDeliver(input, info, plan);
    } else if (this.job.status === "processing") {
      const info = await this.timedProbe(input);
      const plan = await this.plan(info);
      await this.held(this.deps.runs.startEncoding(this.lease, plan.runnable.map((r) => r.output.id), this.job.startedAt ? undefined : new Date(), failureRows(plan.failures)));
      for (const output of this.job.outputs) if (plan.failures.has(output.id)) output.status = "failed";
      if (await this.handOffToChunks(input, info, plan)) return;
      await this.encodeAndDeliver(input, info, plan);
    }
  }

  /**
   * A long input with one progressive output is cut into chunks that any worker encodes
   * (workers/encoder/chunk-run.ts): the chunk tasks and their outbox rows are written, and the
   * job lease given up, in one transaction. False: this job is encoded here in one pass.
   */
  private async handOffToChunks(input: string, info: MediaInfo, plan: OutputPlan): Promise<boolean> {
    const { tasks, settings, tools, log } = this.deps;
    if (!tasks || !settings.chunking) return false;
    const unfinished = this.job.outputs.filter((o) => o.status === "pending" || o.status === "processing").length;
    const thumbnails = this.job.thumbnails.filter((t) => t.status === "pending" || t.status === "processing").length;
    if (whyNotChunked(plan.runnable.map((r) => r.output), unfinished, thumbnails, info, settings.chunking)) return false;
    let chunks;
    try {
      chunks = chunkPlan(await videoFrameTimes(tools.ffprobePath, input, { signal: this.signal }), settings.chunking);
    } catch (err) {
      this.signal.throwIfAborted();
      log(`job ${this.job.id}: frame times unreadable (${describeError(err)}); encoding in one pass`);
      return false;
    }
    if (!chunks) return false;
    const { output } = plan.runnable[0]!;
    const extension = formatOf(output.spec.type)?.extension ?? "mp4";
    await this.held(tasks.startChunks(this.lease, chunks.map((c): ChunkSpec => ({ ...c, outputId: output.id, extension })), this.timings));
    // This worker's chunks of the job need not fetch the input again.
    const cache = chunkCacheDir(dirname(this.tmpDir), this.job.id);
    await mkdir(cache, { recursive: true });
    await rename(input, join(cache, "input")).catch(() => {});
    this.deps.kickOutbox?.();
    log(`job ${this.job.id}: encoding in ${chunks.length} chunks of about ${settings.chunking.chunkSeconds} s`);
    return true;
  }

  private async timedProbe(input: string): Promise<MediaInfo> {
    const started = Date.now();
    const info = await this.fetchAndProbe(input);
    this.timings.probeDurationMs += Date.now() - started;
    return info;
  }

  private async plan(info: MediaInfo): Promise<OutputPlan> {
    return planOutputs(this.job.outputs, info, this.tmpDir, await this.deps.tools.capabilities());
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
    const delivery = new OutputDelivery({ driver, basePath, tools: this.deps.tools, signal: this.signal, tmpDir: this.tmpDir, sprites: this.sprites });
    try {
      const encodeStarted = Date.now();
      const ready = await this.withSubtitles(input, info, runnable, failures);
      const encoded = await this.encode(input, info, ready, failures);
      const thumbnails = await this.thumbnails(input, info, delivery);
      this.timings.encodeDurationMs += Date.now() - encodeStarted - thumbnails.uploadMs;
      const uploadStarted = Date.now();
      await this.upload(encoded, info, delivery, failures);
      this.timings.uploadDurationMs += Date.now() - uploadStarted + thumbnails.uploadMs;
      await this.finish(failures, thumbnails.failed, info);
    } finally {
      driver.destroy?.();
    }
  }

  /** Fetches and converts each output's subtitle tracks; an output whose tracks cannot be read fails alone. */
  private async withSubtitles(input: string, info: MediaInfo, runnable: PlannedOutput[], failures: Map<string, PermanentFailure>): Promise<PlannedOutput[]> {
    const ready: PlannedOutput[] = [];
    for (const planned of runnable) {
      if (planned.output.spec.subtitleTracks.length === 0) {
        ready.push(planned);
        continue;
      }
      const dir = join(this.tmpDir, `${planned.output.id}-subtitles`);
      await mkdir(dir, { recursive: true });
      try {
        const subtitles = await prepareSubtitles(planned.output.spec.subtitleTracks, input, info, dir, {
          tools: this.deps.tools,
          guard: this.deps.guard,
          credentials: this.deps.settings.inputCredentials,
          signal: this.signal,
        });
        ready.push({ ...planned, target: { ...planned.target, subtitles } });
      } catch (err) {
        if (!(err instanceof PermanentFailure)) throw err;
        failures.set(planned.output.id, err);
      }
    }
    return ready;
  }

  /**
   * Encodes every runnable output in one ffmpeg run (one decode, whole ladders included). If
   * that run fails and there were several outputs, each is tried alone, so one bad setting fails
   * only its own output.
   */
  private async encode(input: string, info: MediaInfo, runnable: PlannedOutput[], failures: Map<string, PermanentFailure>): Promise<Encoded[]> {
    if (runnable.length === 0) return [];
    const timeoutMs = Math.max(this.deps.settings.encodeTimeoutMinMs, info.durationMs * 20);
    const capabilities = await this.deps.tools.capabilities();
    const run = async (group: PlannedOutput[]): Promise<Encoded[]> => {
      const command = buildTranscodeCommand({ file: input, info }, group.map((r) => r.target), { capabilities, threads: this.deps.settings.ffmpegThreads });
      // The hls muxer writes into existing directories only; a retried output starts clean.
      for (const { target } of group) {
        if (!isStreamTarget(target)) continue;
        await rm(target.dir, { recursive: true, force: true });
        for (const rendition of streamRenditions(target, info)) await mkdir(rendition.dir, { recursive: true });
      }
      await this.deps.tools.run(command, {
        signal: this.signal,
        timeoutMs,
        durationMs: info.durationMs,
        onProgress: (fraction) => this.onEncodeProgress(fraction, group.map((r) => r.output.id)),
        onDecodeErrors: (count) => (this.decodeErrors = Math.max(this.decodeErrors, count)),
      });
      return group;
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
    // Not at the end (fraction 1, ffmpeg has exited): the output's completion is written right
    // after and carries the progress (and its milestones), so this write would only race it.
    if (fraction < 1 && now - this.lastPersist >= this.deps.settings.progressPersistMs) {
      this.lastPersist = now;
      void this.deps.runs.progress(this.lease, progress, outputIds.map((id) => [id, outputProgress])).catch((err) =>
        this.deps.log(`job ${this.job.id}: saving progress failed`, err),
      );
    }
  }

  /** Renders and uploads each thumbnail set; a failure fails that set only. Counts failed sets, earlier attempts' too. */
  private async thumbnails(input: string, info: MediaInfo, delivery: OutputDelivery): Promise<{ failed: number; uploadMs: number }> {
    const { basePath } = delivery;
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
        for (const file of files) urls.push((await delivery.put(file, joinObjectPath(basePath, thumb.path, basename(file)))).url);
        const storyboardUrl = plan.storyboard ? (await delivery.put(plan.storyboard.file, joinObjectPath(basePath, thumb.path, basename(plan.storyboard.file)))).url : "";
        if (plan.storyboard) this.sprites.push({ path: thumb.path, image: basename(files[0]!), storyboard: plan.storyboard.content });
        uploadMs += Date.now() - started;
        await this.held(this.deps.runs.completeThumbnail(this.lease, thumb.id, { urls, storyboardUrl }));
      } catch (err) {
        this.signal.throwIfAborted();
        if (err instanceof LeaseLostError) throw err;
        if (!(err instanceof MediaError)) throw err; // storage trouble: retry the job
        failed++;
        await this.held(this.deps.runs.failThumbnail(this.lease, thumb.id, err.message));
      }
    }
    return { failed, uploadMs };
  }

  /**
   * Delivers each encoded output as a whole: one file, or a segmented output's artifact set
   * (segments first, the manifests naming them last, so a visible master playlist means
   * everything it names is there). An output whose manifests cannot be written fails alone.
   */
  private async upload(encoded: Encoded[], info: MediaInfo, delivery: OutputDelivery, failures: Map<string, PermanentFailure>): Promise<void> {
    let done = 0;
    for (const { output, target } of encoded) {
      let delivered: Delivered;
      try {
        delivered = isStreamTarget(target) ? await delivery.stream(output, target, info) : await delivery.file(output, target);
      } catch (err) {
        this.signal.throwIfAborted();
        if (!(err instanceof MediaError)) throw err;
        failures.set(output.id, toOutputFailure(err));
        continue;
      }
      const micros = actualCostMicros(this.job, output.spec, info, delivered.durationMs);
      const cost = microsToMinor(micros);
      done++;
      await this.held(this.deps.runs.completeOutput(this.lease, output.id, { ...delivered, actualCostMinor: cost }, 90 + Math.floor((done / encoded.length) * 10) - 1));
      output.status = "completed";
      output.actualCostMinor = String(cost);
      this.actualMicros.set(output.id, micros);
    }
  }

  private async finish(failures: Map<string, PermanentFailure>, failedThumbnails: number, info: MediaInfo): Promise<void> {
    const completed = this.job.outputs.filter((o) => o.status === "completed");
    // Outputs failed by the plan (written at once) or by an earlier attempt count as failures too.
    const failedEarlier = this.job.outputs.filter((o) => o.status === "failed" && !failures.has(o.id));
    const anyFailed = failures.size > 0 || failedEarlier.length > 0 || failedThumbnails > 0;
    const status: JobStatusName & ("completed" | "partial" | "failed") = !anyFailed ? "completed" : completed.length > 0 ? "partial" : "failed";
    const firstFailure = [...failures.values()][0] ?? planFailureOf(failedEarlier[0]);
    const now = new Date();
    this.timings.totalDurationMs = now.getTime() - this.job.createdAt.getTime();
    // Rounded once: outputs finished by this run at their exact price, earlier runs' at theirs.
    const actual = microsToMinor(completed.reduce((sum, o) => sum + (this.actualMicros.get(o.id) ?? Number(o.actualCostMinor ?? 0) * 10_000), 0));
    await this.held(
      this.deps.runs.finish(this.lease, {
        status,
        failedOutputs: failureRows(failures),
        actualCostMinor: actual,
        execution: this.timings,
        error: status === "failed" && firstFailure ? { code: firstFailure.code, message: firstFailure.message } : undefined,
        completedAt: now,
        // Decode errors are surfaced (input_metadata.decode_errors, the INPUT_DECODE_ERRORS warning), never silently concealed.
        inputMetadata: this.decodeErrors > 0 ? toJson(InputMetadataSchema, toInputMetadata(info, this.decodeErrors)) : undefined,
      }),
    );
    await this.statusChanged(status, 100);
  }

  /** A lease write's answer: false means the lease is gone (Cancel, or another worker took over). */
  private async held(write: Promise<boolean>): Promise<void> {
    if (!(await write)) throw new LeaseLostError(`job ${this.job.id} was canceled or taken over by another worker`);
  }

  /** Tells watchers about a status the run has just written. */
  private async statusChanged(status: JobStatusName, progress = this.job.progress): Promise<void> {
    if (this.job.status === status) return;
    this.job.status = status;
    await this.deps.events.publish({ jobId: this.job.id, organizationId: this.job.organizationId, kind: "status", status, progress });
  }
}

function failureRows(failures: Map<string, PermanentFailure>): Array<[string, { code: string; message: string }]> {
  return [...failures].map(([id, f]) => [id, { code: f.code, message: f.message }]);
}

/** An output that failed before this point, as the failure the job reports when nothing was delivered. */
function planFailureOf(output: JobOutputRecord | undefined): { code: string; message: string } | undefined {
  return output && output.errorCode ? { code: output.errorCode, message: output.errorMessage } : undefined;
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
