import { randomUUID } from "node:crypto";
import type { FieldViolation } from "../common/errors.js";

/** Variables a path template may use (api-facts.md, "Output paths"). */
export const TEMPLATE_VARIABLES = [
  "job_id",
  "output_id",
  "output_index",
  "date",
  "timestamp",
  "format",
  "codec",
  "resolution",
  "quality",
  "uuid",
] as const;
export type TemplateVariable = (typeof TEMPLATE_VARIABLES)[number];

export const DEFAULT_PATH_TEMPLATE = "{job_id}/{output_id}";

const PLACEHOLDER = /\{([^{}]*)\}/g;

/** Problems with a template, as field violations on `field`; empty when it is usable. */
export function checkPathTemplate(template: string, field: string): FieldViolation[] {
  const violations: FieldViolation[] = [];
  const known = new Set<string>(TEMPLATE_VARIABLES);
  for (const [, name] of template.matchAll(PLACEHOLDER)) {
    if (!known.has(name!)) {
      violations.push({
        field,
        rule: "path_template.unknown_variable",
        message: `unknown variable {${name}}; use one of ${TEMPLATE_VARIABLES.map((v) => `{${v}}`).join(" ")}`,
      });
    }
  }
  if (template.replace(PLACEHOLDER, "").match(/[{}]/)) {
    violations.push({ field, rule: "path_template.unbalanced_braces", message: "has an unmatched { or }" });
  }
  if (template.startsWith("/") || template.split("/").some((segment) => segment === "..")) {
    violations.push({ field, rule: "path_template.relative", message: "must be a relative path without '..' segments" });
  }
  return violations;
}

export type TemplateValues = Omit<Record<TemplateVariable, string>, "date" | "timestamp" | "uuid">;

/**
 * Resolves a template at job creation. `{date}` is UTC `YYYY/MM/DD`, `{timestamp}` Unix seconds,
 * `{uuid}` a fresh random UUID per occurrence. Empty values collapse so a template like
 * `{resolution}/{output_id}` never yields a path with `//` in it.
 */
export function resolvePathTemplate(template: string, values: TemplateValues, now: Date): string {
  const date = now.toISOString().slice(0, 10).replaceAll("-", "/");
  const all: Record<string, () => string> = {
    ...Object.fromEntries(Object.entries(values).map(([k, v]) => [k, () => v])),
    date: () => date,
    timestamp: () => String(Math.floor(now.getTime() / 1000)),
    uuid: () => randomUUID(),
  };
  const resolved = template.replace(PLACEHOLDER, (_, name: string) => all[name]?.() ?? "");
  return resolved
    .split("/")
    .filter((segment) => segment !== "")
    .join("/");
}

/** First non-empty template in precedence order: output > job > origin > default. */
export function pickTemplate(...candidates: Array<string | undefined>): string {
  return candidates.find((t) => t) ?? DEFAULT_PATH_TEMPLATE;
}
