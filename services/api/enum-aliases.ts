import type { DescEnum, DescField, DescMessage, DescMethod, JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import type { UniversalHandlerOptions } from "@connectrpc/connect/protocol";
import type { FieldViolation } from "../common/errors.js";
import { invalidArgument } from "./interceptors.js";

/**
 * Lower-case enum spellings on JSON input, as the hosted API we model writes them: the value name
 * without its enum's prefix, lower-cased (`RESOLUTION_1080P` → `1080p`, `JOB_STATUS_AWAITING_CONFIRMATION`
 * → `awaiting_confirmation`), accepted as an alias of the canonical protobuf name on every enum
 * field of every request message. protobuf-es reads enum strings by their proto name only (its
 * JsonReadOptions have no hook), so the parsed JSON tree is rewritten first, guided by the message
 * descriptor: aliases become the canonical names and any other unknown string is refused here,
 * naming the field. Responses are untouched (canonical names).
 */

/** Well-known types have their own JSON forms (Timestamp strings, Struct, NullValue …): left alone. */
const WELL_KNOWN = "google.protobuf.";
/** As protobuf-es's default recursionLimit: deeper JSON is left for fromJson to refuse. */
const MAX_DEPTH = 100;

const aliasCache = new WeakMap<DescEnum, ReadonlyMap<string, string>>();
const fieldCache = new WeakMap<DescMessage, ReadonlyMap<string, DescField>>();

/** `JobStatus` → `job_status_`: the prefix buf's ENUM_VALUE_PREFIX lint rule gives every value (lower-cased). */
function valuePrefix(desc: DescEnum): string {
  return `${desc.name.slice(0, 1)}${desc.name.slice(1).replace(/[A-Z]/g, (c) => `_${c}`)}_`.toLowerCase();
}

/** alias → canonical value name, e.g. `1080p` → `RESOLUTION_1080P`. Values without the prefix get no alias. */
export function enumAliases(desc: DescEnum): ReadonlyMap<string, string> {
  let aliases = aliasCache.get(desc);
  if (!aliases) {
    const prefix = valuePrefix(desc);
    const map = new Map<string, string>();
    for (const value of desc.values) {
      const lower = value.name.toLowerCase();
      if (lower.startsWith(prefix) && lower.length > prefix.length) map.set(lower.slice(prefix.length), value.name);
    }
    aliases = map;
    aliasCache.set(desc, aliases);
  }
  return aliases;
}

/** JSON keys protobuf accepts for each field: the proto name and the JSON (camelCase) name. */
function fieldsByKey(desc: DescMessage): ReadonlyMap<string, DescField> {
  let fields = fieldCache.get(desc);
  if (!fields) {
    const map = new Map<string, DescField>();
    for (const field of desc.fields) {
      map.set(field.name, field);
      map.set(field.jsonName, field);
    }
    fields = map;
    fieldCache.set(desc, fields);
  }
  return fields;
}

export interface EnumAliasRewrite {
  /** The input itself when nothing changed, otherwise a copy with aliases replaced by canonical names. */
  json: JsonValue;
  /** Enum strings that are neither a value name nor an alias, by field path (proto names). */
  violations: FieldViolation[];
}

/**
 * Replaces enum aliases by canonical names in a message's JSON (nested messages, repeated fields,
 * map values and oneof members alike). Pure: the input is not modified. Numbers, nulls and
 * anything of the wrong shape are passed through for fromJson to judge; unknown keys too
 * (ignoreUnknownFields stays false there).
 */
export function rewriteEnumAliases(schema: DescMessage, json: JsonValue): EnumAliasRewrite {
  const violations: FieldViolation[] = [];
  return { json: rewriteMessage(schema, json, "", violations, 0), violations };
}

function rewriteMessage(desc: DescMessage, json: JsonValue, path: string, violations: FieldViolation[], depth: number): JsonValue {
  if (json === null || typeof json !== "object" || Array.isArray(json)) return json;
  if (depth > MAX_DEPTH || desc.typeName.startsWith(WELL_KNOWN)) return json;
  const fields = fieldsByKey(desc);
  let copy: JsonObject | undefined;
  for (const [key, value] of Object.entries(json)) {
    const field = fields.get(key);
    if (!field || value === undefined) continue;
    const next = rewriteField(field, value, path ? `${path}.${field.name}` : field.name, violations, depth);
    if (next !== value) {
      copy ??= { ...json };
      copy[key] = next;
    }
  }
  return copy ?? json;
}

function rewriteField(field: DescField, value: JsonValue, path: string, violations: FieldViolation[], depth: number): JsonValue {
  switch (field.fieldKind) {
    case "enum":
      return rewriteEnum(field.enum, value, path, violations);
    case "message":
      return rewriteMessage(field.message, value, path, violations, depth + 1);
    case "list": {
      if (!Array.isArray(value) || field.listKind === "scalar") return value;
      const item =
        field.listKind === "enum"
          ? (v: JsonValue, p: string) => rewriteEnum(field.enum, v, p, violations)
          : (v: JsonValue, p: string) => rewriteMessage(field.message, v, p, violations, depth + 1);
      let copy: JsonValue[] | undefined;
      value.forEach((v, i) => {
        const next = item(v, `${path}[${i}]`);
        if (next !== v) {
          copy ??= [...value];
          copy[i] = next;
        }
      });
      return copy ?? value;
    }
    case "map": {
      if (value === null || typeof value !== "object" || Array.isArray(value) || field.mapKind === "scalar") return value;
      const entry =
        field.mapKind === "enum"
          ? (v: JsonValue, p: string) => rewriteEnum(field.enum, v, p, violations)
          : (v: JsonValue, p: string) => rewriteMessage(field.message, v, p, violations, depth + 1);
      let copy: JsonObject | undefined;
      for (const [key, v] of Object.entries(value)) {
        if (v === undefined) continue;
        const next = entry(v, `${path}[${JSON.stringify(key)}]`);
        if (next !== v) {
          copy ??= { ...value };
          copy[key] = next;
        }
      }
      return copy ?? value;
    }
    default:
      return value;
  }
}

function rewriteEnum(desc: DescEnum, value: JsonValue, path: string, violations: FieldViolation[]): JsonValue {
  if (typeof value !== "string" || desc.typeName.startsWith(WELL_KNOWN)) return value;
  if (desc.values.some((v) => v.name === value)) return value;
  const canonical = enumAliases(desc).get(value);
  if (canonical !== undefined) return canonical;
  const known = [...enumAliases(desc).keys()].filter((alias) => alias !== "unspecified");
  violations.push({ field: path, rule: "enum.name", message: `unknown value ${JSON.stringify(value)} for ${desc.typeName}; expected one of ${known.join(", ")}` });
  return value;
}

/**
 * The text decoder Connect's JSON serialization calls on each request body (after
 * decompression and the size limit) right before `fromJsonString`: it refuses invalid UTF-8,
 * applies the aliases of
 * `schema`, and refuses unknown enum strings with invalid_argument naming their fields.
 * Malformed JSON is passed through unchanged, so fromJson reports it as before.
 */
export function enumAliasDecoder(schema: DescMessage): { decode(input?: Uint8Array): string } {
  // JSON is UTF-8 (RFC 8259 §8.1): a body that is not is refused, not read with U+FFFD in
  // place of its bad bytes (which turned `{"id":"a\xffb"}` into a lookup of `a\uFFFDb`).
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  return {
    decode(input) {
      let text: string;
      try {
        text = utf8.decode(input);
      } catch {
        throw new ConnectError("the request body is not valid UTF-8 (JSON must be UTF-8)", Code.InvalidArgument);
      }
      let json: JsonValue;
      try {
        json = JSON.parse(text) as JsonValue;
      } catch {
        return text;
      }
      const rewritten = rewriteEnumAliases(schema, json);
      if (rewritten.violations.length) throw invalidArgument(rewritten.violations);
      // Unchanged input is parsed from its own text (no re-serialization, byte for byte as before).
      return rewritten.json === json ? text : JSON.stringify(rewritten.json);
    },
  };
}

type JsonOptions = NonNullable<UniversalHandlerOptions["jsonOptions"]>;

/**
 * A view of `router` that registers every method with JSON options of its own: `jsonOptions`
 * plus the enum-alias decoder for the method's input message. Connect takes handler options per
 * method (`router.rpc`), so services are registered method by method, exactly as
 * `router.service` does it (unimplemented methods answer `unimplemented`).
 */
export function withEnumAliases(router: ConnectRouter, jsonOptions: JsonOptions): ConnectRouter {
  const optionsFor = (method: DescMethod, options: Partial<UniversalHandlerOptions> | undefined): Partial<UniversalHandlerOptions> => {
    // The handler's jsonOptions go as they are to Connect's createJsonSerialization, whose options
    // (JsonSerializationOptions) include the textDecoder; the handler option type does not list it.
    const methodJsonOptions: JsonOptions & { textDecoder: { decode(input?: Uint8Array): string } } = {
      ...jsonOptions,
      ...options?.jsonOptions,
      textDecoder: enumAliasDecoder(method.input),
    };
    return { ...options, jsonOptions: methodJsonOptions };
  };
  const wrapped: ConnectRouter = {
    get handlers() {
      return router.handlers;
    },
    service(service, implementation, options) {
      const impl = implementation as Record<string, unknown>;
      for (const method of service.methods) {
        const fn = impl[method.localName];
        const handler =
          typeof fn === "function"
            ? fn.bind(implementation)
            : () => {
                throw new ConnectError(`${service.typeName}.${method.name} is not implemented`, Code.Unimplemented);
              };
        router.rpc(method, handler as never, optionsFor(method, options));
      }
      return wrapped;
    },
    rpc(method, impl, options) {
      router.rpc(method, impl, optionsFor(method, options));
      return wrapped;
    },
  };
  return wrapped;
}
