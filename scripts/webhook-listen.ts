/**
 * `npm run webhook:listen [-- --port 4000] [--secret whsec_...] [--json]`: a local webhook
 * receiver that verifies every delivery's Standard Webhooks signature and prints one line per
 * event (the same receiver as `rendition webhooks listen`: cli/webhook-listener.ts).
 * The secret comes from --secret, RENDITION_WEBHOOK_SECRET, or the first-start credentials file
 * (RENDITION_DATA_DIR/credentials.json, `webhook_secret`: it signs per-job webhook_url deliveries).
 */
import { parseArgs } from "node:util";
import { webhookSecretFromFiles } from "../cli/credentials.js";
import { deliveryJson, formatDelivery, listeningLine, startWebhookListener } from "../cli/webhook-listener.js";

const { values } = parseArgs({
  options: { port: { type: "string", default: "4000" }, host: { type: "string", default: "127.0.0.1" }, secret: { type: "string" }, json: { type: "boolean", default: false } },
});

const secret = values.secret ?? process.env.RENDITION_WEBHOOK_SECRET ?? webhookSecretFromFiles({});
if (!secret) {
  console.error("no secret: pass --secret whsec_..., set RENDITION_WEBHOOK_SECRET, or run from the directory whose data/credentials.json has webhook_secret");
  process.exit(2);
}
const listener = await startWebhookListener({
  port: Number(values.port),
  host: values.host,
  secret,
  onDelivery: (delivery) => console.log(values.json ? JSON.stringify(deliveryJson(delivery)) : formatDelivery(delivery)),
});
console.log(listeningLine(values.host, listener.port, secret));
const stop = () => void listener.close().then(() => process.exit(0));
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
