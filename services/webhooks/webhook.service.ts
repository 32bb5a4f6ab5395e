import { FailedPreconditionError, InvalidArgumentError, NotFoundError, type FieldViolation } from "../common/errors.js";
import { newId } from "../common/ids.js";
import { paginate, type PageRequest } from "../common/pagination.js";
import type { CredentialCipher } from "../origins/credential-cipher.js";
import { EVENT_TYPES, eventBody, JOB_URL_TARGET } from "./events.js";
import { newWebhookSecret, secretPrefix } from "./signing.js";
import type { AttemptRow, ClaimedDelivery, DeliveryRow, EndpointRow, StoredSecrets, WebhookRepository } from "./webhook.repository.js";

/** How long a rotated-out secret keeps signing unless the caller says otherwise. */
export const DEFAULT_GRACE_SECONDS = 24 * 3600;

export interface DeliveryWithAttempts extends DeliveryRow {
  attempts: AttemptRow[];
}

export interface EndpointInput {
  url: string;
  description: string;
  eventTypes: string[];
}

/** Webhook endpoints, secrets and delivery history of an organization. */
export class WebhookManager {
  /** Called after a delivery was queued by an RPC (SendTest, Redeliver), so it goes out at once. */
  onDeliveryQueued: () => void = () => {};

  constructor(
    private readonly repo: WebhookRepository,
    private readonly cipher: CredentialCipher,
    /** Create/Update rules for an address (scheme, allowed hosts): see webhook-url.ts. */
    private readonly urlViolation: (url: string, field: string) => FieldViolation | undefined,
  ) {}

  async create(organizationId: string, input: EndpointInput): Promise<{ endpoint: EndpointRow; secret: string }> {
    this.check(input.url, input.eventTypes);
    const secret = newWebhookSecret();
    const endpoint = await this.repo.createEndpoint({
      id: newId("whe"),
      organization_id: organizationId,
      url: input.url,
      description: input.description,
      event_types: input.eventTypes,
      status: "enabled",
      secret: this.seal(secret),
      secret_prefix: secretPrefix(secret),
    });
    return { endpoint, secret };
  }

  async get(organizationId: string, id: string): Promise<EndpointRow> {
    const endpoint = await this.repo.getEndpoint(organizationId, id);
    if (!endpoint) throw new NotFoundError(`webhook endpoint ${id} not found`);
    return endpoint;
  }

  async list(organizationId: string, page: PageRequest) {
    const { rows, total } = await this.repo.listEndpoints(organizationId, page);
    return { ...paginate(rows, page.limit), total };
  }

  async update(organizationId: string, id: string, patch: { url?: string; description?: string; eventTypes?: string[]; enabled?: boolean }): Promise<EndpointRow> {
    this.check(patch.url, patch.eventTypes ?? []);
    const endpoint = await this.repo.updateEndpoint(organizationId, id, {
      url: patch.url,
      description: patch.description,
      eventTypes: patch.eventTypes,
      status: patch.enabled === undefined ? undefined : patch.enabled ? "enabled" : "disabled",
      disabledReason: "disabled by its owner",
    });
    if (!endpoint) throw new NotFoundError(`webhook endpoint ${id} not found`);
    return endpoint;
  }

  async delete(organizationId: string, id: string): Promise<void> {
    if (!(await this.repo.deleteEndpoint(organizationId, id))) throw new NotFoundError(`webhook endpoint ${id} not found`);
  }

  /**
   * A new secret for an endpoint (or, with no id, the organization's secret for per-job
   * webhook_url deliveries). The old one keeps signing next to it for `graceSeconds`.
   */
  async rotateSecret(organizationId: string, id: string, graceSeconds = DEFAULT_GRACE_SECONDS) {
    const secret = newWebhookSecret();
    const previousUntil = graceSeconds > 0 ? new Date(Date.now() + graceSeconds * 1000) : null;
    if (!id) {
      await this.repo.rotateOrganizationSecret(organizationId, this.seal(secret), secretPrefix(secret), previousUntil);
      return { endpoint: undefined, secret, previousUntil };
    }
    const endpoint = await this.repo.rotateEndpointSecret(organizationId, id, this.seal(secret), secretPrefix(secret), previousUntil);
    if (!endpoint) throw new NotFoundError(`webhook endpoint ${id} not found`);
    return { endpoint, secret, previousUntil };
  }

