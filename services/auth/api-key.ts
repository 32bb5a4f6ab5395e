import { createHash, randomBytes } from "node:crypto";

/**
 * API keys: a recognisable prefix (so secret scanners and people can spot one) followed by
 * 32 random bytes (256 bits) in base64url. Only the SHA-256 digest is stored: a fast hash is
 * enough because the key has full entropy, and it lets a lookup be one indexed equality.
 */
export const API_KEY_PREFIX = "rnd_live_";
/** Test keys: their jobs are marked test and cost nothing. */
export const TEST_API_KEY_PREFIX = "rnd_test_";

export function generateApiKey(options: { test?: boolean } = {}): { key: string; digest: string; displayPrefix: string } {
  const prefix = options.test ? TEST_API_KEY_PREFIX : API_KEY_PREFIX;
  const key = prefix + randomBytes(32).toString("base64url");
  return { key, digest: digestApiKey(key), displayPrefix: key.slice(0, prefix.length + 4) };
}

export function digestApiKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/** Extracts the key from an `Authorization: Bearer <key>` header value. */
export function parseBearer(header: string | null): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return match?.[1];
}
