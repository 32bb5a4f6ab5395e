import { existsSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { FailedPreconditionError, NotFoundError } from "../../services/common/errors.js";
import type { JobRecord } from "../../services/jobs/job.types.js";
import { createStorageDriver, type StorageDriver } from "../../services/storage/storage-driver.js";
import type { MediaInfo } from "../ffmpeg/types.js";
import { classifyInputError, describeError, PermanentFailure } from "./failure.js";
import { inputSource } from "./input.js";
import type { JobRunDeps } from "./job-run.js";

/** The per-worker directory of a chunked job: its input, fetched once, and the chunks this worker encoded. */
export function chunkCacheDir(tmpRoot: string, jobId: string): string {
  return join(tmpRoot, `rendition-cache-${jobId}`);
}

/** `rendition-cache-<job id>` → the job id (the temp sweep). */
export function jobOfCacheDir(name: string): string | undefined {
  return /^rendition-cache-(job_[0-9a-z]+)$/.exec(name)?.[1];
}

/**
 * A worker's copies of chunked jobs' inputs: the first chunk of a job on this worker fetches it
 * (into a partial file renamed into place), its other chunks (and the assembly) reuse it; chunks
 * running side by side wait for the one fetch.
 */
export class ChunkInputCache {
  private readonly fetching = new Map<string, Promise<string>>();

  constructor(
    private readonly deps: Pick<JobRunDeps, "origins" | "settings" | "guard" | "tools">,
    private readonly tmpRoot: string,
  ) {}

  dir(jobId: string): string {
    return chunkCacheDir(this.tmpRoot, jobId);
  }

  /** The input, local, and what ffprobe says of it. */
  async input(job: JobRecord, signal: AbortSignal): Promise<{ file: string; info: MediaInfo }> {
    const file = join(this.dir(job.id), "input");
    if (!existsSync(file)) {
      let fetch = this.fetching.get(job.id);
      if (!fetch) {
        fetch = this.download(job, file, signal).finally(() => this.fetching.delete(job.id));
        this.fetching.set(job.id, fetch);
      }
      await fetch;
    }
    try {
      return { file, info: await this.deps.tools.probe(file, this.deps.settings.limits, { signal }) };
    } catch (err) {
      signal.throwIfAborted();
      throw classifyInputError(err, `the input of ${job.id}`);
    }
  }

  async remove(jobId: string): Promise<void> {
    await rm(this.dir(jobId), { recursive: true, force: true });
  }

  private async download(job: JobRecord, file: string, signal: AbortSignal): Promise<string> {
    const { origins, settings, guard } = this.deps;
    await mkdir(this.dir(job.id), { recursive: true });
    let origin;
    if (job.inputOriginId) {
      try {
        const record = await origins.get(job.organizationId, job.inputOriginId);
        origin = { config: origins.configOf(record), basePath: record.basePath };
      } catch (err) {
        throw originFailure(err, `the input origin ${job.inputOriginId}`);
      }
    }
    const source = inputSource(job, origin, settings.inputCredentials, guard);
    const partial = `${file}.part-${randomBytes(4).toString("hex")}`;
    try {
      await source.driver.download(source.path, partial, { maxBytes: settings.limits.maxInputBytes, signal });
      await rename(partial, file);
      return file;
    } catch (err) {
      await rm(partial, { force: true });
      signal.throwIfAborted();
      throw classifyInputError(err, source.description);
    } finally {
      source.driver.destroy?.();
    }
  }
}

/** The job's output origin as a driver (chunks are staged there, the output delivered there). */
export async function outputDriverOf(deps: Pick<JobRunDeps, "origins" | "guard">, job: JobRecord): Promise<{ driver: StorageDriver; basePath: string }> {
  try {
    const origin = await deps.origins.get(job.organizationId, job.outputOriginId);
    return { driver: createStorageDriver(deps.origins.configOf(origin), { guard: deps.guard }), basePath: origin.basePath };
  } catch (err) {
    throw originFailure(err, `the output origin ${job.outputOriginId}`);
  }
}

function originFailure(err: unknown, what: string): unknown {
  if (err instanceof NotFoundError || err instanceof FailedPreconditionError) {
    return new PermanentFailure("ORIGIN_UNAVAILABLE", `${what} cannot be used: ${describeError(err)}`, { cause: err });
  }
  return err;
}
