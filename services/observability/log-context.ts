import { AsyncLocalStorage } from "node:async_hooks";

/**
 * Fields every log line carries while some work runs: the request id of an RPC, the job,
 * organization and worker of a job run. Set once where the work starts (the request-log
 * interceptor, the worker's slot), they reach every `log(...)` call made meanwhile, however
 * deep, without each call site passing them (the pino logger reads them in its mixin).
 */
export interface LogFields {
  request_id?: string;
  job_id?: string;
  organization_id?: string;
  worker_id?: string;
  task_id?: string;
  /** The level of this one line, instead of the seam's choice (docs/architecture.md, Logs). */
  level?: LogLevel;
  [field: string]: unknown;
}

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal";

/**
 * The logging seam passed to constructors: a message, an optional error and optional fields.
 * services/main.ts implements it with pino; tests pass collectors or no-ops.
 */
export type Log = (msg: string, err?: unknown, fields?: LogFields) => void;

const context = new AsyncLocalStorage<LogFields>();

/** Runs `fn` with `fields` added to the current ones (for its whole async continuation). */
export function withLogFields<T>(fields: LogFields, fn: () => T): T {
  return context.run({ ...context.getStore(), ...fields }, fn);
}

/** The fields of the work running now (none outside any). */
export function currentLogFields(): LogFields | undefined {
  return context.getStore();
}
