/**
 * The one pricing table (api-facts.md "Pricing", job-service-reference.md "Priorities"):
 *   cost = minutes x base x codec x resolution x (fps / 30) x features x priority
 * summed over a job's outputs and variants. Amounts are computed in micro-euros (integers, exact
 * enough to sum many variants) and rounded once per job to the stored minor unit (cents).
 */
export const CURRENCY = "EUR";

/** Base price for one minute of 1080p30 H.264 at standard priority, in micro-euros (0.40 EUR). */
export const BASE_MICROS_PER_MINUTE = 400_000;

export type CodecName = "h264" | "h265" | "vp9" | "av1";
export type ResolutionTier = "480p" | "720p" | "1080p" | "1440p" | "2160p" | "4320p";
export type PriorityName = "economy" | "standard" | "premium";

export const CODEC_MULTIPLIER: Record<CodecName, number> = { h264: 1.0, h265: 1.5, vp9: 1.3, av1: 2.5 };
export const RESOLUTION_MULTIPLIER: Record<ResolutionTier, number> = {
  "480p": 0.5,
  "720p": 0.75,
  "1080p": 1.0,
  "1440p": 1.5,
  "2160p": 2.5,
  "4320p": 5.0,
};
export const PRIORITY_MULTIPLIER: Record<PriorityName, number> = { economy: 0.75, standard: 1.0, premium: 2.0 };
export const FEATURE_MULTIPLIER = { thumbnails: 1.1, drm: 1.25, contentAware: 1.15 } as const;

/** Width x height of each tier (16:9), for mapping a custom size to the nearest tier. */
const TIER_PIXELS: Array<[ResolutionTier, number]> = [
  ["480p", 854 * 480],
  ["720p", 1280 * 720],
  ["1080p", 1920 * 1080],
  ["1440p", 2560 * 1440],
  ["2160p", 3840 * 2160],
  ["4320p", 7680 * 4320],
];

/** Custom sizes take the nearest tier by pixel count. */
export function nearestTier(width: number, height: number): ResolutionTier {
  const pixels = width * height;
  let best = TIER_PIXELS[0]!;
  for (const tier of TIER_PIXELS) {
    if (Math.abs(tier[1] - pixels) < Math.abs(best[1] - pixels)) best = tier;
  }
  return best[0];
}

export interface VariantPricing {
  codec: CodecName;
  tier: ResolutionTier;
  /** Output frame rate; values <= 0 count as 30. */
  fps: number;
}

export interface OutputPricing {
  variants: VariantPricing[];
  drm?: boolean;
  contentAware?: boolean;
}

/** Micro-euros for `durationMs` of one output (all its variants) before job-level multipliers. */
export function outputCostMicros(durationMs: number, output: OutputPricing): number {
  const minutes = durationMs / 60_000;
  let features = 1;
  if (output.drm) features *= FEATURE_MULTIPLIER.drm;
  if (output.contentAware) features *= FEATURE_MULTIPLIER.contentAware;
  let total = 0;
  for (const v of output.variants) {
    const fps = v.fps > 0 ? v.fps : 30;
    total += minutes * BASE_MICROS_PER_MINUTE * CODEC_MULTIPLIER[v.codec] * RESOLUTION_MULTIPLIER[v.tier] * (fps / 30);
  }
  return total * features;
}

export interface JobPricing {
  durationMs: number;
  outputs: OutputPricing[];
  priority: PriorityName;
  thumbnails: boolean;
}

/** A job's cost in micro-euros, per output and in total (job multipliers applied to each output). */
export function jobCostMicros(job: JobPricing): { outputs: number[]; total: number } {
  const jobMultiplier = PRIORITY_MULTIPLIER[job.priority] * (job.thumbnails ? FEATURE_MULTIPLIER.thumbnails : 1);
  const outputs = job.outputs.map((o) => Math.round(outputCostMicros(job.durationMs, o) * jobMultiplier));
  return { outputs, total: outputs.reduce((a, b) => a + b, 0) };
}

/** Micro-euros to the stored minor unit (cents), half up. */
export function microsToMinor(micros: number): number {
  return Math.round(micros / 10_000);
}

/** Minor units to the API's decimal string: 85 -> "0.85". */
export function formatMinor(minor: number | bigint | string): string {
  const cents = BigInt(minor);
  const sign = cents < 0n ? "-" : "";
  const abs = cents < 0n ? -cents : cents;
  return `${sign}${abs / 100n}.${(abs % 100n).toString().padStart(2, "0")}`;
}

/** Micro-euros to a decimal string with up to 4 decimals, for per-minute rates: 400000 -> "0.40". */
export function formatMicros(micros: number): string {
  const tenThousandths = Math.round(micros / 100);
  const s = (tenThousandths / 10_000).toFixed(4).replace(/0{1,2}$/, "");
  return s;
}
