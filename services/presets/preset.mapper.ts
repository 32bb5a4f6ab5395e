import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { PresetSchema, type Preset } from "../../gen/rendition/v1/preset_pb.js";
import { CURRENCY } from "../pricing/pricing.js";
import { presetCostPerMinute } from "./preset.service.js";
import type { PresetRecord } from "./preset.types.js";

export function toProtoPreset(p: PresetRecord): Preset {
  return create(PresetSchema, {
    id: p.id,
    slug: p.slug,
    name: p.name,
    description: p.description,
    spec: p.spec,
    estimatedCostPerMinute: presetCostPerMinute(p.spec),
    currency: CURRENCY,
    systemPreset: p.system,
    createdAt: timestampFromDate(p.createdAt),
    updatedAt: timestampFromDate(p.updatedAt),
  });
}
