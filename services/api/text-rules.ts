import { ScalarType, type DescMessage, type Message } from "@bufbuild/protobuf";
import { reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { echo, type FieldViolation } from "../common/errors.js";

/** With the u flag, \p{Cs} matches only surrogates that are not half of a pair. */
const UNPAIRED_SURROGATE = /\p{Cs}/u;

/**
 * Every string of every request must be text PostgreSQL can store as it was sent:
 *
 * - no NUL (U+0000): PostgreSQL `text` and `jsonb` cannot hold it ("invalid byte sequence for
 *   encoding UTF8: 0x00"), so `{"id": "a\u0000b"}` used to reach the database and answer `internal`;
 * - well-formed Unicode: a JSON `\uD800` escape without its pair is valid JSON but no character;
 *   node-postgres would write it as U+FFFD, storing something other than what was sent. (Binary
 *   protobuf is checked by protobuf-es itself, which refuses invalid UTF-8 in proto3 strings, and
 *   JSON bodies by the strict UTF-8 decoder in enum-aliases.ts.)
 *
 * Map keys count, and so do the strings inside well-known types (a Struct's keys and values go
 * to `jsonb`). One violation per offending string, by field path, as protovalidate names them.
 */
export function textViolations(schema: DescMessage, message: Message): FieldViolation[] {
  const violations: FieldViolation[] = [];
  walk(reflect(schema, message), "", violations);
  return violations;
}

function check(value: string, path: string, violations: FieldViolation[], what = "") {
  if (value.includes("\u0000")) {
    violations.push({ field: path, rule: "string.no_nul", message: `${what}must not contain the NUL character (U+0000)` });
  } else if (UNPAIRED_SURROGATE.test(value)) {
    violations.push({ field: path, rule: "string.well_formed", message: `${what}must be well-formed Unicode (it has an unpaired surrogate)` });
  }
}

function walk(message: ReflectMessage, prefix: string, violations: FieldViolation[]) {
  for (const field of message.fields) {
    if (!message.isSet(field)) continue;
    const path = prefix ? `${prefix}.${field.name}` : field.name;
    switch (field.fieldKind) {
      case "scalar":
        if (field.scalar === ScalarType.STRING) check(message.get(field) as string, path, violations);
        break;
      case "message":
        walk(message.get(field), path, violations);
        break;
      case "list": {
        const list = message.get(field);
        let i = 0;
        for (const item of list) {
          if (field.listKind === "message") walk(item as ReflectMessage, `${path}[${i}]`, violations);
          else if (field.listKind === "scalar" && field.scalar === ScalarType.STRING) check(item as string, `${path}[${i}]`, violations);
          i++;
        }
        break;
      }
      case "map": {
        for (const [key, value] of message.get(field)) {
          const entry = `${path}[${JSON.stringify(typeof key === "string" ? echo(key) : key)}]`;
          if (typeof key === "string") check(key, entry, violations, "key ");
          if (field.mapKind === "message") walk(value as ReflectMessage, entry, violations);
          else if (field.mapKind === "scalar" && field.scalar === ScalarType.STRING) check(value as string, entry, violations);
        }
        break;
      }
    }
  }
}
