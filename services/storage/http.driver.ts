import { type FetchLike, createGuardedFetch } from "../net/guarded-fetch.js";
import { type NetworkGuard, blockedDestinationOf, defaultNetworkGuard } from "../net/network-guard.js";
import {
  type HttpConfig,
  type OriginPermissions,
  type StorageDriver,
  ObjectAccessDeniedError,
  ObjectNotFoundError,
  ObjectTooLargeError,
  OriginProbeError,
  joinObjectPath,
  writeStreamToFile,
} from "./storage-driver.js";

export type { FetchLike };

export interface HttpDriverOptions {
  /**
   * Decides which hosts may be contacted (default: nothing private). Every request, redirect
   * hops included, connects through it.
   */
  guard?: NetworkGuard;
  /** Replaces the guarded client altogether (tests); the guard is then not used. */
  fetch?: FetchLike;
  /** Cap on a probe; an unresponsive host must not hang origin creation. */
  probeTimeoutMs?: number;
  /** Socket idle limit (connect included) for every request. */
  socketTimeoutMs?: number;
}

/** Redirects followed per request; each hop is checked by the guard like the first request. */
export const MAX_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

class RedirectError extends Error {
  override name = "RedirectError";
}

/** A read-only origin: objects are plain URLs under baseUrl. */
export class HttpDriver implements StorageDriver {
  private readonly baseUrl: string;
  private readonly baseOrigin: string;
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
    this.baseOrigin = parsed.origin;
    this.fetch =
      options.fetch ?? createGuardedFetch(options.guard ?? defaultNetworkGuard(), { socketTimeoutMs: options.socketTimeoutMs });
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
      // A refused destination is reported as just that: nothing was sent to it.
      const blocked = blockedDestinationOf(err);
      if (blocked) throw new OriginProbeError(blocked.message, { cause: err });
      throw new OriginProbeError(`read probe failed: ${describeFetchError(err)} (${url})`, { cause: err });
    }
  }

  async download(objectPath: string, destFile: string, opts: { maxBytes?: number; signal?: AbortSignal } = {}) {
    const url = this.urlFor(objectPath);
    const response = await this.request(url, { method: "GET", signal: opts.signal });
    if (!response.ok || !response.body) {
      await response.body?.cancel();
      const message = `GET ${withoutSecrets(url)} answered HTTP ${response.status} ${response.statusText}`;
      if (response.status === 404 || response.status === 410) throw new ObjectNotFoundError(message);
      if (response.status === 401 || response.status === 403) throw new ObjectAccessDeniedError(message);
      throw new Error(message);
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

  /**
   * One request, following at most MAX_REDIRECTS redirects by hand (`redirect: "manual"`), so
   * every hop is a new request through the guard. The origin's configured headers (often
   * secrets) go only to the base URL's own origin, never to a host a redirect names.
   */
  private async request(url: string, init: RequestInit): Promise<Response> {
    let current = new URL(url);
    let method = init.method ?? "GET";
    for (let hop = 0; ; hop++) {
      const own = current.origin === this.baseOrigin ? this.config.headers : undefined;
      let response: Response;
      try {
        response = await this.fetch(current.href, {
          ...init,
          method,
          redirect: "manual",
          headers: { ...own, ...(init.headers as Record<string, string> | undefined) },
        });
      } catch (err) {
        const blocked = hop > 0 ? blockedDestinationOf(err) : undefined;
        throw blocked ? blocked.viaRedirect() : err;
      }
      const location = REDIRECT_STATUSES.has(response.status) ? response.headers.get("location") : null;
      if (location === null) return response;
      await response.body?.cancel();
      if (hop === MAX_REDIRECTS) throw new RedirectError(`more than ${MAX_REDIRECTS} redirects`);
      let next: URL;
      try {
        next = new URL(location, current);
      } catch {
        throw new RedirectError(`HTTP ${response.status} with an invalid Location`);
      }
      if (next.protocol !== "http:" && next.protocol !== "https:") {
        throw new RedirectError(`redirect to a ${next.protocol} URL refused`);
      }
      if (response.status === 303 && method !== "HEAD") method = "GET";
      current = next;
    }
  }
}

/** A URL for messages: no user info, no query string (presigned URLs carry their signature there). */
function withoutSecrets(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}${parsed.search ? "?…" : ""}`;
  } catch {
    return "(unparseable URL)";
  }
}

/** Network failures carry a code (on the error, its cause, or the parts of an AggregateError). */
function describeFetchError(err: unknown): string {
  const e = err as (Error & { code?: string; cause?: { code?: string; message?: string }; errors?: Array<{ code?: string }> }) | undefined;
  if (e?.name === "TimeoutError" || e?.name === "AbortError") return "no answer in time";
  const code = e?.code ?? e?.cause?.code ?? e?.errors?.find((inner) => inner.code)?.code;
  if (code === "ETIMEDOUT") return "no answer in time";
  if (code && code !== "ABORT_ERR") return `cannot reach the server (${code})`;
  return e?.cause?.message ?? e?.message ?? String(err);
}
