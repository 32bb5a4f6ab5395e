import { parseArgs } from "node:util";
import { createApiServer } from "./api/server.js";
import { checkDatabase, createApp, migrate, openDatabase } from "./app.js";
import { bootstrapIfEmpty, describeCredentials } from "./bootstrap.js";
import { ConfigError, loadConfig, type Config } from "./config.js";
import { DatabaseInUseError } from "./db/connect.js";
import { openMessaging, prepareSample, startRelay, startWebhookDispatcher, startWorker } from "./runtime.js";

const USAGE = `Usage: npm start -- [command]

Commands:
  all                     API and encoder in one process (default; embedded defaults)
  api                     the API server only (PORT, DATABASE_URL, NATS_URL)
  worker                  the encoder worker only (DATABASE_URL, NATS_URL)
  migrate                 apply database migrations and exit
  org create NAME         create an organization; prints its id
  key create --org ID [--name NAME] [--test]
                          create an API key for an organization (--test: an rnd_test_ key, whose
                          jobs are free test jobs); prints the key once
  key revoke KEY_ID       revoke an API key (even the organization's last one)
  (While the server runs, manage keys over the API instead: ApiKeyService, docs/api.md.)

Configuration (environment): PORT, HOST, DATABASE_URL, RENDITION_DATA_DIR, RENDITION_ENCRYPTION_KEY,
RENDITION_ALLOW_LOCAL_ORIGINS, RENDITION_LOCAL_ORIGIN_ROOTS, RENDITION_WATCH_HEARTBEAT_MS,
RENDITION_SHUTDOWN_TIMEOUT_MS, NATS_URL, RENDITION_WORKER_CONCURRENCY, RENDITION_LEASE_MS, FFMPEG_PATH,
FFPROBE_PATH and more: see README.md.`;

/** Diagnostics go to stderr; stdout carries only results (credentials banner, admin command JSON). */
const log = (msg: string, err?: unknown) => {
  const line = `${new Date().toISOString()} ${msg}`;
  if (err) console.error(line, err);
  else console.error(line);
};

/**
 * Of the shutdown timeout, what is kept for handing running jobs back (kill ffmpeg, release the
 * lease, nak the message, close connections): at most 2 s, and never more than half of it.
 */
function handBackReserveMs(timeoutMs: number): number {
  return Math.min(2_000, Math.floor(timeoutMs / 2));
}
/** How long past the shutdown timeout a stuck shutdown is cut short. */
const SHUTDOWN_OVERRUN_MS = 5_000;

/**
 * Runs the API, the encoder, or both in one process. Work goes through the outbox relay to the
 * queue (JetStream with NATS_URL, else in memory), so both halves use the same path either way.
 */
