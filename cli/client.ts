import type { DescEnum } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ApiKeyService } from "../gen/rendition/v1/account_pb.js";
import { JobService } from "../gen/rendition/v1/job_pb.js";
import { OriginService } from "../gen/rendition/v1/origin_pb.js";
import { PresetService } from "../gen/rendition/v1/preset_pb.js";
import { UploadService } from "../gen/rendition/v1/upload_pb.js";
import { WebhookService } from "../gen/rendition/v1/webhook_pb.js";
import { CliUsageError, type ResolvedCredentials } from "./credentials.js";

export interface Clients {
  credentials: ResolvedCredentials;
  jobs: Client<typeof JobService>;
  uploads: Client<typeof UploadService>;
  origins: Client<typeof OriginService>;
  presets: Client<typeof PresetService>;
  keys: Client<typeof ApiKeyService>;
  webhooks: Client<typeof WebhookService>;
}

/** The generated Connect clients over one HTTP/1.1 transport (binary protobuf), authenticated as `credentials`. */
export function createClients(credentials: ResolvedCredentials): Clients {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${credentials.apiKey}`);
    req.header.set("x-organization-id", credentials.organizationId);
    return next(req);
  };
  const transport = createConnectTransport({ baseUrl: credentials.url, httpVersion: "1.1", useBinaryFormat: true, interceptors: [auth] });
  return {
    credentials,
    jobs: createClient(JobService, transport),
    uploads: createClient(UploadService, transport),
    origins: createClient(OriginService, transport),
    presets: createClient(PresetService, transport),
    keys: createClient(ApiKeyService, transport),
    webhooks: createClient(WebhookService, transport),
  };
}

/**
 * The API's lower-case spelling of each enum value (`RESOLUTION_1080P` → `1080p`): the name
 * without the enum's prefix, as services/api/enum-aliases.ts accepts it on JSON requests. The
 * same rule, restated here so the CLI does not load the server's request pipeline at start.
 */
function enumAliases(desc: DescEnum): Map<string, string> {
  const prefix = `${desc.name.slice(0, 1)}${desc.name.slice(1).replace(/[A-Z]/g, (c) => `_${c}`)}_`.toLowerCase();
  const map = new Map<string, string>();
  for (const value of desc.values) {
    const lower = value.name.toLowerCase();
    if (lower.startsWith(prefix) && lower.length > prefix.length) map.set(lower.slice(prefix.length), value.name);
  }
  return map;
}

/**
 * An enum flag's value: the API's lower-case alias (`mp4`, `h264`, `1080p`, `awaiting_confirmation`)
 * or the canonical name (`OUTPUT_TYPE_MP4`), case-insensitively. Anything else is a usage error
 * naming the flag and the accepted values.
 */
export function parseEnumFlag(desc: DescEnum, flag: string, value: string): number {
  const upper = value.toUpperCase();
  const canonical = desc.values.find((v) => v.name === upper) ?? desc.values.find((v) => v.name === enumAliases(desc).get(value.toLowerCase()));
  if (!canonical || canonical.number === 0) {
    const known = [...enumAliases(desc).keys()].filter((alias) => alias !== "unspecified");
    throw new CliUsageError("invalid_argument", `${flag}: unknown value ${JSON.stringify(value)}; expected one of ${known.join(", ")}`);
  }
  return canonical.number;
}

/** The proto name of an enum value (`JOB_STATUS_COMPLETED`), or the number when the schema does not know it. */
export function enumName(desc: DescEnum, value: number): string {
  return desc.value[value]?.name ?? String(value);
}

/** The alias (`completed`, `mp4`) of an enum value, for human-readable output. */
export function enumLabel(desc: DescEnum, value: number): string {
  const name = enumName(desc, value);
  for (const [alias, canonical] of enumAliases(desc)) if (canonical === name) return alias;
  return name.toLowerCase();
}
