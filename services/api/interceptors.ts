import { create, type DescMessage, type Message } from "@bufbuild/protobuf";
import { pathToString } from "@bufbuild/protobuf/reflect";
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { createValidator } from "@bufbuild/protovalidate";
import {
  FieldPathElementSchema,
  FieldPathSchema,
  ViolationSchema,
  ViolationsSchema,
} from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { authenticate, type Caller } from "../auth/authenticate.js";
import type { AuthRepository } from "../auth/auth.repository.js";
import { isDatabaseUnavailable } from "../db/unavailable.js";
import {
  addViolations,
  AlreadyExistsError,
  DomainError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  describeViolations,
  echo,
  type FieldViolation,
} from "../common/errors.js";
import { requestReadError } from "./request-decoding.js";
import { nulViolations } from "./nul-strings.js";
import { resourceExhausted } from "./resource-exhausted.js";

export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "authenticated caller" });
/** Set instead of failing for requests whose handler adds database checks to the same answer. */
export const violationsKey = createContextKey<FieldViolation[] | undefined>(undefined, { description: "request violations" });

/** Domain error classes to Connect codes; everything unknown is INTERNAL with a logged cause. */
const CODES: Array<[new (...args: never[]) => DomainError, Code]> = [
  [NotFoundError, Code.NotFound],
  [AlreadyExistsError, Code.AlreadyExists],
  [FailedPreconditionError, Code.FailedPrecondition],
  [PermissionDeniedError, Code.PermissionDenied],
  [UnauthenticatedError, Code.Unauthenticated],
];

/** `outputs[0].video[1].codec` or `metadata["k"]` as a buf.validate.FieldPath (names, list indexes, map keys). */
function fieldPathOf(field: string) {
  const elements = [...field.matchAll(/([a-z_0-9]+)(?:\[(?:(\d+)|("(?:[^"\\]|\\.)*"))\])?/g)].map(([, name, index, key]) =>
    create(FieldPathElementSchema, {
      fieldName: name,
      subscript:
        index !== undefined
          ? { case: "index", value: BigInt(index) }
          : key !== undefined
            ? { case: "stringKey", value: JSON.parse(key) as string }
            : { case: undefined },
    }),
  );
  return create(FieldPathSchema, { elements });
}

export function invalidArgument(violations: FieldViolation[], cause?: unknown): ConnectError {
  const details = create(ViolationsSchema, {
    violations: violations.map((v) => create(ViolationSchema, { field: fieldPathOf(v.field), ruleId: v.rule, message: v.message })),
  });
  return new ConnectError(describeViolations(violations), Code.InvalidArgument, undefined, [{ desc: ViolationsSchema, value: details }], cause);
}

export function toConnectError(err: unknown, log: (msg: string, err: unknown) => void): ConnectError {
  if (err instanceof InvalidArgumentError) return invalidArgument(err.violations, err);
  if (err instanceof ResourceExhaustedError) return resourceExhausted(err);
  for (const [type, code] of CODES) if (err instanceof type) return new ConnectError(err.message, code, undefined, undefined, err);
  if (err instanceof ConnectError) return err;
  if (isDatabaseUnavailable(err)) {
    log("database unavailable", err);
    return new ConnectError("the database is unavailable; retry with backoff", Code.Unavailable, undefined, undefined, err);
  }
  log("internal error", err);
  return new ConnectError("internal error", Code.Internal, undefined, undefined, err);
}

/** Outermost: maps domain errors (also those thrown while a stream is being read) to Connect codes. */
export function errorInterceptor(log: (msg: string, err: unknown) => void): Interceptor {
  return (next) => async (req) => {
    try {
      const res = await next(req);
      if (!res.stream) return res;
      const source = res.message;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* source;
          } catch (err) {
            throw toConnectError(err, log);
          }
        })(),
      };
    } catch (err) {
      throw toConnectError(err, log);
    }
  };
}

/** Every RPC needs `Authorization: Bearer <key>` and `X-Organization-ID`. */
export function authInterceptor(keys: Pick<AuthRepository, "findActiveKey" | "touchApiKey">, log: (msg: string, err: unknown) => void): Interceptor {
  // When this process last recorded each key's use: the database write happens at most once a
  // minute per key, so most calls skip it entirely instead of sending a no-op UPDATE.
  const lastTouched = new Map<string, number>();
  return (next) => async (req) => {
    const caller = await authenticate(keys, req.header.get("authorization"), req.header.get("x-organization-id"));
    req.contextValues.set(callerKey, caller);
    const now = Date.now();
    if (now - (lastTouched.get(caller.apiKeyId) ?? 0) >= 60_000) {
      lastTouched.set(caller.apiKeyId, now);
      // Bookkeeping for key rotation ("is this key still used?"); never worth failing a call for.
      keys.touchApiKey(caller.apiKeyId).catch((err: unknown) => log("could not record API key use", err));
    }
    return next(req);
  };
}

/** Cross-field rules per request type, run with protovalidate so one answer lists every violation. */
export type SemanticCheck = (message: Message) => FieldViolation[];

/**
 * Validates each request against its protovalidate rules plus the pure cross-field checks
 * registered for its type, and answers INVALID_ARGUMENT naming every violating field path.
 */
export function validationInterceptor(checks: Map<DescMessage, SemanticCheck>, deferred: Set<DescMessage>): Interceptor {
  const validator = createValidator();
  const validate = (schema: DescMessage, message: Message): FieldViolation[] => {
    const violations: FieldViolation[] = [];
    const result = validator.validate(schema, message);
    if (result.kind === "error") throw result.error;
    if (result.kind === "invalid") {
      for (const v of result.error.violations) {
        // A map key is part of the path: a caller's 100 KB key is echoed cut short.
        const field = v.field.map((item) => (item.kind === "map_sub" && typeof item.key === "string" ? { ...item, key: echo(item.key) } : item));
        violations.push({ field: pathToString(field), rule: v.ruleId, message: v.forKey ? `key ${v.message}` : v.message });
      }
    }
    addViolations(violations, nulViolations(schema, message));
    const check = checks.get(schema);
    if (check) addViolations(violations, check(message));
    if (violations.length && !deferred.has(schema)) throw invalidArgument(violations);
    return violations;
  };
  return (next) => async (req) => {
    if (!req.stream) {
      const violations = validate(req.method.input, req.message);
      if (deferred.has(req.method.input)) req.contextValues.set(violationsKey, violations);
      return next(req);
    }
    // Server streaming (Watch): the request arrives as a stream of one message, read (and
    // parsed) only here, so a body that does not decode is answered as the caller's fault.
    const source = req.message[Symbol.asyncIterator]();
    const schema = req.method.input;
    return next({
      ...req,
      message: (async function* () {
        try {
          for (;;) {
            const next = await source.next().catch((err: unknown) => {
              throw requestReadError(err);
            });
            if (next.done) return;
            validate(schema, next.value);
            yield next.value;
          }
        } finally {
          await source.return?.();
        }
      })(),
    });
  };
}
