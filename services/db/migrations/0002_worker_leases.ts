import type { Kysely } from "kysely";
import { runStatements } from "./run-statements.js";

// What workers need on top of the API's schema: a lease on each job (who runs it, until when),
// how often it was taken, and why the last attempt failed.
export async function up(db: Kysely<unknown>): Promise<void> {
  await runStatements(db, `
    ALTER TABLE jobs ADD COLUMN lease_owner text NOT NULL DEFAULT '';
    ALTER TABLE jobs ADD COLUMN lease_expires_at timestamptz;
    ALTER TABLE jobs ADD COLUMN claims integer NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN last_error text NOT NULL DEFAULT '';
    -- The reconciler's scan: unfinished jobs by age of their last change.
    CREATE INDEX jobs_unfinished_idx ON jobs (updated_at) WHERE status IN ('pending', 'probing', 'processing');
    -- The reconciler asks whether a job had anything sent lately.
    CREATE INDEX outbox_job_idx ON outbox (job_id, sent_at);
  `);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await runStatements(db, `
    DROP INDEX outbox_job_idx;
    DROP INDEX jobs_unfinished_idx;
    ALTER TABLE jobs DROP COLUMN last_error;
    ALTER TABLE jobs DROP COLUMN claims;
    ALTER TABLE jobs DROP COLUMN lease_expires_at;
    ALTER TABLE jobs DROP COLUMN lease_owner;
  `);
}
