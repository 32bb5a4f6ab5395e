import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { JobServiceCreateRequestSchema } from "../../gen/rendition/v1/job_pb.js";
import { OriginServiceCreateRequestSchema } from "../../gen/rendition/v1/origin_pb.js";
import { echo } from "../../services/common/errors.js";
import { enumAliasDecoder } from "../../services/api/enum-aliases.js";
import { invalidArgument } from "../../services/api/interceptors.js";
import { nulViolations } from "../../services/api/nul-strings.js";
import { requestReadError } from "../../services/api/request-decoding.js";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";

describe("echo", () => {
  it("keeps up to 64 characters whole and cuts longer ones with an ellipsis", () => {
    expect(echo("o".repeat(64))).toBe("o".repeat(64));
    expect(echo("o".repeat(100_000))).toBe(`${"o".repeat(64)}…`);
  });

  it("never splits a surrogate pair", () => {
    const cut = echo(`${"o".repeat(63)}🎬${"o".repeat(10)}`);
    expect(cut).toBe(`${"o".repeat(63)}…`);
    expect(/\p{Cs}/u.test(cut), "no unpaired surrogate").toBe(false);
  });
});

describe("nulViolations", () => {
  it("names every string with a NUL by its path (in field-number order): nested, repeated, map keys and values", () => {
    const req = create(JobServiceCreateRequestSchema, {
      inputPath: "a\u0000",
      outputs: [{ preset: "ok" }, { preset: "p\u0000", audio: [{ language: "\u0000" }] }],
      metadata: { "k\u0000": "fine", ok: "v\u0000" },
    });
    expect(nulViolations(JobServiceCreateRequestSchema, req).map((v) => v.field)).toEqual([
      "input_path",
      "outputs[1].audio[0].language",
      "outputs[1].preset",
      'metadata["k\\u0000"]',
      'metadata["ok"]',
    ]);
  });

  it("finds nothing in clean text", () => {
    const req = create(OriginServiceCreateRequestSchema, { name: "ünïcode 🎬", local: { rootDir: "/data" }, httpHeaders: { a: "b" } });
    expect(nulViolations(OriginServiceCreateRequestSchema, req)).toEqual([]);
    const nul = create(OriginServiceCreateRequestSchema, { local: { rootDir: "/da\u0000ta" } });
    expect(nulViolations(OriginServiceCreateRequestSchema, nul).map((v) => `${v.field} ${v.rule}`)).toEqual(["local.root_dir string.no_nul"]);
  });

  it("cuts a long map key in the path", () => {
    const req = create(JobServiceCreateRequestSchema, { metadata: { [`${"k".repeat(1000)}\u0000`]: "v" } });
    const [v] = nulViolations(JobServiceCreateRequestSchema, req);
    expect(v!.field).toBe(`metadata["${"k".repeat(64)}…"]`);
  });
});

describe("invalidArgument field paths", () => {
  it("carries map keys as string subscripts", () => {
    const err = invalidArgument([{ field: 'metadata["a.b[0]"].x', rule: "r", message: "m" }, { field: "outputs[2].video[0].codec", rule: "r", message: "m" }]);
    const [details] = err.findDetails(ViolationsSchema);
    const paths = details!.violations.map((v) => v.field!.elements.map((e) => [e.fieldName, e.subscript.case, e.subscript.value]));
    expect(paths).toEqual([
      [
        ["metadata", "stringKey", "a.b[0]"],
        ["x", undefined, undefined],
      ],
      [
        ["outputs", "index", 2n],
        ["video", "index", 0n],
        ["codec", undefined, undefined],
      ],
    ]);
  });
});

describe("requestReadError", () => {
  it("turns Connect's internal read errors into invalid_argument with the same message, and leaves others alone", () => {
    const parse = requestReadError(new ConnectError("parse binary: premature EOF", Code.Internal)) as ConnectError;
    expect([parse.code, parse.rawMessage]).toEqual([Code.InvalidArgument, "parse binary: premature EOF"]);
    const timeout = new ConnectError("the operation timed out", Code.DeadlineExceeded);
    expect(requestReadError(timeout)).toBe(timeout);
    const plain = new Error("x");
    expect(requestReadError(plain)).toBe(plain);
  });
});

describe("the JSON decoder", () => {
  it("refuses a body that is not UTF-8 with invalid_argument", () => {
    const decoder = enumAliasDecoder(JobServiceCreateRequestSchema);
    expect(() => decoder.decode(Buffer.from('{"input_path":"a\xffb"}', "latin1"))).toThrow(
      expect.objectContaining({ code: Code.InvalidArgument, rawMessage: "the request body is not valid UTF-8 (JSON must be UTF-8)" }),
    );
    expect(decoder.decode(Buffer.from('{"input_path":"äö🎬"}'))).toBe('{"input_path":"äö🎬"}');
  });
});
