import { existsSync } from "node:fs";
import { rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ChunkSpec, JobTaskRepository, TaskLease } from "../../services/jobs/job-task.repository.js";
import type { Lease } from "../../services/jobs/job-run.repository.js";
import type { JobOutputRecord, JobRecord } from "../../services/jobs/job.types.js";
import { formatOf } from "../../services/jobs/output-formats.js";
import { microsToMinor } from "../../services/pricing/pricing.js";
import { joinObjectPath } from "../../services/storage/storage-driver.js";
import { assembleCommand, audioCommand, chunkVideoCommand, concatList } from "../chunking/chunk-commands.js";
import { progressiveParts, UnsupportedOutputError } from "../ffmpeg/transcode.js";
import { MediaError, type MediaInfo, type TranscodeTarget } from "../ffmpeg/types.js";
import { ChunkInputCache, outputDriverOf } from "./chunk-input.js";
import { actualCostMicros } from "./costs.js";
import { OutputDelivery } from "./delivery.js";
import { describeError, toOutputFailure } from "./failure.js";
import { LeaseLostError, type JobRunDeps } from "./job-run.js";
import { observeEncode } from "../../services/observability/metrics.js";

export interface ChunkRunDeps extends JobRunDeps {
  tasks: JobTaskRepository;
  cache: ChunkInputCache;
  /** Relay outbox rows now (the assemble task's), where this process runs the relay. */
  kickOutbox?: () => void;
}

/** Where a chunk is staged in the job's output origin: `.rendition/<job id>/chunk-<n>.<ext>` under its base path. */
export function stagingPath(basePath: string, jobId: string, index: number, extension: string): string {
  return joinObjectPath(basePath, ".rendition", jobId, `chunk-${index}.${extension}`);
}

async function loadJob(deps: JobRunDeps, organizationId: string, jobId: string): Promise<JobRecord> {
  const job = await deps.jobs.get(organizationId, jobId);
  if (!job) throw new LeaseLostError("the job no longer exists");
  return job;
}

/** The encoder options of the output, exactly as its single pass has them; a setting it cannot make fails the job. */
async function partsOf(deps: JobRunDeps, output: JobOutputRecord, info: MediaInfo, file: string) {
  try {
    return progressiveParts({ spec: output.spec, file }, info, await deps.tools.capabilities());
  } catch (err) {
    if (err instanceof UnsupportedOutputError) throw toOutputFailure(err);
    throw err;
  }
}

/** An ffmpeg failure on readable media is the job's (permanent); anything else is retried. */
function mediaFailure(err: unknown): unknown {
  return err instanceof MediaError || err instanceof UnsupportedOutputError ? toOutputFailure(err) : err;
}

/**
 * One chunk of a chunked job, under the task's lease: the input (cached per worker and job),
 * the chunk's frames encoded with the output's own encoder settings, the file staged in the
 * output origin, and the task completed (with, if it was the last chunk, the assemble task
 * queued in the same transaction).
 */
export class ChunkRun {
  private lastPersist = 0;

  constructor(
    private readonly deps: ChunkRunDeps,
    private readonly lease: TaskLease,
    private readonly spec: ChunkSpec,
    private readonly signal: AbortSignal,
  ) {}

  async run(): Promise<void> {
    const { deps, spec, lease, signal } = this;
    const job = await loadJob(deps, lease.organizationId, lease.jobId);
    const output = job.outputs.find((o) => o.id === spec.outputId);
    if (!output) throw new LeaseLostError(`output ${spec.outputId} is gone`);
    const { file: input, info } = await deps.cache.input(job, signal);
    const dir = deps.cache.dir(job.id);
    const local = join(dir, `chunk-${spec.index}.${spec.extension}`);
    if (!existsSync(local)) {
      const partial = join(dir, `chunk-${spec.index}.partial-${lease.token}.${spec.extension}`);
      const parts = await partsOf(deps, output, info, partial);
      try {
        await deps.tools.run(chunkVideoCommand(input, spec, parts.video, partial, deps.settings.ffmpegThreads), {
          signal,
          timeoutMs: Math.max(deps.settings.encodeTimeoutMinMs, spec.durationSeconds * 20_000),
          durationMs: spec.durationSeconds * 1000,
          onProgress: (fraction) => this.onProgress(fraction),
        });
        await rename(partial, local);
      } catch (err) {
        await rm(partial, { force: true }).catch(() => {});
        signal.throwIfAborted();
        throw mediaFailure(err);
      }
    }
    const { driver, basePath } = await outputDriverOf(deps, job);
    let path: string;
    let bytes: number;
    try {
      path = stagingPath(basePath, job.id, spec.index, spec.extension);
      ({ bytes } = await driver.upload(local, path, { signal }));
    } finally {
      driver.destroy?.();
    }
    const done = await deps.tasks.completeChunk(lease, { path, bytes });
    if (!done) throw new LeaseLostError(`task ${lease.taskId} was canceled or taken over`);
    if (done.assembleQueued || done.nextQueued) deps.kickOutbox?.();
    await deps.events.publish({ jobId: job.id, organizationId: job.organizationId, kind: "progress", status: "processing", progress: done.progress });
  }

  private onProgress(fraction: number): void {
    const now = Date.now();
    if (now - this.lastPersist < this.deps.settings.progressPersistMs || fraction >= 1) return;
    this.lastPersist = now;
    const { deps, lease } = this;
    deps.tasks.progress(lease, Math.min(99, Math.floor(fraction * 100))).then(
      (progress) => {
        if (progress === undefined) return;
        return deps.events.publish({ jobId: lease.jobId, organizationId: lease.organizationId, kind: "progress", status: "processing", progress });
      },
      (err) => deps.log(`task ${lease.taskId}: saving progress failed`, err),
    );
  }
}

