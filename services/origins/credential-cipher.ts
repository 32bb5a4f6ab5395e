import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

const VERSION = "v1";
const ALGORITHM = "aes-256-gcm";
const KEY_BYTES = 32;
// 96-bit IVs are the size GCM is specified for (NIST SP 800-38D §8.2); random is safe for far
// more than the number of origins we will ever store under one key.
const IV_BYTES = 12;
// Full 128-bit tags only: Node would otherwise accept a truncated tag, making forgery easier.
const TAG_BYTES = 16;

/**
 * Encrypts origin credentials at rest. Token: `v1.<iv>.<tag>.<ciphertext>`, each base64url.
 * The version is bound as additional authenticated data, so a token cannot be relabelled
 * to another format version without failing decryption.
 */
export class CredentialCipher {
  private readonly key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== KEY_BYTES) throw new Error(`credential encryption key must be ${KEY_BYTES} bytes, got ${key.length}`);
    this.key = Buffer.from(key); // a private copy: the caller may wipe or reuse its buffer
  }

  encrypt(plain: object): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv(ALGORITHM, this.key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(VERSION));
    const ciphertext = Buffer.concat([cipher.update(JSON.stringify(plain), "utf8"), cipher.final()]);
    return [VERSION, iv, cipher.getAuthTag(), ciphertext]
      .map((part) => (typeof part === "string" ? part : part.toString("base64url")))
      .join(".");
  }

  decrypt(token: string): object {
    const parts = token.split(".");
    if (parts.length !== 4 || parts[0] !== VERSION) {
      throw new Error("credential token has an unknown format or version");
    }
    const [, iv, tag, ciphertext] = parts.map((part) => Buffer.from(part, "base64url"));
    if (iv!.length !== IV_BYTES || tag!.length !== TAG_BYTES) {
      throw new Error("credential token is malformed");
    }
    let plain: string;
    try {
      const decipher = createDecipheriv(ALGORITHM, this.key, iv!, { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(VERSION));
      decipher.setAuthTag(tag!);
      plain = Buffer.concat([decipher.update(ciphertext!), decipher.final()]).toString("utf8");
    } catch {
      // Node's own message ("Unsupported state or unable to authenticate data") says neither.
      throw new Error("credential token was tampered with or encrypted with another key");
    }
    const value: unknown = JSON.parse(plain);
    if (typeof value !== "object" || value === null) throw new Error("credential token does not hold an object");
    return value;
  }
}

/**
 * Parses the configured key: 64 hex characters or base64/base64url of exactly 32 bytes
 * (`openssl rand -base64 32` or `openssl rand -hex 32`). The error never echoes the value.
 */
export function parseEncryptionKey(value: string): Buffer {
  const text = value.trim();
  // Hex first: 64 hex digits are also valid base64 (of 48 bytes).
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, "hex");
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) {
    const key = Buffer.from(text, "base64");
    if (key.length === KEY_BYTES) return key;
    throw new Error(`encryption key must decode to ${KEY_BYTES} bytes, got ${key.length} (generate one with: openssl rand -base64 32)`);
  }
  throw new Error(`encryption key must be ${KEY_BYTES} bytes as base64 or hex (generate one with: openssl rand -base64 32)`);
}
