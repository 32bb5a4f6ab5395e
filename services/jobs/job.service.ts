import { createHash } from "node:crypto";
import { toJson } from "@bufbuild/protobuf";
import { OutputType, Priority, Quality, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobServiceCreateRequestSchema, ImageFormat, type JobServiceCreateRequest, type OutputSpec } from "../../gen/rendition/v1/job_pb.js";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  type FieldViolation,
} from "../common/errors.js";
import { newId } from "../common/ids.js";
import { paginate, type PageRequest } from "../common/pagination.js";
import type { OriginManager } from "../origins/origin.service.js";
import type { OriginRecord } from "../origins/origin.types.js";
import { CURRENCY } from "../pricing/pricing.js";
import { applyPreset, type PresetManager } from "../presets/preset.service.js";
import type { JobEventBus } from "../queue/event-bus.js";
import type { JobRepository } from "./job.repository.js";
import {
  ACTIVE_STATUSES,
  isTerminal,
  type JobOriginSnapshot,
  type JobOutputRecord,
  type JobRecord,
  type JobStatusName,
  type JobThumbnailRecord,
  type OutboxMessage,
  type PriorityName,
} from "./job.types.js";
import { checkCreateJobRequest } from "./job.validation.js";
import { checkOutputShape, PROGRESSIVE_TYPES } from "./output-rules.js";
import { pickTemplate, resolvePathTemplate } from "./path-template.js";

const PRIORITY: Record<Priority, PriorityName> = {
  [Priority.UNSPECIFIED]: "standard",
  [Priority.ECONOMY]: "economy",
  [Priority.STANDARD]: "standard",
  [Priority.PREMIUM]: "premium",
};

/** Lowercase enum value without its prefix: VIDEO_CODEC_H264 -> "h264", RESOLUTION_1080P -> "1080p". */
function enumWord(names: Record<number, string>, value: number): string {
  return (names[value] ?? "").replace(/^RESOLUTION_/, "").toLowerCase();
}

/** Values of the path-template variables for one output. */
function templateValues(jobId: string, outputId: string, index: number, spec: OutputSpec) {
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

function snapshotOf(origin: OriginRecord, path: string): JobOriginSnapshot {
  return { id: origin.id, name: origin.name, provider: origin.provider, path, bucket: origin.location.s3?.bucket ?? "" };
}

/** Stable digest of what was asked, to tell a retry from a different request with the same key. */
function requestDigest(req: JobServiceCreateRequest): string {
  const canonical = (value: unknown): unknown =>
    Array.isArray(value)
      ? value.map(canonical)
      : value && typeof value === "object"
        ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, canonical(v)]))
        : value;
  const json = toJson(JobServiceCreateRequestSchema, req);
  return createHash("sha256").update(JSON.stringify(canonical(json))).digest("hex");
}

export class JobManager {
  constructor(
    private readonly repo: JobRepository,
    private readonly origins: OriginManager,
    private readonly presets: PresetManager,
    private readonly events: JobEventBus,
  ) {}

