import { describe, expect, it } from "vitest";
import { checkPathTemplate, pickTemplate, resolvePathTemplate, DEFAULT_PATH_TEMPLATE } from "../../services/jobs/path-template.js";

const values = {
  job_id: "job_1",
  output_id: "out_2",
  output_index: "0",
  format: "mp4",
  codec: "h264",
  resolution: "1080p",
  quality: "standard",
};
const now = new Date("2025-02-28T10:00:05Z");

describe("path templates", () => {
  it("resolves every variable", () => {
    expect(resolvePathTemplate("{date}/{job_id}/{output_index}_{codec}_{resolution}_{quality}.{format}", values, now)).toBe(
      "2025/02/28/job_1/0_h264_1080p_standard.mp4",
    );
    expect(resolvePathTemplate("{timestamp}-{output_id}", values, now)).toBe("1740736805-out_2");
    expect(resolvePathTemplate("{uuid}", values, now)).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("gives each {uuid} its own value and collapses empty segments", () => {
    const [a, b] = resolvePathTemplate("{uuid}/{uuid}", values, now).split("/");
    expect(a).not.toBe(b);
    expect(resolvePathTemplate("/a//{codec}/", { ...values, codec: "" }, now)).toBe("a");
  });

  it("takes the first template in precedence order: output > job > origin > default", () => {
    expect(pickTemplate("out", "job", "origin")).toBe("out");
    expect(pickTemplate("", "job", "origin")).toBe("job");
    expect(pickTemplate("", "", "origin")).toBe("origin");
    expect(pickTemplate("", "", "")).toBe(DEFAULT_PATH_TEMPLATE);
  });

  it("reports unknown variables, unbalanced braces and escaping paths", () => {
    expect(checkPathTemplate("{job_id}/{output_id}", "t")).toEqual([]);
    const rules = (t: string) => checkPathTemplate(t, "f").map((v) => v.rule);
    expect(rules("{job}")).toEqual(["path_template.unknown_variable"]);
    expect(rules("{job_id")).toEqual(["path_template.unbalanced_braces"]);
    expect(rules("a}")).toEqual(["path_template.unbalanced_braces"]);
    expect(rules("/abs/{job_id}")).toEqual(["path_template.relative"]);
    expect(rules("../{job_id}")).toEqual(["path_template.relative"]);
    expect(checkPathTemplate("{nope}", "outputs[1].path_template")[0]!.field).toBe("outputs[1].path_template");
  });
});
