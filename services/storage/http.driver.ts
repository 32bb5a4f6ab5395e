import {
  type HttpConfig,
  type OriginPermissions,
  type StorageDriver,
  ObjectTooLargeError,
  OriginProbeError,
  joinObjectPath,
  writeStreamToFile,
} from "./storage-driver.js";

/**
 * The subset of `fetch` this driver uses. Injected so a guarded client (SSRF checks on the
 * resolved address, manual redirect handling) can replace the global one without touching
 * this file.
 */
export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

export interface HttpDriverOptions {
  fetch?: FetchLike;
  /** Cap on a probe; an unresponsive host must not hang origin creation. */
  probeTimeoutMs?: number;
}

/** A read-only origin: objects are plain URLs under baseUrl. */
export class HttpDriver implements StorageDriver {
  private readonly baseUrl: string;
  private readonly fetch: FetchLike;
  private readonly probeTimeoutMs: number;

  constructor(
    private readonly config: HttpConfig,
    options: HttpDriverOptions = {},
  ) {
    let parsed: URL;
    try {
      parsed = new URL(config.baseUrl);
    } catch {
      throw new OriginProbeError(`invalid base URL: ${config.baseUrl}`);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new OriginProbeError(`base URL must be http or https: ${config.baseUrl}`);
    }
    this.baseUrl = config.baseUrl.replace(/\/+$/, "");
    this.fetch = options.fetch ?? ((url, init) => fetch(url, init));
    this.probeTimeoutMs = options.probeTimeoutMs ?? 10_000;
  }

  async probe(basePath: string, permissions: OriginPermissions): Promise<void> {
    if (permissions.write) throw new OriginProbeError("http origins are read-only");
    if (!permissions.read) return;

    const url = this.urlFor(basePath);
    const signal = AbortSignal.timeout(this.probeTimeoutMs);
    try {
      let response = await this.request(url, { method: "HEAD", signal });
      // Some servers and signed-URL CDNs refuse HEAD; a one-byte ranged GET proves readability too.
      if (response.status === 405 || response.status === 501) {
        response = await this.request(url, { method: "GET", headers: { Range: "bytes=0-0" }, signal });
        await response.body?.cancel();
      }
      if (!response.ok) {
        throw new OriginProbeError(`read probe failed: HTTP ${response.status} ${response.statusText} from ${url}`);
      }
    } catch (err) {
      if (err instanceof OriginProbeError) throw err;
      throw new OriginProbeError(`read probe failed: ${describeFetchError(err)} (${url})`, { cause: err });
    }
  }

  async download(objectPath: string, destFile: string, opts: { maxBytes?: number; signal?: AbortSignal } = {}) {
    const url = this.urlFor(objectPath);
    const response = await this.request(url, { method: "GET", signal: opts.signal });
    if (!response.ok || !response.body) {
      await response.body?.cancel();
      throw new Error(`GET ${url} answered HTTP ${response.status} ${response.statusText}`);
    }
    const declaredLength = Number(response.headers.get("content-length") ?? 0);
    if (opts.maxBytes !== undefined && declaredLength > opts.maxBytes) {
      await response.body.cancel();
      throw new ObjectTooLargeError(opts.maxBytes);
    }
    return writeStreamToFile(response.body, destFile, opts);
  }

  async upload(): Promise<never> {
    throw new Error("http origins are read-only");
  }

  /** Each path segment is percent-encoded, so names with spaces or "#" stay one object. */
  urlFor(objectPath: string): string {
    const path = joinObjectPath(objectPath).split("/").filter(Boolean).map(encodeURIComponent).join("/");
    return path ? `${this.baseUrl}/${path}` : this.baseUrl;
  }

  private request(url: string, init: RequestInit): Promise<Response> {
    return this.fetch(url, { ...init, headers: { ...this.config.headers, ...(init.headers as Record<string, string>) } });
  }
}

/** fetch reports every network failure as TypeError("fetch failed"); the useful part is the cause. */
function describeFetchError(err: unknown): string {
  const e = err as (Error & { cause?: { code?: string; message?: string } }) | undefined;
  if (e?.name === "TimeoutError" || e?.name === "AbortError") return "no answer in time";
  const cause = e?.cause;
  if (cause?.code) return `cannot reach the server (${cause.code})`;
  return cause?.message ?? e?.message ?? String(err);
}
