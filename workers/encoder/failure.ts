import { blockedDestinationOf } from "../../services/net/network-guard.js";
import { ObjectAccessDeniedError, ObjectNotFoundError, ObjectTooLargeError } from "../../services/storage/storage-driver.js";
import { UnsupportedOutputError } from "../ffmpeg/transcode.js";
import { MediaError } from "../ffmpeg/types.js";

/**
 * Stable machine codes on failed jobs and outputs (Job.error_code, Output.error_code); listed in
 * docs/api.md. Media codes come from workers/ffmpeg.
 */
export type FailureCode =
  | MediaError["code"]
  | UnsupportedOutputError["code"]
  | "INPUT_NOT_FOUND"
  | "INPUT_ACCESS_DENIED"
  | "INPUT_URL_FORBIDDEN"
  | "INPUT_URL_UNSUPPORTED"
  | "ORIGIN_UNAVAILABLE"
  | "FEATURE_UNSUPPORTED"
  | "SUBTITLE_UNREADABLE"
  | "UPLOAD_FAILED"
  | "RETRIES_EXHAUSTED"
  | "INTERNAL";

/** A job (or output) failure that retrying will not fix: the job fails with `code` at once. */
export class PermanentFailure extends Error {
  override name = "PermanentFailure";
  constructor(
    readonly code: FailureCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Sorts an error from fetching or probing the input: permanent ones become a PermanentFailure
 * with a readable message, anything else (network trouble, a 5xx) is returned as is, to retry.
 */
export function classifyInputError(err: unknown, where: string): unknown {
  if (err instanceof PermanentFailure) return err;
  if (err instanceof MediaError) return new PermanentFailure(err.code, err.message, { cause: err });
  if (err instanceof ObjectNotFoundError) return new PermanentFailure("INPUT_NOT_FOUND", `the input ${where} was not found: ${err.message}`, { cause: err });
  if (err instanceof ObjectAccessDeniedError) return new PermanentFailure("INPUT_ACCESS_DENIED", `reading the input ${where} was refused: ${err.message}`, { cause: err });
  if (err instanceof ObjectTooLargeError) return new PermanentFailure("INPUT_TOO_LARGE", `the input ${where} is larger than the limit of ${err.maxBytes} bytes`, { cause: err });
  const blocked = blockedDestinationOf(err);
  if (blocked) return new PermanentFailure("INPUT_URL_FORBIDDEN", `the input ${where} cannot be fetched: ${blocked.message}`, { cause: err });
  return err;
}

export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/** Why one output failed, as a PermanentFailure with a stable code. */
export function toOutputFailure(err: unknown): PermanentFailure {
  if (err instanceof PermanentFailure) return err;
  if (err instanceof MediaError) return new PermanentFailure(err.code, err.message, { cause: err });
  if (err instanceof UnsupportedOutputError) return new PermanentFailure(err.code, err.message, { cause: err });
  return new PermanentFailure("ENCODE_FAILED", describeError(err), { cause: err });
}