async function runServices(config: Config, roles: { api: boolean; worker: boolean }): Promise<void> {
  if (roles.worker && !roles.api && (!config.databaseUrl || !config.natsUrl)) {
    throw new ConfigError(
      "a separate worker needs DATABASE_URL and NATS_URL (shared with the API processes); for one process on embedded defaults run `npm start` (all)",
    );
  }
  if (roles.api && !roles.worker && !config.natsUrl) {
    log("warning: NATS_URL is not set, so this API queues work in its own memory and no worker can see it; set NATS_URL here and on the workers, or run `all`");
  }
  const role = roles.api && roles.worker ? "all" : roles.api ? "api" : "worker";
  const messaging = await openMessaging(config, role, log);
  const app = await createApp(config, log, messaging.events).catch(async (err) => {
    await messaging.close();
    throw err;
  });
  const credentials = roles.api ? await bootstrapIfEmpty(app, config) : undefined;
  const relay = roles.api ? await startRelay(app, messaging, config, log) : undefined;
  const dispatcher = roles.api ? startWebhookDispatcher(app, config, log, relay) : undefined;
  const encoder = roles.worker ? await startWorker(app, messaging, config, log) : undefined;
  const worker = encoder?.worker;
  // A first start in one process gets a clip to try the printed command on.
  const sample = credentials && encoder ? await prepareSample(encoder.tools, config, log) : undefined;
  const server = roles.api
    ? createApiServer({
        ...app,
        keys: app.auth,
        watch: { heartbeatMs: config.watchHeartbeatMs, pollMs: config.watchPollMs, progressDebounceMs: 200 },
        checkDatabase: () => checkDatabase(app.database),
        log,
        shutdownTimeoutMs: config.shutdownTimeoutMs,
        rateLimit: config.limits,
      })
    : undefined;
  if (server) {
    const port = await server.listen(config.port, config.host);
    const database = app.database.kind === "pglite" ? `embedded PGlite in ${config.dataDir}` : "PostgreSQL";
    const where = roles.worker ? "encoder in this process" : "no encoder in this process";
    log(`rendition API listening on ${config.host}:${port} (database: ${database}; queue: ${messaging.kind}; ${where})`);
    if (credentials) console.log(describeCredentials(credentials, config, port, sample));
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: finishing in-flight calls and shutting down`);
    // Should anything below hang (a database that stopped answering), the process still ends.
    setTimeout(() => {
      log(`shutdown did not finish within ${config.shutdownTimeoutMs + SHUTDOWN_OVERRUN_MS} ms; exiting`);
      process.exit(1);
    }, config.shutdownTimeoutMs + SHUTDOWN_OVERRUN_MS).unref();
    // Both within the timeout: in-flight calls drain while running encodes get the time to finish
    // that the hand-back leaves; what is still encoding then goes back for another worker.
    await Promise.all([server?.close(), worker?.stop(config.shutdownTimeoutMs - handBackReserveMs(config.shutdownTimeoutMs))]);
    await relay?.stop();
    await dispatcher?.stop();
    await messaging.close();
    await app.close();
    log("stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

async function withApp<T>(config: Config, fn: (app: Awaited<ReturnType<typeof createApp>>) => Promise<T>): Promise<T> {
  const app = await createApp(config, log);
  try {
    return await fn(app);
  } finally {
    await app.close();
  }
}

class UsageError extends Error {}

/** Runs an argument parser, turning its complaints into usage errors (exit 2, usage printed). */
function parseOptions<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS_")) throw new UsageError((err as Error).message);
    throw err;
  }
}

async function main(argv: string[]): Promise<number> {
  const config = loadConfig();
  const [command = "all", ...rest] = argv;
  switch (command) {
    case "all":
    case "api":
    case "worker":
      await runServices(config, { api: command !== "worker", worker: command !== "api" });
      return -1; // keep running
    case "migrate": {
      const database = await openDatabase(config);
      try {
        const applied = await migrate(config, database);
        console.log(applied.length ? `applied: ${applied.join(", ")}` : "database is up to date");
      } finally {
        await database.close();
      }
      return 0;
    }
    case "org": {
      const [sub, ...names] = rest;
      const name = names.join(" ").trim();
      if (sub !== "create" || !name) break;
      // The organization's webhook secret (it signs deliveries to its jobs' webhook_url) is shown once, here.
      const { org, webhookSecret } = await withApp(config, async (app) => {
        const org = await app.auth.createOrganization(name);
        return { org, webhookSecret: await app.webhooks.createOrganizationSecret(org.id) };
      });
      console.log(JSON.stringify({ organization_id: org.id, name: org.name, webhook_secret: webhookSecret }));
      return 0;
    }
    case "key": {
      const [sub, ...args] = rest;
      if (sub === "create") {
        const { values } = parseOptions(() =>
          parseArgs({ args, options: { org: { type: "string" }, name: { type: "string" }, test: { type: "boolean" } } }),
        );
        if (!values.org) break;
        const key = await withApp(config, async (app) => {
          if (!(await app.auth.organizationExists(values.org!))) throw new ConfigError(`organization ${values.org} does not exist`);
          return app.apiKeys.create(values.org!, { name: values.name ?? "", test: values.test ?? false });
        });
        console.log(JSON.stringify({ key_id: key.id, organization_id: key.organizationId, api_key: key.key, test: key.record.test }));
        console.error("The api_key is shown only once: store it now.");
        return 0;
      }
      if (sub === "revoke" && args[0]) {
        // The operator's way back in: unlike ApiKeyService.Revoke it may revoke the last key
        // (`key create` makes another), so it skips the lockout guard.
        const revoked = await withApp(config, (app) => app.auth.revokeApiKey(args[0]!));
        if (revoked) console.log(`revoked ${args[0]}`);
        else console.error(`no active key ${args[0]}`);
        return revoked ? 0 : 1;
      }
      break;
    }
    case "help":
    case "--help":
    case "-h":
      console.log(USAGE);
      return 0;
  }
  console.error(USAGE);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      console.error(`error: ${err.message}\n\n${USAGE}`);
      process.exit(2);
    }
    if (err instanceof ConfigError || err instanceof DatabaseInUseError) console.error(`error: ${err.message}`);
    else console.error("fatal:", err);
    process.exit(1);
  },
);
