import type { Kysely } from "kysely";
import type { ApiKeyRow, Database } from "../db/schema.js";
import { newId } from "../common/ids.js";
import type { PageRequest } from "../common/pagination.js";
import { generateApiKey } from "./api-key.js";

export interface ApiKeyRecord {
  id: string;
  organizationId: string;
  name: string;
  displayPrefix: string;
  test: boolean;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
  /** A rolled key stops working here; null: no expiry. */
  expiresAt: Date | null;
}

export interface CreatedApiKey {
  id: string;
  organizationId: string;
  /** The secret, returned once and never stored. */
  key: string;
  record: ApiKeyRecord;
}

/** What a guarded revoke or a roll found. */
export type KeyChange<T> =
  | { outcome: "done"; value: T }
  | { outcome: "not_found" }
  | { outcome: "inactive"; key: ApiKeyRecord }
  | { outcome: "last_active"; key: ApiKeyRecord };

/** Neither revoked nor past its expiry at `now`. */
export function isActive(key: Pick<ApiKeyRecord, "revokedAt" | "expiresAt">, now: Date = new Date()): boolean {
  return key.revokedAt === null && (key.expiresAt === null || key.expiresAt > now);
}

function toRecord(row: ApiKeyRow): ApiKeyRecord {
  return {
    id: row.id,
    organizationId: row.organization_id,
    name: row.name,
    displayPrefix: row.display_prefix,
    test: row.test,
    createdAt: row.created_at as unknown as Date,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
    expiresAt: row.expires_at,
  };
}

/** Every column but the digest: nothing read for a listing can leak it. */
const KEY_COLUMNS = ["id", "organization_id", "name", "display_prefix", "test", "created_at", "last_used_at", "revoked_at", "expires_at"] as const;

