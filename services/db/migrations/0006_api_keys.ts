import type { Kysely } from "kysely";
import { runStatements } from "./run-statements.js";

// API keys managed over RPC: a rolled key keeps working until expires_at (its grace period),
// and test keys (rnd_test_...) create test jobs, which cost nothing.
// Usage sums finished jobs by completed_at: the partial index below makes that a range scan.
export async function up(db: Kysely<unknown>): Promise<void> {
  await runStatements(db, `
    ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
    ALTER TABLE api_keys ADD COLUMN test boolean NOT NULL DEFAULT false;
    ALTER TABLE jobs ADD COLUMN test boolean NOT NULL DEFAULT false;
    CREATE INDEX jobs_organization_completed_idx ON jobs (organization_id, completed_at) WHERE completed_at IS NOT NULL;
  `);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await runStatements(db, `
    DROP INDEX jobs_organization_completed_idx;
    ALTER TABLE jobs DROP COLUMN test;
    ALTER TABLE api_keys DROP COLUMN test;
    ALTER TABLE api_keys DROP COLUMN expires_at;
  `);
}
