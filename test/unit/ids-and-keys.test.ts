import { describe, expect, it } from "vitest";
import { newId } from "../../services/common/ids.js";
import { API_KEY_PREFIX, TEST_API_KEY_PREFIX, digestApiKey, generateApiKey, parseBearer } from "../../services/auth/api-key.js";
import { authenticate } from "../../services/auth/authenticate.js";
import { PermissionDeniedError, UnauthenticatedError } from "../../services/common/errors.js";

describe("ids", () => {
  it("are prefixed and sort by creation time", () => {
    const a = newId("job", 1_700_000_000_000);
    const b = newId("job", 1_700_000_000_001);
    const c = newId("job", 1_800_000_000_000);
    expect(a).toMatch(/^job_[0-9a-hjkmnp-tv-z]{26}$/);
    expect([c, a, b].sort()).toEqual([a, b, c]);
    const burst = Array.from({ length: 1000 }, () => newId("out")); // mostly within one millisecond
    expect(new Set(burst).size).toBe(1000);
    expect([...burst].sort()).toEqual(burst); // monotonic: creation order is sort order
  });
});

describe("API keys", () => {
  it("carry a recognisable prefix and 256 random bits, stored only as a SHA-256 digest", () => {
    const { key, digest, displayPrefix } = generateApiKey();
    expect(key.startsWith(API_KEY_PREFIX)).toBe(true);
    expect(Buffer.from(key.slice(API_KEY_PREFIX.length), "base64url")).toHaveLength(32);
    expect(digest).toBe(digestApiKey(key));
    expect(digest).toMatch(/^[0-9a-f]{64}$/);
    expect(key.startsWith(displayPrefix)).toBe(true);
    expect(generateApiKey().key).not.toBe(key);
  });

  it("parses bearer headers", () => {
    expect(parseBearer("Bearer abc")).toBe("abc");
    expect(parseBearer("bearer abc ")).toBe("abc");
    expect(parseBearer("Basic abc")).toBeUndefined();
    expect(parseBearer(null)).toBeUndefined();
  });

  it("authenticates: missing/unknown key is unauthenticated, another organization is permission denied", async () => {
    const { key, digest } = generateApiKey();
    const keys = { findActiveKey: async (d: string) => (d === digest ? { id: "ak_1", organizationId: "org_a" } : undefined) };
    await expect(authenticate(keys, `Bearer ${key}`, "org_a")).resolves.toEqual({ organizationId: "org_a", apiKeyId: "ak_1", test: false });
    await expect(authenticate(keys, null, "org_a")).rejects.toBeInstanceOf(UnauthenticatedError);
    await expect(authenticate(keys, "Bearer rnd_live_wrong", "org_a")).rejects.toBeInstanceOf(UnauthenticatedError);
    await expect(authenticate(keys, `Bearer ${key}`, null)).rejects.toBeInstanceOf(UnauthenticatedError);
    await expect(authenticate(keys, `Bearer ${key}`, "org_b")).rejects.toBeInstanceOf(PermissionDeniedError);
  });

  it("makes test keys with their own prefix, and authenticate() reports a test caller", async () => {
    const { key, digest, displayPrefix } = generateApiKey({ test: true });
    expect(key.startsWith(TEST_API_KEY_PREFIX)).toBe(true);
    expect(Buffer.from(key.slice(TEST_API_KEY_PREFIX.length), "base64url")).toHaveLength(32);
    expect(displayPrefix).toBe(key.slice(0, TEST_API_KEY_PREFIX.length + 4));
    const keys = { findActiveKey: async (d: string) => (d === digest ? { id: "ak_2", organizationId: "org_a", test: true } : undefined) };
    await expect(authenticate(keys, `Bearer ${key}`, "org_a")).resolves.toEqual({ organizationId: "org_a", apiKeyId: "ak_2", test: true });
  });
});
