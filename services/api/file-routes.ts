import { createReadStream } from "node:fs";
import type http from "node:http";
import type http2 from "node:http2";
import { PassThrough } from "node:stream";
import { HttpRefusal } from "../files/http-refusal.js";
import type { DownloadManager } from "../files/download.service.js";
import type { UploadManager } from "../files/upload.service.js";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

export interface FileRouteDependencies {
  uploads: UploadManager;
  downloads: DownloadManager;
  log: (msg: string, err?: unknown) => void;
}

/**
 * Rendition's own file routes, outside the Connect router (like /healthz):
 *   PUT /uploads/<token>                      a local upload's body (single use)
 *   GET|HEAD /files/<token>/<relative path>   a signed download from a local origin (Range aware)
 * Returns a handler that answers true when it took the request.
 */
export function fileRoutes(deps: FileRouteDependencies): (req: Request, res: Response) => boolean {
  return (req, res) => {
    const url = req.url ?? "";
    const path = url.split("?")[0]!;
    if (path.startsWith("/uploads/")) {
      void handle(res, deps.log, () => upload(deps.uploads, req, res, path.slice("/uploads/".length)));
      return true;
    }
    if (path.startsWith("/files/")) {
      void handle(res, deps.log, () => download(deps.downloads, req, res, path.slice("/files/".length)));
      return true;
    }
    return false;
  };
}

async function handle(res: Response, log: FileRouteDependencies["log"], run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (err) {
    if (res.headersSent) {
      res.destroy?.();
      return;
    }
    const refusal = err instanceof HttpRefusal ? err : undefined;
    if (!refusal) log("file route failed", err);
    const status = refusal?.status ?? 500;
    const body = JSON.stringify({ error: refusal ? refusal.message : "internal error" });
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  }
}

async function upload(uploads: UploadManager, req: Request, res: Response, token: string): Promise<void> {
  if (req.method !== "PUT") {
    res.writeHead(405, { allow: "PUT", "content-type": "application/json" });
    res.end(JSON.stringify({ error: "upload with PUT (curl -T FILE URL)" }));
    return;
  }
  const lengthHeader = req.headers["content-length"];
  const declared = lengthHeader === undefined ? undefined : Number(lengthHeader);
  if (declared !== undefined && !Number.isSafeInteger(declared)) throw new HttpRefusal(400, "invalid Content-Length");
  // Piped, not handed over: a refusal mid-body must not destroy the request (and its socket)
  // before the 413 is sent. A client that goes away mid-body fails the write.
  const body = new PassThrough();
  req.pipe(body);
  req.on("close", () => {
    if (!req.complete) body.destroy(new Error("the client closed the connection before the body was complete"));
  });
  try {
    const done = await uploads.receive(token, body, declared);
    const answer = `${JSON.stringify({
      upload_id: done.id,
      state: "UPLOAD_STATE_COMPLETED",
      size_bytes: String(done.receivedBytes ?? 0),
      input_origin_id: done.originId,
      input_path: done.path,
    })}\n`;
    res.writeHead(201, { "content-type": "application/json", "content-length": Buffer.byteLength(answer) });
    res.end(answer);
  } catch (err) {
    // The rest of the body is not read: close the connection rather than drain it.
    req.unpipe(body);
    if ("shouldKeepAlive" in res) res.shouldKeepAlive = false;
    throw err;
  }
}

async function download(downloads: DownloadManager, req: Request, res: Response, rest: string): Promise<void> {
  if (req.method === "OPTIONS") {
    res.writeHead(204, {
      "access-control-allow-origin": "*",
      "access-control-allow-methods": "GET, HEAD",
      "access-control-allow-headers": "Range",
      "access-control-max-age": "86400",
    });
    res.end();
    return;
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD", "content-type": "application/json" });
    res.end(JSON.stringify({ error: "download with GET" }));
    return;
  }
  const [token, ...encoded] = rest.split("/");
  let segments: string[];
  try {
    segments = encoded.map((s) => decodeURIComponent(s));
  } catch {
    throw new HttpRefusal(400, "invalid file path");
  }
  const file = await downloads.resolve(token ?? "", segments);
  const headers: Record<string, string | number> = {
    "content-type": file.contentType,
    "accept-ranges": "bytes",
    "last-modified": file.mtime.toUTCString(),
    "cache-control": "private, max-age=300",
    "access-control-allow-origin": "*",
    "access-control-expose-headers": "Content-Length, Content-Range, Accept-Ranges",
  };
  const range = parseRange(req.headers.range, file.size);
  if (range === "unsatisfiable") {
    res.writeHead(416, { ...headers, "content-range": `bytes */${file.size}` });
    res.end();
    return;
  }
  const [start, end] = range ?? [0, file.size - 1];
  const length = file.size === 0 ? 0 : end - start + 1;
  res.writeHead(range ? 206 : 200, {
    ...headers,
    "content-length": length,
    ...(range ? { "content-range": `bytes ${start}-${end}/${file.size}` } : {}),
  });
  if (req.method === "HEAD" || length === 0) {
    res.end();
    return;
  }
  await new Promise<void>((resolve, reject) => {
    const stream = createReadStream(file.file, { start, end });
    stream.on("error", reject);
    res.on("close", () => {
      stream.destroy();
      resolve();
    });
    stream.pipe(res as NodeJS.WritableStream);
  });
}

/**
 * One `bytes=` range (first-last, first-, -suffix) as [start, end] inclusive; undefined to send
 * the whole file (no Range header, another unit, or several ranges, which RFC 9110 lets a server
 * ignore); "unsatisfiable" when it starts past the end.
 */
export function parseRange(header: string | undefined, size: number): [number, number] | "unsatisfiable" | undefined {
  if (!header) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return undefined;
  const [, first, last] = match;
  if (first === "" && last === "") return undefined;
  if (first === "") {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return [Math.max(0, size - suffix), size - 1];
  }
  const start = Number(first);
  const end = last === "" ? size - 1 : Math.min(Number(last), size - 1);
  if (start >= size) return "unsatisfiable";
  if (end < start) return undefined;
  return [start, end];
}
