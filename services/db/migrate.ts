import { Migrator, type Kysely, type Migration, type MigrationProvider } from "kysely";
import * as m0001 from "./migrations/0001_initial.js";
import * as m0002 from "./migrations/0002_worker_leases.js";
import * as m0003 from "./migrations/0003_output_artifacts.js";
import * as m0004 from "./migrations/0004_webhooks.js";
import * as m0005 from "./migrations/0005_uploads.js";
import * as m0006 from "./migrations/0006_api_keys.js";
import * as m0007 from "./migrations/0007_job_tasks.js";

/** Migrations are listed here (not read from disk) so they work the same from source and tests. */
export const MIGRATIONS: Readonly<Record<string, Migration>> = {
  "0001_initial": m0001,
  "0002_worker_leases": m0002,
  "0003_output_artifacts": m0003,
  "0004_webhooks": m0004,
  "0005_uploads": m0005,
  "0006_api_keys": m0006,
  "0007_job_tasks": m0007,
};

const provider: MigrationProvider = { getMigrations: async () => ({ ...MIGRATIONS }) };

export function createMigrator(db: Kysely<any>): Migrator {
  return new Migrator({ db, provider });
}

/** Brings the schema to the newest migration; throws with the failing migration's name. */
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  const { error, results } = await createMigrator(db).migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === "Error")?.migrationName ?? "unknown";
    throw new Error(`migration ${failed} failed: ${String((error as Error).message ?? error)}`, { cause: error });
  }
  return (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
}

export async function migrateDown(db: Kysely<any>): Promise<string[]> {
  const { error, results } = await createMigrator(db).migrateDown();
  if (error) throw error;
  return (results ?? []).map((r) => r.migrationName);
}
