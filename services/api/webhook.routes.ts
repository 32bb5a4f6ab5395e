import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { WebhookService } from "../../gen/rendition/v1/webhook_pb.js";
import { parsePagination } from "../common/pagination.js";
import { deliveryStatusName, toProtoDelivery, toProtoEndpoint } from "../webhooks/webhook.mapper.js";
import type { WebhookManager } from "../webhooks/webhook.service.js";

/** WebhookService: thin handlers over the WebhookManager. */
export function webhookRoutes(router: ConnectRouter, webhooks: WebhookManager, org: (ctx: HandlerContext) => string): void {
  router.service(WebhookService, {
    create: async (req, ctx) => {
      const { endpoint, secret } = await webhooks.create(org(ctx), { url: req.url, description: req.description, eventTypes: req.eventTypes });
      return { endpoint: toProtoEndpoint(endpoint), secret };
    },
    get: async (req, ctx) => ({ endpoint: toProtoEndpoint(await webhooks.get(org(ctx), req.id)) }),
    list: async (req, ctx) => {
      const page = await webhooks.list(org(ctx), parsePagination(req.pagination));
      return { endpoints: page.items.map(toProtoEndpoint), pagination: { nextCursor: page.nextCursor, totalCount: page.total } };
    },
    update: async (req, ctx) => ({
      endpoint: toProtoEndpoint(
        await webhooks.update(org(ctx), req.id, {
          url: req.url,
          description: req.description,
          eventTypes: req.updateEventTypes ? req.eventTypes : undefined,
          enabled: req.enabled,
        }),
      ),
    }),
    delete: async (req, ctx) => {
      await webhooks.delete(org(ctx), req.id);
      return {};
    },
    rotateSecret: async (req, ctx) => {
      const { endpoint, secret, previousUntil } = await webhooks.rotateSecret(org(ctx), req.id, req.gracePeriodSeconds);
      return { endpoint: endpoint && toProtoEndpoint(endpoint), secret, previousSecretExpiresAt: previousUntil ? timestampFromDate(previousUntil) : undefined };
    },
    sendTest: async (req, ctx) => ({ delivery: toProtoDelivery(await webhooks.sendTest(org(ctx), req.id)) }),
    listDeliveries: async (req, ctx) => {
      const page = await webhooks.listDeliveries(
        org(ctx),
        { endpointId: req.endpointId || undefined, jobId: req.jobId || undefined, status: deliveryStatusName(req.status) },
        parsePagination(req.pagination),
      );
      return { deliveries: page.items.map(toProtoDelivery), pagination: { nextCursor: page.nextCursor, totalCount: page.total } };
    },
    redeliver: async (req, ctx) => ({ delivery: toProtoDelivery(await webhooks.redeliver(org(ctx), req.id)) }),
  });
}
