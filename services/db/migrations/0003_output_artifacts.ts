import type { Kysely } from "kysely";
import { runStatements } from "./run-statements.js";

// Outputs that are more than one file: a streaming output's master playlist / MPD is output_url,
// and every playlist and manifest it wrote is listed in manifest_urls; subtitle files (WebVTT
// renditions, extracted sidecars) in subtitle_urls.
export async function up(db: Kysely<unknown>): Promise<void> {
  await runStatements(db, `
    ALTER TABLE job_outputs ADD COLUMN manifest_urls jsonb NOT NULL DEFAULT '[]'::jsonb;
    ALTER TABLE job_outputs ADD COLUMN subtitle_urls jsonb NOT NULL DEFAULT '[]'::jsonb;
  `);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await runStatements(db, `
    ALTER TABLE job_outputs DROP COLUMN subtitle_urls;
    ALTER TABLE job_outputs DROP COLUMN manifest_urls;
  `);
}
