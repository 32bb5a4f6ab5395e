import type { Kysely } from "kysely";
import { runStatements } from "./run-statements.js";

// Raw SQL so the schema reads the same here as in psql; runs unchanged on PostgreSQL and PGlite.
export async function up(db: Kysely<unknown>): Promise<void> {
  await runStatements(db, `
    CREATE TABLE organizations (
      id text PRIMARY KEY,
      name text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE api_keys (
      id text PRIMARY KEY,
      organization_id text NOT NULL REFERENCES organizations(id),
      name text NOT NULL DEFAULT '',
      display_prefix text NOT NULL,
      key_digest text NOT NULL UNIQUE,
      created_at timestamptz NOT NULL DEFAULT now(),
      revoked_at timestamptz,
      last_used_at timestamptz
    );
    CREATE INDEX api_keys_organization_idx ON api_keys (organization_id);

    CREATE TABLE origins (
      id text PRIMARY KEY,
      organization_id text NOT NULL REFERENCES organizations(id),
      name text NOT NULL,
      description text NOT NULL DEFAULT '',
      provider text NOT NULL CHECK (provider IN ('s3', 'http', 'local')),
      can_read boolean NOT NULL,
      can_write boolean NOT NULL,
      status text NOT NULL CHECK (status IN ('active', 'failed', 'archived')),
      base_path text NOT NULL DEFAULT '',
      path_template text NOT NULL DEFAULT '',
      location jsonb NOT NULL,
      credentials text,
      last_validated_at timestamptz,
      validation_error text NOT NULL DEFAULT '',
      archived_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX origins_organization_idx ON origins (organization_id, id DESC);

    CREATE TABLE presets (
      id text PRIMARY KEY,
      organization_id text NOT NULL REFERENCES organizations(id),
      slug text NOT NULL,
      name text NOT NULL,
      description text NOT NULL DEFAULT '',
      spec jsonb NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (organization_id, slug)
    );

    CREATE TABLE jobs (
      id text PRIMARY KEY,
      organization_id text NOT NULL REFERENCES organizations(id),
      status text NOT NULL,
      progress integer NOT NULL DEFAULT 0,
      priority text NOT NULL,
      input_url text NOT NULL DEFAULT '',
      input_origin_id text REFERENCES origins(id),
      input_path text NOT NULL DEFAULT '',
      input_origin jsonb,
      output_origin_id text NOT NULL REFERENCES origins(id),
      output_origin jsonb NOT NULL,
      input_metadata jsonb,
      estimated_cost_minor bigint,
      actual_cost_minor bigint,
      currency text NOT NULL,
      error_code text NOT NULL DEFAULT '',
      error_message text NOT NULL DEFAULT '',
      webhook_url text NOT NULL DEFAULT '',
      metadata jsonb NOT NULL DEFAULT '{}',
      delayed_start boolean NOT NULL DEFAULT false,
      execution jsonb,
      idempotency_key text,
      request_digest text NOT NULL,
      attempt integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      probed_at timestamptz,
      started_at timestamptz,
      completed_at timestamptz,
      confirmed_at timestamptz
    );
    -- List is "newest first" within one organization, optionally by status; ids sort by time.
    CREATE INDEX jobs_organization_idx ON jobs (organization_id, id DESC);
    CREATE INDEX jobs_organization_status_idx ON jobs (organization_id, status, id DESC);
    CREATE UNIQUE INDEX jobs_idempotency_idx ON jobs (organization_id, idempotency_key)
      WHERE idempotency_key IS NOT NULL;

    CREATE TABLE job_outputs (
      id text PRIMARY KEY,
      job_id text NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
      position integer NOT NULL,
      type text NOT NULL,
      status text NOT NULL,
      spec jsonb NOT NULL,
      preset_id text NOT NULL DEFAULT '',
      path text NOT NULL,
      output_url text NOT NULL DEFAULT '',
      file_size_bytes bigint,
      duration_ms bigint,
      progress integer NOT NULL DEFAULT 0,
      error_code text NOT NULL DEFAULT '',
      error_message text NOT NULL DEFAULT '',
      estimated_cost_minor bigint,
      actual_cost_minor bigint,
      UNIQUE (job_id, position)
    );

    CREATE TABLE job_thumbnails (
      id text PRIMARY KEY,
      job_id text NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
      position integer NOT NULL,
      status text NOT NULL,
      spec jsonb NOT NULL,
      path text NOT NULL,
      urls jsonb NOT NULL DEFAULT '[]',
      storyboard_url text NOT NULL DEFAULT '',
      error_message text NOT NULL DEFAULT '',
      UNIQUE (job_id, position)
    );

    -- Transactional outbox: written with the job, relayed to the queue, marked sent after the ack.
    CREATE TABLE outbox (
      id text PRIMARY KEY,
      job_id text NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
      topic text NOT NULL,
      payload jsonb NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      sent_at timestamptz
    );
    CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;
  `);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await runStatements(db, `
    DROP TABLE outbox;
    DROP TABLE job_thumbnails;
    DROP TABLE job_outputs;
    DROP TABLE jobs;
    DROP TABLE presets;
    DROP TABLE origins;
    DROP TABLE api_keys;
    DROP TABLE organizations;
  `);
}
