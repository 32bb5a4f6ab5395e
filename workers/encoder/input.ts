import type { JobRecord } from "../../services/jobs/job.types.js";
import type { NetworkGuard } from "../../services/net/network-guard.js";
import { createStorageDriver, joinObjectPath, type OriginConfig, type S3Config, type StorageDriver } from "../../services/storage/storage-driver.js";
import { PermanentFailure } from "./failure.js";

/** Credentials for direct `s3://` and `gs://` input URLs (origins carry their own). */
export interface DirectInputCredentials {
  s3?: { endpoint?: string; region: string; accessKeyId: string; secretAccessKey: string; buckets: string[] };
  /** HMAC keys for the GCS XML (S3-interoperable) API. */
  gcs?: { accessKeyId: string; secretAccessKey: string; buckets: string[] };
}

const GCS_INTEROP_ENDPOINT = "https://storage.googleapis.com";

export interface InputSource {
  driver: StorageDriver;
  path: string;
  /** For messages: where the input is, without secrets. */
  description: string;
}

/**
 * Where a job's input lives, as a storage driver and an object path. Every network driver goes
 * through `guard`, so an https URL (or a redirect) to an internal address is refused.
 */
export function inputSource(
  job: Pick<JobRecord, "inputUrl" | "inputPath">,
  origin: { config: OriginConfig; basePath: string } | undefined,
  credentials: DirectInputCredentials,
  guard: NetworkGuard,
): InputSource {
  if (origin) {
    return { driver: createStorageDriver(origin.config, { guard }), path: joinObjectPath(origin.basePath, job.inputPath), description: job.inputPath };
  }
  let url: URL;
  try {
    url = new URL(job.inputUrl);
  } catch {
    throw new PermanentFailure("INPUT_URL_UNSUPPORTED", "the input URL cannot be parsed");
  }
  const description = `${url.protocol}//${url.host}${url.pathname}`;
  switch (url.protocol) {
    case "https:":
      // The whole URL is the base; the object path is empty. Query strings (presigned URLs) stay.
      return { driver: createStorageDriver({ provider: "http", http: { baseUrl: job.inputUrl } }, { guard }), path: "", description };
    case "s3:":
    case "gs:": {
      const bucket = url.host;
      const key = decodeURIComponent(url.pathname.replace(/^\//, ""));
      const configured = url.protocol === "s3:" ? credentials.s3 : credentials.gcs;
      if (!configured) {
        const setting = url.protocol === "s3:" ? "RENDITION_INPUT_S3_ACCESS_KEY_ID" : "RENDITION_INPUT_GCS_ACCESS_KEY_ID";
        throw new PermanentFailure(
          "INPUT_URL_UNSUPPORTED",
          `${url.protocol}// inputs need credentials on the workers (${setting} and its secret); or read the input through an origin (input_origin_id)`,
        );
      }
      if (!configured.buckets.includes(bucket)) {
        throw new PermanentFailure("INPUT_URL_FORBIDDEN", `bucket ${bucket} is not one that direct ${url.protocol}// inputs may read; use an origin for it`);
      }
      const keys = { accessKeyId: configured.accessKeyId, secretAccessKey: configured.secretAccessKey };
      const s3: S3Config =
        url.protocol === "s3:" && credentials.s3
          ? { bucket, ...keys, region: credentials.s3.region, endpoint: credentials.s3.endpoint }
          : { bucket, ...keys, region: "auto", endpoint: GCS_INTEROP_ENDPOINT };
      return { driver: createStorageDriver({ provider: "s3", s3 }, { guard }), path: key, description };
    }
    default:
      throw new PermanentFailure("INPUT_URL_UNSUPPORTED", `input URLs with ${url.protocol} are not supported`);
  }
}
