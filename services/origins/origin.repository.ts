import type { Kysely } from "kysely";
import type { Database, OriginRow } from "../db/schema.js";
import type { PageRequest } from "../common/pagination.js";
import type { OriginRecord } from "./origin.types.js";

function toRecord(row: OriginRow): OriginRecord {
  return {
    id: row.id,
    organizationId: row.organization_id,
    name: row.name,
    description: row.description,
    provider: row.provider,
    canRead: row.can_read,
    canWrite: row.can_write,
    status: row.status,
    basePath: row.base_path,
    pathTemplate: row.path_template,
    location: row.location as OriginRecord["location"],
    credentials: row.credentials,
    lastValidatedAt: row.last_validated_at,
    validationError: row.validation_error,
    archivedAt: row.archived_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export class OriginRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async insert(o: OriginRecord): Promise<void> {
    await this.db
      .insertInto("origins")
      .values({
        id: o.id,
        organization_id: o.organizationId,
        name: o.name,
        description: o.description,
        provider: o.provider,
        can_read: o.canRead,
        can_write: o.canWrite,
        status: o.status,
        base_path: o.basePath,
        path_template: o.pathTemplate,
        location: JSON.stringify(o.location),
        credentials: o.credentials,
        last_validated_at: o.lastValidatedAt,
        validation_error: o.validationError,
        created_at: o.createdAt,
        updated_at: o.updatedAt,
      })
      .execute();
  }

  /** Scoped by organization: another organization's id is simply not found. */
  async get(organizationId: string, id: string): Promise<OriginRecord | undefined> {
    const row = await this.db
      .selectFrom("origins")
      .selectAll()
      .where("organization_id", "=", organizationId)
      .where("id", "=", id)
      .executeTakeFirst();
    return row && toRecord(row);
  }

  async list(organizationId: string, page: PageRequest, includeArchived: boolean): Promise<{ rows: OriginRecord[]; total: number }> {
    let query = this.db.selectFrom("origins").where("organization_id", "=", organizationId);
    if (!includeArchived) query = query.where("status", "!=", "archived");
    const total = await query.select((eb) => eb.fn.countAll<string>().as("n")).executeTakeFirstOrThrow();
    let pageQuery = query.selectAll().orderBy("id", "desc").limit(page.limit + 1);
    if (page.beforeId) pageQuery = pageQuery.where("id", "<", page.beforeId);
    const rows = await pageQuery.execute();
    return { rows: rows.map(toRecord), total: Number(total.n) };
  }

  /**
   * Applies changes; with `unlessArchived`, only while the origin is not archived (compare-and-set),
   * so a slow probe finishing after a Delete cannot bring the origin back.
   */
  async update(
    organizationId: string,
    id: string,
    changes: Partial<Pick<OriginRecord, "name" | "description" | "pathTemplate" | "credentials" | "status" | "lastValidatedAt" | "validationError" | "archivedAt">>,
    options: { unlessArchived?: boolean } = {},
  ): Promise<OriginRecord | undefined> {
    let query = this.db
      .updateTable("origins")
      .set({
        name: changes.name,
        description: changes.description,
        path_template: changes.pathTemplate,
        credentials: changes.credentials,
        status: changes.status,
        last_validated_at: changes.lastValidatedAt,
        validation_error: changes.validationError,
        archived_at: changes.archivedAt,
        updated_at: new Date(),
      })
      .where("organization_id", "=", organizationId)
      .where("id", "=", id);
    if (options.unlessArchived) query = query.where("status", "!=", "archived");
    const row = await query.returningAll().executeTakeFirst();
    return row && toRecord(row);
  }
}
