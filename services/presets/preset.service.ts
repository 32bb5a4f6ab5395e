import { create } from "@bufbuild/protobuf";
import { OutputType } from "../../gen/rendition/v1/common_pb.js";
import { AudioTrackSchema, OutputSpecSchema, type OutputSpec } from "../../gen/rendition/v1/job_pb.js";
import { Container, DeliveryFormat, type PresetSpec } from "../../gen/rendition/v1/preset_pb.js";
import { AlreadyExistsError, echo, FailedPreconditionError, InvalidArgumentError, NotFoundError, type FieldViolation } from "../common/errors.js";
import { newId } from "../common/ids.js";
import { encodeCursor, type PageRequest } from "../common/pagination.js";
import { checkOutputShape } from "../jobs/output-rules.js";
import { variantPricing } from "../pricing/estimate.js";
import { formatMicros, outputCostMicros } from "../pricing/pricing.js";
import type { PresetRepository } from "./preset.repository.js";
import type { PresetRecord } from "./preset.types.js";
import { SYSTEM_PRESETS, findSystemPreset } from "./system-presets.js";

/** The output type a preset produces, or UNSPECIFIED when its container/delivery pair is not one. */
export function presetOutputType(spec: PresetSpec): OutputType {
  switch (spec.deliveryFormat) {
    case DeliveryFormat.HLS:
      return OutputType.HLS;
    case DeliveryFormat.DASH:
      return OutputType.DASH;
    case DeliveryFormat.CMAF:
      return OutputType.ADAPTIVE;
    default:
      return (
        {
          [Container.MP4]: OutputType.MP4,
          [Container.WEBM]: OutputType.WEBM,
          [Container.MKV]: OutputType.MKV,
          [Container.MOV]: OutputType.MOV,
        } as Partial<Record<Container, OutputType>>
      )[spec.container] ?? OutputType.UNSPECIFIED;
  }
}

/** Per-minute cost of a preset at standard priority, for a 1080p30 source. */
export function presetCostPerMinute(spec: PresetSpec): string {
  return formatMicros(outputCostMicros(60_000, { variants: spec.video.map((v) => variantPricing(v)) }));
}

/**
 * Applies a preset to an output: the preset supplies type, variants, audio, content type and
 * faststart; anything the output sets inline wins. Variants without a quality take the preset's tier.
 */
export function applyPreset(preset: PresetRecord, output: OutputSpec): OutputSpec {
  const spec = preset.spec;
  const video = (output.video.length ? output.video : spec.video).map((v) => ({
    ...v,
    quality: v.quality || spec.quality,
  }));
  const audio = output.audio.length ? output.audio : spec.audio ? [create(AudioTrackSchema, { settings: spec.audio })] : [];
  return create(OutputSpecSchema, {
    ...output,
    type: output.type || presetOutputType(spec),
    video,
    audio,
    contentType: output.contentType || spec.contentType,
    faststart: output.faststart ?? spec.faststart,
    preset: preset.id,
  });
}

function checkSpec(spec: PresetSpec): FieldViolation[] {
  const type = presetOutputType(spec);
  if (type === OutputType.UNSPECIFIED) {
    return [{ field: "spec.container", rule: "preset.container_delivery", message: "this container cannot be delivered progressively: use mp4, webm, mkv or mov, or an hls/dash/cmaf delivery format" }];
  }
  return checkOutputShape(type, spec.video, "spec");
}

export class PresetManager {
  constructor(private readonly repo: PresetRepository) {}

  async create(organizationId: string, input: { slug: string; name: string; description: string; spec: PresetSpec }): Promise<PresetRecord> {
    const violations = checkSpec(input.spec);
    if (findSystemPreset(input.slug)) {
      violations.push({ field: "slug", rule: "preset.slug_reserved", message: `"${input.slug}" is the slug of a system preset` });
    } else if (input.slug.startsWith("pst_")) {
      violations.push({ field: "slug", rule: "preset.slug_reserved", message: "must not start with pst_, the prefix of preset ids" });
    }
    if (violations.length) throw new InvalidArgumentError(violations);
    const now = new Date();
    const record: PresetRecord = { id: newId("pst"), organizationId, ...input, system: false, createdAt: now, updatedAt: now };
    if (!(await this.repo.insert(record))) throw new AlreadyExistsError(`a preset with slug "${input.slug}" already exists`);
    return record;
  }

  /** By id or slug; system presets are found in every organization. */
  async get(organizationId: string, idOrSlug: string): Promise<PresetRecord> {
    const preset = findSystemPreset(idOrSlug) ?? (await this.repo.getByIdOrSlug(organizationId, idOrSlug));
    if (!preset) throw new NotFoundError(`preset ${echo(idOrSlug)} not found`);
    return preset;
  }

  /**
   * System presets first (in their fixed order), then the organization's, newest first. The
   * cursor is the last id returned, so it can point into either part.
   */
  async list(organizationId: string, page: PageRequest, excludeSystem: boolean) {
    const systems = excludeSystem ? [] : [...SYSTEM_PRESETS];
    const systemIndex = page.beforeId ? systems.findIndex((p) => p.id === page.beforeId) : -1;
    const inOwnPart = page.beforeId !== undefined && systemIndex === -1;
    const fromSystems = inOwnPart ? [] : systems.slice(systemIndex + 1, systemIndex + 1 + page.limit + 1);
    const wanted = page.limit + 1 - fromSystems.length;
    const own = wanted > 0 ? await this.repo.list(organizationId, wanted, inOwnPart ? page.beforeId : undefined) : [];
    const rows = [...fromSystems, ...own];
    const items = rows.slice(0, page.limit);
    const nextCursor = rows.length > page.limit ? encodeCursor(items[items.length - 1]!.id) : "";
    const total = systems.length + (await this.repo.count(organizationId));
    return { items, nextCursor, total };
  }

  /** By id or slug, like Get. */
  async update(organizationId: string, idOrSlug: string, input: { name?: string; description?: string; spec?: PresetSpec }): Promise<PresetRecord> {
    const preset = await this.ownPreset(organizationId, idOrSlug);
    if (input.spec) {
      const violations = checkSpec(input.spec);
      if (violations.length) throw new InvalidArgumentError(violations);
    }
    const updated = await this.repo.update(organizationId, preset.id, input);
    if (!updated) throw new NotFoundError(`preset ${echo(idOrSlug)} not found`);
    return updated;
  }

  /** By id or slug, like Get. */
  async delete(organizationId: string, idOrSlug: string): Promise<void> {
    const preset = await this.ownPreset(organizationId, idOrSlug);
    if (!(await this.repo.delete(organizationId, preset.id))) throw new NotFoundError(`preset ${echo(idOrSlug)} not found`);
  }

  /** One of the organization's own presets: system presets are read-only. */
  private async ownPreset(organizationId: string, idOrSlug: string): Promise<PresetRecord> {
    const preset = await this.get(organizationId, idOrSlug);
    if (preset.system) throw new FailedPreconditionError(`system preset ${preset.slug} is read-only; create your own preset instead`);
    return preset;
  }
}
