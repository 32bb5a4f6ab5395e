import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sql } from "kysely";
import type { App } from "./app.js";
import { AuthRepository } from "./auth/auth.repository.js";
import { OriginRepository } from "./origins/origin.repository.js";
import type { Config } from "./config.js";
import { WebhookRepository } from "./webhooks/webhook.repository.js";

export interface Credentials {
  organization_id: string;
  api_key: string;
  local_origin_id: string;
  /** Signs deliveries to per-job webhook_url addresses (Standard Webhooks, whsec_...). */
  webhook_secret: string;
}

/** Advisory lock id ("rend") serialising first-start bootstraps of replicas sharing one database. */
const BOOTSTRAP_LOCK = 0x72656e64;

/** Where the first start's `local` origin keeps its files. */
export function defaultStorageDir(config: Pick<Config, "dataDir">): string {
  return join(config.dataDir, "storage");
}

/**
 * First start on an empty database: one organization, an API key and a read/write local origin
 * rooted at `dataDir/storage`, so a fresh install can be used at once. The key is shown once and
 * written to `dataDir/credentials.json` (mode 0600). All of it happens in one transaction under
 * an advisory lock: replicas starting together bootstrap once, and a failure (say, an unusable
 * storage directory) leaves nothing half-made for the next start to trip over. Returns undefined
 * when organizations exist.
 */
export async function bootstrapIfEmpty(app: App, config: Config): Promise<Credentials | undefined> {
  const rootDir = defaultStorageDir(config);
  return app.database.db.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(${BOOTSTRAP_LOCK})`.execute(trx);
    const auth = new AuthRepository(trx);
    if ((await auth.countOrganizations()) > 0) return undefined;
    const org = await auth.createOrganization("Default organization");
    const key = await auth.createApiKey(org.id, "bootstrap");
    mkdirSync(rootDir, { recursive: true });
    const origin = await app.origins.withRepository(new OriginRepository(trx)).create(
      org.id,
      {
        name: "Local storage",
        description: `The server's directory ${rootDir}`,
        permissions: ["read", "write"],
        basePath: "",
        pathTemplate: "",
        local: { rootDir },
        httpHeaders: {},
      },
      { trusted: true },
    );
    const webhookSecret = await app.webhooks.createOrganizationSecret(org.id, new WebhookRepository(trx));
    const credentials: Credentials = { organization_id: org.id, api_key: key.key, local_origin_id: origin.id, webhook_secret: webhookSecret };
    const file = join(config.dataDir, "credentials.json");
    writeFileSync(file, JSON.stringify(credentials, null, 2) + "\n", { mode: 0o600 });
    chmodSync(file, 0o600); // mode only applies when the file is created
    return credentials;
  });
}

/**
 * The banner printed after a first start: the credentials and a curl command to paste. With an
 * encoder in the process, a sample clip is waiting in the local origin, so the command works as is.
 */
export function describeCredentials(credentials: Credentials, config: Config, port: number, sample?: string): string {
  const host = config.host === "0.0.0.0" || config.host === "::" ? "localhost" : config.host;
  const base = `http://${host}:${port}`;
  const auth = [`    -H 'Authorization: Bearer ${credentials.api_key}' \\`, `    -H 'X-Organization-ID: ${credentials.organization_id}' \\`];
  const input = sample ?? "input.mp4";
  return [
    "",
    "First start: created an organization, an API key and a local storage origin.",
    `  organization_id: ${credentials.organization_id}`,
    `  api_key:         ${credentials.api_key}   (shown once; also in ${join(config.dataDir, "credentials.json")})`,
    `  local_origin_id: ${credentials.local_origin_id}   (${defaultStorageDir(config)})`,
    `  webhook_secret:  ${credentials.webhook_secret.slice(0, 12)}…   (signs deliveries to a job's webhook_url; in credentials.json)`,
    "",
    sample
      ? `Try it: turn the sample clip ${join(defaultStorageDir(config), sample)} into a 720p H.264 mp4:`
      : "Try it: put a video at " + join(defaultStorageDir(config), input) + " and run",
    `  curl -sS -X POST ${base}/rendition.v1.JobService/Create \\`,
    ...auth,
    `    -H 'Content-Type: application/json' \\`,
    `    -d '{"input_origin_id": "${credentials.local_origin_id}", "input_path": "${input}", "output_origin_id": "${credentials.local_origin_id}", "outputs": [{"type": "OUTPUT_TYPE_MP4", "video": [{"codec": "VIDEO_CODEC_H264", "resolution": "RESOLUTION_720P"}]}]}'`,
    "Then ask for the job (its output_url is the file written):",
    `  curl -sS -X POST ${base}/rendition.v1.JobService/Get \\`,
    ...auth,
    `    -H 'Content-Type: application/json' -d '{"id": "JOB_ID_FROM_ABOVE"}'`,
    "Or from the command line (it reads these credentials): npx rendition submit FILE --watch",
    `The web dashboard: ${base}/   (sign in with the api_key and organization_id above)`,
    "",
  ].join("\n");
}