  /** Queues a webhook.test event to one endpoint; the dispatcher sends it like any other. */
  async sendTest(organizationId: string, id: string): Promise<DeliveryWithAttempts> {
    const endpoint = await this.get(organizationId, id);
    if (endpoint.status !== "enabled") throw new FailedPreconditionError(`webhook endpoint ${id} is disabled (${endpoint.disabled_reason}): enable it with Update first`);
    const eventId = newId("msg");
    const body = eventBody("webhook.test", new Date(), { endpoint_id: endpoint.id, message: "a test event from Rendition" });
    const deliveryId = await this.repo.insertTestDelivery(endpoint, eventId, body);
    this.onDeliveryQueued();
    return this.delivery(organizationId, deliveryId);
  }

  async listDeliveries(organizationId: string, filter: { endpointId?: string; jobId?: string; status?: DeliveryRow["status"] }, page: PageRequest) {
    const { rows, total } = await this.repo.listDeliveries(organizationId, filter, page);
    const { items, nextCursor } = paginate(rows, page.limit);
    const attempts = await this.repo.attemptsOf(items.map((d) => d.id));
    return { items: items.map((d) => ({ ...d, attempts: attempts.filter((a) => a.delivery_id === d.id) })), nextCursor, total };
  }

  async redeliver(organizationId: string, id: string): Promise<DeliveryWithAttempts> {
    const result = await this.repo.redeliver(organizationId, id);
    if (!result) throw new NotFoundError(`webhook delivery ${id} not found`);
    if ("refused" in result) throw new FailedPreconditionError(`cannot redeliver ${id}: ${result.refused}`);
    this.onDeliveryQueued();
    return this.delivery(organizationId, result.deliveryId);
  }

  /** The secrets that sign a delivery now: the target's current one, and the previous one while its grace lasts. */
  readonly secretsFor = async (delivery: ClaimedDelivery): Promise<string[]> => {
    let stored: StoredSecrets | undefined;
    if (delivery.target === JOB_URL_TARGET) {
      stored = await this.repo.organizationSecrets(delivery.organizationId);
      if (!stored) {
        // First delivery to a job URL of this organization: its secret is made now and can be
        // read once through RotateSecret (empty id) or, for the first-start organization, credentials.json.
        const secret = newWebhookSecret();
        stored = await this.repo.ensureOrganizationSecret(delivery.organizationId, this.seal(secret), secretPrefix(secret));
      }
    } else {
      stored = await this.repo.endpointSecrets(delivery.endpointId ?? "");
      if (!stored) throw new Error(`webhook endpoint ${delivery.endpointId} no longer exists`);
    }
    const secrets = [this.open(stored.secret)];
    if (stored.previous_secret && stored.previous_secret_expires_at && stored.previous_secret_expires_at > new Date()) secrets.push(this.open(stored.previous_secret));
    return secrets;
  };

  /**
   * Stores the organization's first secret through `repo` (bootstrap passes one bound to its
   * transaction, and writes the secret to credentials.json).
   */
  async createOrganizationSecret(organizationId: string, repo: WebhookRepository = this.repo): Promise<string> {
    const secret = newWebhookSecret();
    await repo.ensureOrganizationSecret(organizationId, this.seal(secret), secretPrefix(secret));
    return secret;
  }

  private async delivery(organizationId: string, id: string): Promise<DeliveryWithAttempts> {
    const delivery = await this.repo.getDelivery(organizationId, id);
    if (!delivery) throw new NotFoundError(`webhook delivery ${id} not found`);
    return { ...delivery, attempts: await this.repo.attemptsOf([id]) };
  }

  private check(url: string | undefined, eventTypes: readonly string[]): void {
    const violations: FieldViolation[] = [];
    const refused = url === undefined ? undefined : this.urlViolation(url, "url");
    if (refused) violations.push(refused);
    eventTypes.forEach((type, i) => {
      if (!EVENT_TYPES.includes(type)) {
        violations.push({ field: `event_types[${i}]`, rule: "webhook.event_type_unknown", message: `unknown event type "${type.slice(0, 64)}"; known: ${EVENT_TYPES.join(", ")}` });
      }
    });
    if (violations.length) throw new InvalidArgumentError(violations);
  }

  private seal(secret: string): string {
    return this.cipher.encrypt({ secret });
  }

  private open(token: string): string {
    return (this.cipher.decrypt(token) as { secret: string }).secret;
  }
}
