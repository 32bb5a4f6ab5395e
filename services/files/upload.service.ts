import { posix } from "node:path";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, type FieldViolation } from "../common/errors.js";
import { newId } from "../common/ids.js";
import type { OriginManager } from "../origins/origin.service.js";
import { ObjectTooLargeError, joinObjectPath, type LocalConfig, type S3Config } from "../storage/storage-driver.js";
import type { S3Presigner } from "../storage/s3-presigner.js";
import { HttpRefusal } from "./http-refusal.js";
import type { UploadRecord, UploadRepository } from "./upload.repository.js";
import type { PublicUrl, UrlSigner } from "./url-signer.js";

export const DEFAULT_EXPIRES_S = 3600;
/** SigV4's limit for presigned URLs. */
export const MAX_S3_EXPIRES_S = 7 * 24 * 3600;
export const MAX_LOCAL_EXPIRES_S = 24 * 3600;
/** Above this an S3 upload is multipart (below it too when the caller asks). */
export const MULTIPART_THRESHOLD_BYTES = 100 * 2 ** 20;
const MAX_PARTS = 10_000;

export interface CreateUploadInput {
  originId: string;
  path: string;
  filename: string;
  sizeBytes: number;
  contentType: string;
  expiresInSeconds: number;
  multipart: boolean;
}

export interface UploadTicket {
  upload: UploadRecord;
  method: "PUT";
  url: string;
  headers: Record<string, string>;
  parts: Array<{ partNumber: number; url: string; sizeBytes: number }>;
}

/** Where a local upload is written: the local driver's streaming write. */
export interface LocalWriter {
  writeStream(objectPath: string, body: NodeJS.ReadableStream, opts: { maxBytes: number }): Promise<{ bytes: number }>;
}

export interface UploadStores {
  s3(config: S3Config): S3Presigner;
  local(config: LocalConfig): LocalWriter;
}

export interface UploadSettings {
  /** RENDITION_MAX_INPUT_BYTES: a larger file could never be a job's input. */
  maxBytes: number;
  /** S3 multipart part size (RENDITION_UPLOAD_PART_BYTES); grows when the file needs more than 10,000 parts. */
  partBytes: number;
}

interface UploadToken {
  /** Upload id. */
  u: string;
  /** Expiry, Unix seconds. */
  e: number;
}

/**
 * Signed uploads of job inputs into an origin: S3 presigned PUTs and multipart uploads, or
 * Rendition's own single-use PUT /uploads/<token> for local origins.
 */
export class UploadManager {
  constructor(
    private readonly repo: UploadRepository,
    private readonly origins: Pick<OriginManager, "get" | "requireForJob" | "configOf">,
    private readonly stores: UploadStores,
    private readonly signer: UrlSigner,
    private readonly publicUrl: PublicUrl,
    private readonly settings: UploadSettings,
  ) {}

