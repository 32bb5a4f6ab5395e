import type { Kysely } from "kysely";
import { runStatements } from "./run-statements.js";

// Streaming outputs are directories: their master playlist / MPD is output_url, and every
// playlist and manifest they wrote is listed here.
export async function up(db: Kysely<unknown>): Promise<void> {
  await runStatements(db, `ALTER TABLE job_outputs ADD COLUMN manifest_urls jsonb NOT NULL DEFAULT '[]'::jsonb;`);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await runStatements(db, `ALTER TABLE job_outputs DROP COLUMN manifest_urls;`);
}
