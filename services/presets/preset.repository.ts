import { fromJson, toJson } from "@bufbuild/protobuf";
import type { Kysely } from "kysely";
import { PresetSpecSchema } from "../../gen/rendition/v1/preset_pb.js";
import type { Database, PresetRow } from "../db/schema.js";
import type { PresetRecord } from "./preset.types.js";

function toRecord(row: PresetRow): PresetRecord {
  return {
    id: row.id,
    organizationId: row.organization_id,
    slug: row.slug,
    name: row.name,
    description: row.description,
    spec: fromJson(PresetSpecSchema, row.spec as never),
    system: false,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export class PresetRepository {
  constructor(private readonly db: Kysely<Database>) {}

  /** Returns false when the slug is taken in this organization. */
  async insert(p: PresetRecord): Promise<boolean> {
    const result = await this.db
      .insertInto("presets")
      .values({
        id: p.id,
        organization_id: p.organizationId!,
        slug: p.slug,
        name: p.name,
        description: p.description,
        spec: JSON.stringify(toJson(PresetSpecSchema, p.spec)),
        created_at: p.createdAt,
        updated_at: p.updatedAt,
      })
      .onConflict((oc) => oc.columns(["organization_id", "slug"]).doNothing())
      .executeTakeFirst();
    return (result.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  /** Ids start with `pst_`, which slugs may not, so the form of the value says which column to match. */
  async getByIdOrSlug(organizationId: string, idOrSlug: string): Promise<PresetRecord | undefined> {
    const row = await this.db
      .selectFrom("presets")
      .selectAll()
      .where("organization_id", "=", organizationId)
      .where(idOrSlug.startsWith("pst_") ? "id" : "slug", "=", idOrSlug)
      .executeTakeFirst();
    return row && toRecord(row);
  }

  async list(organizationId: string, limit: number, beforeId?: string): Promise<PresetRecord[]> {
    let query = this.db.selectFrom("presets").selectAll().where("organization_id", "=", organizationId);
    if (beforeId) query = query.where("id", "<", beforeId);
    const rows = await query.orderBy("id", "desc").limit(limit).execute();
    return rows.map(toRecord);
  }

  async count(organizationId: string): Promise<number> {
    const row = await this.db
      .selectFrom("presets")
      .select((eb) => eb.fn.countAll<string>().as("n"))
      .where("organization_id", "=", organizationId)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async update(organizationId: string, id: string, changes: { name?: string; description?: string; spec?: PresetRecord["spec"] }): Promise<PresetRecord | undefined> {
    const row = await this.db
      .updateTable("presets")
      .set({
        name: changes.name,
        description: changes.description,
        spec: changes.spec ? JSON.stringify(toJson(PresetSpecSchema, changes.spec)) : undefined,
        updated_at: new Date(),
      })
      .where("organization_id", "=", organizationId)
      .where("id", "=", id)
      .returningAll()
      .executeTakeFirst();
    return row && toRecord(row);
  }

  async delete(organizationId: string, id: string): Promise<boolean> {
    const result = await this.db.deleteFrom("presets").where("organization_id", "=", organizationId).where("id", "=", id).executeTakeFirst();
    return result.numDeletedRows > 0n;
  }
}
