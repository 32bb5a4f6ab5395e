import { createRegistry, toJson, type JsonValue, type Message } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { file_rendition_v1_account } from "../gen/rendition/v1/account_pb.js";
import { file_rendition_v1_job } from "../gen/rendition/v1/job_pb.js";
import { file_rendition_v1_origin } from "../gen/rendition/v1/origin_pb.js";
import { file_rendition_v1_preset } from "../gen/rendition/v1/preset_pb.js";
import { file_rendition_v1_upload } from "../gen/rendition/v1/upload_pb.js";
import { file_rendition_v1_webhook } from "../gen/rendition/v1/webhook_pb.js";
import { API_JSON_WRITE } from "../services/common/api-json.js";
import { CliUsageError } from "./credentials.js";

const registry = createRegistry(
  file_rendition_v1_job,
  file_rendition_v1_origin,
  file_rendition_v1_preset,
  file_rendition_v1_upload,
  file_rendition_v1_account,
  file_rendition_v1_webhook,
);

/** A message in the API's own JSON (snake_case, zero values spelled out): what curl would get. */
export function messageJson(message: Message): JsonValue {
  const schema = registry.getMessage(message.$typeName);
  if (!schema) throw new Error(`no schema for ${message.$typeName}`);
  return toJson(schema, message, API_JSON_WRITE);
}

/** Where the CLI writes; injectable so commands can be driven in-process. */
export interface Io {
  out(line: string): void;
  err(line: string): void;
  /** Whether stdout is a terminal (live bars) or not (plain lines). */
  isTTY: boolean;
  /** A terminal on both stdin and stderr: prompts are possible. */
  interactive: boolean;
}

export const processIo: Io = {
  out: (line) => void process.stdout.write(line + "\n"),
  err: (line) => void process.stderr.write(line + "\n"),
  isTTY: Boolean(process.stdout.isTTY),
  interactive: Boolean(process.stdin.isTTY && process.stderr.isTTY),
};

/** One line of JSON: a message (API JSON) or a plain object. */
export function printJson(io: Io, value: Message | Record<string, unknown>): void {
  io.out(JSON.stringify("$typeName" in value ? messageJson(value as Message) : value));
}

/** A watched job that ended other than COMPLETED. */
export class JobEndedBadly extends Error {}

/** Exit codes: 0 success, 1 an API or network error, 2 a usage or configuration error, 3 a job that did not complete. */
export const EXIT = { ok: 0, api: 1, usage: 2, job: 3 } as const;

export interface DescribedError {
  code: string;
  message: string;
  violations: Array<{ field: string; rule: string; message: string }>;
  exitCode: number;
}

function violationsOf(err: ConnectError): DescribedError["violations"] {
  const [details] = err.findDetails(ViolationsSchema);
  return (details?.violations ?? []).map((v) => ({
    field: (v.field?.elements ?? [])
      .map((e) => {
        const s = e.subscript;
        if (s.case === "index") return `${e.fieldName}[${s.value}]`;
        if (s.case === undefined) return e.fieldName;
        return `${e.fieldName}[${JSON.stringify(typeof s.value === "bigint" ? String(s.value) : s.value)}]`;
      })
      .join("."),
    rule: v.ruleId,
    message: v.message,
  }));
}

/** Any error as a stable code, a message and (invalid_argument) its field violations. */
export function describeError(err: unknown): DescribedError {
  if (err instanceof CliUsageError) return { code: err.code, message: err.message, violations: [], exitCode: EXIT.usage };
  if (err instanceof JobEndedBadly) return { code: "job_not_completed", message: err.message, violations: [], exitCode: EXIT.job };
  if (err instanceof ConnectError) {
    const violations = violationsOf(err);
    let message = err.rawMessage;
    const cause = err.cause as { code?: string; message?: string } | undefined;
    // fetch failures ("fetch failed", ECONNREFUSED) carry the useful part in their cause.
    if (cause && typeof cause === "object" && cause.code && !message.includes(cause.code)) message = `${message} (${cause.code}${cause.message ? `: ${cause.message}` : ""})`;
    // The message repeats the violations inline ("2 invalid fields: a: …; b: …"); they are listed one per line instead.
    if (violations.length) message = message.replace(/^(\d+ invalid fields?):.*$/s, "$1");
    return { code: codeToString(err.code), message, violations, exitCode: EXIT.api };
  }
  const e = err as NodeJS.ErrnoException;
  return { code: e?.code ? String(e.code).toLowerCase() : "internal", message: e?.message ?? String(err), violations: [], exitCode: EXIT.api };
}

/** `error: <code>: <message>` then one `  field: message` line per violation (or the same as one JSON object). */
export function printError(io: Io, err: unknown, json: boolean): number {
  const d = describeError(err);
  if (json) io.err(JSON.stringify({ error: { code: d.code, message: d.message, violations: d.violations } }));
  else {
    io.err(`error: ${d.code}: ${d.message}`);
    for (const v of d.violations) io.err(`  ${v.field ? `${v.field}: ` : ""}${v.message}${v.rule ? ` [${v.rule}]` : ""}`);
  }
  return d.exitCode;
}

/** Left-aligned columns, for the human-readable lists. */
export function table(rows: string[][]): string[] {
  if (!rows.length) return [];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ").trimEnd());
}

/** A table with its header, or `(none)` on stderr when there are no rows. */
export function printTable(io: Io, header: string[], rows: string[][], what: string): void {
  if (!rows.length) return io.err(`no ${what}`);
  for (const line of table([header, ...rows])) io.out(line);
}

/** `JOB_STATUS_AWAITING_CONFIRMATION` → `awaiting_confirmation`. */
export function shortEnum(name: string | undefined, prefix: string): string {
  if (!name) return "";
  return name.startsWith(prefix) ? name.slice(prefix.length).toLowerCase() : name.toLowerCase();
}
