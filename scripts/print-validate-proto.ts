// Prints buf/validate/validate.proto from the descriptor embedded in the npm
// package @bufbuild/protovalidate, so that buf can compile schemas importing it
// without network access to the Buf Schema Registry.
//
// Usage: node --import tsx scripts/print-validate-proto.ts <outDir>
// Writes <outDir>/buf/validate/validate.proto (only if its content changed).
//
// The output is equivalent, not identical, to the upstream source: comments are
// lost and option values are printed in the protobuf text format, but the
// compiled FileDescriptorProto equals the embedded one (source info aside).

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { createRegistry, type DescEnum, type Message } from "@bufbuild/protobuf";
import { toText } from "@bufbuild/protobuf/txtpb";
import {
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
  FieldDescriptorProto_LabelSchema,
  FieldDescriptorProto_Type,
  FieldDescriptorProto_TypeSchema,
  type FileDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import { file_buf_validate_validate as file } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";

// Resolves the option messages (google.protobuf.*Options) and our own
// extensions, e.g. (buf.validate.predefined). createFileRegistry() would throw
// here because the embedded dependencies are not a closed file set.
const registry = createRegistry(file, ...file.dependencies);

// Exclusive upper bound of field numbers (2^29), printed as "max".
const MAX_FIELD_NUMBER = 536870912;
// Inclusive upper bound of enum values (2^31-1), printed as "max".
const MAX_ENUM_NUMBER = 2147483647;

// Proto2 fields keep their defaults on the prototype: a field is only set if it
// is an own property (e.g. oneofIndex: 0 is a real value, an absent one is not).
function has<T extends object>(msg: T, key: keyof T): boolean {
  return Object.prototype.hasOwnProperty.call(msg, key);
}

// "TYPE_UINT64" -> "uint64", "LABEL_REPEATED" -> "repeated".
function enumName(schema: DescEnum, value: number, prefix: string): string {
  const v = schema.value[value];
  if (v === undefined) throw new Error(`unknown ${schema.typeName} value ${value}`);
  return v.name.slice(prefix.length).toLowerCase();
}

// The json_name protoc derives from a field name; only differing ones are printed.
function defaultJsonName(name: string): string {
  return name.replace(/_+([a-z]?)/g, (_, c: string) => c.toUpperCase());
}

/**
 * Renders every set field of an options message (standard fields and
 * extensions resolvable in the registry) as "name = value" entries, using the
 * text format for values. Top-level text format lines start in column 0, so
 * "java_package: ..." and "[buf.validate.predefined]: {" begin a new entry and
 * become "java_package = ..." and "(buf.validate.predefined) = {"; indented
 * lines and the closing brace belong to the previous (aggregate) entry.
 * Repeated fields yield one entry per element, which is valid option syntax.
 */
function optionEntries(options: Message | undefined): string[] {
  if (options === undefined) return [];
  const schema = registry.getMessage(options.$typeName);
  if (schema === undefined) throw new Error(`no descriptor for ${options.$typeName}`);
  if ((options as { uninterpretedOption?: unknown[] }).uninterpretedOption?.length) {
    throw new Error(`uninterpreted option in ${options.$typeName}`);
  }
  const entries: string[] = [];
  for (const line of toText(schema, options, { registry }).split("\n")) {
    if (line === "") continue;
    const head = /^(?:\[([\w.]+)\]|(\w+)): ?/.exec(line);
    if (head) {
      entries.push(`${head[1] ? `(${head[1]})` : head[2]} = ${line.slice(head[0].length)}`);
    } else if (entries.length > 0) {
      entries[entries.length - 1] += `\n${line}`;
    } else {
      throw new Error(`unexpected text format line: ${line}`);
    }
  }
  // Options with unknown (unresolvable) fields would be silently dropped.
  const known = new Set(schema.fields.map((f) => f.number));
  for (const u of options.$unknown ?? []) {
    if (!known.has(u.no) && !registry.getExtensionFor(schema, u.no)) {
      throw new Error(`unresolvable option field ${u.no} in ${options.$typeName}`);
    }
  }
  return entries;
}

/** Indents all but the first line of a (possibly multi-line) entry. */
function indentTail(text: string, indent: string): string {
  return text.replaceAll("\n", `\n${indent}`);
}

/** `option x = y;` statements for file/message/enum/oneof bodies. */
function optionStatements(options: Message | undefined, indent: string): string[] {
  return optionEntries(options).map((e) => `${indent}option ${indentTail(e, indent)};`);
}

/** Compact ` [a = 1, b = 2]` suffix for fields and enum values. */
function optionSuffix(entries: string[], indent: string): string {
  return entries.length ? ` [${entries.map((e) => indentTail(e, indent)).join(", ")}]` : "";
}

/** `reserved 1, 5 to 9, 100 to max;` and `reserved "a", "b";` */
function reserved(
  ranges: { start: number; end: number }[],
  names: string[],
  inclusiveEnd: boolean,
  max: number,
  indent: string,
): string[] {
  const out: string[] = [];
  if (ranges.length) {
    const items = ranges.map(({ start, end }) => {
      const last = inclusiveEnd ? end : end - 1;
      if (last === start) return `${start}`;
      return `${start} to ${end === max ? "max" : last}`;
    });
    out.push(`${indent}reserved ${items.join(", ")};`);
  }
  if (names.length) out.push(`${indent}reserved ${names.map((n) => JSON.stringify(n)).join(", ")};`);
  return out;
}

/** The type of a field: a scalar keyword or a fully-qualified ".pkg.Name". */
function fieldType(f: FieldDescriptorProto): string {
  if (f.type === FieldDescriptorProto_Type.MESSAGE || f.type === FieldDescriptorProto_Type.ENUM) {
    return f.typeName;
  }
  if (f.type === FieldDescriptorProto_Type.GROUP) throw new Error(`groups are not supported: ${f.name}`);
  return enumName(FieldDescriptorProto_TypeSchema, f.type, "TYPE_");
}

/** A field (or extension) declaration; map fields are passed their entry type. */
function field(f: FieldDescriptorProto, indent: string, withLabel: boolean, mapEntry?: DescriptorProto): string {
  const pseudo: string[] = [];
  if (has(f, "defaultValue")) {
    // Descriptor defaults are already in proto syntax, except that strings
    // (raw) and bytes (C-escaped) lack their quotes.
    let value = f.defaultValue;
    if (f.type === FieldDescriptorProto_Type.STRING) value = JSON.stringify(value);
    if (f.type === FieldDescriptorProto_Type.BYTES) value = `"${value}"`;
    pseudo.push(`default = ${value}`);
  }
  if (has(f, "jsonName") && f.jsonName !== defaultJsonName(f.name)) {
    pseudo.push(`json_name = ${JSON.stringify(f.jsonName)}`);
  }
  const opts = optionSuffix([...pseudo, ...optionEntries(f.options)], indent);
  if (mapEntry) {
    const [k, v] = mapEntry.field;
    return `${indent}map<${fieldType(k)}, ${fieldType(v)}> ${f.name} = ${f.number}${opts};`;
  }
  const label = withLabel ? `${enumName(FieldDescriptorProto_LabelSchema, f.label, "LABEL_")} ` : "";
  return `${indent}${label}${fieldType(f)} ${f.name} = ${f.number}${opts};`;
}

/** `extend .pkg.Msg { ... }` blocks, one per run of extensions with the same extendee. */
function extensions(exts: FieldDescriptorProto[], indent: string): string[] {
  const out: string[] = [];
  exts.forEach((ext, i) => {
    if (i === 0 || exts[i - 1].extendee !== ext.extendee) {
      if (i > 0) out.push(`${indent}}`, "");
      out.push(`${indent}extend ${ext.extendee} {`);
    }
    out.push(field(ext, `${indent}  `, true));
  });
  if (exts.length) out.push(`${indent}}`);
  return out;
}

function enumeration(e: EnumDescriptorProto, indent: string): string[] {
  const inner = `${indent}  `;
  return [
    `${indent}enum ${e.name} {`,
    ...optionStatements(e.options, inner),
    ...e.value.map((v) => `${inner}${v.name} = ${v.number}${optionSuffix(optionEntries(v.options), inner)};`),
    ...reserved(e.reservedRange, e.reservedName, true, MAX_ENUM_NUMBER, inner),
    `${indent}}`,
  ];
}

function message(m: DescriptorProto, scope: string, indent: string): string[] {
  const inner = `${indent}  `;
  const fqn = `${scope}.${m.name}`;
  const out = [`${indent}message ${m.name} {`, ...optionStatements(m.options, inner)];
  // nested_type holds nested messages and the synthetic entry types of map
  // fields in declaration order. Entries are implied by `map<K, V>` and not
  // printed; nested messages declared before a map field print before it.
  const isMapEntry = (n: DescriptorProto) => n.options?.mapEntry === true;
  let nextNested = 0;
  const printNested = (end: number) => {
    for (; nextNested < end; nextNested++) {
      const n = m.nestedType[nextNested];
      if (!isMapEntry(n)) out.push(...message(n, fqn, inner));
    }
  };
  // Fields print in declaration order; members of a oneof are contiguous in
  // descriptors produced by protoc/buf, so a oneof block opens at its first
  // member and closes when the next field is not a member.
  let openOneof: number | undefined;
  for (const f of m.field) {
    const oneof = has(f, "oneofIndex") && !f.proto3Optional ? f.oneofIndex : undefined;
    if (openOneof !== undefined && oneof !== openOneof) out.push(`${inner}}`);
    const entryIndex = m.nestedType.findIndex((n) => isMapEntry(n) && `${fqn}.${n.name}` === f.typeName);
    if (entryIndex >= 0) printNested(entryIndex + 1);
    if (oneof !== undefined && oneof !== openOneof) {
      const decl = m.oneofDecl[oneof];
      out.push(`${inner}oneof ${decl.name} {`, ...optionStatements(decl.options, `${inner}  `));
    }
    openOneof = oneof;
    const entry = entryIndex >= 0 ? m.nestedType[entryIndex] : undefined;
    out.push(field(f, oneof === undefined ? inner : `${inner}  `, oneof === undefined && !entry, entry));
  }
  if (openOneof !== undefined) out.push(`${inner}}`);
  for (const r of m.extensionRange) {
    const end = r.end === MAX_FIELD_NUMBER ? "max" : `${r.end - 1}`;
    const range = end === `${r.start}` ? `${r.start}` : `${r.start} to ${end}`;
    out.push(`${inner}extensions ${range}${optionSuffix(optionEntries(r.options), inner)};`);
  }
  out.push(...reserved(m.reservedRange, m.reservedName, false, MAX_FIELD_NUMBER, inner));
  out.push(...extensions(m.extension, inner));
  for (const e of m.enumType) out.push(...enumeration(e, inner));
  printNested(m.nestedType.length);
  out.push(`${indent}}`);
  return out;
}

function printFile(p: FileDescriptorProto): string {
  if (p.syntax !== "" && p.syntax !== "proto2") {
    throw new Error(`${p.name}: only proto2 is supported, got syntax "${p.syntax}"`);
  }
  if (p.service.length) throw new Error(`${p.name}: services are not supported`);
  const deps = p.dependency.map((d, i) => {
    const kind = p.publicDependency.includes(i) ? "public " : p.weakDependency.includes(i) ? "weak " : "";
    return `import ${kind}${JSON.stringify(d)};`;
  });
  const blocks: string[][] = [
    [
      `// Code generated by scripts/print-validate-proto.ts from the descriptor`,
      `// embedded in @bufbuild/protovalidate. DO NOT EDIT.`,
      "",
      `syntax = "proto2";`,
    ],
    p.package ? [`package ${p.package};`] : [],
    deps,
    optionStatements(p.options, ""),
    extensions(p.extension, ""),
    ...p.enumType.map((e) => enumeration(e, "")),
    ...p.messageType.map((m) => message(m, p.package ? `.${p.package}` : "", "")),
  ];
  return `${blocks
    .filter((b) => b.length)
    .map((b) => b.join("\n"))
    .join("\n\n")}\n`;
}

const outDir = process.argv[2];
if (!outDir) {
  console.error("usage: node --import tsx scripts/print-validate-proto.ts <outDir>");
  process.exit(2);
}
const target = join(outDir, file.proto.name);
const text = printFile(file.proto);
let current: string | undefined;
try {
  current = readFileSync(target, "utf8");
} catch {
  // Not printed yet.
}
// Leave an up-to-date file untouched so its mtime (and buf's cache) stays valid.
if (current !== text) {
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, text);
}
