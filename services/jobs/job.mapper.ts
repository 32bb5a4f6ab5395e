import { create, fromJson } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { JobStatus, Priority } from "../../gen/rendition/v1/common_pb.js";
import {
  ExecutionSchema,
  InputMetadataSchema,
  JobSchema,
  OutputSchema,
  OutputStatus,
  ThumbnailSchema,
  type Job,
} from "../../gen/rendition/v1/job_pb.js";
import { formatMinor } from "../pricing/pricing.js";
import { ORIGIN_PROVIDER } from "../origins/origin.mapper.js";
import type { JobOriginSnapshot, JobRecord, JobStatusName, OutputStatusName, PriorityName } from "./job.types.js";

export const JOB_STATUS: Record<JobStatusName, JobStatus> = {
  pending: JobStatus.PENDING,
  probing: JobStatus.PROBING,
  awaiting_confirmation: JobStatus.AWAITING_CONFIRMATION,
  processing: JobStatus.PROCESSING,
  completed: JobStatus.COMPLETED,
  failed: JobStatus.FAILED,
  canceled: JobStatus.CANCELED,
  partial: JobStatus.PARTIAL,
};

export function jobStatusName(status: JobStatus): JobStatusName | undefined {
  return (Object.entries(JOB_STATUS) as Array<[JobStatusName, JobStatus]>).find(([, v]) => v === status)?.[0];
}

const PRIORITY: Record<PriorityName, Priority> = {
  economy: Priority.ECONOMY,
  standard: Priority.STANDARD,
  premium: Priority.PREMIUM,
};

/** A request's priority; unset is standard. */
export function priorityName(priority: Priority): PriorityName {
  return (Object.entries(PRIORITY) as Array<[PriorityName, Priority]>).find(([, v]) => v === priority)?.[0] ?? "standard";
}

const OUTPUT_STATUS: Record<OutputStatusName, OutputStatus> = {
  pending: OutputStatus.PENDING,
  processing: OutputStatus.PROCESSING,
  completed: OutputStatus.COMPLETED,
  failed: OutputStatus.FAILED,
  canceled: OutputStatus.CANCELED,
};

const origin = (o: JobOriginSnapshot) => ({ ...o, provider: ORIGIN_PROVIDER[o.provider] });
const timestamp = (d: Date | null) => (d ? timestampFromDate(d) : undefined);
const money = (minor: string | null) => (minor === null ? "" : formatMinor(minor));

/** Job.warnings, from what the row knows (docs/api.md, Warnings). */
function jobWarnings(job: JobRecord): string[] {
  const decodeErrors = Number((job.inputMetadata as { decodeErrors?: unknown } | null)?.decodeErrors ?? 0);
  if (!(decodeErrors > 0)) return [];
  return [`INPUT_DECODE_ERRORS: ffmpeg reported ${decodeErrors} decode error${decodeErrors === 1 ? "" : "s"} in the input; the damaged frames were concealed or dropped in the outputs`];
}

export function toProtoJob(job: JobRecord): Job {
  return create(JobSchema, {
    id: job.id,
    inputUrl: job.inputUrl,
    inputOrigin: job.inputOrigin ? origin(job.inputOrigin) : undefined,
    outputOrigin: origin(job.outputOrigin),
    status: JOB_STATUS[job.status],
    progress: job.progress,
    priority: PRIORITY[job.priority],
    inputMetadata: job.inputMetadata ? fromJson(InputMetadataSchema, job.inputMetadata as never) : undefined,
    warnings: jobWarnings(job),
    outputs: job.outputs.map((o) =>
      create(OutputSchema, {
        id: o.id,
        type: o.spec.type,
        status: OUTPUT_STATUS[o.status],
        video: o.spec.video,
        audio: o.spec.audio,
        presetId: o.presetId,
        path: o.path,
        outputUrl: o.outputUrl,
        manifestUrls: o.manifestUrls,
        subtitleUrls: o.subtitleUrls,
        fileSizeBytes: BigInt(o.fileSizeBytes ?? 0),
        durationMs: BigInt(o.durationMs ?? 0),
        progress: o.progress,
        errorCode: o.errorCode,
        errorMessage: o.errorMessage,
        hls: o.spec.hls,
        dash: o.spec.dash,
        segments: o.spec.segments,
        subtitleTracks: o.spec.subtitleTracks,
        drm: o.spec.drm,
        contentAware: o.spec.contentAware,
        estimatedCost: money(o.estimatedCostMinor),
        actualCost: money(o.actualCostMinor),
      }),
    ),
    thumbnails: job.thumbnails.map((t) =>
      create(ThumbnailSchema, {
        id: t.id,
        spec: t.spec,
        status: OUTPUT_STATUS[t.status],
        path: t.path,
        urls: t.urls,
        storyboardUrl: t.storyboardUrl,
        errorMessage: t.errorMessage,
      }),
    ),
    totalEstimatedCost: money(job.estimatedCostMinor),
    totalActualCost: money(job.actualCostMinor),
    currency: job.currency,
    errorCode: job.errorCode,
    errorMessage: job.errorMessage,
    webhookUrl: job.webhookUrl,
    metadata: job.metadata,
    delayedStart: job.delayedStart,
    execution: job.execution ? fromJson(ExecutionSchema, job.execution as never) : undefined,
    createdAt: timestamp(job.createdAt),
    updatedAt: timestamp(job.updatedAt),
    probedAt: timestamp(job.probedAt),
    startedAt: timestamp(job.startedAt),
    completedAt: timestamp(job.completedAt),
    confirmedAt: timestamp(job.confirmedAt),
    idempotencyKey: job.idempotencyKey ?? "",
    test: job.test,
  });
}
