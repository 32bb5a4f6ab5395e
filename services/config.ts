import { resolve } from "node:path";

import { parseAllowList } from "./net/network-guard.js";

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
  /** How long SIGTERM waits for in-flight calls before closing connections. */
  shutdownTimeoutMs: number;
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
    shutdownTimeoutMs: integer(env, "RENDITION_SHUTDOWN_TIMEOUT_MS", 10_000, 0, 600_000),
  };
}
