import { describe, expect, it } from "vitest";
import { parseRange } from "../../services/api/file-routes.js";
import { partSizeFor } from "../../services/files/upload.service.js";
import { PublicUrl, UrlSigner } from "../../services/files/url-signer.js";

describe("parseRange", () => {
  it("reads one bytes range: first-last, first-, -suffix, clamped to the file", () => {
    expect(parseRange("bytes=0-99", 1000)).toEqual([0, 99]);
    expect(parseRange("bytes=900-", 1000)).toEqual([900, 999]);
    expect(parseRange("bytes=-100", 1000)).toEqual([900, 999]);
    expect(parseRange("bytes=-5000", 1000)).toEqual([0, 999]);
    expect(parseRange("bytes=990-5000", 1000)).toEqual([990, 999]);
  });
  it("is unsatisfiable past the end, and ignored (whole file) when malformed or multiple", () => {
    expect(parseRange("bytes=1000-", 1000)).toBe("unsatisfiable");
    expect(parseRange("bytes=-0", 1000)).toBe("unsatisfiable");
    expect(parseRange(undefined, 1000)).toBeUndefined();
    expect(parseRange("items=0-1", 1000)).toBeUndefined();
    expect(parseRange("bytes=0-1,5-6", 1000)).toBeUndefined();
    expect(parseRange("bytes=50-10", 1000)).toBeUndefined();
  });
});

describe("partSizeFor", () => {
  it("keeps the configured part size unless 10,000 parts would not hold the file", () => {
    expect(partSizeFor(200 * 2 ** 20, 64 * 2 ** 20)).toBe(64 * 2 ** 20);
    const huge = 1024 * 2 ** 30; // 1 TiB: 64 MiB parts would be 16,384
    const size = partSizeFor(huge, 64 * 2 ** 20);
    expect(Math.ceil(huge / size)).toBeLessThanOrEqual(10_000);
    expect(size % 2 ** 20).toBe(0);
  });
});

describe("UrlSigner", () => {
  const signer = new UrlSigner(Buffer.alloc(32, 1));
  it("verifies its own tokens and refuses changed ones or another key's", () => {
    const token = signer.sign({ u: "upl_1", e: 5 });
    expect(signer.verify(token)).toEqual({ u: "upl_1", e: 5 });
    const [body, mac] = token.split(".");
    const forged = Buffer.from(JSON.stringify({ u: "upl_2", e: 5 })).toString("base64url");
    expect(signer.verify(`${forged}.${mac}`)).toBeUndefined();
    expect(signer.verify(`${body}.${mac!.slice(0, -1)}`)).toBeUndefined();
    expect(signer.verify(body!)).toBeUndefined();
    expect(new UrlSigner(Buffer.alloc(32, 2)).verify(token)).toBeUndefined();
  });
});

describe("PublicUrl", () => {
  it("is the configured URL, else the listening address (localhost for a wildcard)", () => {
    const fallback = new PublicUrl();
    fallback.listening("0.0.0.0", 9000);
    expect(fallback.base).toBe("http://localhost:9000");
    fallback.listening("127.0.0.1", 9001);
    expect(fallback.base).toBe("http://127.0.0.1:9001");
    const configured = new PublicUrl("https://media.example.com");
    configured.listening("0.0.0.0", 9000);
    expect(configured.base).toBe("https://media.example.com");
  });
});

describe("configuration", () => {
  it("reads RENDITION_PUBLIC_URL (trailing slash dropped) and RENDITION_UPLOAD_PART_BYTES, refusing bad values", async () => {
    const { loadConfig, ConfigError } = await import("../../services/config.js");
    expect(loadConfig({}).publicUrl).toBeUndefined();
    expect(loadConfig({ RENDITION_PUBLIC_URL: "https://media.example.com/rendition/" }).publicUrl).toBe("https://media.example.com/rendition");
    expect(() => loadConfig({ RENDITION_PUBLIC_URL: "media.example.com" })).toThrow(ConfigError);
    expect(() => loadConfig({ RENDITION_PUBLIC_URL: "https://x.example/?a=1" })).toThrow(ConfigError);
    expect(loadConfig({}).uploadPartBytes).toBe(64 * 2 ** 20);
    expect(() => loadConfig({ RENDITION_UPLOAD_PART_BYTES: String(2 ** 20) })).toThrow(/RENDITION_UPLOAD_PART_BYTES/);
  });
});
