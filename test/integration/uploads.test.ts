/**
 * Uploads (UploadService) and downloads (JobService.GetDownloadUrls) end to end, in embedded
 * mode with the worker, over a real PostgreSQL, real HTTP and ffmpeg, and s3rver: a file PUT
 * through a signed URL becomes a job's input, and the job's outputs come back through signed URLs.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { JobStatus, OutputType, Quality, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobServiceCreateRequestSchema, OutputStatus, ThumbnailMode, type Job } from "../../gen/rendition/v1/job_pb.js";
import { OriginPermission } from "../../gen/rendition/v1/origin_pb.js";
import { UploadService, UploadState } from "../../gen/rendition/v1/upload_pb.js";
import { UrlSigner } from "../../services/files/url-signer.js";
import { startTestApi, type TestApi } from "../support/api-harness.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { ffprobeJson, generateClip } from "../support/media.js";
import { startS3Server, type S3TestServer } from "../support/s3-server.js";

let database: TestDatabase;
let api: TestApi;
let s3: S3TestServer;
let uploads: ReturnType<typeof api.client<typeof UploadService>>;
let storage: string;
let clip: Buffer;
const tmp = join(tmpdir(), `rendition-uploads-test-${process.pid}`);
const BUCKET = "uploads-bucket";
const MAX_INPUT_BYTES = 50 * 2 ** 20;
const PART_BYTES = 5 * 2 ** 20;

beforeAll(async () => {
  mkdirSync(tmp, { recursive: true });
  database = await createTestDatabase(inject("databaseUrl"));
  api = await startTestApi(
    database.url,
    { RENDITION_TMP_DIR: tmp, RENDITION_MAX_INPUT_BYTES: String(MAX_INPUT_BYTES), RENDITION_UPLOAD_PART_BYTES: String(PART_BYTES) },
    { worker: true },
  );
  uploads = api.client(UploadService);
  storage = join(api.config.dataDir, "storage");
  clip = readFileSync(await generateClip(join(tmp, "clip.mp4"), { durationS: 2, width: 320, height: 240, fps: 25, audio: true }));
  s3 = await startS3Server();
  await s3.createBucket(BUCKET);
}, 120_000);

afterAll(async () => {
  await api?.close();
  await s3?.close();
  await database?.drop();
  rmSync(tmp, { recursive: true, force: true });
});

const TERMINAL = new Set([JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.PARTIAL]);

async function finished(id: string, timeoutMs = 90_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { job } = await api.jobs.get({ id });
    if (TERMINAL.has(job!.status)) return job!;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${JobStatus[job!.status]} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function refusal(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

/** A raw HTTP/1.1 request: the path exactly as given (fetch would normalise "..") and the body in chunks. */
function raw(
  method: string,
  path: string,
  options: { headers?: Record<string, string | number>; chunks?: Buffer[] } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  const { port } = new URL(api.baseUrl);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path, headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    for (const chunk of options.chunks ?? []) req.write(chunk);
    req.end();
  });
}

const pathOf = (url: string) => {
  const u = new URL(url);
  return u.pathname + u.search;
};

/** Every regular file under `dir` (relative paths). */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
}

