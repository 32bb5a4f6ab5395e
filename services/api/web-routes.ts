import { createReadStream } from "node:fs";
import { realpath, stat } from "node:fs/promises";
import type http from "node:http";
import type http2 from "node:http2";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createGzip } from "node:zlib";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

/** Where `npm run build:web` (vite, web/vite.config.ts) writes the dashboard. */
export const DEFAULT_WEB_DIR = fileURLToPath(new URL("../../web/dist", import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".map": "application/json",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
};
const COMPRESSIBLE = /^(text\/|application\/json|image\/svg)/;

/**
 * The page may run only its own scripts (hls.js starts its transmuxing worker from a blob: URL);
 * media, thumbnails and manifests come from signed URLs, which for s3 origins live on another host.
 * No referrer, so a signed URL is never handed on in a Referer header.
 */
const SECURITY_HEADERS = {
  "content-security-policy": [
    "default-src 'self'",
    "script-src 'self'",
    "worker-src 'self' blob:",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob: http: https:",
    "media-src 'self' blob: http: https:",
    "connect-src 'self' http: https:",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'none'",
  ].join("; "),
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

const NOT_BUILT = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Rendition</title></head>
<body><h1>The dashboard is not built</h1><p>Run <code>npm run build:web</code> (or restart with <code>npm start</code>, which builds it when it is missing or stale).
The API itself is running.</p></body></html>`;

/**
 * The web dashboard's static files (web/dist), outside the Connect router like /healthz. It
 * claims only GET/HEAD of `/`, `/index.html` and `/assets/...` (Vite's hashed, immutable files),
 * so it never shadows an RPC path (/rendition.v1.*), /healthz, /readyz, /metrics, /uploads or
 * /files. The page routes with the URL's fragment (#/jobs/...), so there is no fallback to
 * index.html for unknown paths. Returns a handler that answers true when it took the request.
 */
export function webRoutes(dir: string = DEFAULT_WEB_DIR): (req: Request, res: Response) => boolean {
  const root = path.resolve(dir);
  return (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    const urlPath = (req.url ?? "").split("?")[0]!;
    let file: string;
    if (urlPath === "/" || urlPath === "/index.html") file = "index.html";
    else if (urlPath.startsWith("/assets/")) file = urlPath.slice(1);
    else return false;
    void serve(root, file, req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end();
    });
    return true;
  };
}

/** One handler for the server, over the default directory. */
export const serveDashboard = webRoutes();

async function serve(root: string, relative: string, req: Request, res: Response): Promise<void> {
  const file = await resolveInside(root, relative);
  const info = file ? await stat(file).catch(() => undefined) : undefined;
  if (!file || !info?.isFile()) {
    if (relative === "index.html") {
      res.writeHead(404, { ...SECURITY_HEADERS, "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
      res.end(req.method === "HEAD" ? "" : NOT_BUILT);
      return;
    }
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
    res.end(req.method === "HEAD" ? "" : "not found\n");
    return;
  }
  const contentType = CONTENT_TYPES[path.extname(file).toLowerCase()] ?? "application/octet-stream";
  const gzip = COMPRESSIBLE.test(contentType) && /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
  // Asset names carry a content hash; index.html names the current ones, so it is always revalidated.
  const caching = {
    "cache-control": relative === "index.html" ? "no-cache" : "public, max-age=31536000, immutable",
    "last-modified": info.mtime.toUTCString(),
  };
  const headers: Record<string, string | number> = { ...SECURITY_HEADERS, ...caching, "content-type": contentType, vary: "accept-encoding" };
  if (gzip) headers["content-encoding"] = "gzip";
  else headers["content-length"] = info.size;
  const since = req.headers["if-modified-since"];
  if (since && Math.floor(info.mtime.getTime() / 1000) <= Math.floor(Date.parse(String(since)) / 1000)) {
    res.writeHead(304, caching);
    res.end();
    return;
  }
  res.writeHead(200, headers);
  if (req.method === "HEAD") {
    res.end();
    return;
  }
  await new Promise<void>((resolve, reject) => {
    const stream = createReadStream(file);
    stream.on("error", reject);
    res.on("close", () => {
      stream.destroy();
      resolve();
    });
    (gzip ? stream.pipe(createGzip()) : stream).pipe(res as NodeJS.WritableStream);
  });
}

/** `relative` under `root`, or undefined when it (or a symbolic link on the way) would leave it. */
async function resolveInside(root: string, relative: string): Promise<string | undefined> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(relative);
  } catch {
    return undefined;
  }
  if (decoded.includes("\0")) return undefined;
  const file = path.resolve(root, "." + path.posix.normalize("/" + decoded));
  if (!file.startsWith(root + path.sep)) return undefined;
  try {
    const real = await realpath(file);
    const realRoot = await realpath(root);
    return real.startsWith(realRoot + path.sep) ? real : undefined;
  } catch {
    return file; // missing: answered 404
  }
}
