import type { Interceptor } from "@connectrpc/connect";
import { ResourceExhaustedError } from "../common/errors.js";
import { callerKey } from "./interceptors.js";

export interface RateLimitSettings {
  /** Tokens added per second (sustained RPCs per second); 0 turns the limit off. */
  rateLimitRps: number;
  /** Bucket size: RPCs allowed at once after a quiet spell. */
  rateLimitBurst: number;
}

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date (ms). */
  at: number;
}

/** Past this many organizations, buckets that have refilled completely (idle ones) are dropped. */
const PRUNE_ABOVE = 10_000;

/**
 * One token bucket per key (organization): `burst` tokens, refilled at `rps` a second, one
 * taken per call. Pure state in this process, so each API replica limits on its own.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly rps: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Takes a token: 0 when the call may go ahead, else the milliseconds until one is there. */
  take(key: string): number {
    const now = this.now();
    let bucket = this.buckets.get(key);
    if (!bucket) {
      if (this.buckets.size >= PRUNE_ABOVE) this.prune(now);
      bucket = { tokens: this.burst, at: now };
      this.buckets.set(key, bucket);
    }
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.rps);
    bucket.at = now;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return ((1 - bucket.tokens) / this.rps) * 1000;
  }

  get size(): number {
    return this.buckets.size;
  }

  private prune(now: number): void {
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + ((now - bucket.at) / 1000) * this.rps >= this.burst) this.buckets.delete(key);
    }
  }
}

/**
 * Per-organization request rate, after authentication (so it is the caller's organization that
 * pays, and an unauthenticated flood never reaches the buckets). Every RPC takes one token; a
 * Watch takes one when it opens, however long it then streams. Over the rate: RESOURCE_EXHAUSTED
 * with the wait until the next token (resource-exhausted.ts puts it in the answer).
 */
export function rateLimitInterceptor(settings: RateLimitSettings | undefined): Interceptor {
  if (!settings || settings.rateLimitRps <= 0) return (next) => next;
  const { rateLimitRps: rps, rateLimitBurst: burst } = settings;
  const buckets = new TokenBuckets(rps, burst);
  return (next) => async (req) => {
    const organizationId = req.contextValues.get(callerKey)?.organizationId;
    if (organizationId) {
      const waitMs = buckets.take(organizationId);
      if (waitMs > 0) {
        throw new ResourceExhaustedError(
          `organization ${organizationId} is over its request rate limit of ${rps} requests per second (burst ${burst}); retry after ${(waitMs / 1000).toFixed(3)} s`,
          "RATE_LIMITED",
          waitMs,
          { limit: "RENDITION_RATE_LIMIT_RPS", requests_per_second: String(rps), burst: String(burst) },
        );
      }
    }
    return next(req);
  };
}
