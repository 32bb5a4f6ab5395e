import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";

import { type NetworkGuard, defaultNetworkGuard } from "../net/network-guard.js";
import { type S3Config, joinObjectPath } from "./storage-driver.js";

/**
 * Presigned URLs (SigV4 query signatures, computed locally: nothing is sent) and the server-side
 * calls of an S3 multipart upload (create, complete, abort), which go through the network guard
 * like every other S3 request.
 */
export interface S3Presigner {
  /** A PUT of exactly `sizeBytes` (Content-Length is signed) and, when given, this Content-Type. */
  presignPut(key: string, opts: { sizeBytes: number; contentType?: string; expiresIn: number }): Promise<string>;
  presignGet(key: string, expiresIn: number): Promise<string>;
  createMultipart(key: string, contentType?: string): Promise<string>;
  presignPart(key: string, uploadId: string, partNumber: number, sizeBytes: number, expiresIn: number): Promise<string>;
  completeMultipart(key: string, uploadId: string, parts: Array<{ partNumber: number; etag: string }>): Promise<void>;
  abortMultipart(key: string, uploadId: string): Promise<void>;
  /** The object's size, or undefined when it does not exist. */
  sizeOf(key: string): Promise<number | undefined>;
  destroy(): void;
}

export function createS3Presigner(config: S3Config, options: { guard?: NetworkGuard } = {}): S3Presigner {
  const guard = options.guard ?? defaultNetworkGuard();
  const agents = [guard.createHttpAgent({ keepAlive: true }), guard.createHttpsAgent({ keepAlive: true })] as const;
  const client = new S3Client({
    region: config.region,
    endpoint: config.endpoint,
    forcePathStyle: config.forcePathStyle ?? config.endpoint !== undefined,
    credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
    maxAttempts: 2,
    requestHandler: { connectionTimeout: 5_000, socketTimeout: 30_000, httpAgent: agents[0], httpsAgent: agents[1] },
    // No checksum query parameters in presigned PUTs: a plain `curl -T` could not satisfy them.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
  const Bucket = config.bucket;
  const Key = (key: string) => joinObjectPath(key);
  return {
    presignPut(key, { sizeBytes, contentType, expiresIn }) {
      return getSignedUrl(client, new PutObjectCommand({ Bucket, Key: Key(key), ContentLength: sizeBytes, ContentType: contentType || undefined }), {
        expiresIn,
        // content-length is signed by default; content-type only when asked for.
        signableHeaders: new Set(contentType ? ["content-length", "content-type"] : ["content-length"]),
      });
    },
    presignGet(key, expiresIn) {
      return getSignedUrl(client, new GetObjectCommand({ Bucket, Key: Key(key) }), { expiresIn });
    },
    async createMultipart(key, contentType) {
      const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket, Key: Key(key), ContentType: contentType || undefined }));
      if (!UploadId) throw new Error("CreateMultipartUpload answered no UploadId");
      return UploadId;
    },
    presignPart(key, uploadId, partNumber, sizeBytes, expiresIn) {
      return getSignedUrl(client, new UploadPartCommand({ Bucket, Key: Key(key), UploadId: uploadId, PartNumber: partNumber, ContentLength: sizeBytes }), {
        expiresIn,
      });
    },
    async completeMultipart(key, uploadId, parts) {
      await client.send(
        new CompleteMultipartUploadCommand({
          Bucket,
          Key: Key(key),
          UploadId: uploadId,
          MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag.startsWith('"') ? p.etag : `"${p.etag}"` })) },
        }),
      );
    },
    async abortMultipart(key, uploadId) {
      await client.send(new AbortMultipartUploadCommand({ Bucket, Key: Key(key), UploadId: uploadId }));
    },
    async sizeOf(key) {
      try {
        const head = await client.send(new HeadObjectCommand({ Bucket, Key: Key(key) }));
        return head.ContentLength ?? 0;
      } catch (err) {
        const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        if (status === 404 || (err as Error).name === "NotFound" || (err as Error).name === "NoSuchKey") return undefined;
        throw err;
      }
    },
    destroy() {
      client.destroy();
      for (const agent of agents) agent.destroy();
    },
  };
}
