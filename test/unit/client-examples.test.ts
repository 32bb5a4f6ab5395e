/**
 * docs/api.md shows the Go and Python client programs and their buf templates; each block marked
 * `<!-- example: PATH -->` must be that file exactly, so the docs show what the client tests run.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const doc = readFileSync("docs/api.md", "utf8");
const blocks = [...doc.matchAll(/^<!-- example: (\S+) -->\n```[a-z]*\n([\s\S]*?)^```$/gm)].map((m) => ({ path: m[1]!, body: m[2]! }));

describe("docs/api.md client examples", () => {
  it("show both clients and both templates", () => {
    expect(blocks.map((b) => b.path).sort()).toEqual([
      "buf.gen.go.yaml",
      "buf.gen.python.yaml",
      "test/support/go/client/main.go",
      "test/support/python/client.py",
    ]);
  });

  it.each(blocks)("$path is the file, byte for byte", ({ path, body }) => {
    expect(body).toBe(readFileSync(path, "utf8"));
  });
});
