import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Where and as whom the CLI calls the API. */
export interface ResolvedCredentials {
  url: string;
  apiKey: string;
  organizationId: string;
  /** The first start's read/write local origin, when the credentials file was found. */
  localOriginId?: string;
  /** Signs deliveries to per-job webhook_url addresses (credentials file only). */
  webhookSecret?: string;
  /** Which file the credentials came from, if any. */
  file?: string;
}

/** What bootstrap.ts writes to RENDITION_DATA_DIR/credentials.json on a first start. */
interface CredentialsFile {
  organization_id?: string;
  api_key?: string;
  local_origin_id?: string;
  webhook_secret?: string;
}

export interface CredentialFlags {
  url?: string;
  apiKey?: string;
  org?: string;
  dataDir?: string;
}

/** A configuration or usage error found before any call: printed as `error: <code>: <message>`, exit 2. */
export class CliUsageError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The clone this CLI runs from (bin/ and cli/ sit at its root): `npm start` there writes ./data. */
const CLONE_ROOT = fileURLToPath(new URL("..", import.meta.url));

export const DEFAULT_URL = "http://localhost:8080";

/**
 * Credentials files to look at, in order: `--data-dir`, else RENDITION_DATA_DIR (as the server
 * resolves it, against the current directory), else `./data` and then the clone's own `data/`,
 * so `npx rendition` in a subdirectory or another directory still finds what `npm start` wrote.
 */
export function credentialFileCandidates(flags: CredentialFlags, env: NodeJS.ProcessEnv, cwd: string): string[] {
  const explicit = flags.dataDir ?? env.RENDITION_DATA_DIR;
  if (explicit) return [join(resolve(cwd, explicit), "credentials.json")];
  return [...new Set([join(resolve(cwd, "data"), "credentials.json"), join(CLONE_ROOT, "data", "credentials.json")])];
}

function readCredentialsFile(file: string): CredentialsFile | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
  try {
    return JSON.parse(text) as CredentialsFile;
  } catch (err) {
    throw new CliUsageError("bad_credentials_file", `${file} is not JSON: ${(err as Error).message}`);
  }
}

/**
 * Flags win over the environment (RENDITION_URL, RENDITION_API_KEY, RENDITION_ORG), which wins
 * over the embedded server's credentials file. The file is only read for what flags and
 * environment leave unset, and a key from one place is never paired with an organization from
 * another unless both were given explicitly.
 */
export function resolveCredentials(flags: CredentialFlags, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): ResolvedCredentials {
  const url = (flags.url ?? env.RENDITION_URL ?? DEFAULT_URL).replace(/\/+$/, "");
  let apiKey = flags.apiKey ?? env.RENDITION_API_KEY;
  let organizationId = flags.org ?? env.RENDITION_ORG;
  const candidates = credentialFileCandidates(flags, env, cwd);
  let file: string | undefined;
  let stored: CredentialsFile | undefined;
  for (const candidate of candidates) {
    stored = readCredentialsFile(candidate);
    if (stored) {
      file = candidate;
      break;
    }
  }
  if (stored && (!apiKey || apiKey === stored.api_key)) {
    apiKey ??= stored.api_key;
    organizationId ??= stored.organization_id;
  }
  const where = `looked for ${candidates.join(" and ")}`;
  if (!apiKey) {
    throw new CliUsageError(
      "missing_credentials",
      `no API key: pass --api-key, set RENDITION_API_KEY, or start the server once with \`npm start\` (it writes data/credentials.json; ${where})`,
    );
  }
  if (!organizationId) {
    throw new CliUsageError("missing_credentials", `no organization: pass --org or set RENDITION_ORG (the organization the API key belongs to)`);
  }
  const fromFile = stored && apiKey === stored.api_key;
  return {
    url,
    apiKey,
    organizationId,
    localOriginId: fromFile ? stored!.local_origin_id : undefined,
    webhookSecret: stored?.webhook_secret,
    file: fromFile ? file : undefined,
  };
}

/** The first-start webhook secret, for `webhooks listen` (no API key needed). */
export function webhookSecretFromFiles(flags: CredentialFlags, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string | undefined {
  for (const candidate of credentialFileCandidates(flags, env, cwd)) {
    const stored = readCredentialsFile(candidate);
    if (stored?.webhook_secret) return stored.webhook_secret;
  }
  return undefined;
}
