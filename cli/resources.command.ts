import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { Command } from "commander";
import { QualitySchema, ResolutionSchema, VideoCodecSchema } from "../gen/rendition/v1/common_pb.js";
import { OriginPermissionSchema, OriginProviderSchema, OriginServiceCreateRequestSchema, OriginStatusSchema } from "../gen/rendition/v1/origin_pb.js";
import { ContainerSchema, DeliveryFormatSchema, PresetSpecSchema, type Preset } from "../gen/rendition/v1/preset_pb.js";
import type { ApiKey } from "../gen/rendition/v1/account_pb.js";
import { enumLabel, parseEnumFlag } from "./client.js";
import { CliUsageError } from "./credentials.js";
import { collect, integer, keyValues, messageFromJsonFlag, nextPageHint, pagination, type Context, type PageFlags } from "./context.js";
import { when } from "./jobs.command.js";
import { printJson, printTable } from "./output.js";

type Run = (command: Command, action: (ctx: Context) => Promise<void>) => Promise<void>;

// --- origins ------------------------------------------------------------------------------------

interface OriginCreateFlags {
  name: string;
  description?: string;
  permissions: string;
  basePath?: string;
  pathTemplate?: string;
  local?: string;
  s3Bucket?: string;
  s3Region?: string;
  s3Endpoint?: string;
  s3ForcePathStyle?: boolean;
  s3AccessKeyId?: string;
  s3SecretAccessKey?: string;
  httpBaseUrl?: string;
  httpHeader: string[];
}

export function originRequest(flags: OriginCreateFlags) {
  const kinds = [flags.local !== undefined, flags.s3Bucket !== undefined, flags.httpBaseUrl !== undefined].filter(Boolean).length;
  if (kinds !== 1) throw new CliUsageError("invalid_argument", "say where the origin is: exactly one of --local DIR, --s3-bucket B or --http-base-url URL");
  const init: MessageInitShape<typeof OriginServiceCreateRequestSchema> = {
    name: flags.name,
    description: flags.description ?? "",
    permissions: flags.permissions.split(",").filter(Boolean).map((p) => parseEnumFlag(OriginPermissionSchema, "--permissions", p)),
    basePath: flags.basePath ?? "",
    pathTemplate: flags.pathTemplate ?? "",
    httpHeaders: keyValues("--http-header", flags.httpHeader),
  };
  if (flags.local !== undefined) init.local = { rootDir: flags.local };
  if (flags.s3Bucket !== undefined) {
    init.s3 = { bucket: flags.s3Bucket, region: flags.s3Region ?? "", endpoint: flags.s3Endpoint ?? "", forcePathStyle: Boolean(flags.s3ForcePathStyle) };
    if (flags.s3AccessKeyId || flags.s3SecretAccessKey) init.s3Credentials = { accessKeyId: flags.s3AccessKeyId ?? "", secretAccessKey: flags.s3SecretAccessKey ?? "" };
  }
  if (flags.httpBaseUrl !== undefined) init.http = { baseUrl: flags.httpBaseUrl };
  return create(OriginServiceCreateRequestSchema, init);
}