  /**
   * Validates, resolves presets, origins and output paths, then stores the job in PENDING with an
   * outbox message in the same transaction. With an idempotency key, a retry of the same request
   * returns the original job and a different request is ALREADY_EXISTS.
   */
  async create(organizationId: string, req: JobServiceCreateRequest, knownViolations?: FieldViolation[]): Promise<JobRecord> {
    // The validation interceptor hands over what it found (schema and cross-field rules) so the
    // answer can also name what only the database knows: one error listing every violation.
    const violations = knownViolations ?? checkCreateJobRequest(req);
    const digest = requestDigest(req);
    if (req.idempotencyKey && violations.length === 0) {
      const existing = await this.repo.findByIdempotencyKey(organizationId, req.idempotencyKey);
      if (existing) return this.replay(existing, digest);
    }

    const inputOrigin = req.inputOriginId
      ? await this.origins.requireForJob(organizationId, req.inputOriginId, "read", "input_origin_id")
      : undefined;
    const outputOrigin = req.outputOriginId
      ? await this.origins.requireForJob(organizationId, req.outputOriginId, "write", "output_origin_id")
      : { field: "output_origin_id", rule: "required", message: "value is required" };
    for (const o of [inputOrigin, outputOrigin]) {
      if (o && "field" in o && !violations.some((v) => v.field === o.field)) violations.push(o);
    }

    const specs: OutputSpec[] = [];
    for (const [i, output] of req.outputs.entries()) {
      if (!output.preset) {
        specs.push(output);
        continue;
      }
      const preset = await this.presets.get(organizationId, output.preset).catch((err) => {
        if (err instanceof NotFoundError) return undefined;
        throw err;
      });
      if (!preset) {
        violations.push({ field: `outputs[${i}].preset`, rule: "output.preset_not_found", message: `preset ${output.preset} not found` });
        specs.push(output);
        continue;
      }
      const resolved = applyPreset(preset, output);
      violations.push(...checkOutputShape(resolved.type, resolved.video, `outputs[${i}]`));
      specs.push(resolved);
    }
    if (violations.length) throw new InvalidArgumentError(violations);
    // Stored as it will be encoded: an unset quality is the standard tier.
    for (const spec of specs) for (const v of spec.video) v.quality ||= Quality.STANDARD;
    const output = outputOrigin as OriginRecord;

    const now = new Date();
    const jobId = newId("job", now.getTime());
    const outputs: JobOutputRecord[] = specs.map((spec, position) => {
      const id = newId("out");
      const template = pickTemplate(spec.pathTemplate, req.outputPathTemplate, output.pathTemplate);
      let path = resolvePathTemplate(template, templateValues(jobId, id, position, spec), now);
      // A progressive output is one file: give it its container's extension unless the template did.
      const extension = `.${enumWord(OutputType, spec.type)}`;
      if (PROGRESSIVE_TYPES.has(spec.type) && !path.toLowerCase().endsWith(extension)) path += extension;
      return {
        id,
        position,
        status: "pending",
        spec,
        presetId: spec.preset,
        path,
        outputUrl: "",
        fileSizeBytes: null,
        durationMs: null,
        progress: 0,
        errorCode: "",
        errorMessage: "",
        estimatedCostMinor: null,
        actualCostMinor: null,
      };
    });
    const duplicate = outputs.findIndex((o, i) => outputs.findIndex((p) => p.path === o.path) !== i);
    if (duplicate !== -1) {
      throw new InvalidArgumentError([
        {
          field: `outputs[${duplicate}].path_template`,
          rule: "output.path_collision",
          message: `resolves to "${outputs[duplicate]!.path}", the same path as another output; include {output_id} or {output_index}`,
        },
      ]);
    }
    const thumbnails: JobThumbnailRecord[] = req.thumbnails.map((spec, position) => {
      const id = newId("thm");
      const template = pickTemplate(spec.pathTemplate, req.outputPathTemplate, output.pathTemplate);
      const format = enumWord(ImageFormat, spec.format || ImageFormat.JPEG);
      const values = { job_id: jobId, output_id: id, output_index: String(position), format, codec: "", resolution: "", quality: "" };
      return { id, position, status: "pending", spec, path: resolvePathTemplate(template, values, now), urls: [], storyboardUrl: "", errorMessage: "" };
    });

    const job: JobRecord = {
      id: jobId,
      organizationId,
      status: "pending",
      progress: 0,
      priority: PRIORITY[req.priority],
      inputUrl: req.inputUrl,
      inputOriginId: req.inputOriginId || null,
      inputPath: req.inputPath,
      inputOrigin: inputOrigin ? snapshotOf(inputOrigin as OriginRecord, req.inputPath) : null,
      outputOriginId: output.id,
      outputOrigin: snapshotOf(output, output.basePath),
      inputMetadata: null,
      estimatedCostMinor: null,
      actualCostMinor: null,
      currency: CURRENCY,
      errorCode: "",
      errorMessage: "",
      webhookUrl: req.webhookUrl,
      metadata: { ...req.metadata },
      delayedStart: req.delayedStart,
      execution: null,
      idempotencyKey: req.idempotencyKey || null,
      requestDigest: digest,
      attempt: 0,
      createdAt: now,
      updatedAt: now,
      probedAt: null,
      startedAt: null,
      completedAt: null,
      confirmedAt: null,
      outputs,
      thumbnails,
    };
    const stored = await this.repo.insert(job, this.message(job, "job.created"));
    if (!stored) {
      // Lost a race with a concurrent request carrying the same key: answer as its retry.
      const winner = await this.repo.findByIdempotencyKey(organizationId, req.idempotencyKey);
      if (!winner) throw new Error(`job insert conflicted but no job holds idempotency key ${req.idempotencyKey}`);
      return this.replay(winner, digest);
    }
    return job;
  }

  async get(organizationId: string, id: string): Promise<JobRecord> {
    const job = await this.repo.get(organizationId, id);
    if (!job) throw new NotFoundError(`job ${id} not found`);
    return job;
  }

  async list(organizationId: string, status: JobStatusName | undefined, page: PageRequest) {
    const { rows, total } = await this.repo.list(organizationId, status, page);
    return { ...paginate(rows, page.limit), total };
  }

  /** Any non-terminal job can be canceled; finished outputs are kept. */
  async cancel(organizationId: string, id: string): Promise<JobRecord> {
    const now = new Date();
    const job = await this.repo.transition(organizationId, id, ACTIVE_STATUSES, "canceled", { completedAt: now }, this.message({ id, organizationId }, "job.canceled"));
    return this.announce(job ?? (await this.refuse(organizationId, id, "canceled")));
  }

  /** Starts encoding a delayed-start job that is waiting with its estimate. */
  async confirm(organizationId: string, id: string): Promise<JobRecord> {
    const now = new Date();
    const job = await this.repo.transition(
      organizationId,
      id,
      ["awaiting_confirmation"],
      "processing",
      { confirmedAt: now, startedAt: now },
      this.message({ id, organizationId }, "job.confirmed"),
    );
    return this.announce(job ?? (await this.refuse(organizationId, id, "confirmed")));
  }

  private async announce(job: JobRecord): Promise<JobRecord> {
    await this.events.publish({ jobId: job.id, organizationId: job.organizationId, kind: "status", status: job.status, progress: job.progress });
    return job;
  }

  /** Why a transition did not happen: NOT_FOUND, or FAILED_PRECONDITION naming the current state. */
  private async refuse(organizationId: string, id: string, verb: "canceled" | "confirmed"): Promise<never> {
    const job = await this.get(organizationId, id);
    const rule =
      verb === "canceled"
        ? `only jobs that have not finished can be canceled`
        : `only jobs in JOB_STATUS_AWAITING_CONFIRMATION (created with delayed_start) can be confirmed`;
    throw new FailedPreconditionError(`job ${id} is ${job.status}${isTerminal(job.status) ? " (terminal)" : ""}: ${rule}`);
  }

  private replay(existing: JobRecord, digest: string): JobRecord {
    if (existing.requestDigest !== digest) {
      throw new AlreadyExistsError(
        `idempotency key "${existing.idempotencyKey}" was already used for job ${existing.id} with a different request`,
      );
    }
    return existing;
  }

  private message(job: Pick<JobRecord, "id" | "organizationId">, topic: OutboxMessage["topic"]): OutboxMessage {
    return { id: newId("evt"), jobId: job.id, topic, payload: { job_id: job.id, organization_id: job.organizationId } };
  }
}
