import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { sql } from "kysely";
import { AuthRepository } from "./auth/auth.repository.js";
import { ApiKeyManager } from "./auth/api-key.service.js";
import { UsageManager } from "./usage/usage.service.js";
import { UsageRepository } from "./usage/usage.repository.js";
import type { Config } from "./config.js";
import { connectPglite, connectPostgres, type DatabaseHandle } from "./db/connect.js";
import { migrateToLatest } from "./db/migrate.js";
import { JobRepository } from "./jobs/job.repository.js";
import { JobRunRepository } from "./jobs/job-run.repository.js";
import { JobManager } from "./jobs/job.service.js";
import { CredentialCipher, parseEncryptionKey } from "./origins/credential-cipher.js";
import { OriginRepository } from "./origins/origin.repository.js";
import { OriginManager } from "./origins/origin.service.js";
import { PresetRepository } from "./presets/preset.repository.js";
import { PresetManager } from "./presets/preset.service.js";
import { createNetworkGuard, type NetworkGuard } from "./net/network-guard.js";
import { InProcessEventBus, type JobEventBus } from "./queue/event-bus.js";
import { createStorageDriver } from "./storage/storage-driver.js";
import { webhookUrlViolation } from "./webhooks/webhook-url.js";
import { WebhookRepository } from "./webhooks/webhook.repository.js";
import { WebhookManager } from "./webhooks/webhook.service.js";
import { LocalDriver } from "./storage/local.driver.js";
import { createS3Presigner } from "./storage/s3-presigner.js";
import { DownloadManager } from "./files/download.service.js";
import { UploadRepository } from "./files/upload.repository.js";
import { UploadManager } from "./files/upload.service.js";
import { PublicUrl, UrlSigner } from "./files/url-signer.js";

export interface App {
  database: DatabaseHandle;
  /** The writes workers make under a job's lease. */
  runs: JobRunRepository;
  jobRepository: JobRepository;
  /** Which caller-named hosts may be contacted (origins, input URLs). */
  guard: NetworkGuard;
  auth: AuthRepository;
  /** API keys over the API (ApiKeyService); the CLI's key commands share its repository. */
  apiKeys: ApiKeyManager;
  usage: UsageManager;
  origins: OriginManager;
  presets: PresetManager;
  jobs: JobManager;
  webhookRepository: WebhookRepository;
  webhooks: WebhookManager;
  /** Signed uploads of inputs and signed download URLs of outputs, under `publicUrl`. */
  uploads: UploadManager;
  downloads: DownloadManager;
  publicUrl: PublicUrl;
  events: JobEventBus;
  close(): Promise<void>;
}

export function openDatabase(config: Config): Promise<DatabaseHandle> | DatabaseHandle {
  return config.databaseUrl ? connectPostgres(config.databaseUrl) : connectPglite(join(config.dataDir, "pglite"));
}

/** Brings the schema up to date; on PostgreSQL over a connection of its own, with no query time limit. */
export async function migrate(config: Config, database: DatabaseHandle): Promise<string[]> {
  if (database.kind !== "postgres" || !config.databaseUrl) return migrateToLatest(database.db);
  const own = connectPostgres(config.databaseUrl, 1, 0);
  try {
    return await migrateToLatest(own.db);
  } finally {
    await own.close();
  }
}

/**
 * The credential key from RENDITION_ENCRYPTION_KEY, else a key file in the data directory,
 * created on first use. Replicas of a distributed install must share the same key.
 */
export function loadEncryptionKey(config: Config, log: (msg: string) => void): Buffer {
  if (config.encryptionKey) return parseEncryptionKey(config.encryptionKey);
  const file = join(config.dataDir, "encryption.key");
  if (!existsSync(file)) {
    mkdirSync(config.dataDir, { recursive: true });
    writeFileSync(file, randomBytes(32).toString("base64") + "\n", { mode: 0o600 });
    log(`created a credential encryption key in ${file}; set RENDITION_ENCRYPTION_KEY to share one across replicas`);
  }
  if (config.databaseUrl) {
    // A shared database with a per-machine key file: credentials written by one replica cannot
    // be decrypted by another. Still started, since a single replica works; but say so loudly.
    log(
      `warning: RENDITION_ENCRYPTION_KEY is not set, so origin credentials are encrypted with the key file ${file}. ` +
        "With DATABASE_URL every API and worker replica must use the same key: set RENDITION_ENCRYPTION_KEY " +
        "(32 bytes, base64 or hex) to this file's contents on all of them",
    );
  }
  return parseEncryptionKey(readFileSync(file, "utf8").trim());
}

/** Wires the domain to its adapters. Migrates the database first, so every entry point sees the newest schema. */
export async function createApp(config: Config, log: (msg: string) => void, events: JobEventBus = new InProcessEventBus()): Promise<App> {
  const database = await openDatabase(config);
  try {
    await migrate(config, database);
  } catch (err) {
    await database.close();
    throw err;
  }
  const encryptionKey = loadEncryptionKey(config, log);
  const cipher = new CredentialCipher(encryptionKey);
  // Probes connect to hosts that callers name (s3 endpoints, http base URLs): refuse the
  // internal network unless the operator allowed part of it.
  const guard = createNetworkGuard({ allow: config.networkAllow });
  const origins = new OriginManager(
    new OriginRepository(database.db),
    cipher,
    async (originConfig, basePath, permissions) => {
      const driver = createStorageDriver(originConfig, { guard });
      try {
        await driver.probe(basePath, permissions);
      } finally {
        driver.destroy?.();
      }
    },
    { allowLocalOrigins: config.allowLocalOrigins, localOriginRoots: config.localOriginRoots },
  );
  const presets = new PresetManager(new PresetRepository(database.db));
  const jobRepository = new JobRepository(database.db);
  const checkWebhookUrl = (url: string, field: string) => webhookUrlViolation(url, field, guard);
  const jobs = new JobManager(jobRepository, origins, presets, events, checkWebhookUrl, { maxActiveJobs: config.limits.maxActiveJobsPerOrg });
  const webhookRepository = new WebhookRepository(database.db);
  const auth = new AuthRepository(database.db);
  const signer = new UrlSigner(encryptionKey);
  const publicUrl = new PublicUrl(config.publicUrl);
  const presigner = (s3: Parameters<typeof createS3Presigner>[0]) => createS3Presigner(s3, { guard });
  const uploads = new UploadManager(
    new UploadRepository(database.db),
    origins,
    { s3: presigner, local: (local) => new LocalDriver(local) },
    signer,
    publicUrl,
    { maxBytes: config.worker.maxInputBytes, partBytes: config.uploadPartBytes },
  );
  const downloads = new DownloadManager(jobs, origins, presigner, signer, publicUrl);
  return {
    database,
    runs: new JobRunRepository(database.db),
    jobRepository,
    guard,
    auth,
    apiKeys: new ApiKeyManager(auth),
    usage: new UsageManager(new UsageRepository(database.db)),
    origins,
    presets,
    jobs,
    webhookRepository,
    webhooks: new WebhookManager(webhookRepository, cipher, checkWebhookUrl),
    uploads,
    downloads,
    publicUrl,
    events,
    async close() {
      await events.close();
      await database.close();
    },
  };
}

export async function checkDatabase(handle: DatabaseHandle): Promise<void> {
  await sql`SELECT 1`.execute(handle.db);
}