export function registerOrigins(program: Command, run: Run): void {
  const origins = program.command("origins").description("storage locations jobs read from and write to");
  const show = (ctx: Context, o: { id: string; name: string; provider: number; permissions: number[]; status: number; basePath: string }) =>
    `${o.id}  ${o.name}  ${enumLabel(OriginProviderSchema, o.provider)}  ${o.permissions.map((p) => enumLabel(OriginPermissionSchema, p)).join(",")}  ${enumLabel(OriginStatusSchema, o.status)}${o.basePath ? `  ${o.basePath}` : ""}`;

  origins
    .command("list")
    .option("--limit <n>", "page size", integer("--limit", 1, 100))
    .option("--cursor <cursor>", "the next page")
    .option("--archived", "include archived (deleted) origins")
    .action((options: PageFlags & { archived?: boolean }, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().origins.list({ pagination: pagination(options), includeArchived: Boolean(options.archived) });
        if (ctx.json) return printJson(ctx.io, res);
        const rows = res.origins.map((o) => [o.id, o.name, enumLabel(OriginProviderSchema, o.provider), o.permissions.map((p) => enumLabel(OriginPermissionSchema, p)).join(","), enumLabel(OriginStatusSchema, o.status)]);
        printTable(ctx.io, ["ID", "NAME", "PROVIDER", "PERMISSIONS", "STATUS"], rows, "origins");
        nextPageHint(ctx, res.pagination?.nextCursor, res.pagination?.totalCount);
      }),
    );

  origins
    .command("get")
    .argument("<id>")
    .action((id: string, _o: unknown, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().origins.get({ id });
        if (ctx.json) return printJson(ctx.io, res);
        const o = res.origin!;
        ctx.io.out(show(ctx, o));
        if (o.local) ctx.io.out(`  root:     ${o.local.rootDir}`);
        if (o.s3) ctx.io.out(`  bucket:   ${o.s3.bucket}${o.s3.region ? ` (${o.s3.region})` : ""}${o.s3.endpoint ? ` at ${o.s3.endpoint}` : ""}`);
        if (o.http) ctx.io.out(`  base url: ${o.http.baseUrl}`);
        if (o.validationError) ctx.io.out(`  validation error: ${o.validationError}`);
      }),
    );

  origins
    .command("create")
    .description("create an origin: --local DIR, --s3-bucket B [...] or --http-base-url URL")
    .requiredOption("--name <name>", "a name")
    .option("--description <text>")
    .option("--permissions <list>", "read, write or read,write", "read,write")
    .option("--base-path <path>", "prefix of every path in the origin")
    .option("--path-template <template>", "default output path template")
    .option("--local <dir>", "a directory of the server (within RENDITION_LOCAL_ORIGIN_ROOTS/<org id>)")
    .option("--s3-bucket <bucket>")
    .option("--s3-region <region>")
    .option("--s3-endpoint <url>", "S3-compatible endpoint (MinIO, R2, ...)")
    .option("--s3-force-path-style")
    .option("--s3-access-key-id <id>")
    .option("--s3-secret-access-key <secret>")
    .option("--http-base-url <url>", "read-only HTTP origin")
    .option("--http-header <name=value>", "header sent to an HTTP origin (repeatable)", collect, [])
    .action((flags: OriginCreateFlags, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().origins.create(originRequest(flags));
        if (ctx.json) return printJson(ctx.io, res);
        ctx.io.out(show(ctx, res.origin!));
      }),
    );

  origins
    .command("delete")
    .description("archive an origin (jobs that used it keep their records)")
    .argument("<id>")
    .action((id: string, _o: unknown, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().origins.delete({ id });
        if (ctx.json) return printJson(ctx.io, res);
        ctx.io.out(`${id} ${enumLabel(OriginStatusSchema, res.origin!.status)}`);
      }),
    );
}

// --- presets ------------------------------------------------------------------------------------

interface PresetCreateFlags {
  slug: string;
  name: string;
  description?: string;
  spec?: string;
  container?: string;
  delivery?: string;
  codec?: string;
  resolution: string[];
  quality?: string;
}

export async function presetSpec(flags: PresetCreateFlags) {
  if (flags.spec) return messageFromJsonFlag(PresetSpecSchema, "--spec", flags.spec);
  const resolutions = flags.resolution.flatMap((r) => r.split(",")).filter(Boolean);
  const variant = (resolution?: string) => ({
    codec: parseEnumFlag(VideoCodecSchema, "--codec", flags.codec ?? "h264"),
    resolution: resolution ? parseEnumFlag(ResolutionSchema, "--resolution", resolution) : 0,
  });
  return create(PresetSpecSchema, {
    container: parseEnumFlag(ContainerSchema, "--container", flags.container ?? "mp4"),
    deliveryFormat: parseEnumFlag(DeliveryFormatSchema, "--delivery", flags.delivery ?? "progressive"),
    quality: flags.quality ? parseEnumFlag(QualitySchema, "--quality", flags.quality) : 0,
    video: resolutions.length ? resolutions.map(variant) : [variant()],
  });
}

const presetRow = (p: Preset) => [p.slug, p.id, p.name, p.systemPreset ? "system" : "", `${p.estimatedCostPerMinute} ${p.currency}/min`];

