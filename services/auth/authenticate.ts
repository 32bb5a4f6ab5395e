import { PermissionDeniedError, UnauthenticatedError } from "../common/errors.js";
import { digestApiKey, parseBearer } from "./api-key.js";

export interface Caller {
  organizationId: string;
  apiKeyId: string;
  /** Called with a test key (rnd_test_...): jobs it creates are test jobs. */
  test: boolean;
}

/**
 * Resolves the caller from the two headers every RPC carries. A missing or unknown key is
 * UNAUTHENTICATED; a valid key used for another organization is PERMISSION_DENIED.
 */
export async function authenticate(
  keys: { findActiveKey(digest: string): Promise<{ id: string; organizationId: string; test?: boolean } | undefined> },
  authorization: string | null,
  organizationHeader: string | null,
): Promise<Caller> {
  const key = parseBearer(authorization);
  if (!key) throw new UnauthenticatedError("missing API key: send 'Authorization: Bearer <key>'");
  const found = await keys.findActiveKey(digestApiKey(key));
  if (!found) throw new UnauthenticatedError("unknown or revoked API key");
  const organizationId = organizationHeader?.trim();
  if (!organizationId) throw new UnauthenticatedError("missing X-Organization-ID header");
  if (organizationId !== found.organizationId) {
    throw new PermissionDeniedError("this API key is not valid for the organization in X-Organization-ID");
  }
  return { organizationId, apiKeyId: found.id, test: found.test === true };
}
