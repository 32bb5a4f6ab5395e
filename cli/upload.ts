import { createReadStream, statSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { basename } from "node:path";
import cliProgress from "cli-progress";
import type { UploadServiceCreateUploadUrlResponse } from "../gen/rendition/v1/upload_pb.js";
import type { Clients } from "./client.js";
import { CliUsageError } from "./credentials.js";
import type { Io } from "./output.js";

export interface UploadedInput {
  uploadId: string;
  inputOriginId: string;
  inputPath: string;
  sizeBytes: number;
}

/** One PUT of bytes [start, end) of `file`; resolves with the answer's status, headers and body. */
function put(
  url: string,
  headers: Record<string, string>,
  file: string,
  start: number,
  end: number,
  onBytes: (n: number) => void,
): Promise<{ status: number; etag?: string; body: string }> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const request = (target.protocol === "https:" ? https : http).request(
      target,
      // Content-Length, not chunked: S3 presigned PUTs sign the length and refuse chunked bodies.
      { method: "PUT", headers: { ...headers, "content-length": String(end - start) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, etag: res.headers.etag, body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", reject);
      },
    );
    request.on("error", reject);
    if (end === start) return void request.end();
    const body = createReadStream(file, { start, end: end - 1 });
    body.on("data", (chunk) => onBytes(chunk.length));
    body.on("error", (err) => request.destroy(err));
    body.pipe(request);
  });
}

function refused(what: string, answer: { status: number; body: string }): Error {
  return new Error(`${what} answered HTTP ${answer.status}: ${answer.body.slice(0, 500)}`);
}

/**
 * Uploads a local file through UploadService: CreateUploadUrl, then one PUT to the signed URL
 * (local origins: Rendition's own /uploads/<token>, which completes the upload; s3: a presigned
 * PUT followed by CompleteUpload), or for a multipart upload one PUT per part and CompleteUpload
 * with their ETags. A failed transfer aborts the upload. Bytes sent are shown as a bar on a
 * terminal (stderr, so stdout keeps only results).
 */
export async function uploadFile(clients: Clients, io: Io, file: string, options: { originId: string; path?: string; json: boolean }): Promise<UploadedInput> {
  let size: number;
  try {
    const stat = statSync(file);
    if (!stat.isFile()) throw new CliUsageError("invalid_argument", `${file} is not a file`);
    size = stat.size;
  } catch (err) {
    if (err instanceof CliUsageError) throw err;
    throw new CliUsageError("invalid_argument", `cannot read ${file}: ${(err as Error).message}`);
  }
  if (size === 0) throw new CliUsageError("invalid_argument", `${file} is empty`);
  const ticket: UploadServiceCreateUploadUrlResponse = await clients.uploads.createUploadUrl({
    originId: options.originId,
    path: options.path ?? "",
    filename: basename(file),
    sizeBytes: BigInt(size),
  });

  const bar =
    !options.json && process.stderr.isTTY
      ? new cliProgress.SingleBar(
          { stream: process.stderr, format: " upload |{bar}| {percentage}% | {value}/{total} bytes", barsize: 30, hideCursor: true, clearOnComplete: false },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
  bar?.start(size, 0);
  let sent = 0;
  const onBytes = (n: number) => bar?.update((sent += n));
  try {
    if (ticket.multipart) {
      const parts: Array<{ partNumber: number; etag: string }> = [];
      let offset = 0;
      for (const part of ticket.parts) {
        const length = Number(part.sizeBytes);
        const answer = await put(part.url, ticket.headers, file, offset, offset + length, onBytes);
        if (answer.status < 200 || answer.status >= 300 || !answer.etag) throw refused(`the PUT of part ${part.partNumber}`, answer);
        parts.push({ partNumber: part.partNumber, etag: answer.etag });
        offset += length;
      }
      await clients.uploads.completeUpload({ uploadId: ticket.uploadId, parts });
    } else {
      const answer = await put(ticket.url, ticket.headers, file, 0, size, onBytes);
      if (answer.status < 200 || answer.status >= 300) throw refused("the upload PUT", answer);
      // Rendition's own local upload route completes on the PUT and says so; an S3 PUT does not.
      let completed = false;
      try {
        completed = (JSON.parse(answer.body) as { state?: string }).state === "UPLOAD_STATE_COMPLETED";
      } catch {
        // S3 answers an empty body (or XML)
      }
      if (!completed) await clients.uploads.completeUpload({ uploadId: ticket.uploadId, parts: [] });
    }
  } catch (err) {
    bar?.stop();
    await clients.uploads.abortUpload({ uploadId: ticket.uploadId }).catch(() => {});
    throw err;
  }
  bar?.stop();
  if (!options.json) io.err(`uploaded ${file} (${size} bytes) as ${ticket.inputPath}`);
  return { uploadId: ticket.uploadId, inputOriginId: ticket.inputOriginId, inputPath: ticket.inputPath, sizeBytes: size };
}
