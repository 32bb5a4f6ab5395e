import { join } from "node:path";
import { isSegmented, formatOf } from "../../services/jobs/output-formats.js";
import type { JobOutputRecord } from "../../services/jobs/job.types.js";
import { checkTarget } from "../ffmpeg/transcode.js";
import type { EncodeTarget, FfmpegCapabilities, MediaInfo } from "../ffmpeg/types.js";
import { toOutputFailure, type PermanentFailure } from "./failure.js";

export interface PlannedOutput {
  output: JobOutputRecord;
  target: EncodeTarget;
}

/** What to encode, and why not for the outputs that cannot be: pure, decided before any ffmpeg runs. */
export interface OutputPlan {
  runnable: PlannedOutput[];
  failures: Map<string, PermanentFailure>;
}

/**
 * Which unfinished outputs can be encoded from this input with this ffmpeg: each gets a local
 * target (a file, or a directory for a segmented output) under `tmpDir`; the others fail alone,
 * with the reason `checkTarget` gives (codec, encoder, audio stream, unsupported setting).
 */
export function planOutputs(outputs: readonly JobOutputRecord[], info: MediaInfo, tmpDir: string, capabilities?: FfmpegCapabilities): OutputPlan {
  const failures = new Map<string, PermanentFailure>();
  const runnable: PlannedOutput[] = [];
  for (const output of outputs.filter((o) => o.status === "pending" || o.status === "processing")) {
    const extension = formatOf(output.spec.type)?.extension;
    const target: EncodeTarget = isSegmented(output.spec.type) ? { spec: output.spec, dir: join(tmpDir, output.id) } : { spec: output.spec, file: join(tmpDir, `${output.id}.${extension ?? "out"}`) };
    try {
      checkTarget(target, info, capabilities);
      runnable.push({ output, target });
    } catch (err) {
      failures.set(output.id, toOutputFailure(err));
    }
  }
  return { runnable, failures };
}
