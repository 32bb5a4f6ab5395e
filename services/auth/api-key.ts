import { createHash, randomBytes } from "node:crypto";

/**
 * API keys: a recognisable prefix (so secret scanners and people can spot one) followed by
 * 32 random bytes (256 bits) in base64url. Only the SHA-256 digest is stored: a fast hash is
 * enough because the key has full entropy, and it lets a lookup be one indexed equality.
 */
export const API_KEY_PREFIX = "rnd_live_";

export function generateApiKey(): { key: string; digest: string; displayPrefix: string } {
  const key = API_KEY_PREFIX + randomBytes(32).toString("base64url");
  return { key, digest: digestApiKey(key), displayPrefix: key.slice(0, API_KEY_PREFIX.length + 4) };
}

export function digestApiKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/** Extracts the key from an `Authorization: Bearer <key>` header value. */
export function parseBearer(header: string | null): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return match?.[1];
}
