import { createHash, randomBytes } from "node:crypto";
import pg from "pg";
import type { Kysely } from "kysely";
import { connectPostgres } from "../../services/db/connect.js";
import { MIGRATIONS, migrateToLatest } from "../../services/db/migrate.js";
import type { Database } from "../../services/db/schema.js";

/** Named after every migration's name and code, so a changed or added migration gets a new template and an old one is never reused. */
const TEMPLATE = `rendition_template_${createHash("sha256")
  .update(Object.entries(MIGRATIONS).map(([name, m]) => `${name}${m.up}${m.down}`).join(""))
  .digest("hex")
  .slice(0, 12)}`;

function urlFor(adminUrl: string, database: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

async function withAdmin<T>(adminUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * Creates the migrated template once per schema version. It is built under a temporary name
 * and renamed when complete, so a crashed or concurrent run never leaves a half-built template.
 */
export async function prepareTemplateDatabase(adminUrl: string): Promise<void> {
  const exists = await withAdmin(adminUrl, async (c) => (await c.query("SELECT 1 FROM pg_database WHERE datname = $1", [TEMPLATE])).rowCount);
  if (exists) return;
  const building = `rendition_tpl_build_${randomBytes(4).toString("hex")}`;
  await withAdmin(adminUrl, (c) => c.query(`CREATE DATABASE ${building}`));
  const handle = connectPostgres(urlFor(adminUrl, building), 1);
  try {
    await migrateToLatest(handle.db);
  } finally {
    await handle.close();
  }
  await withAdmin(adminUrl, async (c) => {
    try {
      await c.query(`ALTER DATABASE ${building} RENAME TO ${TEMPLATE}`);
    } catch {
      // Another run finished first: use its template.
      await c.query(`DROP DATABASE IF EXISTS ${building}`);
    }
  });
}

export interface TestDatabase {
  url: string;
  db: Kysely<Database>;
  drop(): Promise<void>;
}

/** A fresh, migrated database for one test file, cloned from the template; drop() removes it. */
export async function createTestDatabase(adminUrl: string): Promise<TestDatabase> {
  const name = `rendition_test_${randomBytes(6).toString("hex")}`;
  await withAdmin(adminUrl, (c) => c.query(`CREATE DATABASE ${name} TEMPLATE ${TEMPLATE}`));
  const url = urlFor(adminUrl, name);
  const handle = connectPostgres(url, 4);
  return {
    url,
    db: handle.db,
    async drop() {
      await handle.close();
      await withAdmin(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}

/** An empty database (no schema), for testing first-start migration and bootstrap. */
export async function createEmptyDatabase(adminUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `rendition_empty_${randomBytes(6).toString("hex")}`;
  await withAdmin(adminUrl, (c) => c.query(`CREATE DATABASE ${name}`));
  return {
    url: urlFor(adminUrl, name),
    drop: () => withAdmin(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined),
  };
}
