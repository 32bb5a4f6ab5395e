import type { Kysely } from "kysely";
import type { Database } from "../db/schema.js";
import { newId } from "../common/ids.js";
import { generateApiKey } from "./api-key.js";

export interface CreatedApiKey {
  id: string;
  organizationId: string;
  /** The secret, returned once and never stored. */
  key: string;
}

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

  async createApiKey(organizationId: string, name = ""): Promise<CreatedApiKey> {
    const { key, digest, displayPrefix } = generateApiKey();
    const id = newId("ak");
    await this.db
      .insertInto("api_keys")
      .values({ id, organization_id: organizationId, name, display_prefix: displayPrefix, key_digest: digest })
      .execute();
    return { id, organizationId, key };
  }

  /** Returns true when a key was revoked now, false when it did not exist or was revoked already. */
  async revokeApiKey(id: string): Promise<boolean> {
    const result = await this.db
      .updateTable("api_keys")
      .set({ revoked_at: new Date() })
      .where("id", "=", id)
      .where("revoked_at", "is", null)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
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

  /** The organization of an active key with this digest, or undefined. */
  async findActiveKey(digest: string): Promise<{ id: string; organizationId: string } | undefined> {
    const row = await this.db
      .selectFrom("api_keys")
      .select(["id", "organization_id"])
      .where("key_digest", "=", digest)
      .where("revoked_at", "is", null)
      .executeTakeFirst();
    return row && { id: row.id, organizationId: row.organization_id };
  }
}
