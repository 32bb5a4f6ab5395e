import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { JobService, JobServiceCreateRequestSchema, WatchEvent } from "../../gen/rendition/v1/job_pb.js";
import { OriginService, OriginServiceCreateRequestSchema } from "../../gen/rendition/v1/origin_pb.js";
import { PresetService } from "../../gen/rendition/v1/preset_pb.js";
import { parsePagination } from "../common/pagination.js";
import { jobStatusName, toProtoJob } from "../jobs/job.mapper.js";
import type { JobManager } from "../jobs/job.service.js";
import { watchJob, type WatchEventName } from "../jobs/job.watch.js";
import type { OriginManager } from "../origins/origin.service.js";
import { toCreateOriginInput, toProtoOrigin } from "../origins/origin.mapper.js";
import type { PresetManager } from "../presets/preset.service.js";
import { toProtoPreset } from "../presets/preset.mapper.js";
import type { JobEventBus } from "../queue/event-bus.js";
import { callerKey, violationsKey, type SemanticCheck } from "./interceptors.js";
import { checkCreateJobRequest } from "../jobs/job.validation.js";
import type { DescMessage } from "@bufbuild/protobuf";
import { accountRoutes, type AccountDependencies } from "./account.routes.js";
import type { WebhookManager } from "../webhooks/webhook.service.js";
import { webhookRoutes } from "./webhook.routes.js";
import type { DownloadManager } from "../files/download.service.js";
import type { UploadManager } from "../files/upload.service.js";
import { getDownloadUrls, registerUploadService } from "./upload-routes.js";

export interface ApiDependencies extends AccountDependencies {
  jobs: JobManager;
  origins: OriginManager;
  presets: PresetManager;
  webhooks: WebhookManager;
  uploads: UploadManager;
  downloads: DownloadManager;
  events: JobEventBus;
  watch: { heartbeatMs: number; pollMs: number; progressDebounceMs: number };
  /** Aborted on SIGTERM: Watch streams end cleanly instead of being cut. */
  shutdownSignal: AbortSignal;
}

/** The pure cross-field checks the validation interceptor runs next to protovalidate. */
export const semanticChecks = new Map<DescMessage, SemanticCheck>([
  [JobServiceCreateRequestSchema, (m) => checkCreateJobRequest(m as never)],
]);

/** Requests whose handler reports the interceptor's violations together with its own database checks. */
export const deferredValidation = new Set<DescMessage>([JobServiceCreateRequestSchema, OriginServiceCreateRequestSchema]);

function org(ctx: HandlerContext): string {
  const caller = ctx.values.get(callerKey);
  if (!caller) throw new Error("handler reached without an authenticated caller");
  return caller.organizationId;
}

const WATCH_EVENT: Record<WatchEventName, WatchEvent> = {
  snapshot: WatchEvent.SNAPSHOT,
  progress: WatchEvent.PROGRESS,
  status_change: WatchEvent.STATUS_CHANGE,
  completed: WatchEvent.COMPLETED,
  heartbeat: WatchEvent.HEARTBEAT,
};

/** Handlers only translate between the wire and the domain. */
export function routes(deps: ApiDependencies) {
  const { jobs, origins, presets } = deps;
  return (router: ConnectRouter) => {
    router.service(JobService, {
      create: async (req, ctx) => ({ job: toProtoJob(await jobs.create(org(ctx), req, ctx.values.get(violationsKey), { test: ctx.values.get(callerKey)?.test })) }),
      get: async (req, ctx) => ({ job: toProtoJob(await jobs.get(org(ctx), req.id)) }),
      list: async (req, ctx) => {
        const page = await jobs.list(org(ctx), jobStatusName(req.status), parsePagination(req.pagination));
        return { jobs: page.items.map(toProtoJob), pagination: { nextCursor: page.nextCursor, totalCount: page.total } };
      },
      cancel: async (req, ctx) => ({ job: toProtoJob(await jobs.cancel(org(ctx), req.id)) }),
      confirm: async (req, ctx) => ({ job: toProtoJob(await jobs.confirm(org(ctx), req.id)) }),
      getDownloadUrls: (req, ctx) => getDownloadUrls(deps.downloads, req, ctx),
      watch: async function* (req, ctx) {
        const organizationId = org(ctx);
        const signal = AbortSignal.any([ctx.signal, deps.shutdownSignal]);
        const events = watchJob(deps.events, () => jobs.get(organizationId, req.id), req.id, { ...deps.watch, signal });
        for await (const { event, job } of events) {
          yield { job: toProtoJob(job), event: WATCH_EVENT[event], serverTime: timestampNow() };
        }
      },
    });
    router.service(OriginService, {
      create: async (req, ctx) => ({
        origin: toProtoOrigin(await origins.create(org(ctx), toCreateOriginInput(req), { knownViolations: ctx.values.get(violationsKey) })),
      }),
      get: async (req, ctx) => ({ origin: toProtoOrigin(await origins.get(org(ctx), req.id)) }),
      list: async (req, ctx) => {
        const page = await origins.list(org(ctx), parsePagination(req.pagination), req.includeArchived);
        return { origins: page.items.map(toProtoOrigin), pagination: { nextCursor: page.nextCursor, totalCount: page.total } };
      },
      update: async (req, ctx) => ({
        origin: toProtoOrigin(
          await origins.update(org(ctx), req.id, {
            name: req.name,
            description: req.description,
            pathTemplate: req.pathTemplate,
            s3Credentials: req.s3Credentials,
          }),
        ),
      }),
      delete: async (req, ctx) => ({ origin: toProtoOrigin(await origins.archive(org(ctx), req.id)) }),
      validate: async (req, ctx) => {
        const { origin, error } = await origins.validate(org(ctx), req.id);
        return { origin: toProtoOrigin(origin), valid: !error, error };
      },
    });
    webhookRoutes(router, deps.webhooks, org);
    accountRoutes(deps)(router);
    router.service(PresetService, {
      create: async (req, ctx) => ({
        preset: toProtoPreset(await presets.create(org(ctx), { slug: req.slug, name: req.name, description: req.description, spec: req.spec! })),
      }),
      get: async (req, ctx) => ({ preset: toProtoPreset(await presets.get(org(ctx), req.idOrSlug)) }),
      list: async (req, ctx) => {
        const page = await presets.list(org(ctx), parsePagination(req.pagination), req.excludeSystem);
        return { presets: page.items.map(toProtoPreset), pagination: { nextCursor: page.nextCursor, totalCount: page.total } };
      },
      update: async (req, ctx) => ({
        preset: toProtoPreset(await presets.update(org(ctx), req.id, { name: req.name, description: req.description, spec: req.spec })),
      }),
      delete: async (req, ctx) => {
        await presets.delete(org(ctx), req.id);
        return {};
      },
    });
    registerUploadService(router, deps);
  };
}

