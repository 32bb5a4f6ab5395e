import { describe, expect, it } from "vitest";
import { TokenBuckets } from "../../services/api/rate-limit.js";
import { loadConfig, ConfigError } from "../../services/config.js";

describe("TokenBuckets", () => {
  it("lets a burst through, then one call per 1/rps, and says how long to wait", () => {
    let now = 0;
    const buckets = new TokenBuckets(10, 3, () => now);
    expect([buckets.take("a"), buckets.take("a"), buckets.take("a")]).toEqual([0, 0, 0]);
    expect(buckets.take("a")).toBeCloseTo(100); // 1 token at 10/s
    now = 50;
    expect(buckets.take("a")).toBeCloseTo(50); // half a token back
    now = 100;
    expect(buckets.take("a")).toBe(0);
    expect(buckets.take("a")).toBeCloseTo(100);
  });

  it("refills up to the burst only, and keeps organizations apart", () => {
    let now = 0;
    const buckets = new TokenBuckets(1, 2, () => now);
    expect(buckets.take("a") + buckets.take("a")).toBe(0);
    expect(buckets.take("a")).toBeGreaterThan(0);
    expect(buckets.take("b")).toBe(0);
    now = 60_000; // a long quiet spell still gives only `burst` calls at once
    expect([buckets.take("a"), buckets.take("a")]).toEqual([0, 0]);
    expect(buckets.take("a")).toBeCloseTo(1000);
  });

  it("a refused call takes nothing: the wait does not grow while a client keeps asking", () => {
    let now = 0;
    const buckets = new TokenBuckets(2, 1, () => now);
    expect(buckets.take("a")).toBe(0);
    for (let i = 0; i < 5; i++) expect(buckets.take("a")).toBeCloseTo(500);
    now = 500;
    expect(buckets.take("a")).toBe(0);
  });
});

describe("limit settings", () => {
  it("are on by default at generous values, and 0 turns each off", () => {
    expect(loadConfig({}).limits).toEqual({ rateLimitRps: 50, rateLimitBurst: 200, maxActiveJobsPerOrg: 1000 });
    expect(loadConfig({ RENDITION_RATE_LIMIT_RPS: "0", RENDITION_MAX_ACTIVE_JOBS_PER_ORG: "0" }).limits).toMatchObject({ rateLimitRps: 0, maxActiveJobsPerOrg: 0 });
    expect(loadConfig({ RENDITION_RATE_LIMIT_RPS: "500" }).limits.rateLimitBurst).toBe(500); // never below one second of the rate
    expect(() => loadConfig({ RENDITION_RATE_LIMIT_BURST: "0" })).toThrow(ConfigError);
    expect(() => loadConfig({ RENDITION_MAX_ACTIVE_JOBS_PER_ORG: "-1" })).toThrow(/RENDITION_MAX_ACTIVE_JOBS_PER_ORG must be an integer/);
  });
});
