import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { UploadService, UploadState } from "../../gen/rendition/v1/upload_pb.js";
import type { JobServiceGetDownloadUrlsRequest } from "../../gen/rendition/v1/job_pb.js";
import { OutputStatus } from "../../gen/rendition/v1/job_pb.js";
import type { DownloadManager } from "../files/download.service.js";
import type { UploadRecord } from "../files/upload.repository.js";
import type { UploadManager } from "../files/upload.service.js";
import { callerKey } from "./interceptors.js";

function org(ctx: HandlerContext): string {
  const caller = ctx.values.get(callerKey);
  if (!caller) throw new Error("handler reached without an authenticated caller");
  return caller.organizationId;
}

const OUTPUT_STATUS: Record<string, OutputStatus> = {
  pending: OutputStatus.PENDING,
  processing: OutputStatus.PROCESSING,
  completed: OutputStatus.COMPLETED,
  failed: OutputStatus.FAILED,
  canceled: OutputStatus.CANCELED,
};
const outputStatusOf = (status: string) => OUTPUT_STATUS[status] ?? OutputStatus.UNSPECIFIED;

const STATE: Record<UploadRecord["state"], UploadState> = {
  pending: UploadState.PENDING,
  uploading: UploadState.PENDING,
  completed: UploadState.COMPLETED,
  aborted: UploadState.ABORTED,
};

/** UploadService: thin handlers over UploadManager. */
export function registerUploadService(router: ConnectRouter, deps: { uploads: UploadManager }): void {
  const { uploads } = deps;
  router.service(UploadService, {
    createUploadUrl: async (req, ctx) => {
      const ticket = await uploads.createUploadUrl(org(ctx), {
        originId: req.originId,
        path: req.path,
        filename: req.filename,
        sizeBytes: Number(req.sizeBytes),
        contentType: req.contentType,
        expiresInSeconds: req.expiresInSeconds,
        multipart: req.multipart,
      });
      const { upload } = ticket;
      return {
        uploadId: upload.id,
        method: ticket.method,
        url: ticket.url,
        headers: ticket.headers,
        expiresAt: timestampFromDate(upload.expiresAt),
        inputOriginId: upload.originId,
        inputPath: upload.path,
        multipart: Boolean(upload.multipartUploadId),
        partSizeBytes: BigInt(upload.partSizeBytes ?? 0),
        parts: ticket.parts.map((p) => ({ partNumber: p.partNumber, url: p.url, sizeBytes: BigInt(p.sizeBytes) })),
        maxSizeBytes: BigInt(upload.sizeBytes),
      };
    },
    completeUpload: async (req, ctx) => {
      const upload = await uploads.complete(org(ctx), req.uploadId, req.parts.map((p) => ({ partNumber: p.partNumber, etag: p.etag })));
      return { uploadId: upload.id, state: STATE[upload.state], inputOriginId: upload.originId, inputPath: upload.path };
    },
    abortUpload: async (req, ctx) => {
      const upload = await uploads.abort(org(ctx), req.uploadId);
      return { uploadId: upload.id, state: STATE[upload.state] };
    },
  });
}

/** JobService.GetDownloadUrls. */
export async function getDownloadUrls(downloads: DownloadManager, req: JobServiceGetDownloadUrlsRequest, ctx: HandlerContext) {
  const result = await downloads.urls(org(ctx), req.id, req.expiresInSeconds);
  return {
    jobId: result.jobId,
    outputs: result.outputs.map((o) => ({ ...o, status: outputStatusOf(o.status) })),
    thumbnails: result.thumbnails.map((t) => ({ ...t, status: outputStatusOf(t.status) })),
    expiresAt: timestampFromDate(result.expiresAt),
  };
}
