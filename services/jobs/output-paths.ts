import { OutputType, Quality, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { ImageFormat, type OutputSpec, type ThumbnailSpec } from "../../gen/rendition/v1/job_pb.js";
import type { FieldViolation } from "../common/errors.js";
import { formatOf } from "./output-formats.js";
import { enumWord } from "../common/enums.js";
import { pickTemplate, resolvePathTemplate, type TemplateValues } from "./path-template.js";

function outputValues(jobId: string, outputId: string, index: number, spec: OutputSpec): TemplateValues {
  const first = spec.video[0];
  const resolution = !first
    ? "source"
    : first.resolution
      ? enumWord(Resolution, first.resolution)
      : first.width || first.height
        ? `${first.width || "auto"}x${first.height || "auto"}`
        : "source";
  return {
    job_id: jobId,
    output_id: outputId,
    output_index: String(index),
    format: enumWord(OutputType, spec.type),
    codec: first ? enumWord(VideoCodec, first.codec) : "",
    resolution,
    quality: enumWord(Quality, first?.quality || Quality.STANDARD),
  };
}

export interface PathPlanInput {
  jobId: string;
  outputs: Array<{ id: string; spec: OutputSpec }>;
  thumbnails: Array<{ id: string; spec: ThumbnailSpec }>;
  jobTemplate: string;
  originTemplate: string;
  now: Date;
}

export interface PathPlan {
  outputPaths: string[];
  /** Prefixes: the worker appends an index or sprite suffix and the image extension. */
  thumbnailPaths: string[];
  violations: FieldViolation[];
}

/**
 * Resolves where each output and thumbnail set will be written (relative to the origin's base
 * path) and refuses paths that are empty, climb out with `..`, or collide with one another.
 */
export function planPaths(input: PathPlanInput): PathPlan {
  const violations: FieldViolation[] = [];
  const seen = new Map<string, string>();
  const place = (path: string, what: string, ownTemplate: string, field: string) => {
    // Blame the template that was used: the item's own, the job's, or the origin's.
    const templateField = ownTemplate ? field : input.jobTemplate ? "output_path_template" : "output_origin_id";
    if (!path || path.split("/").some((segment) => segment === "." || segment === "..")) {
      violations.push({ field: templateField, rule: "path_template.unusable_path", message: `resolves to "${path}" for ${what}, which is not a usable path` });
    } else if (seen.has(path)) {
      violations.push({
        field: templateField,
        rule: "output.path_collision",
        message: `resolves to "${path}" for ${what}, the same path as ${seen.get(path)}; include {output_id} or {output_index}`,
      });
    } else {
      seen.set(path, what);
    }
    return path;
  };

  const outputPaths = input.outputs.map(({ id, spec }, index) => {
    const template = pickTemplate(spec.pathTemplate, input.jobTemplate, input.originTemplate);
    let path = resolvePathTemplate(template, outputValues(input.jobId, id, index, spec), input.now);
    // A progressive output is one file: give it its container's extension unless the template did.
    // A segmented output is a directory of segments and manifests under this path.
    const extension = formatOf(spec.type)?.extension;
    if (extension && path && !path.toLowerCase().endsWith(`.${extension}`)) path += `.${extension}`;
    return place(path, `outputs[${index}]`, spec.pathTemplate, `outputs[${index}].path_template`);
  });
  const thumbnailPaths = input.thumbnails.map(({ id, spec }, index) => {
    const template = pickTemplate(spec.pathTemplate, input.jobTemplate, input.originTemplate);
    const format = enumWord(ImageFormat, spec.format || ImageFormat.JPEG);
    const values = { job_id: input.jobId, output_id: id, output_index: String(index), format, codec: "", resolution: "", quality: "" };
    const path = resolvePathTemplate(template, values, input.now);
    return place(path, `thumbnails[${index}]`, spec.pathTemplate, `thumbnails[${index}].path_template`);
  });
  return { outputPaths, thumbnailPaths, violations };
}
