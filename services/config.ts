import { tmpdir } from "node:os";
import { resolve } from "node:path";

import { parseAllowList } from "./net/network-guard.js";
import { RETRY_SCHEDULE_MS } from "./webhooks/dispatcher.js";

/** Typed configuration, read from the environment once at start and passed to constructors. */
export interface Config {
  port: number;
  host: string;
  /** PostgreSQL URL; unset means embedded PGlite in `dataDir/pglite`. */
  databaseUrl?: string;
  dataDir: string;
  /** 32-byte AES-256-GCM key for origin credentials (base64 or hex); unset = a key file in dataDir. */
  encryptionKey?: string;
  /** Whether API callers may create `local` origins (always limited to `localOriginRoots`). */
  allowLocalOrigins: boolean;
  /** Directories under which local origins may live. */
  localOriginRoots: string[];
  /**
   * CIDRs, IPs and host names that storage probes and transfers may reach although they are not
   * public (loopback, private, link-local...). Empty: only public addresses.
   */
  networkAllow: string[];
  watchHeartbeatMs: number;
  /** How often a Watch stream re-reads its job while the event bus is down. */
  watchPollMs: number;
  /** How long SIGTERM waits for in-flight calls before closing connections. */
  shutdownTimeoutMs: number;
  /** NATS server with JetStream; unset = the in-process queue and event bus (one process only). */
  natsUrl?: string;
  /** Prefix of every NATS subject and stream name, so installs (or tests) can share a server. */
  natsPrefix: string;
  /** JetStream replicas of the work stream (RENDITION_NATS_REPLICAS). */
  natsReplicas: number;
  worker: WorkerConfig;
  webhooks: WebhookConfig;
  /**
   * Base URL under which clients reach this server (signed upload and download URLs start with
   * it); unset: http://<host>:<port> of the listening socket (localhost for 0.0.0.0 / ::).
   */
  publicUrl?: string;
  /** Part size of S3 multipart uploads (RENDITION_UPLOAD_PART_BYTES; S3's minimum is 5 MiB). */
  uploadPartBytes: number;
  limits: OrganizationLimits;
}

/** Per-organization limits (docs/api.md, Limits); 0 turns one off. */
export interface OrganizationLimits {
  /** RPCs per second per organization, per API process (a token bucket refilled at this rate). */
  rateLimitRps: number;
  /** Bucket size: RPCs an organization may send at once after a quiet spell. */
  rateLimitBurst: number;
  /** Unfinished jobs (pending, probing, awaiting confirmation, processing) per organization; Create refuses more. */
  maxActiveJobsPerOrg: number;
}

/** The webhook dispatcher (API processes). */
export interface WebhookConfig {
  pollMs: number;
  /** One attempt (connect, send, answer) is cut off after this long. */
  timeoutMs: number;
  /** Waits between attempts; its length + 1 is the number of attempts. */
  retryScheduleMs: readonly number[];
  concurrency: number;
}

export interface WorkerConfig {
  concurrency: number;
  /** Lease on a running job and the queue's ack wait; a dead worker's job resumes after it. */
  leaseMs: number;
  maxAttempts: number;
  tmpDir: string;
  maxInputBytes: number;
  maxInputDurationMs: number;
  maxInputWidth: number;
  maxInputHeight: number;
  encodeTimeoutMinMs: number;
  /** An unfinished job with no lease and no change for this long is queued again. */
  stuckAfterMs: number;
  /** Chunked encoding across workers (docs/architecture.md, Chunked encoding). */
  chunking: { minInputSeconds: number; chunkSeconds: number; maxConcurrent: number };
  /** Threads of each ffmpeg run (decoder, filters, encoders); 0 = ffmpeg's choice (every core). */
  ffmpegThreads: number;
  /** rlimits and niceness of every ffmpeg/ffprobe process (workers/ffmpeg/types.ts ProcessLimits). */
  processLimits: { cpuSeconds: number; memoryBytes: number; nice: number };
  /**
   * Credentials for direct s3:// and gs:// inputs, with the buckets they may be used on: every
   * organization can name these URLs, so the keys must not reach buckets of the operator's.
   */
  inputS3?: { endpoint?: string; region: string; accessKeyId: string; secretAccessKey: string; buckets: string[] };
  inputGcs?: { accessKeyId: string; secretAccessKey: string; buckets: string[] };
}

export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got "${raw}"`);
  }
  return value;
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name]?.toLowerCase();
  if (raw === undefined || raw === "") return fallback;
  if (["1", "true", "yes", "on"].includes(raw)) return true;
  if (["0", "false", "no", "off"].includes(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got "${env[name]}"`);
}