describe("local uploads and downloads", () => {
  let job: Job;
  let uploaded: { input_origin_id: string; input_path: string };

  it("takes a PUT of a media file through the signed URL; a second PUT of the token is refused", async () => {
    const ticket = await uploads.createUploadUrl({ originId: api.credentials.local_origin_id, filename: "my clip.mp4", sizeBytes: BigInt(clip.length), contentType: "video/mp4" });
    expect(ticket.method).toBe("PUT");
    expect(ticket.url).toMatch(new RegExp(`^${api.baseUrl}/uploads/[\\w-]+\\.[\\w-]+$`));
    expect(ticket.inputOriginId).toBe(api.credentials.local_origin_id);
    expect(ticket.inputPath).toBe(`uploads/${ticket.uploadId}/my_clip.mp4`);
    expect(ticket.headers).toEqual({ "Content-Type": "video/mp4" });
    const expiresIn = Number(ticket.expiresAt!.seconds) - Date.now() / 1000;
    expect(expiresIn).toBeGreaterThan(3500);
    expect(expiresIn).toBeLessThanOrEqual(3600);

    const response = await fetch(ticket.url, { method: "PUT", body: new Uint8Array(clip), headers: ticket.headers });
    expect(response.status).toBe(201);
    uploaded = (await response.json()) as typeof uploaded;
    expect(uploaded).toMatchObject({ upload_id: ticket.uploadId, input_origin_id: ticket.inputOriginId, input_path: ticket.inputPath, size_bytes: String(clip.length) });
    expect(readFileSync(join(storage, ticket.inputPath)).equals(clip)).toBe(true);
    expect(filesUnder(join(storage, "uploads", ticket.uploadId))).toEqual(["my_clip.mp4"]);

    const again = await fetch(ticket.url, { method: "PUT", body: new Uint8Array(clip) });
    expect(again.status).toBe(409);
    expect(readFileSync(join(storage, ticket.inputPath)).equals(clip)).toBe(true);
    // Completing a local upload is its PUT; asking again answers the completed upload.
    const aborted = await refusal(uploads.abortUpload({ uploadId: ticket.uploadId }));
    expect(aborted.code).toBe(Code.FailedPrecondition);
  });

  it("encodes a job created from the answer; its mp4 and HLS come back through signed URLs", async () => {
    const { job: created } = await api.jobs.create(
      create(JobServiceCreateRequestSchema, {
        inputOriginId: uploaded.input_origin_id,
        inputPath: uploaded.input_path,
        outputOriginId: api.credentials.local_origin_id,
        outputs: [
          { type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 144, quality: Quality.ECONOMY }] },
          { type: OutputType.HLS, video: [{ codec: VideoCodec.H264, height: 144, quality: Quality.ECONOMY }], segments: { durationSeconds: 1 } },
        ],
      }),
    );
    job = await finished(created!.id);
    expect(job.status, job.errorMessage + job.outputs.map((o) => o.errorMessage).join()).toBe(JobStatus.COMPLETED);
    expect(job.inputMetadata).toMatchObject({ width: 320, height: 240 });

    const links = await api.jobs.getDownloadUrls({ id: job.id });
    expect(links.jobId).toBe(job.id);
    expect(links.outputs.map((o) => [o.outputId, o.available, o.status])).toEqual(job.outputs.map((o) => [o.id, true, OutputStatus.COMPLETED]));
    const [mp4, hls] = links.outputs;
    expect(mp4!.outputUrl).toMatch(new RegExp(`^${api.baseUrl}/files/[\\w-]+\\.[\\w-]+/[^/]+\\.mp4$`));

    const onDisk = readFileSync(fileURLToPath(job.outputs[0]!.outputUrl));
    const whole = await fetch(mp4!.outputUrl);
    expect(whole.status).toBe(200);
    expect(whole.headers.get("content-type")).toBe("video/mp4");
    expect(whole.headers.get("accept-ranges")).toBe("bytes");
    const body = Buffer.from(await whole.arrayBuffer());
    expect(body.equals(onDisk)).toBe(true);
    const downloaded = join(tmp, "downloaded.mp4");
    await import("node:fs/promises").then((fs) => fs.writeFile(downloaded, body));
    const probe = await ffprobeJson(downloaded);
    expect(probe.streams.find((s: { codec_type: string }) => s.codec_type === "video")).toMatchObject({ codec_name: "h264", height: 144 });

    const head = await fetch(mp4!.outputUrl, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String(onDisk.length));

    const part = await fetch(mp4!.outputUrl, { headers: { range: "bytes=100-1099" } });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe(`bytes 100-1099/${onDisk.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(onDisk.subarray(100, 1100))).toBe(true);
    const tail = await fetch(mp4!.outputUrl, { headers: { range: "bytes=-10" } });
    expect(tail.status).toBe(206);
    expect(Buffer.from(await tail.arrayBuffer()).equals(onDisk.subarray(onDisk.length - 10))).toBe(true);
    const beyond = await fetch(mp4!.outputUrl, { headers: { range: `bytes=${onDisk.length}-` } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get("content-range")).toBe(`bytes */${onDisk.length}`);

    // HLS through one signed prefix: master -> relative media playlist -> relative init + segment.
    expect(hls!.outputUrl).toMatch(/\/master\.m3u8$/);
    expect(hls!.manifestUrls).toHaveLength(job.outputs[1]!.manifestUrls.length);
    const master = await fetch(hls!.outputUrl);
    expect(master.status).toBe(200);
    expect(master.headers.get("content-type")).toBe("application/vnd.apple.mpegurl");
    const media = (await master.text()).split("\n").find((line) => line && !line.startsWith("#"))!;
    expect(media).toBe("v0/index.m3u8");
    const mediaUrl = new URL(media, hls!.outputUrl).href;
    expect(hls!.manifestUrls).toContain(mediaUrl);
    const playlist = await (await fetch(mediaUrl)).text();
    const init = /#EXT-X-MAP:URI="([^"]+)"/.exec(playlist)![1]!;
    const segment = playlist.split("\n").find((line) => line && !line.startsWith("#"))!;
    const hlsDir = fileURLToPath(job.outputs[1]!.outputUrl).replace(/master\.m3u8$/, "");
    for (const name of [init, segment]) {
      const response = await fetch(new URL(name, mediaUrl));
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toBe("video/mp4");
      expect(Buffer.from(await response.arrayBuffer()).equals(readFileSync(join(hlsDir, "v0", name)))).toBe(true);
    }
  });

  it("refuses tampered and expired download tokens, other files and every traversal", async () => {
    const links = await api.jobs.getDownloadUrls({ id: job.id, expiresInSeconds: 60 });
    const expires = Number(links.expiresAt!.seconds) - Date.now() / 1000;
    expect(expires).toBeGreaterThan(50);
    expect(expires).toBeLessThanOrEqual(60);
    const mp4 = links.outputs[0]!.outputUrl;
    const master = links.outputs[1]!.outputUrl;
    const [, fileToken, name] = /\/files\/([^/]+)\/([^/]+)$/.exec(mp4)!;
    const [, dirToken] = /\/files\/([^/]+)\/master\.m3u8$/.exec(master)!;

    // One character of the signature or of the payload changed.
    const flip = (s: string, at: number) => s.slice(0, at) + (s[at] === "A" ? "B" : "A") + s.slice(at + 1);
    expect((await raw("GET", `/files/${flip(fileToken!, fileToken!.length - 2)}/${name}`)).status).toBe(403);
    expect((await raw("GET", `/files/${flip(fileToken!, 3)}/${name}`)).status).toBe(403);
    // A token signed with the server's key but expired; and one signed with another key.
    const key = Buffer.alloc(32, 7); // the harness's RENDITION_ENCRYPTION_KEY
    const claims = JSON.parse(Buffer.from(dirToken!.split(".")[0]!, "base64url").toString()) as Record<string, unknown>;
    const expired = new UrlSigner(key).sign({ ...claims, e: Math.floor(Date.now() / 1000) - 1 });
    const expiredAnswer = await raw("GET", `/files/${expired}/master.m3u8`);
    expect(expiredAnswer.status).toBe(403);
    expect(expiredAnswer.body.toString()).toMatch(/expired/);
    expect((await raw("GET", `/files/${new UrlSigner(Buffer.alloc(32, 8)).sign(claims)}/master.m3u8`)).status).toBe(403);
    // The same claims re-signed with the right key work: the refusals above are about the token alone.
    expect((await raw("GET", `/files/${new UrlSigner(key).sign(claims)}/master.m3u8`)).status).toBe(200);

    // A file token reaches its one file, not its neighbours.
    expect((await raw("GET", `/files/${fileToken}/${name}`)).status).toBe(200);
    expect((await raw("GET", `/files/${fileToken}/other.mp4`)).status).toBe(404);

    // Out of a directory token's prefix: .. in every spelling, absolute paths, encoded slashes.
    writeOutside();
    for (const path of [
      `/files/${dirToken}/../../../credentials.json`,
      `/files/${dirToken}/v0/../../../../credentials.json`,
      `/files/${dirToken}/%2e%2e/%2e%2e/%2e%2e/credentials.json`,
      `/files/${dirToken}/%2E%2E%2F%2E%2E%2F%2E%2E%2Fcredentials.json`,
      `/files/${dirToken}/..%5c..%5c..%5ccredentials.json`,
      `/files/${dirToken}//etc/passwd`,
      `/files/${dirToken}/%2fetc%2fpasswd`,
      `/files/${dirToken}/v0/%00index.m3u8`,
      `/files/${fileToken}/..%2f${name}`,
    ]) {
      const answer = await raw("GET", path);
      expect([400, 404], path).toContain(answer.status);
      expect(answer.body.toString()).not.toMatch(/api_key|root:/);
    }
    // A symbolic link inside the output's directory that leads out of it.
    const hlsDir = fileURLToPath(job.outputs[1]!.outputUrl).replace(/master\.m3u8$/, "");
    symlinkSync(join(api.config.dataDir, "credentials.json"), join(hlsDir, "leak.m3u8"));
    expect((await raw("GET", `/files/${dirToken}/leak.m3u8`)).status).toBe(404);
    // A directory is not a file.
    expect((await raw("GET", `/files/${dirToken}/v0`)).status).toBe(404);
  });

  it("refuses oversize bodies (declared or not) and keeps nothing; the URL then still takes the right body", async () => {
    const small = clip.subarray(0, 1000);
    const ticket = await uploads.createUploadUrl({ originId: api.credentials.local_origin_id, filename: "small.bin", sizeBytes: 1000n });
    const dir = join(storage, "uploads", ticket.uploadId);

    const declared = await raw("PUT", pathOf(ticket.url), { headers: { "content-length": 1001 }, chunks: [clip.subarray(0, 1001)] });
    expect(declared.status).toBe(413);
    expect(filesUnder(dir)).toEqual([]);

    // Chunked, so nothing is declared; the limit is enforced while the body streams.
    const chunked = await raw("PUT", pathOf(ticket.url), { headers: { "transfer-encoding": "chunked" }, chunks: [clip.subarray(0, 600), clip.subarray(600, 1200)] });
    expect(chunked.status).toBe(413);
    expect(filesUnder(dir)).toEqual([]);

    // The refusals released the URL: the right body, chunked too, is taken.
    const fine = await raw("PUT", pathOf(ticket.url), { headers: { "transfer-encoding": "chunked" }, chunks: [small.subarray(0, 500), small.subarray(500)] });
    expect(fine.status).toBe(201);
    expect(readFileSync(join(dir, "small.bin")).equals(small)).toBe(true);
    expect(filesUnder(dir)).toEqual(["small.bin"]);
  });

  it("refuses an expired or aborted upload URL, a tampered token, and other methods", async () => {
    const ticket = await uploads.createUploadUrl({ originId: api.credentials.local_origin_id, filename: "late.mp4", sizeBytes: 10n });
    await api.app.database.db.updateTable("uploads").set({ expires_at: new Date(Date.now() - 1000) }).where("id", "=", ticket.uploadId).execute();
    expect((await fetch(ticket.url, { method: "PUT", body: "0123456789" })).status).toBe(410);

    const second = await uploads.createUploadUrl({ originId: api.credentials.local_origin_id, filename: "aborted.mp4", sizeBytes: 10n });
    const tampered = second.url.slice(0, -3) + (second.url.endsWith("AAA") ? "BBB" : "AAA");
    expect((await fetch(tampered, { method: "PUT", body: "0123456789" })).status).toBe(403);
    expect((await fetch(second.url, { method: "POST", body: "0123456789" })).status).toBe(405);
    const aborted = await uploads.abortUpload({ uploadId: second.uploadId });
    expect(aborted.state).toBe(UploadState.ABORTED);
    expect((await fetch(second.url, { method: "PUT", body: "0123456789" })).status).toBe(410);
    expect(filesUnder(join(storage, "uploads", second.uploadId))).toEqual([]);
  });

  it("refuses bad requests naming the field", async () => {
    const local = api.credentials.local_origin_id;
    const tooBig = await refusal(uploads.createUploadUrl({ originId: local, sizeBytes: BigInt(MAX_INPUT_BYTES + 1) }));
    expect(tooBig.code).toBe(Code.InvalidArgument);
    expect(tooBig.rawMessage).toMatch(/size_bytes: must be at most 52428800/);
    const zero = await refusal(uploads.createUploadUrl({ originId: local, sizeBytes: 0n }));
    expect(zero.rawMessage).toMatch(/size_bytes/);
    for (const path of ["../escape.mp4", "a/../../b.mp4", "/etc/x.mp4", "./a.mp4"]) {
      const err = await refusal(uploads.createUploadUrl({ originId: local, sizeBytes: 10n, path }));
      expect(err.code, path).toBe(Code.InvalidArgument);
      expect(err.rawMessage, path).toMatch(/^1 invalid field: path:/);
    }
    const long = await refusal(uploads.createUploadUrl({ originId: local, sizeBytes: 10n, expiresInSeconds: 86_401 }));
    expect(long.rawMessage).toMatch(/expires_in_seconds: must be at most 86400 for local origins/);
    const multipart = await refusal(uploads.createUploadUrl({ originId: local, sizeBytes: 10n, multipart: true }));
    expect(multipart.rawMessage).toMatch(/multipart: is only for s3 origins/);
    const missing = await refusal(uploads.createUploadUrl({ originId: "ori_nope", sizeBytes: 10n }));
    expect(missing.code).toBe(Code.NotFound);
    const type = await refusal(uploads.createUploadUrl({ originId: local, sizeBytes: 10n, contentType: "not a type" }));
    expect(type.rawMessage).toMatch(/content_type/);

    // An http origin is read-only.
    const server = http.createServer((_req, res) => res.writeHead(200).end("ok"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { origin } = await api.origins.create({
        name: "cdn",
        permissions: [OriginPermission.READ],
        http: { baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/media` },
      });
      const readOnly = await refusal(uploads.createUploadUrl({ originId: origin!.id, sizeBytes: 10n }));
      expect(readOnly.code).toBe(Code.InvalidArgument);
      expect(readOnly.rawMessage).toMatch(/origin_id: .*read-only/);
    } finally {
      server.close();
    }
  });

  it("a path chosen by the caller is used as is; the job's thumbnails get URLs too", async () => {
    const ticket = await uploads.createUploadUrl({ originId: api.credentials.local_origin_id, path: "mine/input.mp4", sizeBytes: BigInt(clip.length) });
    expect(ticket.inputPath).toBe("mine/input.mp4");
    expect((await fetch(ticket.url, { method: "PUT", body: new Uint8Array(clip) })).status).toBe(201);
    expect(readFileSync(join(storage, "mine/input.mp4")).equals(clip)).toBe(true);
    const { job: created } = await api.jobs.create(
      create(JobServiceCreateRequestSchema, {
        inputOriginId: ticket.inputOriginId,
        inputPath: ticket.inputPath,
        outputOriginId: api.credentials.local_origin_id,
        outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 144, quality: Quality.ECONOMY }] }],
        thumbnails: [{ mode: ThumbnailMode.SINGLE, timestamp: 1, width: 64 }],
        delayedStart: true,
      }),
    );
    // Not finished yet: nothing to download, each entry marked.
    const early = await api.jobs.getDownloadUrls({ id: created!.id });
    expect(early.outputs.map((o) => [o.available, o.outputUrl])).toEqual([[false, ""]]);
    await api.jobs.confirm({ id: created!.id }).catch(() => {});
    const done = await finishedAfterConfirm(created!.id);
    const links = await api.jobs.getDownloadUrls({ id: done.id });
    expect(links.thumbnails).toHaveLength(1);
    expect(links.thumbnails[0]!.available).toBe(true);
    const still = await fetch(links.thumbnails[0]!.urls[0]!);
    expect(still.status).toBe(200);
    expect(still.headers.get("content-type")).toBe("image/jpeg");
    expect(Buffer.from(await still.arrayBuffer()).equals(readFileSync(fileURLToPath(done.thumbnails[0]!.urls[0]!)))).toBe(true);
    const other = await refusal(api.client(UploadService, { apiKey: "rnd_live_nope", organizationId: api.credentials.organization_id }).abortUpload({ uploadId: ticket.uploadId }));
    expect(other.code).toBe(Code.Unauthenticated);
  });
});

/** Confirms the job once it waits for confirmation, then waits for the end. */
async function finishedAfterConfirm(id: string): Promise<Job> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const { job } = await api.jobs.get({ id });
    if (job!.status === JobStatus.AWAITING_CONFIRMATION) await api.jobs.confirm({ id });
    if (TERMINAL.has(job!.status)) return job!;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${JobStatus[job!.status]}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Something a traversal would find: credentials.json sits in the data directory, above storage. */
function writeOutside(): void {
  expect(existsSync(join(api.config.dataDir, "credentials.json"))).toBe(true);
}

describe("s3 uploads and downloads", () => {
  let originId: string;

  beforeAll(async () => {
    const { origin } = await api.origins.create({
      name: "bucket",
      permissions: [OriginPermission.READ, OriginPermission.WRITE],
      basePath: "media",
      s3: { bucket: BUCKET, region: "us-east-1", endpoint: s3.endpoint },
      s3Credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
    originId = origin!.id;
  });

  const objectBytes = async (key: string) => Buffer.from(await (await s3.admin.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToByteArray());

  it("presigns a PUT the file goes to; a job reads it; its output comes back through a presigned GET", async () => {
    const ticket = await uploads.createUploadUrl({ originId, filename: "clip.mp4", sizeBytes: BigInt(clip.length), contentType: "video/mp4" });
    expect(ticket.multipart).toBe(false);
    const url = new URL(ticket.url);
    expect(url.origin).toBe(s3.endpoint);
    expect(url.pathname).toBe(`/${BUCKET}/media/${ticket.inputPath}`);
    expect(url.searchParams.get("X-Amz-SignedHeaders")).toBe("content-length;content-type;host");
    expect(url.searchParams.get("X-Amz-Expires")).toBe("3600");
    const put = await fetch(ticket.url, { method: "PUT", body: new Uint8Array(clip), headers: ticket.headers });
    expect(put.status).toBe(200);
    expect((await objectBytes(`media/${ticket.inputPath}`)).equals(clip)).toBe(true);
    const completed = await uploads.completeUpload({ uploadId: ticket.uploadId });
    expect(completed).toMatchObject({ state: UploadState.COMPLETED, inputOriginId: originId, inputPath: ticket.inputPath });

    const { job: created } = await api.jobs.create(
      create(JobServiceCreateRequestSchema, {
        inputOriginId: ticket.inputOriginId,
        inputPath: ticket.inputPath,
        outputOriginId: originId,
        outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 144, quality: Quality.ECONOMY }] }],
      }),
    );
    const job = await finished(created!.id);
    expect(job.status, job.errorMessage).toBe(JobStatus.COMPLETED);
    const links = await api.jobs.getDownloadUrls({ id: job.id, expiresInSeconds: 600 });
    const signed = new URL(links.outputs[0]!.outputUrl);
    expect(signed.origin).toBe(s3.endpoint);
    expect(signed.searchParams.get("X-Amz-Expires")).toBe("600");
    const key = job.outputs[0]!.outputUrl.slice(`s3://${BUCKET}/`.length);
    const body = Buffer.from(await (await fetch(signed)).arrayBuffer());
    expect(body.equals(await objectBytes(key))).toBe(true);
    expect(body.length).toBeGreaterThan(1000);
  });

  it("splits a multipart upload into server-sized parts, each PUT to its own URL, then completes it", async () => {
    const data = randomBytes(PART_BYTES + 123_456);
    const ticket = await uploads.createUploadUrl({ originId, filename: "big.bin", sizeBytes: BigInt(data.length), multipart: true });
    expect(ticket.multipart).toBe(true);
    expect(ticket.url).toBe("");
    expect(Number(ticket.partSizeBytes)).toBe(PART_BYTES);
    expect(ticket.parts.map((p) => [p.partNumber, Number(p.sizeBytes)])).toEqual([
      [1, PART_BYTES],
      [2, 123_456],
    ]);
    const etags: Array<{ partNumber: number; etag: string }> = [];
    let offset = 0;
    for (const part of ticket.parts) {
      const slice = data.subarray(offset, offset + Number(part.sizeBytes));
      offset += slice.length;
      const response = await fetch(part.url, { method: "PUT", body: new Uint8Array(slice) });
      expect(response.status).toBe(200);
      etags.push({ partNumber: part.partNumber, etag: response.headers.get("etag")! });
    }
    // Before completion the object does not exist.
    expect(s3.requests.some((r) => r.startsWith("POST") && r.includes(`big.bin?uploads`))).toBe(true);
    const missingParts = await refusal(uploads.completeUpload({ uploadId: ticket.uploadId }));
    expect(missingParts.rawMessage).toMatch(/parts: must list every part/);
    const done = await uploads.completeUpload({ uploadId: ticket.uploadId, parts: etags.reverse() });
    expect(done.state).toBe(UploadState.COMPLETED);
    expect((await objectBytes(`media/${ticket.inputPath}`)).equals(data)).toBe(true);
    // Completing again answers the completed upload; aborting it is refused.
    expect((await uploads.completeUpload({ uploadId: ticket.uploadId, parts: etags })).state).toBe(UploadState.COMPLETED);
    expect((await refusal(uploads.abortUpload({ uploadId: ticket.uploadId }))).code).toBe(Code.FailedPrecondition);
  });

  it("aborts a multipart upload: the store drops it and it cannot be completed", async () => {
    const ticket = await uploads.createUploadUrl({ originId, filename: "abandoned.bin", sizeBytes: BigInt(PART_BYTES * 2), multipart: true });
    expect(ticket.parts).toHaveLength(2);
    const first = await fetch(ticket.parts[0]!.url, { method: "PUT", body: new Uint8Array(randomBytes(PART_BYTES)) });
    expect(first.status).toBe(200);
    const aborted = await uploads.abortUpload({ uploadId: ticket.uploadId });
    expect(aborted.state).toBe(UploadState.ABORTED);
    const uploadId = (await api.app.database.db.selectFrom("uploads").select("multipart_upload_id").where("id", "=", ticket.uploadId).executeTakeFirstOrThrow()).multipart_upload_id;
    expect(s3.requests.some((r) => r.startsWith("DELETE") && r.includes(`uploadId=${uploadId}`))).toBe(true);
    const late = await refusal(uploads.completeUpload({ uploadId: ticket.uploadId, parts: [{ partNumber: 1, etag: first.headers.get("etag")! }] }));
    expect(late.code).toBe(Code.FailedPrecondition);
    expect(late.rawMessage).toMatch(/aborted/);
  });

  it("refuses to complete a single PUT that never arrived, and parts for a single PUT", async () => {
    const ticket = await uploads.createUploadUrl({ originId, filename: "never.mp4", sizeBytes: 10n });
    const notYet = await refusal(uploads.completeUpload({ uploadId: ticket.uploadId }));
    expect(notYet.code).toBe(Code.FailedPrecondition);
    const parts = await refusal(uploads.completeUpload({ uploadId: ticket.uploadId, parts: [{ partNumber: 1, etag: "x" }] }));
    expect(parts.rawMessage).toMatch(/parts: must be empty/);
    const elsewhere = await refusal(api.client(UploadService).completeUpload({ uploadId: "upl_unknown" }));
    expect(elsewhere.code).toBe(Code.NotFound);
  });
});
