import { FailedPreconditionError, NotFoundError } from "../common/errors.js";
import { paginate, type PageRequest } from "../common/pagination.js";
import type { ApiKeyRecord, AuthRepository, CreatedApiKey, KeyChange } from "./auth.repository.js";

/** The longest grace period a rolled key may keep working for. */
export const MAX_ROLL_GRACE_SECONDS = 7 * 24 * 3600;

type Keys = Pick<AuthRepository, "createApiKey" | "listApiKeys" | "revokeGuarded" | "rollApiKey">;

/**
 * An organization's API keys, managed with its own keys over the API (the CLI's `key create`
 * uses the same repository). A caller may revoke or roll the key it calls with; what is refused
 * is revoking the last active key without an expiry, which would lock the organization out.
 */
export class ApiKeyManager {
  constructor(private readonly keys: Keys) {}

  create(organizationId: string, input: { name: string; test: boolean }): Promise<CreatedApiKey> {
    return this.keys.createApiKey(organizationId, input.name, { test: input.test });
  }

  async list(organizationId: string, page: PageRequest): Promise<{ items: ApiKeyRecord[]; nextCursor: string; total: number }> {
    const { rows, total } = await this.keys.listApiKeys(organizationId, page);
    return { ...paginate(rows, page.limit), total };
  }

  async revoke(organizationId: string, id: string): Promise<ApiKeyRecord> {
    return settle(id, await this.keys.revokeGuarded(organizationId, id), "revoke");
  }

  async roll(organizationId: string, id: string, graceSeconds: number): Promise<{ created: CreatedApiKey; previous: ApiKeyRecord }> {
    return settle(id, await this.keys.rollApiKey(organizationId, id, graceSeconds), "roll");
  }
}

function settle<T>(id: string, change: KeyChange<T>, verb: "revoke" | "roll"): T {
  switch (change.outcome) {
    case "done":
      return change.value;
    case "not_found":
      throw new NotFoundError(`API key ${id} not found`);
    case "inactive":
      throw new FailedPreconditionError(`API key ${id} is ${change.key.revokedAt ? "revoked" : "expired"} already`);
    case "last_active":
      throw new FailedPreconditionError(
        `API key ${id} is the organization's last active key without an expiry: create or roll another key before you ${verb} it`,
      );
  }
}
