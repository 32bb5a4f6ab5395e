import { fromJson, type DescMessage, type JsonValue, type MessageShape } from "@bufbuild/protobuf";
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { createClients, type Clients } from "./client.js";
import { CliUsageError, resolveCredentials, type CredentialFlags } from "./credentials.js";
import type { Io } from "./output.js";

/** What every command gets: the global flags, the output, and the API clients on demand. */
export interface Context {
  io: Io;
  json: boolean;
  flags: CredentialFlags;
  /** Resolves the credentials on first use, so commands that need none (webhooks listen, help) never fail on them. */
  clients(): Clients;
}

export function contextOf(command: Command, io: Io, env: NodeJS.ProcessEnv): Context {
  const globals = command.optsWithGlobals() as CredentialFlags & { json?: boolean };
  const flags: CredentialFlags = { url: globals.url, apiKey: globals.apiKey, org: globals.org, dataDir: globals.dataDir };
  let clients: Clients | undefined;
  return {
    io,
    json: Boolean(globals.json),
    flags,
    clients: () => (clients ??= createClients(resolveCredentials(flags, env))),
  };
}

/** commander option parsers: integers and `key=value` pairs, refused as usage errors. */
export function integer(flag: string, min = 0, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value) || n < min || n > max) throw new CliUsageError("invalid_argument", `${flag}: ${JSON.stringify(value)} is not an integer from ${min} to ${max}`);
    return n;
  };
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function keyValues(flag: string, pairs: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf("=");
    if (at <= 0) throw new CliUsageError("invalid_argument", `${flag}: ${JSON.stringify(pair)} is not key=value`);
    out[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return out;
}

/**
 * A message from JSON given on the command line, or `@file` for a file, with the API's enum
 * aliases (`"mp4"`, `"h264"`, `"1080p"`) as the server accepts them.
 */
export async function messageFromJsonFlag<Desc extends DescMessage>(schema: Desc, flag: string, text: string): Promise<MessageShape<Desc>> {
  let json: JsonValue;
  try {
    json = JSON.parse(text.startsWith("@") ? readFileSync(text.slice(1), "utf8") : text) as JsonValue;
  } catch (err) {
    throw new CliUsageError("invalid_argument", `${flag}: not JSON: ${(err as Error).message}`);
  }
  // Loaded on demand: it brings the server's request validation along, which other commands do not need.
  const { rewriteEnumAliases } = await import("../services/api/enum-aliases.js");
  const rewritten = rewriteEnumAliases(schema, json);
  if (rewritten.violations.length) throw new CliUsageError("invalid_argument", `${flag}: ${rewritten.violations.map((v) => `${v.field}: ${v.message}`).join("; ")}`);
  try {
    return fromJson(schema, rewritten.json, { ignoreUnknownFields: false });
  } catch (err) {
    throw new CliUsageError("invalid_argument", `${flag}: ${(err as Error).message}`);
  }
}

/** `--limit` / `--cursor` for List calls. */
export interface PageFlags {
  limit?: number;
  cursor?: string;
}

export const pagination = (flags: PageFlags) => ({ limit: flags.limit ?? 0, cursor: flags.cursor ?? "" });

/** Human lists end with how to get the next page. */
export function nextPageHint(ctx: Context, next: string | undefined, total: number | undefined): void {
  if (ctx.json) return;
  if (next) ctx.io.err(`(${total ?? "?"} in all; next page: --cursor ${next})`);
}