/** Organizations and API keys. */
export class AuthRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async createOrganization(name: string): Promise<{ id: string; name: string }> {
    const id = newId("org");
    await this.db.insertInto("organizations").values({ id, name }).execute();
    return { id, name };
  }

  async organizationExists(id: string): Promise<boolean> {
    const row = await this.db.selectFrom("organizations").select("id").where("id", "=", id).executeTakeFirst();
    return row !== undefined;
  }

  async countOrganizations(): Promise<number> {
    const row = await this.db.selectFrom("organizations").select((eb) => eb.fn.countAll<string>().as("n")).executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async createApiKey(organizationId: string, name = "", options: { test?: boolean } = {}, db: Kysely<Database> = this.db): Promise<CreatedApiKey> {
    const { key, digest, displayPrefix } = generateApiKey(options);
    const id = newId("ak");
    const row = await db
      .insertInto("api_keys")
      .values({ id, organization_id: organizationId, name, display_prefix: displayPrefix, key_digest: digest, test: options.test ?? false })
      .returning(KEY_COLUMNS)
      .executeTakeFirstOrThrow();
    return { id, organizationId, key, record: toRecord(row as ApiKeyRow) };
  }

  async getApiKey(organizationId: string, id: string): Promise<ApiKeyRecord | undefined> {
    const row = await this.db.selectFrom("api_keys").select(KEY_COLUMNS).where("organization_id", "=", organizationId).where("id", "=", id).executeTakeFirst();
    return row && toRecord(row as ApiKeyRow);
  }

  /** Newest first (ids sort by creation time). */
  async listApiKeys(organizationId: string, page: PageRequest): Promise<{ rows: ApiKeyRecord[]; total: number }> {
    let query = this.db.selectFrom("api_keys").select(KEY_COLUMNS).where("organization_id", "=", organizationId);
    if (page.beforeId) query = query.where("id", "<", page.beforeId);
    const rows = await query.orderBy("id", "desc").limit(page.limit + 1).execute();
    const count = await this.db
      .selectFrom("api_keys")
      .select((eb) => eb.fn.countAll<string>().as("n"))
      .where("organization_id", "=", organizationId)
      .executeTakeFirstOrThrow();
    return { rows: rows.map((r) => toRecord(r as ApiKeyRow)), total: Number(count.n) };
  }

  /**
   * The operator's revoke (CLI): any key by id, unconditionally. Returns true when a key was
   * revoked now, false when it did not exist or was revoked already.
   */
  async revokeApiKey(id: string): Promise<boolean> {
    const result = await this.db
      .updateTable("api_keys")
      .set({ revoked_at: new Date() })
      .where("id", "=", id)
      .where("revoked_at", "is", null)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  /**
   * Revokes an organization's key unless it no longer works, or unless no other active key
   * without an expiry would remain (the organization would be locked out). The organization's
   * keys are locked for the check, so two concurrent revokes cannot both pass it.
   */
  async revokeGuarded(organizationId: string, id: string): Promise<KeyChange<ApiKeyRecord>> {
    return this.db.transaction().execute(async (trx) => {
      const now = new Date();
      const keys = await this.lockKeys(trx, organizationId);
      const key = keys.find((k) => k.id === id);
      if (!key) return { outcome: "not_found" };
      if (!isActive(key, now)) return { outcome: "inactive", key };
      if (!keys.some((k) => k.id !== id && isActive(k, now) && k.expiresAt === null)) return { outcome: "last_active", key };
      const row = await trx.updateTable("api_keys").set({ revoked_at: now }).where("id", "=", id).returning(KEY_COLUMNS).executeTakeFirstOrThrow();
      return { outcome: "done", value: toRecord(row as ApiKeyRow) };
    });
  }

  /**
   * A new key with the old one's name and kind; the old one is revoked (grace 0) or expires
   * after the grace period (an earlier expiry it already had is kept). One transaction.
   */
  async rollApiKey(organizationId: string, id: string, graceSeconds: number): Promise<KeyChange<{ created: CreatedApiKey; previous: ApiKeyRecord }>> {
    return this.db.transaction().execute(async (trx) => {
      const now = new Date();
      const keys = await this.lockKeys(trx, organizationId);
      const key = keys.find((k) => k.id === id);
      if (!key) return { outcome: "not_found" };
      if (!isActive(key, now)) return { outcome: "inactive", key };
      const created = await this.createApiKey(organizationId, key.name, { test: key.test }, trx);
      const graceEnd = new Date(now.getTime() + graceSeconds * 1000);
      const change =
        graceSeconds === 0
          ? { revoked_at: now }
          : { expires_at: key.expiresAt && key.expiresAt < graceEnd ? key.expiresAt : graceEnd };
      const row = await trx.updateTable("api_keys").set(change).where("id", "=", id).returning(KEY_COLUMNS).executeTakeFirstOrThrow();
      return { outcome: "done", value: { created, previous: toRecord(row as ApiKeyRow) } };
    });
  }

  private async lockKeys(trx: Kysely<Database>, organizationId: string): Promise<ApiKeyRecord[]> {
    const rows = await trx.selectFrom("api_keys").select(KEY_COLUMNS).where("organization_id", "=", organizationId).orderBy("id").forUpdate().execute();
    return rows.map((r) => toRecord(r as ApiKeyRow));
  }

  /** Records that a key was used, at most once a minute per key (a write per request would be waste). */
  async touchApiKey(id: string): Promise<void> {
    const now = new Date();
    await this.db
      .updateTable("api_keys")
      .set({ last_used_at: now })
      .where("id", "=", id)
      .where((eb) => eb.or([eb("last_used_at", "is", null), eb("last_used_at", "<", new Date(now.getTime() - 60_000))]))
      .execute();
  }

  /** The organization of a key with this digest that is neither revoked nor expired, or undefined. */
  async findActiveKey(digest: string): Promise<{ id: string; organizationId: string; test: boolean } | undefined> {
    const row = await this.db
      .selectFrom("api_keys")
      .select(["id", "organization_id", "test"])
      .where("key_digest", "=", digest)
      .where("revoked_at", "is", null)
      .where((eb) => eb.or([eb("expires_at", "is", null), eb("expires_at", ">", new Date())]))
      .executeTakeFirst();
    return row && { id: row.id, organizationId: row.organization_id, test: row.test };
  }
}
