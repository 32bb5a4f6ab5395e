/** The dashboard's static route (services/api/web-routes.ts) on a real HTTP server over a real directory. */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { webRoutes } from "../../services/api/web-routes.js";

let dir: string;
let servers: Server[] = [];

/** A server whose every unclaimed request answers 599, so a test sees what the route left alone. */
async function serve(root: string): Promise<string> {
  const route = webRoutes(root);
  const server = createServer((req, res) => {
    if (!route(req, res)) res.writeHead(599).end("not claimed");
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** fetch() normalizes paths (/assets/../x becomes /x): raw requests keep them as written. */
function rawGet(base: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const url = new URL(base);
    import("node:http").then(({ request }) => {
      const req = request({ host: url.hostname, port: url.port, path, method: "GET" }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end();
    }, reject);
  });
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "rendition-web-"));
  mkdirSync(join(dir, "dist", "assets"), { recursive: true });
  writeFileSync(join(dir, "dist", "index.html"), "<!doctype html><title>Rendition</title>");
  writeFileSync(join(dir, "dist", "assets", "index-abc123.js"), "console.log('dashboard');\n".repeat(200));
  writeFileSync(join(dir, "secret.txt"), "outside the dist folder");
  symlinkSync(join(dir, "secret.txt"), join(dir, "dist", "assets", "link.txt"));
});

afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  servers = [];
  rmSync(dir, { recursive: true, force: true });
});

describe("web routes", () => {
  it("serves index.html at / and /index.html, revalidated, with a strict Content-Security-Policy", async () => {
    const base = await serve(join(dir, "dist"));
    for (const path of ["/", "/index.html", "/?utm=x"]) {
      const res = await fetch(base + path);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
      expect(res.headers.get("cache-control")).toBe("no-cache");
      expect(res.headers.get("content-security-policy")).toMatch(/script-src 'self';/);
      expect(res.headers.get("referrer-policy")).toBe("no-referrer");
      expect(await res.text()).toContain("<title>Rendition</title>");
    }
    const lastModified = (await fetch(base + "/")).headers.get("last-modified")!;
    expect((await fetch(base + "/", { headers: { "if-modified-since": lastModified } })).status).toBe(304);
  });

  it("serves hashed assets as immutable, gzipped when the client accepts it", async () => {
    const base = await serve(join(dir, "dist"));
    const plain = await fetch(base + "/assets/index-abc123.js", { headers: { "accept-encoding": "identity" } });
    expect(plain.status).toBe(200);
    expect(plain.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(plain.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    const body = await plain.text();
    expect(body).toContain("console.log('dashboard');");
    const zipped = await new Promise<{ encoding?: string; body: Buffer }>((resolve, reject) => {
      import("node:http").then(({ get }) => {
        get(base + "/assets/index-abc123.js", { headers: { "accept-encoding": "gzip" } }, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ encoding: res.headers["content-encoding"], body: Buffer.concat(chunks) }));
        }).on("error", reject);
      }, reject);
    });
    expect(zipped.encoding).toBe("gzip");
    expect(zipped.body.length).toBeLessThan(body.length);
    expect(gunzipSync(zipped.body).toString()).toBe(body);
    expect((await fetch(base + "/assets/missing.js")).status).toBe(404);
    const head = await fetch(base + "/assets/index-abc123.js", { method: "HEAD", headers: { "accept-encoding": "identity" } });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String(Buffer.byteLength(body)));
  });

  it("never leaves the dist folder", async () => {
    const base = await serve(join(dir, "dist"));
    expect(await rawGet(base, "/assets/../../secret.txt")).toBe(404);
    expect(await rawGet(base, "/assets/%2e%2e/%2e%2e/secret.txt")).toBe(404);
    expect(await rawGet(base, "/assets/..%2f..%2fsecret.txt")).toBe(404);
    expect(await rawGet(base, "/assets/%00")).toBe(404);
    expect(await rawGet(base, "/assets/link.txt")).toBe(404); // a symbolic link out of it
  });

  it("leaves every other path and method to the API", async () => {
    const base = await serve(join(dir, "dist"));
    for (const path of ["/rendition.v1.JobService/List", "/rendition.v1.JobService/Get?message=%7B%7D", "/healthz", "/readyz", "/metrics", "/uploads/tok", "/files/tok/a.mp4", "/index.htm", "/favicon.ico", "/assetsx/a.js"]) {
      expect((await fetch(base + path)).status, path).toBe(599);
    }
    expect((await fetch(base + "/", { method: "POST", body: "{}" })).status).toBe(599);
    expect((await fetch(base + "/assets/index-abc123.js", { method: "PUT", body: "x" })).status).toBe(599);
  });

  it("says how to build the dashboard when web/dist is missing", async () => {
    const base = await serve(join(dir, "not-built"));
    const res = await fetch(base + "/");
    expect(res.status).toBe(404);
    expect(await res.text()).toContain("npm run build:web");
    expect((await fetch(base + "/assets/index-abc123.js")).status).toBe(404);
  });
});
