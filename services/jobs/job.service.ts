import { createHash } from "node:crypto";
import { clone, toJson } from "@bufbuild/protobuf";
import { Priority, Quality } from "../../gen/rendition/v1/common_pb.js";
import { JobServiceCreateRequestSchema, type JobServiceCreateRequest, type OutputSpec } from "../../gen/rendition/v1/job_pb.js";
import {
  addViolations,
  AlreadyExistsError,
  echo,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
  type FieldViolation,
} from "../common/errors.js";
import { newId } from "../common/ids.js";
import { paginate, type PageRequest } from "../common/pagination.js";
import { ORIGIN_NOT_FOUND, type OriginManager } from "../origins/origin.service.js";
import type { OriginRecord } from "../origins/origin.types.js";
import { CURRENCY } from "../pricing/pricing.js";
import { applyPreset, type PresetManager } from "../presets/preset.service.js";
import type { PresetRecord } from "../presets/preset.types.js";
import type { JobEventBus } from "../queue/event-bus.js";
import type { JobRepository } from "./job.repository.js";
import {
  isTerminal,
  type JobOriginSnapshot,
  type JobRecord,
  type JobStatusName,
  type OutboxMessage,
} from "./job.types.js";
import { priorityName } from "./job.mapper.js";
import { checkCreateJobRequest } from "./job.validation.js";
import { checkOutput } from "./output-rules.js";
import { planPaths } from "./output-paths.js";

/**
 * The retry hint of a Create refused for the organization's unfinished-job limit: a slot frees
 * when any of its jobs ends, which nobody can predict (seconds to hours), so it is a polling interval.
 */
const ACTIVE_JOB_RETRY_MS = 30_000;

/** The proto's `outputs` limit (repeated.max_items): database checks never look past it. */
const MAX_OUTPUTS = 10;

function snapshotOf(origin: OriginRecord, path: string): JobOriginSnapshot {
  return { id: origin.id, name: origin.name, provider: origin.provider, path, bucket: origin.location.s3?.bucket ?? "" };
}

/**
 * Stable digest of what was asked, to tell a retry from a different request with the same key.
 * Defaults are filled in first, so spelling one out does not make a different request.
 */
function requestDigest(req: JobServiceCreateRequest): string {
  const normalized = clone(JobServiceCreateRequestSchema, req);
  normalized.idempotencyKey = "";
  normalized.priority ||= Priority.STANDARD;
  for (const output of normalized.outputs) for (const v of output.video) v.quality ||= Quality.STANDARD;
  const canonical = (value: unknown): unknown =>
    Array.isArray(value)
      ? value.map(canonical)
      : value && typeof value === "object"
        ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, canonical(v)]))
        : value;
  return createHash("sha256").update(JSON.stringify(canonical(toJson(JobServiceCreateRequestSchema, normalized)))).digest("hex");
}

export class JobManager {
  /** Called after a commit that wrote an outbox row, so the relay sends it at once. */
  onOutboxWritten: () => void = () => {};

  constructor(
    private readonly repo: JobRepository,
    private readonly origins: OriginManager,
    private readonly presets: PresetManager,
    private readonly events: JobEventBus,
    /** Rules for webhook_url that depend on the server's network settings (see webhooks/webhook-url.ts). */
    private readonly checkWebhookUrl: (url: string, field: string) => FieldViolation | undefined = () => undefined,
    /** Unfinished jobs an organization may have (RENDITION_MAX_ACTIVE_JOBS_PER_ORG); 0: no limit. */
    private readonly limits: { maxActiveJobs: number } = { maxActiveJobs: 0 },
  ) {}

