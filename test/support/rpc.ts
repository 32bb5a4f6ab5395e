import { ConnectError } from "@connectrpc/connect";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { expect } from "vitest";

/** Awaits a call that must fail and returns its ConnectError. */
export async function connectError(promise: Promise<unknown>): Promise<ConnectError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, "expected the call to fail").toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

/** The violations of an INVALID_ARGUMENT answer, with field paths as callers write them (`outputs[0].video[0].codec`). */
export function violationsOf(err: ConnectError): Array<{ field: string; rule: string; message: string }> {
  const [details] = err.findDetails(ViolationsSchema);
  return (details?.violations ?? []).map((v) => ({
    field: (v.field?.elements ?? []).map((e) => e.fieldName + (e.subscript.case === "index" ? `[${e.subscript.value}]` : "")).join("."),
    rule: v.ruleId,
    message: v.message,
  }));
}
