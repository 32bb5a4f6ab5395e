import { ThumbnailMode, type JobServiceCreateRequest } from "../../gen/rendition/v1/job_pb.js";
import type { FieldViolation } from "../common/errors.js";
import { checkOutput } from "./output-rules.js";
import { checkPathTemplate } from "./path-template.js";

/**
 * Rules of a Create request that span fields, so protovalidate cannot state them. Pure: the
 * validation interceptor runs it next to protovalidate so one answer names every violation.
 * Rules that need the database (presets, origins) are checked by JobManager.create.
 */
export function checkCreateJobRequest(req: JobServiceCreateRequest): FieldViolation[] {
  const violations: FieldViolation[] = [];
  if (req.inputOriginId && !req.inputPath) {
    violations.push({ field: "input_path", rule: "job.input_path_required", message: "is required with input_origin_id" });
  }
  if (req.inputUrl && req.inputPath) {
    violations.push({ field: "input_path", rule: "job.input_path_with_url", message: "is only used with input_origin_id, not with input_url" });
  }
  // Backslashes count as separators too: the local storage driver treats them so on any platform.
  if (req.inputPath.split(/[\\/]/).includes("..")) {
    violations.push({ field: "input_path", rule: "job.input_path_relative", message: "must not contain '..' segments" });
  }
  if (req.outputPathTemplate) violations.push(...checkPathTemplate(req.outputPathTemplate, "output_path_template"));

  req.outputs.forEach((output, i) => {
    const path = `outputs[${i}]`;
    // With a preset, the output is checked once the preset is applied (JobManager.create).
    if (!output.preset) violations.push(...checkOutput(output, path));
    if (output.pathTemplate) violations.push(...checkPathTemplate(output.pathTemplate, `${path}.path_template`));
  });

  req.thumbnails.forEach((thumbnail, i) => {
    const path = `thumbnails[${i}]`;
    if (thumbnail.mode === ThumbnailMode.TIMESTAMPS && thumbnail.timestamps.length === 0) {
      violations.push({ field: `${path}.timestamps`, rule: "thumbnail.timestamps_required", message: "needs at least one timestamp in timestamps mode" });
    }
    if (thumbnail.mode !== ThumbnailMode.TIMESTAMPS && thumbnail.timestamps.length > 0) {
      violations.push({ field: `${path}.timestamps`, rule: "thumbnail.timestamps_mode", message: "is only used in THUMBNAIL_MODE_TIMESTAMPS" });
    }
    if (thumbnail.pathTemplate) violations.push(...checkPathTemplate(thumbnail.pathTemplate, `${path}.path_template`));
  });
  return violations;
}
