import { createHmac, hkdfSync, timingSafeEqual } from "node:crypto";

/**
 * HMAC-SHA256 tokens for Rendition's own signed URLs (local uploads and downloads): the payload
 * as base64url JSON, a dot, the signature. The key is derived (HKDF) from the credential
 * encryption key, so replicas sharing RENDITION_ENCRYPTION_KEY accept each other's URLs and the
 * encryption key itself never signs anything.
 */
export class UrlSigner {
  private readonly key: Buffer;

  constructor(encryptionKey: Buffer) {
    this.key = Buffer.from(hkdfSync("sha256", encryptionKey, Buffer.alloc(0), "rendition signed file urls v1", 32));
  }

  sign(payload: object): string {
    const body = Buffer.from(JSON.stringify(payload)).toString("base64url");
    return `${body}.${this.mac(body)}`;
  }

  /** The payload when the signature holds, else undefined (tampered, truncated, another key). */
  verify<T extends object>(token: string): T | undefined {
    const dot = token.indexOf(".");
    if (dot <= 0 || token.length > 4096) return undefined;
    const body = token.slice(0, dot);
    const given = Buffer.from(token.slice(dot + 1), "base64url");
    const expected = Buffer.from(this.mac(body), "base64url");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    try {
      const payload = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as unknown;
      return payload && typeof payload === "object" ? (payload as T) : undefined;
    } catch {
      return undefined;
    }
  }

  private mac(body: string): string {
    return createHmac("sha256", this.key).update(body).digest("base64url");
  }
}

/**
 * The base URL clients reach this server under: RENDITION_PUBLIC_URL, else the listening socket's
 * (localhost for a wildcard address), known once the server listens.
 */
export class PublicUrl {
  private fallback: string | undefined;

  constructor(private readonly configured?: string) {}

  /** Called by the API server once it listens. */
  listening(host: string, port: number): void {
    const name = host === "0.0.0.0" || host === "::" || host === "" ? "localhost" : host.includes(":") ? `[${host}]` : host;
    this.fallback = `http://${name}:${port}`;
  }

  get base(): string {
    return this.configured ?? this.fallback ?? "http://localhost:8080";
  }
}