/**
 * The last task of a chunked job, under the job's lease (its `attempt`, as JobRun holds it):
 * the chunks (this worker's cache, else the staging files), the audio encoded once, the chunks
 * joined and the audio muxed in, the output delivered and the job finished through the one
 * finish path (endJob), then the staging files removed.
 */
export class AssembleRun {
  constructor(
    private readonly deps: ChunkRunDeps,
    private readonly lease: Lease,
    private readonly tmpDir: string,
    private readonly signal: AbortSignal,
    private readonly attempts: number,
  ) {}

  async run(): Promise<void> {
    const { deps, lease, signal } = this;
    const job = await loadJob(deps, lease.organizationId, lease.jobId);
    const output = job.outputs.find((o) => o.status === "pending" || o.status === "processing");
    if (!output) throw new LeaseLostError("the chunked output is no longer being encoded");
    const chunks = (await deps.tasks.list(job.id)).filter((t) => t.kind === "chunk");
    if (chunks.some((c) => c.status !== "completed" || !c.result)) throw new Error("assembly started before every chunk was done");
    const { file: input, info } = await deps.cache.input(job, signal);
    const extension = formatOf(output.spec.type)?.extension ?? "mp4";
    const target: TranscodeTarget = { spec: output.spec, file: join(this.tmpDir, `${output.id}.${extension}`) };
    const parts = await partsOf(deps, output, info, target.file);
    const { driver, basePath } = await outputDriverOf(deps, job);
    const staged = chunks.map((c) => String((c.result as { path: string }).path));
    try {
      const started = Date.now();
      const files: string[] = [];
      for (const [i, chunk] of chunks.entries()) {
        const cached = join(deps.cache.dir(job.id), `chunk-${chunk.position}.${extension}`);
        if (existsSync(cached)) {
          files.push(cached);
          continue;
        }
        const file = join(this.tmpDir, `chunk-${chunk.position}.${extension}`);
        await driver.download(staged[i]!, file, { signal });
        files.push(file);
      }
      const timeoutMs = Math.max(deps.settings.encodeTimeoutMinMs, info.durationMs * 20);
      let audio: string | undefined;
      try {
        if (info.audioStreams.length > 0) {
          audio = join(this.tmpDir, "audio.mka");
          await deps.tools.run(audioCommand(input, parts.audio, audio, deps.settings.ffmpegThreads), { signal, timeoutMs });
        }
        const list = join(this.tmpDir, "chunks.txt");
        await writeFile(list, concatList(files));
        await deps.tools.run(assembleCommand(list, audio, target.file, parts.muxer), { signal, timeoutMs });
      } catch (err) {
        signal.throwIfAborted();
        throw mediaFailure(err);
      }
      await deps.events.publish({ jobId: job.id, organizationId: job.organizationId, kind: "progress", status: "processing", progress: 90 });
      const assembledMs = Date.now() - started;
      const uploadStarted = Date.now();
      const delivery = new OutputDelivery({ driver, basePath, tools: deps.tools, signal, tmpDir: this.tmpDir, sprites: [] });
      let delivered;
      try {
        delivered = await delivery.file(output, target);
      } catch (err) {
        signal.throwIfAborted();
        throw mediaFailure(err);
      }
      const micros = actualCostMicros(job, output.spec, info, delivered.durationMs);
      const cost = microsToMinor(micros);
      await this.held(deps.runs.completeOutput(lease, output.id, { ...delivered, actualCostMinor: cost }, 99));
      const now = new Date();
      const previous = (job.execution ?? {}) as Record<string, number>;
      const execution = {
        ...previous,
        // Chunks encoded side by side: from the start of processing to the joined file.
        encodeDurationMs: (job.startedAt ? uploadStarted - job.startedAt.getTime() : assembledMs) - (previous.probeDurationMs ?? 0),
        uploadDurationMs: Date.now() - uploadStarted,
        totalDurationMs: now.getTime() - job.createdAt.getTime(),
        // The join continues the attempt that planned the chunks: a run without retries counts 1.
        attempts: Math.max(1, this.attempts - 1),
      };
      await this.held(deps.runs.finish(lease, { status: "completed", failedOutputs: [], actualCostMinor: cost, execution, completedAt: now }));
      await deps.events.publish({ jobId: job.id, organizationId: job.organizationId, kind: "status", status: "completed", progress: 100 });
      // Chunks encoded side by side count as one encode: from the start of processing to the joined file.
      observeEncode(output.spec, execution.encodeDurationMs / 1000, info.durationMs);
      deps.log(`job ${job.id}: completed (${chunks.length} chunks joined)`, undefined, { status: "completed", duration_ms: execution.totalDurationMs });
      for (const path of staged) await driver.remove?.(path).catch((err) => deps.log(`job ${job.id}: removing the staged chunk ${path} failed`, err));
      await deps.cache.remove(job.id).catch((err) => deps.log(`job ${job.id}: removing its chunk cache failed`, describeError(err)));
    } finally {
      driver.destroy?.();
    }
  }

  private async held(write: Promise<boolean>): Promise<void> {
    if (!(await write)) throw new LeaseLostError(`job ${this.lease.jobId} was canceled or taken over by another worker`);
  }
}
