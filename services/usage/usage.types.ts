import type { CodecName, PriorityName, ResolutionTier } from "../pricing/pricing.js";

export type QualityName = "economy" | "standard" | "premium";
export type TerminalStatusName = "completed" | "partial" | "failed" | "canceled";

/** Minutes encoded on one pricing line: every video variant of a delivered output counts its duration. */
export interface UsageLineRecord {
  codec: CodecName;
  tier: ResolutionTier;
  quality: QualityName;
  priority: PriorityName;
  renditions: number;
  durationMs: number;
}

export interface UsageTotals {
  jobs: Record<TerminalStatusName, number>;
  outputsCompleted: number;
  /** Delivered outputs' durations added up, each output once. */
  durationMs: number;
  lines: UsageLineRecord[];
  actualCostMinor: number;
  currency: string;
}

/** Live jobs and test jobs (created with rnd_test_ keys), counted apart. */
export interface UsageReport {
  start: Date;
  end: Date;
  live: UsageTotals;
  test: UsageTotals;
}
