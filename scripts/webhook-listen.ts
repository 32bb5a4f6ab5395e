/**
 * `npm run webhook:listen [-- --port 4000] [--secret whsec_...]`: a local webhook receiver that
 * verifies every delivery's Standard Webhooks signature and prints one line per event.
 * The secret comes from --secret, RENDITION_WEBHOOK_SECRET, or the first-start credentials file
 * (RENDITION_DATA_DIR/credentials.json, `webhook_secret`: it signs per-job webhook_url deliveries).
 * Answers 204 to a verified delivery and 401 to anything else, so the sender's history shows it.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Webhook } from "standardwebhooks";

const { values } = parseArgs({
  options: { port: { type: "string", default: "4000" }, host: { type: "string", default: "127.0.0.1" }, secret: { type: "string" }, json: { type: "boolean", default: false } },
});

function secretFromCredentials(): string | undefined {
  const file = join(resolve(process.env.RENDITION_DATA_DIR || "./data"), "credentials.json");
  try {
    return (JSON.parse(readFileSync(file, "utf8")) as { webhook_secret?: string }).webhook_secret;
  } catch {
    return undefined;
  }
}

const secret = values.secret ?? process.env.RENDITION_WEBHOOK_SECRET ?? secretFromCredentials();
if (!secret) {
  console.error("no secret: pass --secret whsec_..., set RENDITION_WEBHOOK_SECRET, or run from the directory whose data/credentials.json has webhook_secret");
  process.exit(2);
}
const verifier = new Webhook(secret);

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
    try {
      const event = verifier.verify(body, headers) as { type: string; data?: { id?: string; status?: string; progress?: number }; output_id?: string; progress_milestone?: number };
      if (values.json) console.log(JSON.stringify({ verified: true, webhook_id: headers["webhook-id"], ...event }));
      else console.log(`verified ${headers["webhook-id"]} ${event.type} ${event.data?.id ?? ""} ${event.data?.status ?? ""} ${event.data?.progress ?? ""}%${event.progress_milestone ? ` (milestone ${event.progress_milestone} %)` : ""}${event.output_id ? ` output ${event.output_id}` : ""}`);
      res.writeHead(204).end();
    } catch (err) {
      console.log(values.json ? JSON.stringify({ verified: false, webhook_id: headers["webhook-id"] ?? "", error: (err as Error).message }) : `REFUSED ${headers["webhook-id"] ?? "(no webhook-id)"}: ${(err as Error).message}`);
      res.writeHead(401, { "content-type": "text/plain" }).end("signature did not verify");
    }
  });
});
server.listen(Number(values.port), values.host, () => {
  console.log(`listening for webhooks on http://${values.host === "127.0.0.1" ? "localhost" : values.host}:${values.port}/ (secret ${secret.slice(0, 12)}...)`);
});
process.on("SIGINT", () => server.close(() => process.exit(0)));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