function allowList(env: Env, name: string): string[] {
  const entries = (env[name] ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter(Boolean);
  try {
    parseAllowList(entries);
  } catch (err) {
    throw new ConfigError(`${name}: ${(err as Error).message}`);
  }
  return entries;
}

/** Both halves of a key pair or neither. */
function natsUrl(env: Env): string | undefined {
  const raw = env.NATS_URL || undefined;
  if (raw && !/^(nats|tls|wss?):\/\/[^\s]+$/.test(raw)) throw new ConfigError(`NATS_URL must be a nats:// URL, got "${raw}"`);
  return raw;
}

function publicUrl(env: Env): string | undefined {
  const raw = env.RENDITION_PUBLIC_URL || undefined;
  if (raw === undefined) return undefined;
  if (!/^https?:\/\/[^\s/?#]+(\/[^\s?#]*)?$/.test(raw)) throw new ConfigError(`RENDITION_PUBLIC_URL must be an http(s):// URL without query, got "${raw}"`);
  return raw.replace(/\/+$/, "");
}

function natsPrefix(env: Env): string {
  const raw = env.RENDITION_NATS_PREFIX || "rendition";
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(raw)) throw new ConfigError(`RENDITION_NATS_PREFIX must be 1-32 letters, digits, "_" or "-", got "${raw}"`);
  return raw;
}

function keyPair(env: Env, idName: string, secretName: string): { accessKeyId: string; secretAccessKey: string } | undefined {
  const accessKeyId = env[idName] || "";
  const secretAccessKey = env[secretName] || "";
  if (!accessKeyId && !secretAccessKey) return undefined;
  if (!accessKeyId || !secretAccessKey) throw new ConfigError(`set both ${idName} and ${secretName}, or neither`);
  return { accessKeyId, secretAccessKey };
}

/** Keys for direct input URLs need the list of buckets they may read. */
function bucketList(env: Env, name: string, keysName: string): string[] {
  const buckets = (env[name] ?? "").split(",").map((b) => b.trim()).filter(Boolean);
  if (buckets.length === 0) {
    throw new ConfigError(`${keysName} is set, so ${name} must list the buckets direct input URLs may read (comma-separated): every organization can name such URLs`);
  }
  return buckets;
}

function loadWorkerConfig(env: Env): WorkerConfig {
  const s3Keys = keyPair(env, "RENDITION_INPUT_S3_ACCESS_KEY_ID", "RENDITION_INPUT_S3_SECRET_ACCESS_KEY");
  const gcsKeys = keyPair(env, "RENDITION_INPUT_GCS_ACCESS_KEY_ID", "RENDITION_INPUT_GCS_SECRET_ACCESS_KEY");
  return {
    concurrency: integer(env, "RENDITION_WORKER_CONCURRENCY", 1, 1, 64),
    leaseMs: integer(env, "RENDITION_LEASE_MS", 30_000, 1_000, 600_000),
    maxAttempts: integer(env, "RENDITION_MAX_ATTEMPTS", 5, 1, 100),
    tmpDir: resolve(env.RENDITION_TMP_DIR || tmpdir()),
    maxInputBytes: integer(env, "RENDITION_MAX_INPUT_BYTES", 50 * 2 ** 30, 1, Number.MAX_SAFE_INTEGER),
    maxInputDurationMs: integer(env, "RENDITION_MAX_INPUT_DURATION_S", 12 * 3600, 1, 7 * 24 * 3600) * 1000,
    maxInputWidth: integer(env, "RENDITION_MAX_INPUT_WIDTH", 8192, 16, 65536),
    maxInputHeight: integer(env, "RENDITION_MAX_INPUT_HEIGHT", 8192, 16, 65536),
    encodeTimeoutMinMs: integer(env, "RENDITION_ENCODE_TIMEOUT_MIN_S", 600, 1, 7 * 24 * 3600) * 1000,
    stuckAfterMs: integer(env, "RENDITION_STUCK_AFTER_S", 300, 1, 7 * 24 * 3600) * 1000,
    ffmpegThreads: integer(env, "RENDITION_FFMPEG_THREADS", 0, 0, 64),
    processLimits: {
      cpuSeconds: integer(env, "RENDITION_FFMPEG_CPU_LIMIT_S", 0, 0, 30 * 24 * 3600),
      memoryBytes: integer(env, "RENDITION_FFMPEG_MEMORY_LIMIT_MB", 8192, 0, 1 << 24) * 2 ** 20,
      nice: integer(env, "RENDITION_FFMPEG_NICE", 10, 0, 19),
    },
    chunking: {
      minInputSeconds: integer(env, "RENDITION_CHUNK_MIN_INPUT_S", 120, 1, 7 * 24 * 3600),
      chunkSeconds: integer(env, "RENDITION_CHUNK_SECONDS", 60, 1, 3600),
      maxConcurrent: integer(env, "RENDITION_CHUNK_MAX_CONCURRENT", 4, 1, 1000),
    },
    inputS3: s3Keys && {
      endpoint: env.RENDITION_INPUT_S3_ENDPOINT || undefined,
      region: env.RENDITION_INPUT_S3_REGION || "us-east-1",
      ...s3Keys,
      buckets: bucketList(env, "RENDITION_INPUT_S3_BUCKETS", "RENDITION_INPUT_S3_ACCESS_KEY_ID"),
    },
    inputGcs: gcsKeys && { ...gcsKeys, buckets: bucketList(env, "RENDITION_INPUT_GCS_BUCKETS", "RENDITION_INPUT_GCS_ACCESS_KEY_ID") },
  };
}

function durationList(env: Env, name: string, fallback: readonly number[]): readonly number[] {
  const raw = env[name];
  if (!raw) return fallback;
  const values = raw.split(",").map((v) => Number(v.trim()));
  if (values.length === 0 || values.length > 50 || values.some((v) => !Number.isInteger(v) || v < 0 || v > 7 * 24 * 3600_000)) {
    throw new ConfigError(`${name} must be a comma-separated list of up to 50 waits in milliseconds, got "${raw}"`);
  }
  return values;
}

function loadLimits(env: Env): OrganizationLimits {
  const rateLimitRps = integer(env, "RENDITION_RATE_LIMIT_RPS", 50, 0, 1_000_000);
  // Generous by default: 4 s of the rate at once, for clients that fan out a batch of calls.
  const rateLimitBurst = integer(env, "RENDITION_RATE_LIMIT_BURST", Math.max(200, rateLimitRps), 1, 10_000_000);
  return { rateLimitRps, rateLimitBurst, maxActiveJobsPerOrg: integer(env, "RENDITION_MAX_ACTIVE_JOBS_PER_ORG", 1000, 0, 100_000_000) };
}

export function loadConfig(env: Env = process.env): Config {
  const dataDir = resolve(env.RENDITION_DATA_DIR || "./data");
  const databaseUrl = env.DATABASE_URL || undefined;
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError(`DATABASE_URL must be a postgres:// URL, got "${databaseUrl}"`);
  }
  // Not `storage`: that is the default organization's first-start origin, and an organization's
  // area under it would be readable through that origin.
  const roots = (env.RENDITION_LOCAL_ORIGIN_ROOTS || resolve(dataDir, "local-origins"))
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => resolve(p));
  return {
    port: integer(env, "PORT", 8080, 0, 65535),
    host: env.HOST || "0.0.0.0",
    databaseUrl,
    dataDir,
    encryptionKey: env.RENDITION_ENCRYPTION_KEY || undefined,
    // Embedded mode is one machine, so a local directory is the natural storage; a distributed
    // install must opt in, since API and workers then need a shared filesystem.
    allowLocalOrigins: boolean(env, "RENDITION_ALLOW_LOCAL_ORIGINS", !databaseUrl),
    localOriginRoots: roots,
    networkAllow: allowList(env, "RENDITION_NETWORK_ALLOW"),
    watchHeartbeatMs: integer(env, "RENDITION_WATCH_HEARTBEAT_MS", 30_000, 100, 3_600_000),
    watchPollMs: integer(env, "RENDITION_WATCH_POLL_MS", 1_000, 100, 60_000),
    shutdownTimeoutMs: integer(env, "RENDITION_SHUTDOWN_TIMEOUT_MS", 10_000, 0, 600_000),
    natsUrl: natsUrl(env),
    natsPrefix: natsPrefix(env),
    natsReplicas: integer(env, "RENDITION_NATS_REPLICAS", 1, 1, 5),
    worker: loadWorkerConfig(env),
    webhooks: {
      pollMs: integer(env, "RENDITION_WEBHOOK_POLL_MS", 1000, 10, 60_000),
      timeoutMs: integer(env, "RENDITION_WEBHOOK_TIMEOUT_MS", 10_000, 100, 60_000),
      retryScheduleMs: durationList(env, "RENDITION_WEBHOOK_RETRY_SCHEDULE_MS", RETRY_SCHEDULE_MS),
      concurrency: integer(env, "RENDITION_WEBHOOK_CONCURRENCY", 8, 1, 100),
    },
    publicUrl: publicUrl(env),
    uploadPartBytes: integer(env, "RENDITION_UPLOAD_PART_BYTES", 64 * 2 ** 20, 5 * 2 ** 20, 5 * 2 ** 30),
    limits: loadLimits(env),
  };
}
