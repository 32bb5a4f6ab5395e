import { ScalarType, type DescMessage, type Message } from "@bufbuild/protobuf";
import { reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { echo, type FieldViolation } from "../common/errors.js";

/**
 * No string of a request may contain NUL (U+0000): PostgreSQL `text` and `jsonb` cannot hold it
 * ("invalid byte sequence for encoding UTF8: 0x00"), so `{"id": "a\u0000b"}` used to reach the
 * database and answer `internal`. One violation per offending string, map keys included, by
 * field path as protovalidate names them.
 *
 * (The rest of "a string is text" is checked before: protobuf-es refuses invalid UTF-8 in binary
 * proto3 strings and an unpaired surrogate escape such as `"\uD800"` in JSON strings, and the
 * strict UTF-8 decoder in enum-aliases.ts refuses a JSON body that is not UTF-8.)
 */
export function nulViolations(schema: DescMessage, message: Message): FieldViolation[] {
  const violations: FieldViolation[] = [];
  walk(reflect(schema, message), "", violations);
  return violations;
}

function check(value: string, path: string, violations: FieldViolation[], what = "") {
  if (value.includes("\u0000")) violations.push({ field: path, rule: "string.no_nul", message: `${what}must not contain the NUL character (U+0000)` });
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
        let i = 0;
        for (const item of message.get(field)) {
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
