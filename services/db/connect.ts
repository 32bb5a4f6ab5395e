import { mkdirSync } from "node:fs";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import type { Database } from "./schema.js";

export interface DatabaseHandle {
  db: Kysely<Database>;
  kind: "postgres" | "pglite";
  close(): Promise<void>;
}

// Return bigint (int8) columns as strings and let callers convert: money and sizes can exceed 2^53.
pg.types.setTypeParser(20, (v) => v);

export function connectPostgres(url: string, maxConnections = 10): DatabaseHandle {
  const pool = new pg.Pool({ connectionString: url, max: maxConnections });
  // An idle client can lose its connection (server restart); log instead of crashing the process.
  pool.on("error", (err) => console.error("postgres pool error:", err.message));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { db, kind: "postgres", close: () => db.destroy() };
}

/** Embedded PostgreSQL (WASM) persisted in `dataDir`; `undefined` keeps it in memory. */
export async function connectPglite(dataDir?: string): Promise<DatabaseHandle> {
  const [{ PGlite }, { PGliteDialect }] = await Promise.all([
    import("@electric-sql/pglite"),
    import("kysely-pglite-dialect"),
  ]);
  if (dataDir) mkdirSync(dataDir, { recursive: true });
  const pglite = await PGlite.create(dataDir);
  const db = new Kysely<Database>({ dialect: new PGliteDialect(pglite) });
  return { db, kind: "pglite", close: () => db.destroy() };
}
