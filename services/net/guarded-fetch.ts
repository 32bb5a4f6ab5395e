import http from "node:http";
import https from "node:https";
import { Readable } from "node:stream";

import type { NetworkGuard } from "./network-guard.js";

/** The subset of `fetch` the storage drivers use. */
export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

export interface GuardedFetchOptions {
  /**
   * Socket idle limit, connect phase included: a host that stops answering fails the request
   * instead of holding it for the OS default (~2 min). Not a cap on a whole transfer.
   */
  socketTimeoutMs?: number;
}

const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/**
 * A `fetch` over node:http/https whose connections all go through `guard`.
 *
 * Why not the global fetch: Node's fetch (undici) cannot take an http.Agent, and a custom
 * `lookup` would need undici's own Agent class, which Node does not expose without the `undici`
 * package. A pre-check with `assertAllowed` before the global fetch would resolve the name twice,
 * so a rebinding DNS server could answer "public" to the check and "127.0.0.1" to the connect.
 * Here the guarded Agent checks the very addresses the socket connects to.
 *
 * It never follows redirects (a 3xx is returned as is, like `redirect: "manual"` with the
 * Location header readable): callers that follow them send each hop through this function again.
 * It never asks for compression either, so bodies arrive byte for byte as stored.
 * Supported: method, headers, signal and a string or byte body.
 */
export function createGuardedFetch(guard: NetworkGuard, options: GuardedFetchOptions = {}): FetchLike {
  const socketTimeoutMs = options.socketTimeoutMs ?? 30_000;
  // No keep-alive: nothing pooled to release, so drivers need no destroy() for these.
  const httpAgent = guard.createHttpAgent({ keepAlive: false });
  const httpsAgent = guard.createHttpsAgent({ keepAlive: false });

  return (url, init) =>
    new Promise<Response>((resolve, reject) => {
      const target = new URL(url);
      if (target.protocol !== "http:" && target.protocol !== "https:") {
        throw new TypeError(`only http and https URLs can be fetched, not ${target.protocol}`);
      }
      const body = init.body;
      if (body !== undefined && body !== null && typeof body !== "string" && !(body instanceof Uint8Array)) {
        throw new TypeError("guarded fetch sends only string or byte bodies");
      }
      const method = (init.method ?? "GET").toUpperCase();
      const headers: Record<string, string> = {};
      new Headers(init.headers).forEach((value, name) => (headers[name] = value));

      const request = (target.protocol === "https:" ? https : http).request(
        target,
        {
          method,
          headers,
          agent: target.protocol === "https:" ? httpsAgent : httpAgent,
          signal: init.signal ?? undefined,
          timeout: socketTimeoutMs,
        },
        (res) => {
          const status = res.statusCode ?? 0;
          if (status < 200 || status > 599) {
            res.destroy();
            reject(new Error(`invalid HTTP status ${status}`));
            return;
          }
          const responseHeaders = new Headers();
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
            try {
              responseHeaders.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
            } catch {
              // A header the Fetch API cannot represent; nothing here needs it.
            }
          }
          const nullBody = method === "HEAD" || NULL_BODY_STATUSES.has(status);
          if (nullBody) res.resume();
          resolve(
            new Response(nullBody ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), {
              status,
              statusText: res.statusMessage ?? "",
              headers: responseHeaders,
            }),
          );
        },
      );
      request.on("timeout", () => {
        request.destroy(Object.assign(new Error(`no data from ${target.host} for ${socketTimeoutMs} ms`), { code: "ETIMEDOUT" }));
      });
      request.on("error", reject);
      request.end(body ?? undefined);
    });
}
