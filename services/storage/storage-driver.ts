import { createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";

import type { NetworkGuard } from "../net/network-guard.js";
import { HttpDriver } from "./http.driver.js";
import { LocalDriver } from "./local.driver.js";
import { S3Driver } from "./s3.driver.js";

export type Provider = "s3" | "http" | "local";

export interface OriginPermissions {
  read: boolean;
  write: boolean;
}

/** `endpoint` is set for S3-compatible stores (R2, MinIO, GCS interoperability); unset means AWS. */
export interface S3Config {
  bucket: string;
  region: string;
  endpoint?: string;
  forcePathStyle?: boolean;
  accessKeyId: string;
  secretAccessKey: string;
}

export interface HttpConfig {
  baseUrl: string;
  headers?: Record<string, string>;
}

export interface LocalConfig {
  rootDir: string;
}

export type OriginConfig =
  | { provider: "s3"; s3: S3Config }
  | { provider: "http"; http: HttpConfig }
  | { provider: "local"; local: LocalConfig };

/**
 * One storage location. Object paths are relative to the location's root (bucket, rootDir or
 * baseUrl); callers build them with `joinObjectPath(origin.basePath, path)`.
 */
export interface StorageDriver {
  /**
   * Real probe matching the permissions: read → list/head on the location; write → put then
   * delete a small marker object under basePath. Throws OriginProbeError with a readable message
   * (e.g. "write probe failed: AccessDenied: ...").
   */
  probe(basePath: string, permissions: OriginPermissions): Promise<void>;
  /** Download an object to a local file (used by workers). Throws ObjectTooLargeError past maxBytes. */
  download(path: string, destFile: string, opts?: { maxBytes?: number; signal?: AbortSignal }): Promise<{ bytes: number }>;
  /** Upload a local file (multipart via @aws-sdk/lib-storage for s3). */
  upload(srcFile: string, path: string, opts?: { contentType?: string; signal?: AbortSignal }): Promise<{ bytes: number; url: string }>;
  /** Deletes an object (a worker's own staging files); a missing one is not an error. Absent on read-only drivers. */
  remove?(path: string): Promise<void>;
  /** Canonical URL of an object for output_url: s3://bucket/key, file:///abs/path, https://... */
  urlFor(path: string): string;
  /** Releases pooled connections, for drivers that hold them. */
  destroy?(): void;
}

/** The origin cannot be used as configured; the message is meant for the API caller. */
export class OriginProbeError extends Error {
  override name = "OriginProbeError";
}

/** A download went past its byte limit; permanent, retrying will not help. */
export class ObjectTooLargeError extends Error {
  override name = "ObjectTooLargeError";
  constructor(readonly maxBytes: number) {
    super(`object is larger than the limit of ${maxBytes} bytes`);
  }
}

/** The object does not exist (HTTP 404/410, S3 NoSuchKey, ENOENT); permanent. */
export class ObjectNotFoundError extends Error {
  override name = "ObjectNotFoundError";
}

/** The store refused to hand the object over (HTTP 401/403, S3 AccessDenied); permanent until someone fixes access. */
export class ObjectAccessDeniedError extends Error {
  override name = "ObjectAccessDeniedError";
}

export interface StorageDriverOptions {
  /**
   * Which caller-named hosts (s3 endpoints, http base URLs, their redirects) may be contacted.
   * Default: a guard that allows nothing private (no loopback, private, link-local or metadata
   * addresses).
   */
  guard?: NetworkGuard;
}

export function createStorageDriver(config: OriginConfig, options: StorageDriverOptions = {}): StorageDriver {
  switch (config.provider) {
    case "s3":
      return new S3Driver(config.s3, { guard: options.guard });
    case "http":
      return new HttpDriver(config.http, { guard: options.guard });
    case "local":
      return new LocalDriver(config.local);
  }
}

/** `basePath/path` without leading, trailing or doubled slashes (S3 keys must not start with "/"). */
export function joinObjectPath(...parts: string[]): string {
  return parts
    .flatMap((part) => part.split("/"))
    .filter((segment) => segment !== "")
    .join("/");
}

/**
 * Streams a download body into destFile, counting bytes so a lying or missing Content-Length
 * cannot push us past maxBytes. A partial file is removed on any failure.
 */
export async function writeStreamToFile(
  body: NodeJS.ReadableStream | AsyncIterable<Uint8Array>,
  destFile: string,
  opts: { maxBytes?: number; signal?: AbortSignal } = {},
): Promise<{ bytes: number }> {
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      if (opts.maxBytes !== undefined && bytes > opts.maxBytes) {
        callback(new ObjectTooLargeError(opts.maxBytes));
      } else {
        callback(null, chunk);
      }
    },
  });
  try {
    await pipeline(body, counter, createWriteStream(destFile), { signal: opts.signal });
  } catch (err) {
    await rm(destFile, { force: true });
    throw err;
  }
  return { bytes };
}
