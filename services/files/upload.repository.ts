import { sql, type Kysely } from "kysely";
import type { Database, UploadRow } from "../db/schema.js";

export type UploadStateName = "pending" | "uploading" | "completed" | "aborted";

export interface UploadRecord {
  id: string;
  organizationId: string;
  originId: string;
  provider: "s3" | "local";
  /** As the caller's job names it (input_path), relative to the origin's base path. */
  path: string;
  /** base path + path, what the storage driver is given. */
  objectPath: string;
  contentType: string;
  sizeBytes: number;
  multipartUploadId: string;
  partSizeBytes: number | null;
  state: UploadStateName;
  receivedBytes: number | null;
  expiresAt: Date;
  createdAt: Date;
  completedAt: Date | null;
}

function toRecord(row: UploadRow): UploadRecord {
  return {
    id: row.id,
    organizationId: row.organization_id,
    originId: row.origin_id,
    provider: row.provider,
    path: row.path,
    objectPath: row.object_path,
    contentType: row.content_type,
    sizeBytes: Number(row.size_bytes),
    multipartUploadId: row.multipart_upload_id,
    partSizeBytes: row.part_size_bytes === null ? null : Number(row.part_size_bytes),
    state: row.state,
    receivedBytes: row.received_bytes === null ? null : Number(row.received_bytes),
    expiresAt: row.expires_at,
    createdAt: row.created_at,
    completedAt: row.completed_at,
  };
}

export class UploadRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async insert(u: UploadRecord): Promise<void> {
    await this.db
      .insertInto("uploads")
      .values({
        id: u.id,
        organization_id: u.organizationId,
        origin_id: u.originId,
        provider: u.provider,
        path: u.path,
        object_path: u.objectPath,
        content_type: u.contentType,
        size_bytes: u.sizeBytes,
        multipart_upload_id: u.multipartUploadId,
        part_size_bytes: u.partSizeBytes,
        state: u.state,
        expires_at: u.expiresAt,
        created_at: u.createdAt,
      })
      .execute();
  }

  /** Scoped by organization: another organization's id is not found. */
  async get(organizationId: string, id: string): Promise<UploadRecord | undefined> {
    const row = await this.db.selectFrom("uploads").selectAll().where("organization_id", "=", organizationId).where("id", "=", id).executeTakeFirst();
    return row && toRecord(row);
  }

  /** By id alone: for a signed upload URL, whose signature already names the upload. */
  async getById(id: string): Promise<UploadRecord | undefined> {
    const row = await this.db.selectFrom("uploads").selectAll().where("id", "=", id).executeTakeFirst();
    return row && toRecord(row);
  }

  /** Compare-and-set from one of `from` to `to`; the updated record, or undefined when the state was another. */
  async transition(
    id: string,
    from: UploadStateName[],
    to: UploadStateName,
    extra: { receivedBytes?: number; unexpired?: boolean } = {},
  ): Promise<UploadRecord | undefined> {
    let query = this.db
      .updateTable("uploads")
      .set({
        state: to,
        ...(extra.receivedBytes !== undefined ? { received_bytes: extra.receivedBytes } : {}),
        ...(to === "completed" ? { completed_at: new Date() } : {}),
      })
      .where("id", "=", id)
      .where("state", "in", from);
    if (extra.unexpired) query = query.where("expires_at", ">", sql<Date>`now()`);
    const row = await query.returningAll().executeTakeFirst();
    return row && toRecord(row);
  }
}
