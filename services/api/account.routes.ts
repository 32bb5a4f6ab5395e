import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Priority, Quality, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { ApiKeySchema, ApiKeyService, UsageLineSchema, UsageSchema, UsageService, type ApiKey, type Usage } from "../../gen/rendition/v1/account_pb.js";
import type { ApiKeyManager } from "../auth/api-key.service.js";
import { isActive, type ApiKeyRecord } from "../auth/auth.repository.js";
import type { Caller } from "../auth/authenticate.js";
import { parsePagination } from "../common/pagination.js";
import { formatMinor, type CodecName, type PriorityName, type ResolutionTier } from "../pricing/pricing.js";
import type { UsageManager } from "../usage/usage.service.js";
import type { QualityName, UsageTotals } from "../usage/usage.types.js";
import { callerKey } from "./interceptors.js";

export interface AccountDependencies {
  apiKeys: ApiKeyManager;
  usage: UsageManager;
}

function callerOf(ctx: HandlerContext): Caller {
  const caller = ctx.values.get(callerKey);
  if (!caller) throw new Error("handler reached without an authenticated caller");
  return caller;
}

const timestamp = (d: Date | null) => (d ? timestampFromDate(d) : undefined);

export function toProtoApiKey(key: ApiKeyRecord, callerKeyId: string): ApiKey {
  return create(ApiKeySchema, {
    id: key.id,
    name: key.name,
    displayPrefix: key.displayPrefix,
    test: key.test,
    createdAt: timestamp(key.createdAt),
    lastUsedAt: timestamp(key.lastUsedAt),
    revokedAt: timestamp(key.revokedAt),
    expiresAt: timestamp(key.expiresAt),
    active: isActive(key),
    current: key.id === callerKeyId,
  });
}

const CODEC: Record<CodecName, VideoCodec> = { h264: VideoCodec.H264, h265: VideoCodec.H265, vp9: VideoCodec.VP9, av1: VideoCodec.AV1 };
const TIER: Record<ResolutionTier, Resolution> = {
  "480p": Resolution.RESOLUTION_480P,
  "720p": Resolution.RESOLUTION_720P,
  "1080p": Resolution.RESOLUTION_1080P,
  "1440p": Resolution.RESOLUTION_1440P,
  "2160p": Resolution.RESOLUTION_2160P,
  "4320p": Resolution.RESOLUTION_4320P,
};
const QUALITY: Record<QualityName, Quality> = { economy: Quality.ECONOMY, standard: Quality.STANDARD, premium: Quality.PREMIUM };
const PRIORITY: Record<PriorityName, Priority> = { economy: Priority.ECONOMY, standard: Priority.STANDARD, premium: Priority.PREMIUM };

export function toProtoUsage(t: UsageTotals): Usage {
  return create(UsageSchema, {
    jobsCompleted: BigInt(t.jobs.completed),
    jobsPartial: BigInt(t.jobs.partial),
    jobsFailed: BigInt(t.jobs.failed),
    jobsCanceled: BigInt(t.jobs.canceled),
    outputsCompleted: BigInt(t.outputsCompleted),
    minutes: t.durationMs / 60_000,
    lines: t.lines.map((l) =>
      create(UsageLineSchema, {
        codec: CODEC[l.codec],
        resolution: TIER[l.tier],
        quality: QUALITY[l.quality],
        priority: PRIORITY[l.priority],
        renditions: BigInt(l.renditions),
        minutes: l.durationMs / 60_000,
      }),
    ),
    totalActualCost: formatMinor(t.actualCostMinor),
    currency: t.currency,
  });
}

/** ApiKeyService and UsageService: handlers only translate between the wire and the domain. */
export function accountRoutes(deps: AccountDependencies) {
  const { apiKeys, usage } = deps;
  return (router: ConnectRouter) => {
    router.service(ApiKeyService, {
      create: async (req, ctx) => {
        const caller = callerOf(ctx);
        const created = await apiKeys.create(caller.organizationId, { name: req.name, test: req.test });
        return { apiKey: toProtoApiKey(created.record, caller.apiKeyId), secret: created.key };
      },
      list: async (req, ctx) => {
        const caller = callerOf(ctx);
        const page = await apiKeys.list(caller.organizationId, parsePagination(req.pagination));
        return {
          apiKeys: page.items.map((k) => toProtoApiKey(k, caller.apiKeyId)),
          pagination: { nextCursor: page.nextCursor, totalCount: page.total },
        };
      },
      revoke: async (req, ctx) => {
        const caller = callerOf(ctx);
        return { apiKey: toProtoApiKey(await apiKeys.revoke(caller.organizationId, req.id), caller.apiKeyId) };
      },
      roll: async (req, ctx) => {
        const caller = callerOf(ctx);
        const { created, previous } = await apiKeys.roll(caller.organizationId, req.id, req.gracePeriodSeconds);
        return {
          apiKey: toProtoApiKey(created.record, caller.apiKeyId),
          secret: created.key,
          previous: toProtoApiKey(previous, caller.apiKeyId),
        };
      },
    });
    router.service(UsageService, {
      getUsage: async (req, ctx) => {
        const report = await usage.get(callerOf(ctx).organizationId, timestampDate(req.startTime!), timestampDate(req.endTime!));
        return {
          startTime: timestampFromDate(report.start),
          endTime: timestampFromDate(report.end),
          usage: toProtoUsage(report.live),
          testUsage: toProtoUsage(report.test),
        };
      },
    });
  };
}