export function registerPresets(program: Command, run: Run): void {
  const presets = program.command("presets").description("reusable output specs (system presets and the organization's own)");

  presets
    .command("list")
    .option("--limit <n>", "page size", integer("--limit", 1, 100))
    .option("--cursor <cursor>", "the next page")
    .option("--exclude-system", "only the organization's own presets")
    .action((options: PageFlags & { excludeSystem?: boolean }, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().presets.list({ pagination: pagination(options), excludeSystem: Boolean(options.excludeSystem) });
        if (ctx.json) return printJson(ctx.io, res);
        printTable(ctx.io, ["SLUG", "ID", "NAME", "KIND", "ESTIMATE"], res.presets.map(presetRow), "presets");
        nextPageHint(ctx, res.pagination?.nextCursor, res.pagination?.totalCount);
      }),
    );

  presets
    .command("get")
    .argument("<id-or-slug>")
    .action((idOrSlug: string, _o: unknown, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().presets.get({ idOrSlug });
        if (ctx.json) return printJson(ctx.io, res);
        const p = res.preset!;
        ctx.io.out(presetRow(p).filter(Boolean).join("  "));
        if (p.description) ctx.io.out(`  ${p.description}`);
        const spec = p.spec;
        if (spec) {
          ctx.io.out(`  ${enumLabel(ContainerSchema, spec.container)} ${enumLabel(DeliveryFormatSchema, spec.deliveryFormat)}${spec.quality ? ` ${enumLabel(QualitySchema, spec.quality)}` : ""}`);
          for (const v of spec.video) ctx.io.out(`  video: ${enumLabel(VideoCodecSchema, v.codec)} ${v.resolution ? enumLabel(ResolutionSchema, v.resolution) : v.width || v.height ? `${v.width || "?"}x${v.height || "?"}` : "source size"}`);
        }
      }),
    );

  presets
    .command("create")
    .description("create a preset from --spec JSON (PresetSpec, or @file) or from --container/--codec/--resolution")
    .requiredOption("--slug <slug>", "[a-z0-9_]{1,64}, unique in the organization")
    .requiredOption("--name <name>")
    .option("--description <text>")
    .option("--spec <json>", "PresetSpec as JSON, or @file")
    .option("--container <container>", "mp4, webm, mkv, ts, mov (default mp4)")
    .option("--delivery <format>", "progressive, hls, dash, cmaf (default progressive)")
    .option("--codec <codec>", "h264, h265, vp9, av1 (default h264)")
    .option("--resolution <res>", "one variant per resolution (comma list or repeated)", collect, [])
    .option("--quality <tier>", "economy, standard, premium")
    .action((flags: PresetCreateFlags, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().presets.create({ slug: flags.slug, name: flags.name, description: flags.description ?? "", spec: await presetSpec(flags) });
        if (ctx.json) return printJson(ctx.io, res);
        ctx.io.out(presetRow(res.preset!).filter(Boolean).join("  "));
      }),
    );

  presets
    .command("delete")
    .argument("<id-or-slug>")
    .action((id: string, _o: unknown, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().presets.delete({ id });
        if (ctx.json) return printJson(ctx.io, res);
        ctx.io.out(`deleted ${id}`);
      }),
    );
}

// --- API keys -----------------------------------------------------------------------------------

const keyRow = (k: ApiKey) => [k.id, k.name, k.displayPrefix, k.test ? "test" : "live", k.active ? "active" : k.revokedAt ? "revoked" : "expired", k.current ? "current" : "", when(k.lastUsedAt)];

export function registerKeys(program: Command, run: Run): void {
  const keys = program.command("keys").description("the organization's API keys (secrets are shown once, on create and roll)");

  keys
    .command("list")
    .option("--limit <n>", "page size", integer("--limit", 1, 100))
    .option("--cursor <cursor>", "the next page")
    .action((options: PageFlags, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().keys.list({ pagination: pagination(options) });
        if (ctx.json) return printJson(ctx.io, res);
        printTable(ctx.io, ["ID", "NAME", "PREFIX", "KIND", "STATE", "", "LAST USED"], res.apiKeys.map(keyRow), "API keys");
        nextPageHint(ctx, res.pagination?.nextCursor, res.pagination?.totalCount);
      }),
    );

  keys
    .command("create")
    .option("--name <name>", "a name to tell keys apart")
    .option("--test", "a test key (rnd_test_...): its jobs are free test jobs")
    .action((options: { name?: string; test?: boolean }, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().keys.create({ name: options.name ?? "", test: Boolean(options.test) });
        if (ctx.json) return printJson(ctx.io, res);
        ctx.io.out(res.secret);
        ctx.io.err(`created ${res.apiKey!.id}; the key above is shown once`);
      }),
    );

  keys
    .command("revoke")
    .argument("<id>", "key id (ak_...)")
    .action((id: string, _o: unknown, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().keys.revoke({ id });
        if (ctx.json) return printJson(ctx.io, res);
        ctx.io.out(`revoked ${res.apiKey!.id}`);
      }),
    );

  keys
    .command("roll")
    .description("replace a key by a new one; the old one is revoked at once or after --grace seconds")
    .argument("<id>", "key id (ak_...)")
    .option("--grace <seconds>", "how long the old key keeps working (0 to 604800)", integer("--grace", 0, 604800))
    .action((id: string, options: { grace?: number }, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().keys.roll({ id, gracePeriodSeconds: options.grace ?? 0 });
        if (ctx.json) return printJson(ctx.io, res);
        ctx.io.out(res.secret);
        ctx.io.err(`created ${res.apiKey!.id} in place of ${res.previous!.id}${res.previous!.expiresAt ? ` (which expires ${when(res.previous!.expiresAt)})` : " (revoked)"}; the key above is shown once`);
      }),
    );
}
