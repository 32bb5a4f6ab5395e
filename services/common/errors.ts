/** A violated rule on one field, in the shape of buf.validate.Violation. */
export interface FieldViolation {
  /** Field path as callers write it, e.g. `outputs[0].video[0].codec`. */
  field: string;
  /** Stable rule id, e.g. `string.max_len` or `output.type_required`. */
  rule: string;
  message: string;
}

/** Appends the violations of `more` that `target` does not name yet (same field and rule). */
export function addViolations(target: FieldViolation[], more: FieldViolation[]): FieldViolation[] {
  const seen = new Set(target.map((v) => `${v.field} ${v.rule}`));
  for (const v of more) if (!seen.has(`${v.field} ${v.rule}`)) target.push(v);
  return target;
}

/** Ids (the schema's are at most 64 characters) and names echoed in messages are cut after this many characters. */
export const ECHO_MAX_CHARS = 64;

/**
 * `value` as an error message may quote it: whole up to ECHO_MAX_CHARS, else its start and "…",
 * so a caller's 100 KB string is not sent back (nor logged) whole.
 */
export function echo(value: string): string {
  if (value.length <= ECHO_MAX_CHARS) return value;
  // Never split a surrogate pair.
  const end = /[\uD800-\uDBFF]/.test(value[ECHO_MAX_CHARS - 1]!) ? ECHO_MAX_CHARS - 1 : ECHO_MAX_CHARS;
  return `${value.slice(0, end)}…`;
}

/** Domain errors; the API maps each class to one Connect code (errorInterceptor in services/api/interceptors.ts). */
export class DomainError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}
export class NotFoundError extends DomainError {}
export class AlreadyExistsError extends DomainError {}
export class FailedPreconditionError extends DomainError {}
export class PermissionDeniedError extends DomainError {}
export class UnauthenticatedError extends DomainError {}
/** A per-organization limit was reached (RESOURCE_EXHAUSTED): `reason` names it, `retryAfterMs` says when to try again. */
export class ResourceExhaustedError extends DomainError {
  constructor(
    message: string,
    readonly reason: "RATE_LIMITED" | "ACTIVE_JOB_LIMIT",
    readonly retryAfterMs: number,
    readonly metadata: Record<string, string> = {},
  ) {
    super(message);
  }
}
export class InvalidArgumentError extends DomainError {
  constructor(readonly violations: FieldViolation[]) {
    super(describeViolations(violations));
  }
}

export function describeViolations(violations: FieldViolation[]): string {
  const n = violations.length;
  const list = violations.map((v) => (v.field ? `${v.field}: ${v.message}` : v.message)).join("; ");
  return `${n} invalid field${n === 1 ? "" : "s"}: ${list}`;
}