  /**
   * Validates, resolves presets, origins and output paths, then stores the job in PENDING with an
   * outbox message in the same transaction. With an idempotency key, a retry of the same request
   * returns the original job and a different request is ALREADY_EXISTS.
   */
  async create(organizationId: string, req: JobServiceCreateRequest, knownViolations?: FieldViolation[], options: { test?: boolean } = {}): Promise<JobRecord> {
    // The validation interceptor hands over what it found (schema and cross-field rules) so the
    // answer can also name what only the database knows: one error listing every violation.
    const violations = knownViolations ?? checkCreateJobRequest(req);
    if (req.webhookUrl && !violations.some((v) => v.field === "webhook_url")) {
      const refused = this.checkWebhookUrl(req.webhookUrl, "webhook_url");
      if (refused) violations.push(refused);
    }
    const digest = requestDigest(req);
    if (req.idempotencyKey && violations.length === 0) {
      const existing = await this.repo.findByIdempotencyKey(organizationId, req.idempotencyKey);
      if (existing) return this.replay(existing, digest);
    }

    // One lookup per distinct origin (most jobs read and write the same one). An id that already
    // violates the schema (too long) is not looked up: its violation is the answer for that field.
    const violated = new Set(violations.map((v) => v.field));
    const uses = [
      ...(req.inputOriginId && !violated.has("input_origin_id") ? [{ id: req.inputOriginId, need: "read" as const, field: "input_origin_id" }] : []),
      ...(req.outputOriginId && !violated.has("output_origin_id") ? [{ id: req.outputOriginId, need: "write" as const, field: "output_origin_id" }] : []),
    ];
    const found = await this.origins.requireAllForJob(organizationId, uses);
    const byField = new Map(uses.map((use, i) => [use.field, found[i]!]));
    const inputOrigin = byField.get("input_origin_id");
    const outputOrigin = req.outputOriginId ? byField.get("output_origin_id") : { field: "output_origin_id", rule: "required", message: "value is required" };
    for (const o of [inputOrigin, outputOrigin]) if (o && "field" in o && !violations.some((v) => v.field === o.field)) violations.push(o);

    if (req.outputs.length <= MAX_OUTPUTS) addViolations(violations, await this.resolvePresets(organizationId, req.outputs, violated));
    // An unknown origin in an otherwise valid request is not_found (as for another
    // organization's origin); next to other violations it is one of them, so the caller
    // learns everything that is wrong with the request from one answer.
    if (violations.length && violations.every((v) => v.rule === ORIGIN_NOT_FOUND)) throw new NotFoundError(violations[0]!.message);
    if (violations.length) throw new InvalidArgumentError(violations);
    const output = outputOrigin as OriginRecord;

    const now = new Date();
    const jobId = newId("job", now.getTime());
    const outputs = req.outputs.map((spec) => ({ id: newId("out"), spec }));
    const thumbnailSpecs = req.thumbnails.map((spec) => ({ id: newId("thm"), spec }));
    const paths = planPaths({ jobId, outputs, thumbnails: thumbnailSpecs, jobTemplate: req.outputPathTemplate, originTemplate: output.pathTemplate, now });
    if (paths.violations.length) throw new InvalidArgumentError(paths.violations);

    const job: JobRecord = {
      id: jobId,
      organizationId,
      status: "pending",
      progress: 0,
      priority: priorityName(req.priority),
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
      test: options.test ?? false,
      outputs: outputs.map(({ id, spec }, position) => ({
        id,
        position,
        status: "pending",
        spec,
        presetId: spec.preset,
        path: paths.outputPaths[position]!,
        outputUrl: "",
        manifestUrls: [],
        subtitleUrls: [],
        fileSizeBytes: null,
        durationMs: null,
        progress: 0,
        errorCode: "",
        errorMessage: "",
        estimatedCostMinor: null,
        actualCostMinor: null,
      })),
      thumbnails: thumbnailSpecs.map(({ id, spec }, position) => ({
        id,
        position,
        status: "pending",
        spec,
        path: paths.thumbnailPaths[position]!,
        urls: [],
        storyboardUrl: "",
        errorMessage: "",
      })),
    };
    const stored = await this.repo.insert(job, this.message(job, "job.created"), this.limits);
    if (stored === "over_limit") {
      const max = this.limits.maxActiveJobs;
      throw new ResourceExhaustedError(
        `organization ${organizationId} has ${max} unfinished jobs, its concurrent job limit (RENDITION_MAX_ACTIVE_JOBS_PER_ORG=${max}); retry after ${ACTIVE_JOB_RETRY_MS / 1000} s, or once one of them has finished or been canceled`,
        "ACTIVE_JOB_LIMIT",
        ACTIVE_JOB_RETRY_MS,
        { limit: "RENDITION_MAX_ACTIVE_JOBS_PER_ORG", max_active_jobs: String(max) },
      );
    }
    if (stored === "duplicate") {
      // Lost a race with a concurrent request carrying the same key: answer as its retry.
      const winner = await this.repo.findByIdempotencyKey(organizationId, req.idempotencyKey);
      if (!winner) throw new Error(`job insert conflicted but no job holds idempotency key ${req.idempotencyKey}`);
      return this.replay(winner, digest);
    }
    this.onOutboxWritten();
    return job;
  }

  /**
   * Applies the presets outputs refer to, in place (one lookup per distinct reference), and checks
   * each resulting output. Unset qualities become the standard tier, so the stored spec is what
   * will be encoded.
   */
  private async resolvePresets(organizationId: string, outputs: OutputSpec[], violated: ReadonlySet<string>): Promise<FieldViolation[]> {
    const violations: FieldViolation[] = [];
    const presets = new Map<string, Promise<PresetRecord | undefined>>();
    for (const [i, output] of outputs.entries()) {
      // A reference that violates the schema (too long) is not looked up.
      if (!output.preset || violated.has(`outputs[${i}].preset`)) continue;
      if (!presets.has(output.preset)) {
        presets.set(
          output.preset,
          this.presets.get(organizationId, output.preset).catch((err) => {
            if (err instanceof NotFoundError) return undefined;
            throw err;
          }),
        );
      }
      const preset = await presets.get(output.preset)!;
      if (!preset) {
        violations.push({ field: `outputs[${i}].preset`, rule: "output.preset_not_found", message: `preset ${echo(output.preset)} not found` });
        continue;
      }
      outputs[i] = applyPreset(preset, output);
      violations.push(...checkOutput(outputs[i]!, `outputs[${i}]`));
    }
    for (const output of outputs) for (const v of output.video) v.quality ||= Quality.STANDARD;
    return violations;
  }

  async get(organizationId: string, id: string): Promise<JobRecord> {
    const job = await this.repo.get(organizationId, id);
    if (!job) throw new NotFoundError(`job ${echo(id)} not found`);
    return job;
  }

  async list(organizationId: string, status: JobStatusName | undefined, page: PageRequest) {
    const { rows, total } = await this.repo.list(organizationId, status, page);
    return { ...paginate(rows, page.limit), total };
  }

  /** Any non-terminal job can be canceled; finished outputs are kept. */
  async cancel(organizationId: string, id: string): Promise<JobRecord> {
    const job = await this.repo.cancel(organizationId, id, this.message({ id, organizationId }, "job.canceled"));
    return this.announce(job ?? (await this.refuse(organizationId, id, "canceled")));
  }

  /** Starts encoding a delayed-start job that is waiting with its estimate. */
  async confirm(organizationId: string, id: string): Promise<JobRecord> {
    const job = await this.repo.confirm(organizationId, id, this.message({ id, organizationId }, "job.confirmed"));
    return this.announce(job ?? (await this.refuse(organizationId, id, "confirmed")));
  }

  private async announce(job: JobRecord): Promise<JobRecord> {
    this.onOutboxWritten();
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
