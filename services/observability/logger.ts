import { hostname } from "node:os";
import { pino, stdTimeFunctions, type DestinationStream, type Logger } from "pino";
import { createRequire } from "node:module";
import type PinoPretty from "pino-pretty";
import { currentLogFields, type Log, type LogLevel } from "./log-context.js";

export type LogFormat = "auto" | "json" | "pretty";

export interface LoggerOptions {
  level: LogLevel | "silent";
  /** auto: pretty when `destination` is a terminal (stderr by default), else JSON lines. */
  format: LogFormat;
  /** Default: stderr (stdout carries only results: the credentials banner, admin JSON). */
  destination?: DestinationStream;
  /** Fields of every line of this process (its role). */
  base?: Record<string, unknown>;
}

/**
 * The process's pino logger: JSON lines on stderr (level as a word, ISO time), written
 * synchronously so nothing is lost when the process exits right after; the fields of the work
 * running (log-context.ts) are merged into every line.
 */
export function createLogger(options: LoggerOptions): Logger {
  const usePretty = options.format === "pretty" || (options.format === "auto" && !options.destination && process.stderr.isTTY === true);
  const destination = options.destination ?? (usePretty ? prettyStream() : pino.destination({ dest: 2, sync: true }));
  return pino(
    {
      level: options.level,
      base: { pid: process.pid, hostname: hostname(), ...options.base },
      timestamp: stdTimeFunctions.isoTime,
      // pino-pretty reads numeric levels; JSON readers prefer the word.
      formatters: usePretty ? {} : { level: (label) => ({ level: label }) },
      mixin: () => {
        const { level: _level, ...fields } = currentLogFields() ?? {};
        return fields;
      },
    },
    destination,
  );
}

/** pino-pretty, loaded only for a terminal (it is most of the logger's start-up cost). */
function prettyStream(): DestinationStream {
  const pretty = createRequire(import.meta.url)("pino-pretty") as typeof PinoPretty;
  return pretty({ destination: 2, sync: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname" });
}

/**
 * The `log(msg, err?, fields?)` seam on a pino logger. Level: `fields.level` when given, else
 * error with an error, warn for a message starting "warning:", else info.
 */
export function logFunction(logger: Logger): Log {
  return (msg, err, fields) => {
    const { level: explicit, ...rest } = fields ?? {};
    const level = explicit ?? (err !== undefined ? "error" : /^warning\b/i.test(msg) ? "warn" : "info");
    if (!logger.isLevelEnabled(level)) return;
    logger[level](err === undefined ? rest : { ...rest, err }, msg);
  };
}
