/**
 * The distributed set-up as an operator runs it: one `api` process and two `worker` processes
 * on PostgreSQL + NATS JetStream, reading from and writing to an S3-compatible server (s3rver).
 * An HLS ladder written to S3 is played by hls.js in headless Chromium straight from the bucket.
 */
import { execFileSync } from "node:child_process";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createClient, type Client } from "@connectrpc/connect";
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutBucketCorsCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { Parser as M3u8Parser } from "m3u8-parser";
import { JobStatus, OutputType, Quality, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobService, OutputStatus, ThumbnailMode, WatchEvent, type Job } from "../../gen/rendition/v1/job_pb.js";
import { OriginPermission, OriginService } from "../../gen/rendition/v1/origin_pb.js";
import { createEmptyDatabase } from "../support/database.js";
import { bootstrapTransport, dropWorkStreams } from "../support/e2e.js";
import { ffprobeJson, generateClip } from "../support/media.js";
import { launchPlayerBrowser, playStream, serveDirectory } from "../support/players.js";
import { isAlive, killAllChildren, spawnRendition, type RenditionProcess } from "../support/process.js";
import { startS3Server, type S3TestServer } from "../support/s3-server.js";

const BUCKET = "media";
let db: { url: string; drop(): Promise<void> };
let s3: S3TestServer;
let s3client: S3Client;
let dataDir: string;
let env: Record<string, string>;
let api: RenditionProcess;
const workers: RenditionProcess[] = [];
let jobs: Client<typeof JobService>;
let outputOriginId: string;
let inputOriginId: string;
let tlsServer: https.Server;
let tlsUrl: string;

function spawnWorker(): RenditionProcess {
  const worker = spawnRendition(["worker"], { ...env, RENDITION_DATA_DIR: mkdtempSync(join(dataDir, "worker-")) });
  workers.push(worker);
  return worker;
}

async function waitFor(id: string, done: (job: Job) => boolean, timeoutMs = 90_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { job } = await jobs.get({ id });
    if (done(job!)) return job!;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${JobStatus[job!.status]} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** s3://bucket/key → [bucket, key]. */
function s3Location(url: string): [string, string] {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
  if (!match) throw new Error(`not an s3 URL: ${url}`);
  return [match[1]!, match[2]!];
}

async function readText(bucket: string, key: string): Promise<string> {
  const object = await s3client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return object.Body!.transformToString();
}

function parsePlaylist(text: string) {
  const parser = new M3u8Parser();
  parser.push(text);
  parser.end();
  return parser.manifest;
}

async function download(url: string, file: string): Promise<string> {
  const [bucket, key] = s3Location(url);
  const object = await s3client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  writeFileSync(file, Buffer.from(await object.Body!.transformToByteArray()));
  return file;
}

beforeAll(async () => {
  db = await createEmptyDatabase(inject("databaseUrl"));
  s3 = await startS3Server();
  await s3.createBucket(BUCKET);
  s3client = s3.admin;
  dataDir = mkdtempSync(join(tmpdir(), "rendition-e2e-"));

  // An https server for direct input URLs, with a self-signed certificate the workers trust.
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", join(dataDir, "tls.key"), "-out", join(dataDir, "tls.crt")], { stdio: "ignore" });
  tlsServer = https.createServer({ key: readFileSync(join(dataDir, "tls.key")), cert: readFileSync(join(dataDir, "tls.crt")) }, (req, res) => {
    if (req.url?.split("?")[0] !== "/media/clip.mp4") return void res.writeHead(404).end();
    const body = readFileSync(join(dataDir, "clip.mp4"));
    res.writeHead(200, { "content-type": "video/mp4", "content-length": body.length }).end(body);
  });
  await new Promise<void>((resolve) => tlsServer.listen(0, "127.0.0.1", resolve));
  tlsUrl = `https://127.0.0.1:${(tlsServer.address() as AddressInfo).port}`;

  env = {
    DATABASE_URL: db.url,
    NODE_EXTRA_CA_CERTS: join(dataDir, "tls.crt"),
    RENDITION_INPUT_S3_ENDPOINT: s3.endpoint,
    RENDITION_INPUT_S3_ACCESS_KEY_ID: s3.accessKeyId,
    RENDITION_INPUT_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
    RENDITION_INPUT_S3_BUCKETS: BUCKET,
    NATS_URL: inject("natsUrl"),
    RENDITION_NATS_PREFIX: `e2e_${randomBytes(4).toString("hex")}`,
    RENDITION_ENCRYPTION_KEY: Buffer.alloc(32, 9).toString("base64"),
    RENDITION_NETWORK_ALLOW: "127.0.0.1/32",
    // Short leases so a killed worker's job moves on quickly.
    RENDITION_LEASE_MS: "3000",
    // Inside dataDir, so what the killed worker leaves behind goes with it.
    RENDITION_TMP_DIR: join(dataDir, "tmp"),
  };
  api = spawnRendition(["api"], { ...env, PORT: "0", HOST: "127.0.0.1", RENDITION_DATA_DIR: dataDir });
  const { baseUrl } = await api.listening(60_000);
  const { transport } = bootstrapTransport(dataDir, baseUrl);
  jobs = createClient(JobService, transport);
  const origins = createClient(OriginService, transport);
  const origin = async (name: string, basePath: string, permissions: OriginPermission[]) =>
    (
      await origins.create({
        name,
        permissions,
        basePath,
        s3: { bucket: BUCKET, region: "us-east-1", endpoint: s3.endpoint },
        s3Credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      })
    ).origin!.id;
  inputOriginId = await origin("uploads", "uploads", [OriginPermission.READ]);
  outputOriginId = await origin("renders", "renders", [OriginPermission.READ, OriginPermission.WRITE]);
  // Uploaded after the origins' read probes: s3rver 3.7.1 answers a ListObjectsV2 with MaxKeys
  // below the number of matching keys with HTTP 500 (real S3 does not).
  const clip = join(dataDir, "clip.mp4");
  await generateClip(clip, { durationS: 2, width: 320, height: 240, fps: 25, audio: true });
  await s3client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "uploads/clip.mp4", Body: readFileSync(clip) }));
  const long = join(dataDir, "long.mp4");
  await generateClip(long, { durationS: 40, width: 640, height: 360, fps: 30, audio: true });
  await s3client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "uploads/long.mp4", Body: readFileSync(long) }));
  await Promise.all([spawnWorker(), spawnWorker()].map((w) => w.waitFor(/encoder \S+: \d+ slot/, 60_000)));
}, 180_000);

