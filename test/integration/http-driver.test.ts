import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { BlockedDestinationError, createNetworkGuard } from "../../services/net/network-guard.js";
import { type FetchLike, HttpDriver } from "../../services/storage/http.driver.js";
import { ObjectTooLargeError, OriginProbeError, createStorageDriver } from "../../services/storage/storage-driver.js";

const video = randomBytes(100_000);

/** The test server listens on loopback, which the default guard refuses. */
const loopback = createNetworkGuard({ allow: ["127.0.0.1/32", "::1/128"] });

describe("HttpDriver against a local HTTP server", () => {
  let server: http.Server;
  let baseUrl: string;
  let dir: string;
  const seen: Array<{ method?: string; url?: string; token?: string; range?: string }> = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      seen.push({ method: req.method, url: req.url, token: req.headers["x-token"] as string, range: req.headers.range });
      if (req.url === "/media" || req.url === "/media/in%20put.mp4") {
        res.writeHead(200, { "content-type": "video/mp4", "content-length": video.length });
        return res.end(req.method === "HEAD" ? undefined : video);
      }
      if (req.url === "/no-head") {
        if (req.method === "HEAD") return res.writeHead(405).end();
        return res.writeHead(206, { "content-range": "bytes 0-0/1" }).end("x");
      }
      if (req.url === "/to-metadata") {
        return res.writeHead(302, { location: "http://169.254.169.254/latest/meta-data/" }).end();
      }
      if (req.url === "/to-media") return res.writeHead(301, { location: "/media" }).end();
      if (req.url === "/loop") return res.writeHead(307, { location: "/loop" }).end();
      if (req.url === "/to-file") return res.writeHead(302, { location: "file:///etc/passwd" }).end();
      if (req.url === "/to-localhost") {
        // Same server, another origin (localhost instead of 127.0.0.1).
        return res.writeHead(302, { location: `http://localhost:${(server.address() as AddressInfo).port}/media` }).end();
      }
      if (req.url === "/chunked.bin") {
        // No Content-Length: the limit must be enforced while streaming.
        res.writeHead(200, { "content-type": "application/octet-stream" });
        return res.end(video);
      }
      res.writeHead(404).end("not found");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    dir = await mkdtemp(path.join(tmpdir(), "rendition-http-driver-"));
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  it("passes a read probe with HEAD, sending the configured headers", async () => {
    const driver = createStorageDriver({ provider: "http", http: { baseUrl: `${baseUrl}/`, headers: { "X-Token": "t0k" } } }, { guard: loopback });
    await driver.probe("/media/", { read: true, write: false });
    expect(seen.at(-1)).toMatchObject({ method: "HEAD", url: "/media", token: "t0k" });
  });

  it("falls back to a one-byte GET when HEAD is not allowed", async () => {
    await new HttpDriver({ baseUrl }, { guard: loopback }).probe("no-head", { read: true, write: false });
    expect(seen.slice(-2)).toMatchObject([
      { method: "HEAD", url: "/no-head" },
      { method: "GET", url: "/no-head", range: "bytes=0-0" },
    ]);
  });

  it("fails the read probe on 404 with the status and URL", async () => {
    const probe = new HttpDriver({ baseUrl }, { guard: loopback }).probe("missing", { read: true, write: false });
    await expect(probe).rejects.toThrow(OriginProbeError);
    await expect(probe).rejects.toThrow(`read probe failed: HTTP 404 Not Found from ${baseUrl}/missing`);
  });

  it("fails the read probe when nothing listens", async () => {
    // A port that was just free; fetch refuses "bad ports" such as 1 before even connecting.
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const driver = new HttpDriver({ baseUrl: `http://127.0.0.1:${port}` }, { guard: loopback });
    await expect(driver.probe("", { read: true, write: false })).rejects.toThrow(
      /^read probe failed: cannot reach the server \(ECONNREFUSED\)/,
    );
  });

  it("refuses write permission and uploads", async () => {
    const driver = new HttpDriver({ baseUrl }, { guard: loopback });
    await expect(driver.probe("media", { read: true, write: true })).rejects.toThrow("http origins are read-only");
    await expect(driver.upload()).rejects.toThrow("http origins are read-only");
  });

  it("refuses a base URL that is not http(s)", () => {
    expect(() => new HttpDriver({ baseUrl: "file:///etc" })).toThrow(OriginProbeError);
    expect(() => new HttpDriver({ baseUrl: "not a url" })).toThrow(/invalid base URL/);
  });

  it("downloads an object, encoding the path", async () => {
    const driver = new HttpDriver({ baseUrl }, { guard: loopback });
    expect(driver.urlFor("media/in put.mp4")).toBe(`${baseUrl}/media/in%20put.mp4`);
    const dest = path.join(dir, "download.mp4");
    expect(await driver.download("media/in put.mp4", dest)).toEqual({ bytes: video.length });
    expect((await readFile(dest)).equals(video)).toBe(true);
  });

  it("fails a download on a non-2xx answer", async () => {
    await expect(new HttpDriver({ baseUrl }, { guard: loopback }).download("missing.mp4", path.join(dir, "x"))).rejects.toThrow(/HTTP 404/);
  });

  it("enforces maxBytes from Content-Length and while streaming", async () => {
    const driver = new HttpDriver({ baseUrl }, { guard: loopback });
    const dest = path.join(dir, "limited.bin");
    await expect(driver.download("media", dest, { maxBytes: video.length - 1 })).rejects.toThrow(ObjectTooLargeError);
    await expect(driver.download("chunked.bin", dest, { maxBytes: video.length - 1 })).rejects.toThrow(
      ObjectTooLargeError,
    );
    await expect(writeFile(dest, "", { flag: "wx" })).resolves.toBeUndefined(); // partial file was removed
    expect(await driver.download("chunked.bin", dest, { maxBytes: video.length })).toEqual({ bytes: video.length });
  });

  it("uses an injected fetch for every request, never letting it follow redirects", async () => {
    const calls: string[] = [];
    const fakeFetch: FetchLike = async (url, init) => {
      calls.push(`${init.method} ${url}`);
      expect(init.redirect).toBe("manual");
      return new Response(null, { status: 200 });
    };
    await new HttpDriver({ baseUrl: "https://cdn.example.com/videos" }, { fetch: fakeFetch }).probe("", {
      read: true,
      write: false,
    });
    expect(calls).toEqual(["HEAD https://cdn.example.com/videos"]);
  });

  describe("SSRF guard", () => {
    it("refuses a loopback base URL by default, without sending it anything", async () => {
      const before = seen.length;
      for (const driver of [createStorageDriver({ provider: "http", http: { baseUrl } }), new HttpDriver({ baseUrl })]) {
        const probe = driver.probe("media", { read: true, write: false });
        await expect(probe).rejects.toThrow(OriginProbeError);
        await expect(probe).rejects.toThrow(
          "refused: 127.0.0.1 resolves to a private or reserved address; allow it with RENDITION_NETWORK_ALLOW",
        );
        await expect(driver.download("media", path.join(dir, "refused"))).rejects.toThrow(BlockedDestinationError);
      }
      // A name that resolves to loopback too.
      const byName = new HttpDriver({ baseUrl: baseUrl.replace("127.0.0.1", "localhost") });
      await expect(byName.probe("media", { read: true, write: false })).rejects.toThrow(
        /^refused: localhost resolves to a private or reserved address; allow it with RENDITION_NETWORK_ALLOW$/,
      );
      expect(seen.length).toBe(before);
    });

    it("refuses a redirect to the metadata address, naming the redirect", async () => {
      const before = seen.length;
      const probe = new HttpDriver({ baseUrl }, { guard: loopback }).probe("to-metadata", { read: true, write: false });
      await expect(probe).rejects.toThrow(
        "refused: a redirect to 169.254.169.254, which resolves to a private or reserved address; allow it with RENDITION_NETWORK_ALLOW",
      );
      expect(seen.slice(before)).toMatchObject([{ method: "HEAD", url: "/to-metadata" }]);
      await expect(new HttpDriver({ baseUrl }, { guard: loopback }).download("to-metadata", path.join(dir, "meta"))).rejects.toThrow(
        BlockedDestinationError,
      );
    });

    it("follows allowed redirects, at most 5, and only to http(s)", async () => {
      const driver = new HttpDriver({ baseUrl }, { guard: loopback });
      await driver.probe("to-media", { read: true, write: false });
      const dest = path.join(dir, "redirected.mp4");
      expect(await driver.download("to-media", dest)).toEqual({ bytes: video.length });
      expect((await readFile(dest)).equals(video)).toBe(true);

      const before = seen.length;
      await expect(driver.probe("loop", { read: true, write: false })).rejects.toThrow(`read probe failed: more than 5 redirects (${baseUrl}/loop)`);
      expect(seen.length - before).toBe(6); // the request and 5 redirects
      await expect(driver.probe("to-file", { read: true, write: false })).rejects.toThrow("redirect to a file: URL refused");
    });

    it("sends the origin's headers only to its own origin, not to where a redirect points", async () => {
      const driver = new HttpDriver({ baseUrl, headers: { "X-Token": "t0k" } }, { guard: loopback });
      const before = seen.length;
      await driver.probe("to-localhost", { read: true, write: false });
      expect(seen.slice(before)).toMatchObject([
        { method: "HEAD", url: "/to-localhost", token: "t0k" },
        { method: "HEAD", url: "/media", token: undefined },
      ]);
      // Same origin: the header follows.
      await driver.probe("to-media", { read: true, write: false });
      expect(seen.slice(-2)).toMatchObject([
        { url: "/to-media", token: "t0k" },
        { url: "/media", token: "t0k" },
      ]);
    });
  });
});
