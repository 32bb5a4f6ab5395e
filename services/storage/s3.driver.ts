import { randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { Agent as HttpAgent } from "node:http";
import type { Agent as HttpsAgent } from "node:https";
import type { Readable } from "node:stream";

import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";

import { type NetworkGuard, blockedDestinationOf, defaultNetworkGuard } from "../net/network-guard.js";
import {
  type OriginPermissions,
  type S3Config,
  type StorageDriver,
  ObjectAccessDeniedError,
  ObjectNotFoundError,
  ObjectTooLargeError,
  OriginProbeError,
  joinObjectPath,
  writeStreamToFile,
} from "./storage-driver.js";

export interface S3DriverOptions {
  /**
   * Decides which hosts may be contacted (default: nothing private, which still lets AWS's own
   * public endpoints through). Every connection the SDK makes goes through it.
   */
  guard?: NetworkGuard;
  /** TCP connect limit; a wrong endpoint should fail a probe in seconds, not after the OS default (~2 min). */
  connectionTimeoutMs?: number;
  /** Socket idle limit: a server that stops talking mid-request. Not a cap on a whole transfer. */
  socketTimeoutMs?: number;
  /** Cap on a whole probe (list + put + delete, retries included). */
  probeTimeoutMs?: number;
}

/** AWS S3 and S3-compatible stores (R2, MinIO, GCS interoperability). */
export class S3Driver implements StorageDriver {
  private readonly client: S3Client;
  private readonly probeTimeoutMs: number;
  private readonly agents: [HttpAgent, HttpsAgent];

  constructor(
    private readonly config: S3Config,
    options: S3DriverOptions = {},
  ) {
    this.probeTimeoutMs = options.probeTimeoutMs ?? 15_000;
    const guard = options.guard ?? defaultNetworkGuard();
    // Agent instances, not Agent options: given options, @smithy/node-http-handler builds its own
    // Agents, and for every request with "Expect: 100-continue" (the SDK adds it to bodies of
    // 2 MiB and more: multipart parts) a fresh unguarded one. With instances ("external agents")
    // every request uses these. keepAlive and maxSockets are the handler's own defaults.
    this.agents = [
      guard.createHttpAgent({ keepAlive: true, maxSockets: 50 }),
      guard.createHttpsAgent({ keepAlive: true, maxSockets: 50 }),
    ];
    this.client = new S3Client({
      region: config.region,
      endpoint: config.endpoint,
      // Custom endpoints (MinIO, s3rver, GCS) rarely have wildcard DNS for bucket subdomains.
      forcePathStyle: config.forcePathStyle ?? config.endpoint !== undefined,
      credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
      // One retry: enough for a dropped connection; the SDK default (3 with backoff) makes a
      // misconfigured origin take far too long to report.
      maxAttempts: 2,
      // Not `requestTimeout`: in @smithy/node-http-handler 4.x that caps a whole request but only
      // logs a warning unless `throwOnRequestTimeout` is set, and a multi-GB download must not be
      // capped anyway. Probes get their own overall deadline instead (probeTimeoutMs).
      requestHandler: {
        connectionTimeout: options.connectionTimeoutMs ?? 5_000,
        socketTimeout: options.socketTimeoutMs ?? 30_000,
        httpAgent: this.agents[0],
        httpsAgent: this.agents[1],
      },
      // Since 3.729 the SDK checksums every upload by default, sending streamed bodies as
      // aws-chunked with a trailer. Not every S3-compatible store understands that (s3rver 3.7.1
      // silently stores the chunk framing as object bytes), so only checksum when S3 demands it.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
  }

  async probe(basePath: string, permissions: OriginPermissions): Promise<void> {
    const prefix = joinObjectPath(basePath);
    const abortSignal = AbortSignal.timeout(this.probeTimeoutMs);
    const { bucket } = this.config;

    if (permissions.read) {
      try {
        await this.client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix ? `${prefix}/` : undefined, MaxKeys: 1 }),
          { abortSignal },
        );
      } catch (err) {
        throw new OriginProbeError(this.describeError(err, "read probe failed"), { cause: err });
      }
    }

    if (permissions.write) {
      const Key = joinObjectPath(prefix, `.rendition-probe-${randomUUID()}`);
      try {
        await this.client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: "rendition write probe\n" }), {
          abortSignal,
        });
      } catch (err) {
        throw new OriginProbeError(this.describeError(err, "write probe failed"), { cause: err });
      }
      // Uploading outputs needs only PutObject; upload-only policies without DeleteObject are
      // common, so a marker that cannot be removed does not fail the probe.
      await this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key }), { abortSignal }).catch(() => {});
    }
  }

  async download(objectPath: string, destFile: string, opts: { maxBytes?: number; signal?: AbortSignal } = {}) {
    let response;
    try {
      response = await this.client.send(new GetObjectCommand({ Bucket: this.config.bucket, Key: joinObjectPath(objectPath) }), {
        abortSignal: opts.signal,
      });
    } catch (err) {
      const url = this.urlFor(objectPath);
      throw this.refusal(err, { missing: `${url} does not exist`, refused: `reading ${url} failed` }) ?? err;
    }
    // In Node the SDK hands back the raw IncomingMessage.
    const body = response.Body as Readable | undefined;
    if (!body) throw new Error(`s3 GetObject returned no body for ${this.urlFor(objectPath)}`);
    if (opts.maxBytes !== undefined && (response.ContentLength ?? 0) > opts.maxBytes) {
      body.destroy();
      throw new ObjectTooLargeError(opts.maxBytes);
    }
    return writeStreamToFile(body, destFile, opts);
  }

  async upload(srcFile: string, objectPath: string, opts: { contentType?: string; signal?: AbortSignal } = {}) {
    opts.signal?.throwIfAborted();
    const key = joinObjectPath(objectPath);
    const { size } = await stat(srcFile);
    const abortController = new AbortController();
    const onAbort = () => abortController.abort();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      // lib-storage switches to multipart above partSize (5 MiB) and aborts the multipart upload
      // on failure, so no orphaned parts are left behind.
      await new Upload({
        client: this.client,
        params: { Bucket: this.config.bucket, Key: key, Body: createReadStream(srcFile), ContentType: opts.contentType },
        abortController,
      }).done();
    } catch (err) {
      const failed = `writing ${this.urlFor(key)} failed`;
      throw this.refusal(err, { missing: this.describeError(err, failed), refused: failed }) ?? err;
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
    }
    return { bytes: size, url: this.urlFor(key) };
  }

  async remove(objectPath: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.config.bucket, Key: joinObjectPath(objectPath) }));
  }

  /** A missing object or bucket, or a refused request, as the typed errors callers act on; undefined for anything else. */
  private refusal(err: unknown, messages: { missing: string; refused: string }): Error | undefined {
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    const name = (err as Error).name;
    if (name === "NoSuchKey" || name === "NoSuchBucket" || status === 404) return new ObjectNotFoundError(messages.missing, { cause: err });
    if (name === "AccessDenied" || status === 403) return new ObjectAccessDeniedError(this.describeError(err, messages.refused), { cause: err });
    return undefined;
  }

  urlFor(objectPath: string): string {
    return `s3://${this.config.bucket}/${joinObjectPath(objectPath)}`;
  }

  /** Releases pooled sockets; the driver cannot be used afterwards. */
  destroy(): void {
    this.client.destroy();
    for (const agent of this.agents) agent.destroy();
  }

  /** `${what}: reason`; a refused destination is reported as just that, since nothing was sent to it. */
  private describeError(err: unknown, what: string): string {
    const blocked = blockedDestinationOf(err);
    return blocked ? blocked.message : `${what}: ${this.describeReason(err)}`;
  }

  private describeReason(err: unknown): string {
    const { bucket, region } = this.config;
    const endpoint = this.config.endpoint ?? `AWS S3 (${region})`;
    if (err instanceof S3ServiceException) {
      const hints: Record<string, string> = {
        InvalidAccessKeyId: "the access key ID is not known to the storage provider",
        SignatureDoesNotMatch: "the secret access key does not match the access key ID",
        AccessDenied: `the credentials are not allowed to do this on bucket "${bucket}"`,
        NoSuchBucket: `bucket "${bucket}" does not exist`,
        InvalidBucketName: `"${bucket}" is not a valid bucket name`,
        PermanentRedirect: `bucket "${bucket}" is not in region "${region}"`,
        AuthorizationHeaderMalformed: `bucket "${bucket}" is not in region "${region}"`,
      };
      const hint = hints[err.name];
      if (hint) return `${err.name}: ${hint}`;
      // Non-XML answers (a web server, a proxy) leave the SDK with only the status code.
      const status = err.$metadata.httpStatusCode;
      return `${err.name}: ${err.message}${status ? ` (HTTP ${status} from ${endpoint})` : ""}`;
    }
    const { name, message, code } = networkError(err);
    if (name === "TimeoutError" || name === "AbortError" || code === "ETIMEDOUT") {
      return `no answer from ${endpoint} in time (${message})`;
    }
    if (code === "ENOTFOUND" || code === "EAI_AGAIN") return `cannot resolve the host of ${endpoint} (${code})`;
    if (code) return `cannot reach ${endpoint} (${code}: ${message})`;
    return `${name}: ${message}`;
  }
}

/** Node reports a refused dual-stack connect as an AggregateError whose parts carry the code. */
function networkError(err: unknown): { name: string; message: string; code?: string } {
  const e = err as (Error & { code?: string; errors?: Array<{ code?: string }> }) | undefined;
  return {
    name: e?.name ?? "Error",
    message: e?.message || String(err),
    code: e?.code ?? e?.errors?.find((inner) => inner.code)?.code,
  };
}
