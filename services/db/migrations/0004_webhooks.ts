import type { Kysely } from "kysely";
import { runStatements } from "./run-statements.js";

// Webhooks: endpoints per organization, the organization's secret for per-job webhook_url
// deliveries, events (written in the transaction of the change they describe), one delivery per
// event and target, and every attempt. Secrets are AES-256-GCM tokens like origin credentials.
export async function up(db: Kysely<unknown>): Promise<void> {
  await runStatements(db, `
    CREATE TABLE webhook_endpoints (
      id text PRIMARY KEY,
      organization_id text NOT NULL REFERENCES organizations (id),
      url text NOT NULL,
      description text NOT NULL DEFAULT '',
      event_types jsonb NOT NULL DEFAULT '[]'::jsonb,
      status text NOT NULL DEFAULT 'enabled',
      disabled_reason text NOT NULL DEFAULT '',
      secret text NOT NULL,
      secret_prefix text NOT NULL,
      previous_secret text,
      previous_secret_expires_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX webhook_endpoints_organization ON webhook_endpoints (organization_id, id);

    CREATE TABLE organization_webhook_secrets (
      organization_id text PRIMARY KEY REFERENCES organizations (id),
      secret text NOT NULL,
      secret_prefix text NOT NULL,
      previous_secret text,
      previous_secret_expires_at timestamptz,
      updated_at timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE webhook_events (
      id text PRIMARY KEY,
      organization_id text NOT NULL REFERENCES organizations (id),
      job_id text,
      type text NOT NULL,
      payload text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE webhook_deliveries (
      id text PRIMARY KEY,
      seq bigserial NOT NULL,
      event_id text NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
      organization_id text NOT NULL,
      job_id text,
      endpoint_id text,
      target text NOT NULL,
      url text NOT NULL,
      status text NOT NULL DEFAULT 'pending',
      attempt_count integer NOT NULL DEFAULT 0,
      next_attempt_at timestamptz NOT NULL DEFAULT now(),
      lease_expires_at timestamptz,
      delivered_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
    CREATE INDEX webhook_deliveries_order ON webhook_deliveries (job_id, target, seq) WHERE status = 'pending';
    CREATE INDEX webhook_deliveries_organization ON webhook_deliveries (organization_id, id);

    CREATE TABLE webhook_attempts (
      id bigserial PRIMARY KEY,
      delivery_id text NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
      attempted_at timestamptz NOT NULL DEFAULT now(),
      -- 'sending' until the answer is recorded: one left behind by a crash is an interrupted attempt.
      state text NOT NULL DEFAULT 'sending',
      response_status integer NOT NULL DEFAULT 0,
      latency_ms integer NOT NULL DEFAULT 0,
      response_snippet text NOT NULL DEFAULT '',
      error text NOT NULL DEFAULT ''
    );
    CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
  `);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await runStatements(db, `
    DROP TABLE webhook_attempts;
    DROP TABLE webhook_deliveries;
    DROP TABLE webhook_events;
    DROP TABLE organization_webhook_secrets;
    DROP TABLE webhook_endpoints;
  `);
}
