import type { Kysely } from "kysely";
import { runStatements } from "./run-statements.js";

// Chunked encoding: a job's work as rows (one per chunk, then one assemble), each with its own
// lease (`attempt` is the token, like jobs.attempt), so chunks of one job run on several workers
// at once and a dead worker's chunk is taken over alone.
export async function up(db: Kysely<unknown>): Promise<void> {
  await runStatements(db, `
    CREATE TABLE job_tasks (
      id text PRIMARY KEY,
      job_id text NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
      kind text NOT NULL CHECK (kind IN ('chunk', 'assemble')),
      position integer NOT NULL,
      status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'completed', 'failed', 'canceled')),
      attempt integer NOT NULL DEFAULT 0,
      claims integer NOT NULL DEFAULT 0,
      lease_owner text NOT NULL DEFAULT '',
      lease_expires_at timestamptz,
      last_error text NOT NULL DEFAULT '',
      spec jsonb NOT NULL DEFAULT '{}'::jsonb,
      result jsonb,
      progress integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      completed_at timestamptz,
      UNIQUE (job_id, kind, position)
    );
    CREATE INDEX job_tasks_unfinished_idx ON job_tasks (updated_at) WHERE status IN ('pending', 'running');
  `);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await runStatements(db, `
    DROP INDEX job_tasks_unfinished_idx;
    DROP TABLE job_tasks;
  `);
}
