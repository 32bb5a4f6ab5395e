import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { OutputType, Quality, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { ImageFormat, OutputSpecSchema, ThumbnailMode, ThumbnailSpecSchema } from "../../gen/rendition/v1/job_pb.js";
import { planPaths, type PathPlanInput } from "../../services/jobs/output-paths.js";

const now = new Date("2026-03-04T05:06:07Z");
const mp4 = (init: Record<string, unknown> = {}) =>
  create(OutputSpecSchema, { type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_720P, quality: Quality.ECONOMY }], ...init });
const plan = (input: Partial<PathPlanInput>) =>
  planPaths({ jobId: "job_1", outputs: [], thumbnails: [], jobTemplate: "", originTemplate: "", now, ...input });

describe("planPaths", () => {
  it("defaults to {job_id}/{output_id} plus the container extension; streaming outputs stay prefixes", () => {
    const result = plan({
      outputs: [
        { id: "out_a", spec: mp4() },
        { id: "out_b", spec: create(OutputSpecSchema, { type: OutputType.HLS, video: [{ codec: VideoCodec.H264 }] }) },
      ],
    });
    expect(result).toEqual({ outputPaths: ["job_1/out_a.mp4", "job_1/out_b"], thumbnailPaths: [], violations: [] });
  });

  it("uses output > job > origin templates and fills every variable", () => {
    const result = plan({
      outputs: [
        { id: "out_a", spec: mp4({ pathTemplate: "own/{output_index}-{codec}-{resolution}-{quality}.{format}" }) },
        { id: "out_b", spec: mp4({ video: [{ codec: VideoCodec.H264, width: 640 }] }) },
      ],
      thumbnails: [{ id: "thm_c", spec: create(ThumbnailSpecSchema, { mode: ThumbnailMode.SPRITE, format: ImageFormat.WEBP }) }],
      jobTemplate: "{date}/{job_id}/{resolution}/{output_id}.{format}",
      originTemplate: "ignored/{output_id}",
    });
    expect(result.violations).toEqual([]);
    expect(result.outputPaths).toEqual(["own/0-h264-720p-economy.mp4", "2026/03/04/job_1/640xauto/out_b.mp4"]);
    // Thumbnails have no codec or resolution: those segments fall away.
    expect(result.thumbnailPaths).toEqual(["2026/03/04/job_1/thm_c.webp"]);
  });

  it("takes the origin's template when neither output nor job has one", () => {
    expect(plan({ outputs: [{ id: "out_a", spec: mp4() }], originTemplate: "renders/{output_id}" }).outputPaths).toEqual(["renders/out_a.mp4"]);
  });

  it("refuses unusable and colliding paths, blaming the template that produced them", () => {
    const thumb = create(ThumbnailSpecSchema, { mode: ThumbnailMode.SINGLE });
    const result = plan({
      outputs: [
        { id: "out_a", spec: mp4() },
        { id: "out_b", spec: mp4() },
      ],
      thumbnails: [{ id: "thm_c", spec: thumb }],
      jobTemplate: "{job_id}/{codec}",
    });
    // out_b resolves to job_1/h264.mp4 again; the thumbnail (no codec) to "job_1", which is fine.
    expect(result.violations).toEqual([
      {
        field: "output_path_template",
        rule: "output.path_collision",
        message: 'resolves to "job_1/h264.mp4" for outputs[1], the same path as outputs[0]; include {output_id} or {output_index}',
      },
    ]);
    expect(result.thumbnailPaths).toEqual(["job_1"]);
    const dotted = plan({ thumbnails: [{ id: "thm_c", spec: thumb }], jobTemplate: "{job_id}/.{codec}." });
    expect(dotted.violations).toEqual([
      { field: "output_path_template", rule: "path_template.unusable_path", message: 'resolves to "job_1/.." for thumbnails[0], which is not a usable path' },
    ]);
    const empty = plan({ thumbnails: [{ id: "thm_c", spec: create(ThumbnailSpecSchema, { mode: ThumbnailMode.SINGLE, pathTemplate: "{codec}" }) }] });
    expect(empty.violations.map((v) => `${v.field} ${v.rule}`)).toEqual(["thumbnails[0].path_template path_template.unusable_path"]);
    const originClash = plan({ outputs: [{ id: "out_a", spec: mp4() }, { id: "out_b", spec: mp4() }], originTemplate: "same" });
    expect(originClash.violations.map((v) => `${v.field} ${v.rule}`)).toEqual(["output_origin_id output.path_collision"]);
  });
});
