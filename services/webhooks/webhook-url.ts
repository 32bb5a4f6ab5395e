import net from "node:net";
import type { FieldViolation } from "../common/errors.js";
import type { NetworkGuard } from "../net/network-guard.js";

/**
 * Create-time rules for a webhook address (an endpoint's url, a job's webhook_url): https, or
 * plain http only to a host RENDITION_NETWORK_ALLOW lists (a developer's own receiver); and no
 * loopback, private, link-local or metadata host that can be seen without resolving a name (an
 * IP literal, "localhost"). Names are checked again, resolved, at every connection.
 */
export function webhookUrlViolation(value: string, field: string, guard: Pick<NetworkGuard, "lists" | "checkAddress">): FieldViolation | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return { field, rule: "webhook_url.invalid", message: "is not a valid URL" };
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return { field, rule: "webhook_url.scheme", message: "must be an https URL" };
  }
  if (url.username || url.password) {
    return { field, rule: "webhook_url.credentials", message: "may not carry a user name or password (deliveries are signed instead)" };
  }
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const listed = guard.lists(host);
  if (url.protocol === "http:" && !listed) {
    return {
      field,
      rule: "webhook_url.http_not_allowed",
      message: `plain http is allowed only to hosts the server's RENDITION_NETWORK_ALLOW lists; use https (or list ${host})`,
    };
  }
  const loopbackName = host === "localhost" || host.endsWith(".localhost");
  const blocked = net.isIP(host) ? guard.checkAddress(host) : loopbackName && !listed ? guard.checkAddress("127.0.0.1", host) : undefined;
  if (blocked) return { field, rule: "webhook_url.forbidden_host", message: blocked.message };
  return undefined;
}
