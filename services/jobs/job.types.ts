import type { OutputSpec, ThumbnailSpec } from "../../gen/rendition/v1/job_pb.js";
import type { PriorityName } from "../pricing/pricing.js";
import type { Provider } from "../storage/storage-driver.js";

export type JobStatusName =
  | "pending"
  | "probing"
  | "awaiting_confirmation"
  | "processing"
  | "completed"
  | "failed"
  | "canceled"
  | "partial";

export const TERMINAL_STATUSES: readonly JobStatusName[] = ["completed", "failed", "canceled", "partial"];
export const ACTIVE_STATUSES: readonly JobStatusName[] = ["pending", "probing", "awaiting_confirmation", "processing"];

export function isTerminal(status: JobStatusName): boolean {
  return TERMINAL_STATUSES.includes(status);
}

export type { PriorityName };
export type OutputStatusName = "pending" | "processing" | "completed" | "failed" | "canceled";

/** What a job remembers of an origin: enough to show it even after the origin changes. */
export interface JobOriginSnapshot {
  id: string;
  name: string;
  provider: Provider;
  path: string;
  bucket: string;
}

export interface JobOutputRecord {
  id: string;
  position: number;
  status: OutputStatusName;
  /** Resolved spec: preset applied, inline fields kept. */
  spec: OutputSpec;
  presetId: string;
  path: string;
  outputUrl: string;
  /** Streaming outputs: master playlist / MPD first, then the media playlists. */
  manifestUrls: string[];
  /** Subtitle files: WebVTT renditions of a streaming output, extracted sidecars. */
  subtitleUrls: string[];
  fileSizeBytes: string | null;
  durationMs: string | null;
  progress: number;
  errorCode: string;
  errorMessage: string;
  estimatedCostMinor: string | null;
  actualCostMinor: string | null;
}

export interface JobThumbnailRecord {
  id: string;
  position: number;
  status: OutputStatusName;
  spec: ThumbnailSpec;
  path: string;
  urls: string[];
  storyboardUrl: string;
  errorMessage: string;
}

export interface JobRecord {
  id: string;
  organizationId: string;
  status: JobStatusName;
  progress: number;
  priority: PriorityName;
  inputUrl: string;
  inputOriginId: string | null;
  inputPath: string;
  inputOrigin: JobOriginSnapshot | null;
  outputOriginId: string;
  outputOrigin: JobOriginSnapshot;
  /** InputMetadata in proto3 JSON, filled by the probe. */
  inputMetadata: unknown;
  estimatedCostMinor: string | null;
  actualCostMinor: string | null;
  currency: string;
  errorCode: string;
  errorMessage: string;
  webhookUrl: string;
  metadata: Record<string, string>;
  delayedStart: boolean;
  /** Execution in proto3 JSON. */
  execution: unknown;
  idempotencyKey: string | null;
  requestDigest: string;
  attempt: number;
  createdAt: Date;
  updatedAt: Date;
  probedAt: Date | null;
  startedAt: Date | null;
  completedAt: Date | null;
  confirmedAt: Date | null;
  /** Created with a test key: estimated and actual costs are 0. */
  test: boolean;
  outputs: JobOutputRecord[];
  thumbnails: JobThumbnailRecord[];
}

/** A message for the workers, written in the same transaction as the state change it follows. */
export interface OutboxMessage {
  id: string;
  jobId: string;
  topic: "job.created" | "job.confirmed" | "job.canceled";
  payload: Record<string, unknown>;
}
