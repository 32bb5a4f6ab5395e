import type { OutputSpec } from "../../gen/rendition/v1/job_pb.js";
import type { JobRecord } from "../../services/jobs/job.types.js";
import { variantPricing, type SourceVideo } from "../../services/pricing/estimate.js";
import { jobCostMicros, microsToMinor, type OutputPricing } from "../../services/pricing/pricing.js";
import type { MediaInfo } from "../ffmpeg/types.js";

function sourceOf(info: MediaInfo): SourceVideo {
  return { width: info.width, height: info.height, fps: info.framerate };
}

function pricingOf(spec: OutputSpec, source: SourceVideo): OutputPricing {
  return {
    variants: spec.video.map((v) => variantPricing(v, source)),
    drm: spec.drm !== undefined && spec.drm.systems.length > 0,
    contentAware: spec.contentAware !== undefined && spec.contentAware.mode !== "",
  };
}

/** The estimate after probing: every output at the input's duration, in minor units (cents). Test jobs are free. */
export function estimateCosts(job: Pick<JobRecord, "outputs" | "priority" | "thumbnails" | "test">, info: MediaInfo): { outputs: number[]; total: number } {
  if (job.test) return { outputs: job.outputs.map(() => 0), total: 0 };
  const source = sourceOf(info);
  const micros = jobCostMicros({
    durationMs: info.durationMs,
    outputs: job.outputs.map((o) => pricingOf(o.spec, source)),
    priority: job.priority,
    thumbnails: job.thumbnails.length > 0,
  });
  return { outputs: micros.outputs.map(microsToMinor), total: microsToMinor(micros.total) };
}

/** What one finished output costs, at its real duration, in micro-euros (0 for a test job). */
export function actualCostMicros(job: Pick<JobRecord, "priority" | "thumbnails" | "test">, spec: OutputSpec, info: MediaInfo, durationMs: number): number {
  if (job.test) return 0;
  return jobCostMicros({
    durationMs,
    outputs: [pricingOf(spec, sourceOf(info))],
    priority: job.priority,
    thumbnails: job.thumbnails.length > 0,
  }).total;
}
