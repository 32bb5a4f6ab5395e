import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  OriginPermission,
  OriginProvider,
  OriginSchema,
  OriginStatus,
  type Origin,
  type OriginServiceCreateRequest,
} from "../../gen/rendition/v1/origin_pb.js";
import type { CreateOriginInput, OriginRecord, Permission } from "./origin.types.js";

export const ORIGIN_PROVIDER = { s3: OriginProvider.S3, http: OriginProvider.HTTP, local: OriginProvider.LOCAL } as const;
const STATUS = { active: OriginStatus.ACTIVE, failed: OriginStatus.FAILED, archived: OriginStatus.ARCHIVED } as const;

export function toProtoOrigin(o: OriginRecord): Origin {
  const permissions: OriginPermission[] = [];
  if (o.canRead) permissions.push(OriginPermission.READ);
  if (o.canWrite) permissions.push(OriginPermission.WRITE);
  return create(OriginSchema, {
    id: o.id,
    name: o.name,
    description: o.description,
    provider: ORIGIN_PROVIDER[o.provider],
    permissions,
    status: STATUS[o.status],
    basePath: o.basePath,
    pathTemplate: o.pathTemplate,
    s3: o.location.s3,
    http: o.location.http,
    local: o.location.local,
    lastValidatedAt: o.lastValidatedAt ? timestampFromDate(o.lastValidatedAt) : undefined,
    validationError: o.validationError,
    archivedAt: o.archivedAt ? timestampFromDate(o.archivedAt) : undefined,
    createdAt: timestampFromDate(o.createdAt),
    updatedAt: timestampFromDate(o.updatedAt),
  });
}

export function toCreateOriginInput(req: OriginServiceCreateRequest): CreateOriginInput {
  return {
    name: req.name,
    description: req.description,
    permissions: req.permissions.map((p): Permission => (p === OriginPermission.WRITE ? "write" : "read")),
    basePath: req.basePath,
    pathTemplate: req.pathTemplate,
    s3: req.s3,
    s3Credentials: req.s3Credentials,
    http: req.http,
    httpHeaders: req.httpHeaders,
    local: req.local,
  };
}