afterAll(async () => {
  await killAllChildren();
  // The processes created this run's stream on the shared NATS server: remove it.
  if (env?.RENDITION_NATS_PREFIX) {
    await dropWorkStreams(inject("natsUrl"), env.RENDITION_NATS_PREFIX);
  }
  await db?.drop();
  await s3?.close();
  tlsServer?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe("api and workers as separate processes", () => {
  it("turns an S3 input into mp4 h264 + webm vp9 + thumbnails in S3, with Watch showing every stage", async () => {
    const { job: created } = await jobs.create({
      inputOriginId,
      inputPath: "clip.mp4",
      outputOriginId,
      outputs: [
        { type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_480P, quality: Quality.ECONOMY }] },
        { type: OutputType.WEBM, video: [{ codec: VideoCodec.VP9, height: 180, quality: Quality.ECONOMY }] },
      ],
      thumbnails: [{ mode: ThumbnailMode.INTERVAL, intervalSeconds: 1, width: 160 }],
    });
    const seen: Array<{ event: WatchEvent; status: JobStatus; progress: number }> = [];
    for await (const message of jobs.watch({ id: created!.id })) seen.push({ event: message.event, status: message.job!.status, progress: message.job!.progress });

    const final = (await jobs.get({ id: created!.id })).job!;
    expect(final.status, `${final.errorCode}: ${final.errorMessage}\n${workers.map((w) => w.stderr).join("\n")}`).toBe(JobStatus.COMPLETED);
    expect(seen[0]!.event).toBe(WatchEvent.SNAPSHOT);
    const statuses = seen.map((e) => e.status).filter((s, i, all) => s !== all[i - 1]);
    expect(statuses).toEqual(expect.arrayContaining([JobStatus.PROBING, JobStatus.PROCESSING, JobStatus.COMPLETED]));
    expect(statuses.at(-1)).toBe(JobStatus.COMPLETED);
    const progress = seen.filter((e) => e.event === WatchEvent.PROGRESS).map((e) => e.progress);
    expect(progress).toEqual([...progress].sort((a, b) => a - b)); // never goes back
    expect(seen.at(-1)!.event).toBe(WatchEvent.COMPLETED);

    const { job } = await jobs.get({ id: created!.id });
    expect(job!.status).toBe(JobStatus.COMPLETED);
    const [mp4, webm] = job!.outputs;
    expect(mp4!.outputUrl).toBe(`s3://${BUCKET}/renders/${mp4!.path}`);
    const mp4Info = await ffprobeJson(await download(mp4!.outputUrl, join(dataDir, "out.mp4")));
    expect(mp4Info.streams.find((s: { codec_type: string }) => s.codec_type === "video")).toMatchObject({ codec_name: "h264", width: 640, height: 480 });
    expect(Math.abs(Number(mp4Info.format.duration) * 1000 - 2000)).toBeLessThanOrEqual(40 + 30);
    const webmInfo = await ffprobeJson(await download(webm!.outputUrl, join(dataDir, "out.webm")));
    expect(webmInfo.streams.find((s: { codec_type: string }) => s.codec_type === "video")).toMatchObject({ codec_name: "vp9", width: 240, height: 180 });
    expect(Math.abs(Number(webmInfo.format.duration) * 1000 - 2000)).toBeLessThanOrEqual(40 + 30);
    expect(job!.thumbnails[0]!.urls.length).toBeGreaterThanOrEqual(2);
    expect(job!.thumbnails[0]!.urls[0]).toMatch(new RegExp(`^s3://${BUCKET}/renders/`));
  });

  it("writes an HLS ladder to S3 that hls.js plays to the end straight from the bucket", async () => {
    const clip = join(dataDir, "stream.mp4");
    // Hard cuts every 1.3 s: keyframes must still land on the 2 s segment grid only.
    await generateClip(clip, { durationS: 6, width: 320, height: 180, fps: 30, audio: true, sceneCutEveryS: 1.3 });
    await s3client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "uploads/stream.mp4", Body: readFileSync(clip) }));
    const { job: created } = await jobs.create({
      inputOriginId,
      inputPath: "stream.mp4",
      outputOriginId,
      outputs: [{
        type: OutputType.HLS,
        video: [{ codec: VideoCodec.H264, height: 180, quality: Quality.ECONOMY }, { codec: VideoCodec.H264, height: 144, quality: Quality.ECONOMY }],
        segments: { durationSeconds: 2 },
      }],
    });
    const job = await waitFor(created!.id, (j) => j.status >= JobStatus.COMPLETED, 120_000);
    expect(job.status, `${job.errorCode}: ${job.errorMessage}\n${workers.map((w) => w.stderr).join("\n")}`).toBe(JobStatus.COMPLETED);
    const output = job.outputs[0]!;
    expect(output.status).toBe(OutputStatus.COMPLETED);
    const prefix = `renders/${output.path}/`;
    expect(output.outputUrl).toBe(`s3://${BUCKET}/${prefix}master.m3u8`);

    // What the playlists name, read back through the S3 API.
    const master = parsePlaylist(await readText(...s3Location(output.outputUrl)));
    const variants: string[] = master.playlists.map((p: { uri: string }) => p.uri);
    const audio: Array<{ uri: string; default: boolean }> = Object.values(master.mediaGroups.AUDIO ?? {}).flatMap((group) => Object.values(group as object));
    expect(master.playlists.map((p: { attributes: { RESOLUTION: { height: number } } }) => p.attributes.RESOLUTION.height)).toEqual([180, 144]);
    expect(audio.length).toBeGreaterThan(0);
    expect(output.manifestUrls).toEqual([output.outputUrl, ...[...variants, ...audio.map((a) => a.uri)].map((uri) => `s3://${BUCKET}/${prefix}${uri}`)]);
    const media = new Map<string, string[]>(); // media playlist → its init segment and segments, relative to the master
    for (const uri of [...variants, ...audio.map((a) => a.uri)]) {
      const playlist = parsePlaylist(await readText(BUCKET, prefix + uri));
      const dir = uri.slice(0, uri.lastIndexOf("/") + 1);
      const segments: string[] = playlist.segments.map((s: { uri: string }) => dir + s.uri);
      expect(playlist.segments[0].map?.uri, uri).toBe("init.mp4");
      const durations: number[] = playlist.segments.map((s: { duration: number }) => s.duration);
      // Video on the 2 s grid; audio on AAC frame boundaries (1024 samples), so a few ms off it.
      if (variants.includes(uri)) expect(durations, uri).toEqual([2, 2, 2]);
      expect(durations.reduce((a, b) => a + b, 0), uri).toBeCloseTo(6, 1);
      media.set(uri, [dir + playlist.segments[0].map.uri, ...segments]);
    }

    // Every object is there with its content type, and nothing else is.
    const typeOf = (key: string) => (key.endsWith(".m3u8") ? "application/vnd.apple.mpegurl" : "video/mp4");
    const expected = ["master.m3u8", ...media.keys(), ...[...media.values()].flat()].sort();
    let stored = 0;
    for (const relative of expected) {
      const head = await s3client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: prefix + relative }));
      expect([relative, head.ContentType]).toEqual([relative, typeOf(relative)]);
      stored += head.ContentLength!;
    }
    const listed = await s3client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
    expect(listed.Contents!.map((o) => o.Key!.slice(prefix.length)).sort()).toEqual(expected);
    expect(Number(output.fileSizeBytes)).toBe(stored);
    // Segments were uploaded before any playlist, so a playlist never names a missing object.
    const puts = s3.requests.filter((r) => r.startsWith(`PUT /${BUCKET}/${prefix}`)).map((r) => r.split(" ")[1]!.split("?")[0]!.slice(`/${BUCKET}/${prefix}`.length));
    expect([...puts].sort()).toEqual(expected);
    const firstPlaylist = puts.findIndex((key) => key.endsWith(".m3u8"));
    expect(puts.slice(firstPlaylist).every((key) => key.endsWith(".m3u8")), puts.join(" ")).toBe(true);

    // Played from s3rver itself: the page comes from a local server, the manifest URL is the
    // object's path-style URL on s3rver, read anonymously (s3rver enforces no ACL or policy; on AWS
    // this needs a public-read bucket policy or a CDN in front). The segments' relative URIs
    // resolve against it, so every request goes to the bucket. Cross-origin, so the bucket needs CORS.
    const pageRoot = mkdtempSync(join(dataDir, "pages-"));
    const [pages, browser] = await Promise.all([serveDirectory(pageRoot), launchPlayerBrowser()]);
    try {
      const base = `${s3.endpoint}/${BUCKET}/${prefix}`;
      const manifestUrl = `${base}master.m3u8`;
      // Without a CORS configuration on the bucket the browser gets nothing: the page really asks s3rver.
      const blocked = await playStream(browser, { player: "hls.js", pageUrl: pages.url, manifestUrl, timeoutMs: 15_000 });
      expect(blocked.ended).toBe(false);
      expect(blocked.errors.join("\n")).toContain(`manifestLoadError ${manifestUrl}`);
      await s3client.send(new PutBucketCorsCommand({
        Bucket: BUCKET,
        CORSConfiguration: { CORSRules: [{ AllowedOrigins: [pages.url], AllowedMethods: ["GET", "HEAD"], AllowedHeaders: ["*"], ExposeHeaders: ["Content-Length", "Content-Range"] }] },
      }));

      const defaultAudio = audio.find((a) => a.default) ?? audio[0]!;
      // Ascending bitrate, as hls.js lists them: 144p, then 180p.
      for (const [rendition, [width, height, playlist]] of ([[256, 144, variants[1]!], [320, 180, variants[0]!]] as const).entries()) {
        const s3Seen = s3.requests.length;
        const result = await playStream(browser, { player: "hls.js", pageUrl: pages.url, manifestUrl, rendition });
        // The checks of expectPlays in test/integration/streaming.test.ts.
        expect(result.errors).toEqual([]);
        expect(result.ended).toBe(true);
        expect(result.maxCurrentTime).toBeGreaterThan(result.duration - 0.5);
        expect(result.playedRenditions).toEqual([rendition]);
        expect(result.duration).toBeCloseTo(6, 0);
        expect(result.videoSizes).toEqual([{ width, height }]);
        // What the page fetched besides itself and the player came from the bucket, and s3rver answered each.
        const fetched = result.requests.filter((r) => !r.url.startsWith(`${pages.url}/__players/`));
        expect(fetched.filter((r) => !r.url.startsWith(base) || r.status !== 200 || r.method !== "GET")).toEqual([]);
        const wanted = ["master.m3u8", playlist, ...media.get(playlist)!, defaultAudio.uri, ...media.get(defaultAudio.uri)!];
        expect(fetched.map((r) => r.url.slice(base.length))).toEqual(expect.arrayContaining(wanted));
        const served = s3.requests.slice(s3Seen).filter((r) => r.startsWith("GET ")).map((r) => r.slice(`GET /${BUCKET}/${prefix}`.length));
        expect(served).toEqual(expect.arrayContaining(wanted));
        expect(pages.requests.map((r) => r.path).filter((p) => !p.startsWith("/__players/"))).toEqual([]);
      }
    } finally {
      await browser.close();
      await pages.close();
    }
  }, 240_000);

  it.each([
    ["s3://", () => `s3://${BUCKET}/uploads/clip.mp4`, JobStatus.COMPLETED, ""],
    ["https://", () => `${tlsUrl}/media/clip.mp4?X-Amz-Signature=secret`, JobStatus.COMPLETED, ""],
    ["an https:// URL that is not there", () => `${tlsUrl}/media/gone.mp4?X-Amz-Signature=secret`, JobStatus.FAILED, "INPUT_NOT_FOUND"],
    ["an s3:// bucket the operator did not allow", () => "s3://other-bucket/clip.mp4", JobStatus.FAILED, "INPUT_URL_FORBIDDEN"],
  ])("reads a direct input URL: %s", async (_what, url, status, code) => {
    const { job: created } = await jobs.create({
      inputUrl: url(),
      outputOriginId,
      outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 144, quality: Quality.ECONOMY }] }],
    });
    const job = await waitFor(created!.id, (j) => j.status >= JobStatus.COMPLETED);
    expect(job.status, `${job.errorCode}: ${job.errorMessage}`).toBe(status);
    expect(job.errorCode).toBe(code);
    expect(job.errorMessage).not.toContain("secret");
    if (status === JobStatus.COMPLETED) expect(job.inputMetadata).toMatchObject({ width: 320, height: 240 });
  });

  it("stops the worker's ffmpeg within a second when a running job is canceled", async () => {
    const { job: created } = await jobs.create({
      inputOriginId,
      inputPath: "long.mp4",
      outputOriginId,
      outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_720P, quality: Quality.PREMIUM }] }],
    });
    await waitFor(created!.id, (j) => (j.status === JobStatus.PROCESSING && j.progress > 0) || j.status >= JobStatus.COMPLETED);
    const encoding = workers.flatMap((w) => (w.child.exitCode === null ? childFfmpeg(w.child.pid!) : []));
    expect(encoding).toHaveLength(1);
    await jobs.cancel({ id: created!.id });
    const deadline = Date.now() + 1000;
    while (encoding.some(isAlive) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(encoding.filter(isAlive)).toEqual([]);
    const job = await waitFor(created!.id, (j) => j.status >= JobStatus.COMPLETED);
    expect(job.status).toBe(JobStatus.CANCELED);
    expect(job.totalActualCost).toBe("");
  });

  it("finishes a job exactly once on another worker when the one running it is killed with SIGKILL", async () => {
    const { job: created } = await jobs.create({
      inputOriginId,
      inputPath: "long.mp4",
      outputOriginId,
      outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_720P, quality: Quality.STANDARD }] }],
    });
    const running = await waitFor(created!.id, (j) => (j.status === JobStatus.PROCESSING && j.progress > 5) || j.status >= JobStatus.COMPLETED);
    expect(running.status).toBe(JobStatus.PROCESSING);
    // Which worker holds it: the one whose log says it took the job... simpler: the one with an ffmpeg child.
    const holder = workers.find((w) => w.child.exitCode === null && childFfmpeg(w.child.pid!).length > 0);
    expect(holder, "a worker is running ffmpeg for the job").toBeDefined();
    const orphans = childFfmpeg(holder!.child.pid!);
    holder!.child.kill("SIGKILL");
    await holder!.exited(10_000);

    const done = await waitFor(created!.id, (j) => j.status >= JobStatus.COMPLETED, 120_000);
    expect(done.status).toBe(JobStatus.COMPLETED);
    expect(done.execution!.attempts).toBe(2);
    expect(done.outputs[0]!.status).toBe(OutputStatus.COMPLETED);
    const info = await ffprobeJson(await download(done.outputs[0]!.outputUrl, join(dataDir, "long-out.mp4")));
    expect(Math.abs(Number(info.format.duration) * 1000 - 40_000)).toBeLessThanOrEqual(34 + 30);
    // The killed worker's ffmpeg went with it (started under setpriv --pdeathsig).
    const deadline = Date.now() + 10_000;
    while (orphans.some(isAlive) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
    expect(orphans.filter(isAlive)).toEqual([]);
  }, 240_000);
});

/** Pids of ffmpeg processes whose parent is `pid`. */
function childFfmpeg(pid: number): number[] {
  const out = execFileSync("ps", ["-eo", "pid=,ppid=,comm="], { encoding: "utf8" });
  return out
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter(([, ppid, comm]) => Number(ppid) === pid && comm === "ffmpeg")
    .map(([p]) => Number(p));
}
