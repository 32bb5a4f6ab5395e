import type { Command } from "commander";
import { WebhookDeliveryStatusSchema, WebhookEndpointStatusSchema, type WebhookEndpoint } from "../gen/rendition/v1/webhook_pb.js";
import { enumLabel } from "./client.js";
import { CliUsageError, webhookSecretFromFiles } from "./credentials.js";
import { integer, nextPageHint, pagination, type Context, type PageFlags } from "./context.js";
import { printJson, printTable } from "./output.js";
import { deliveryJson, formatDelivery, listeningLine, startWebhookListener } from "./webhook-listener.js";

type Run = (command: Command, action: (ctx: Context) => Promise<void>) => Promise<void>;

const endpointRow = (e: WebhookEndpoint) => [e.id, e.url, enumLabel(WebhookEndpointStatusSchema, e.status), e.eventTypes.length ? e.eventTypes.join(",") : "(all events)"];

export function registerWebhooks(program: Command, run: Run, env: NodeJS.ProcessEnv): void {
  const webhooks = program.command("webhooks").description("webhook endpoints, and a local receiver that verifies signatures");

  webhooks
    .command("listen")
    .description("receive webhooks locally: verify each Standard Webhooks signature and print one line per event (NDJSON with --json)")
    .option("--port <port>", "port to listen on (0: any free port)", integer("--port", 0, 65535), 4000)
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--secret <whsec>", "the signing secret (default: RENDITION_WEBHOOK_SECRET, else the first start's webhook_secret in credentials.json)")
    .action((options: { port: number; host: string; secret?: string }, command: Command) =>
      run(command, async (ctx) => {
        const secret = options.secret ?? env.RENDITION_WEBHOOK_SECRET ?? webhookSecretFromFiles(ctx.flags, env);
        if (!secret) throw new CliUsageError("missing_credentials", "no webhook secret: pass --secret whsec_..., set RENDITION_WEBHOOK_SECRET, or run where `npm start` wrote data/credentials.json");
        const listener = await startWebhookListener({
          port: options.port,
          host: options.host,
          secret,
          onDelivery: (delivery) => ctx.io.out(ctx.json ? JSON.stringify(deliveryJson(delivery)) : formatDelivery(delivery)),
        });
        const line = listeningLine(options.host, listener.port, secret);
        if (ctx.json) ctx.io.err(line);
        else ctx.io.out(line);
        await new Promise<void>((resolve) => {
          const stop = () => void listener.close().then(resolve);
          process.once("SIGINT", stop);
          process.once("SIGTERM", stop);
        });
      }),
    );

  webhooks
    .command("list")
    .option("--limit <n>", "page size", integer("--limit", 1, 100))
    .option("--cursor <cursor>", "the next page")
    .action((options: PageFlags, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().webhooks.list({ pagination: pagination(options) });
        if (ctx.json) return printJson(ctx.io, res);
        printTable(ctx.io, ["ID", "URL", "STATUS", "EVENTS"], res.endpoints.map(endpointRow), "webhook endpoints");
        nextPageHint(ctx, res.pagination?.nextCursor, res.pagination?.totalCount);
      }),
    );

  webhooks
    .command("create")
    .description("an endpoint that receives every job's events; prints its signing secret once")
    .argument("<url>", "https, or http to a host the server's RENDITION_NETWORK_ALLOW lists")
    .option("--events <list>", "comma-separated event types (default: all), e.g. job.completed,job.failed")
    .option("--description <text>")
    .action((url: string, options: { events?: string; description?: string }, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().webhooks.create({ url, description: options.description ?? "", eventTypes: (options.events ?? "").split(",").filter(Boolean) });
        if (ctx.json) return printJson(ctx.io, res);
        ctx.io.out(res.secret);
        ctx.io.err(`created ${res.endpoint!.id} for ${res.endpoint!.url}; its signing secret above is shown once (\`rendition webhooks listen --secret ...\` verifies with it)`);
      }),
    );

  webhooks
    .command("delete")
    .argument("<id>", "endpoint id")
    .action((id: string, _o: unknown, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().webhooks.delete({ id });
        if (ctx.json) return printJson(ctx.io, res);
        ctx.io.out(`deleted ${id}`);
      }),
    );

  webhooks
    .command("test")
    .description("send a webhook.test event to an endpoint now")
    .argument("<id>", "endpoint id")
    .action((id: string, _o: unknown, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().webhooks.sendTest({ id });
        if (ctx.json) return printJson(ctx.io, res);
        const d = res.delivery!;
        const last = d.attempts.at(-1);
        ctx.io.out(`${d.id} ${enumLabel(WebhookDeliveryStatusSchema, d.status)}${last ? ` (HTTP ${last.responseStatus}${last.error ? `: ${last.error}` : ""})` : ""}`);
      }),
    );
}
