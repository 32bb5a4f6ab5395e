import { randomBytes } from "node:crypto";

import { describe, expect, it } from "vitest";

import { CredentialCipher, parseEncryptionKey } from "../../services/origins/credential-cipher.js";

const credentials = { accessKeyId: "AKIAEXAMPLE", secretAccessKey: "s3cr3t/with+chars=", headers: { "X-Token": "ü" } };

describe("CredentialCipher", () => {
  const cipher = new CredentialCipher(randomBytes(32));

  it("round-trips an object", () => {
    const token = cipher.encrypt(credentials);
    expect(token).toMatch(/^v1\.[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(token).not.toContain("s3cr3t");
    expect(cipher.decrypt(token)).toEqual(credentials);
  });

  it("uses a fresh IV for every encryption", () => {
    const a = cipher.encrypt(credentials);
    const b = cipher.encrypt(credentials);
    expect(a).not.toBe(b);
    expect(a.split(".")[1]).not.toBe(b.split(".")[1]);
  });

  it("rejects a token whose ciphertext, tag or IV was changed", () => {
    const parts = cipher.encrypt(credentials).split(".");
    for (const index of [1, 2, 3]) {
      const bytes = Buffer.from(parts[index]!, "base64url");
      bytes[0]! ^= 0x01;
      const tampered = parts.map((part, i) => (i === index ? bytes.toString("base64url") : part)).join(".");
      expect(() => cipher.decrypt(tampered)).toThrow(/tampered with or encrypted with another key/);
    }
  });

  it("rejects a truncated auth tag instead of checking fewer bits", () => {
    const parts = cipher.encrypt(credentials).split(".");
    parts[2] = Buffer.from(parts[2]!, "base64url").subarray(0, 4).toString("base64url");
    expect(() => cipher.decrypt(parts.join("."))).toThrow(/malformed/);
  });

  it("rejects unknown versions and garbage", () => {
    const token = cipher.encrypt(credentials);
    expect(() => cipher.decrypt(token.replace(/^v1/, "v2"))).toThrow(/unknown format or version/);
    expect(() => cipher.decrypt("not a token")).toThrow(/unknown format or version/);
  });

  it("fails with another key", () => {
    const token = cipher.encrypt(credentials);
    expect(() => new CredentialCipher(randomBytes(32)).decrypt(token)).toThrow(/another key/);
  });

  it("refuses keys that are not 32 bytes", () => {
    expect(() => new CredentialCipher(randomBytes(16))).toThrow(/32 bytes/);
  });
});

describe("parseEncryptionKey", () => {
  const key = randomBytes(32);

  it("accepts base64, base64url and hex of 32 bytes", () => {
    expect(parseEncryptionKey(key.toString("base64"))).toEqual(key);
    expect(parseEncryptionKey(key.toString("base64url"))).toEqual(key);
    expect(parseEncryptionKey(key.toString("hex"))).toEqual(key);
    expect(parseEncryptionKey(key.toString("hex").toUpperCase())).toEqual(key);
    expect(parseEncryptionKey(` ${key.toString("base64")}\n`)).toEqual(key);
  });

  it("rejects other lengths and encodings without echoing the value", () => {
    expect(() => parseEncryptionKey(randomBytes(16).toString("base64"))).toThrow(/32 bytes, got 16/);
    expect(() => parseEncryptionKey(randomBytes(31).toString("hex"))).toThrow(/32 bytes/);
    expect(() => parseEncryptionKey("")).toThrow(/32 bytes/);
    expect(() => parseEncryptionKey("not a key!")).toThrow(/32 bytes as base64 or hex/);
    try {
      parseEncryptionKey("secret-but-too-short");
    } catch (err) {
      expect((err as Error).message).not.toContain("secret-but-too-short");
    }
  });
});