  async createUploadUrl(organizationId: string, input: CreateUploadInput): Promise<UploadTicket> {
    const violations: FieldViolation[] = [];
    // NOT_FOUND across organizations; an http origin is named as such rather than as "no write permission".
    const found = await this.origins.get(organizationId, input.originId);
    const origin =
      found.provider === "http"
        ? { field: "origin_id", rule: "upload.origin_read_only", message: `origin ${found.id} is an http origin, which is read-only: upload to an s3 or local origin` }
        : await this.origins.requireForJob(organizationId, input.originId, "write", "origin_id");
    if ("field" in origin) violations.push(origin);
    else if (!origin.canRead) {
      violations.push({ field: "origin_id", rule: "origin.read_permission", message: `origin ${origin.id} has no read permission: an upload becomes a job's input, which is read from the origin` });
    }
    if (input.sizeBytes > this.settings.maxBytes) {
      violations.push({ field: "size_bytes", rule: "upload.too_large", message: `must be at most ${this.settings.maxBytes} (this server's RENDITION_MAX_INPUT_BYTES)` });
    }
    if (input.path) violations.push(...checkPath(input.path));
    const provider = "field" in origin ? undefined : origin.provider;
    const expiresIn = input.expiresInSeconds || DEFAULT_EXPIRES_S;
    if (provider === "local" && expiresIn > MAX_LOCAL_EXPIRES_S) {
      violations.push({ field: "expires_in_seconds", rule: "upload.expires_local", message: `must be at most ${MAX_LOCAL_EXPIRES_S} for local origins` });
    }
    if (provider === "local" && input.multipart) {
      violations.push({ field: "multipart", rule: "upload.multipart_s3_only", message: "is only for s3 origins: a local upload is one PUT of any size" });
    }
    if (violations.length || "field" in origin) throw new InvalidArgumentError(violations);

    const id = newId("upl");
    const path = input.path ? joinObjectPath(input.path) : `uploads/${id}/${safeFilename(input.filename)}`;
    const objectPath = joinObjectPath(origin.basePath, path);
    const now = new Date();
    const expiresAt = new Date(now.getTime() + expiresIn * 1000);
    const upload: UploadRecord = {
      id,
      organizationId,
      originId: origin.id,
      provider: origin.provider as "s3" | "local",
      path,
      objectPath,
      contentType: input.contentType,
      sizeBytes: input.sizeBytes,
      multipartUploadId: "",
      partSizeBytes: null,
      state: "pending",
      receivedBytes: null,
      expiresAt,
      createdAt: now,
      completedAt: null,
    };
    const headers: Record<string, string> = input.contentType ? { "Content-Type": input.contentType } : {};

    if (origin.provider === "local") {
      await this.repo.insert(upload);
      const token = this.signer.sign({ u: id, e: Math.floor(expiresAt.getTime() / 1000) } satisfies UploadToken);
      return { upload, method: "PUT", url: `${this.publicUrl.base}/uploads/${token}`, headers, parts: [] };
    }

    const config = this.origins.configOf(origin);
    if (config.provider !== "s3") throw new Error(`origin ${origin.id} is not an s3 origin`);
    const s3 = this.stores.s3(config.s3);
    try {
      if (!input.multipart && input.sizeBytes <= MULTIPART_THRESHOLD_BYTES) {
        const url = await s3.presignPut(objectPath, { sizeBytes: input.sizeBytes, contentType: input.contentType, expiresIn });
        await this.repo.insert(upload);
        return { upload, method: "PUT", url, headers, parts: [] };
      }
      const partSize = partSizeFor(input.sizeBytes, this.settings.partBytes);
      upload.partSizeBytes = partSize;
      upload.multipartUploadId = await s3.createMultipart(objectPath, input.contentType);
      await this.repo.insert(upload);
      const count = Math.ceil(input.sizeBytes / partSize);
      const parts = [];
      for (let n = 1; n <= count; n++) {
        const size = n < count ? partSize : input.sizeBytes - partSize * (count - 1);
        parts.push({ partNumber: n, sizeBytes: size, url: await s3.presignPart(objectPath, upload.multipartUploadId, n, size, expiresIn) });
      }
      return { upload, method: "PUT", url: "", headers: {}, parts };
    } finally {
      s3.destroy();
    }
  }

  /** Completes an S3 multipart upload, or records that a single S3 PUT arrived. Completing twice answers the completed upload. */
  async complete(organizationId: string, uploadId: string, parts: Array<{ partNumber: number; etag: string }>): Promise<UploadRecord> {
    const upload = await this.get(organizationId, uploadId);
    if (upload.state === "completed") return upload;
    if (upload.state === "aborted") throw new FailedPreconditionError(`upload ${uploadId} was aborted`);
    if (upload.provider === "local") {
      throw new FailedPreconditionError(`upload ${uploadId} is a local upload: it completes with its PUT to the upload url`);
    }
    if (!upload.multipartUploadId && parts.length) {
      throw new InvalidArgumentError([{ field: "parts", rule: "upload.not_multipart", message: "must be empty: this upload is a single PUT" }]);
    }
    if (upload.multipartUploadId && !parts.length) {
      throw new InvalidArgumentError([{ field: "parts", rule: "upload.parts_required", message: "must list every part's part_number and ETag" }]);
    }
    const s3 = await this.s3Of(upload);
    try {
      if (upload.multipartUploadId) {
        const sorted = [...parts].sort((a, b) => a.partNumber - b.partNumber);
        try {
          await s3.completeMultipart(upload.objectPath, upload.multipartUploadId, sorted);
        } catch (err) {
          const name = (err as Error).name;
          if (/InvalidPart|InvalidPartOrder|EntityTooSmall|NoSuchUpload/.test(name)) {
            throw new InvalidArgumentError([{ field: "parts", rule: "upload.parts_rejected", message: `the store refused them: ${name}: ${(err as Error).message}` }]);
          }
          throw err;
        }
      }
      const size = await s3.sizeOf(upload.objectPath);
      if (size === undefined) throw new FailedPreconditionError(`upload ${uploadId}: nothing has been uploaded to its url yet`);
      const done = await this.repo.transition(upload.id, ["pending"], "completed", { receivedBytes: size });
      return done ?? (await this.get(organizationId, uploadId));
    } finally {
      s3.destroy();
    }
  }

