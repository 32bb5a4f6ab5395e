import type { PresetSpec } from "../../gen/rendition/v1/preset_pb.js";

export interface PresetRecord {
  id: string;
  /** null for system presets. */
  organizationId: string | null;
  slug: string;
  name: string;
  description: string;
  spec: PresetSpec;
  system: boolean;
  createdAt: Date;
  updatedAt: Date;
}