  /** Aborts a pending upload: an S3 multipart upload's parts are deleted, a local upload URL stops working. */
  async abort(organizationId: string, uploadId: string): Promise<UploadRecord> {
    const upload = await this.get(organizationId, uploadId);
    if (upload.state === "aborted") return upload;
    if (upload.state === "completed") throw new FailedPreconditionError(`upload ${uploadId} is already completed`);
    if (upload.state === "uploading") throw new FailedPreconditionError(`upload ${uploadId} is being received right now`);
    if (upload.multipartUploadId) {
      const s3 = await this.s3Of(upload);
      try {
        await s3.abortMultipart(upload.objectPath, upload.multipartUploadId);
      } finally {
        s3.destroy();
      }
    }
    const aborted = await this.repo.transition(upload.id, ["pending"], "aborted");
    if (!aborted) throw new FailedPreconditionError(`upload ${uploadId} changed during the abort; ask again`);
    return aborted;
  }

  /**
   * The body of PUT /uploads/<token>: checked (signature, expiry, single use, size), then
   * streamed into the local origin. `declaredLength` is the request's Content-Length, if any.
   */
  async receive(token: string, body: NodeJS.ReadableStream, declaredLength: number | undefined): Promise<UploadRecord> {
    const claims = this.signer.verify<UploadToken>(token);
    if (!claims || typeof claims.u !== "string" || typeof claims.e !== "number") throw new HttpRefusal(403, "invalid upload token");
    const upload = await this.repo.getById(claims.u);
    if (!upload || upload.provider !== "local") throw new HttpRefusal(403, "invalid upload token");
    this.refuseUnusable(upload);
    if (declaredLength !== undefined && declaredLength > upload.sizeBytes) {
      throw new HttpRefusal(413, `the body (${declaredLength} bytes) is larger than the upload's size_bytes (${upload.sizeBytes})`);
    }
    const claimed = await this.repo.transition(upload.id, ["pending"], "uploading", { unexpired: true });
    if (!claimed) {
      this.refuseUnusable((await this.repo.getById(upload.id)) ?? upload);
      throw new HttpRefusal(410, "this upload url has expired");
    }
    try {
      const origin = await this.origins.get(upload.organizationId, upload.originId);
      const config = this.origins.configOf(origin);
      if (config.provider !== "local") throw new Error(`origin ${origin.id} is not a local origin`);
      const { bytes } = await this.stores.local(config.local).writeStream(upload.objectPath, body, { maxBytes: upload.sizeBytes });
      const done = await this.repo.transition(upload.id, ["uploading"], "completed", { receivedBytes: bytes });
      if (!done) throw new Error(`upload ${upload.id} left the uploading state while its body was received`);
      return done;
    } catch (err) {
      // A failed or refused transfer leaves nothing behind and the URL usable again until it expires.
      await this.repo.transition(upload.id, ["uploading"], "pending");
      if (err instanceof ObjectTooLargeError) throw new HttpRefusal(413, `the body is larger than the upload's size_bytes (${upload.sizeBytes})`);
      throw err;
    }
  }

  private refuseUnusable(upload: UploadRecord): void {
    if (upload.state === "completed") throw new HttpRefusal(409, "this upload url was already used");
    if (upload.state === "uploading") throw new HttpRefusal(409, "this upload url is being used by another request");
    if (upload.state === "aborted") throw new HttpRefusal(410, "this upload was aborted");
    if (upload.expiresAt.getTime() <= Date.now()) throw new HttpRefusal(410, "this upload url has expired");
  }

  private async get(organizationId: string, uploadId: string): Promise<UploadRecord> {
    const upload = await this.repo.get(organizationId, uploadId);
    if (!upload) throw new NotFoundError(`upload ${uploadId} not found`);
    return upload;
  }

  private async s3Of(upload: UploadRecord): Promise<S3Presigner> {
    const config = this.origins.configOf(await this.origins.get(upload.organizationId, upload.originId));
    if (config.provider !== "s3") throw new Error(`origin ${upload.originId} is not an s3 origin`);
    return this.stores.s3(config.s3);
  }
}

/** The part size: the configured one, or larger when 10,000 parts would not hold the file (whole MiB). */
export function partSizeFor(sizeBytes: number, partBytes: number): number {
  const mib = 2 ** 20;
  return Math.max(partBytes, Math.ceil(sizeBytes / MAX_PARTS / mib) * mib);
}

function safeFilename(filename: string): string {
  const name = posix.basename(filename.replaceAll("\\", "/")).replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "");
  return name || "input";
}

function checkPath(path: string): FieldViolation[] {
  if (path.includes("\0") || path.startsWith("/") || /^[A-Za-z]:/.test(path)) {
    return [{ field: "path", rule: "upload.path_relative", message: "must be a relative path inside the origin" }];
  }
  const segments = path.split(/[\\/]/);
  if (segments.includes("..") || segments.includes(".")) return [{ field: "path", rule: "upload.path_relative", message: "must not contain '.' or '..' segments" }];
  if (!segments.some((s) => s !== "" && s !== ".")) return [{ field: "path", rule: "upload.path_empty", message: "must name a file" }];
  return [];
}
