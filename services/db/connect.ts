import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
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

/** Waiting for a pooled connection (or a new one) longer than this fails the call. */
const CONNECT_TIMEOUT_MS = 5_000;
/**
 * No query of ours runs near this long: one that does has lost its server (a network cut sends
 * no reset). Migrations may take longer: they get a connection without the limit (0).
 */
export const QUERY_TIMEOUT_MS = 120_000;

export function connectPostgres(url: string, maxConnections = 10, queryTimeoutMs = QUERY_TIMEOUT_MS): DatabaseHandle {
  const pool = new pg.Pool({
    connectionString: url,
    max: maxConnections,
    // While the server is unreachable a call fails (unavailable, retryable) instead of waiting for
    // a connection forever; a query on a connection that went silent (network cut) fails too.
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    ...(queryTimeoutMs > 0 ? { query_timeout: queryTimeoutMs } : {}),
  });
  // An idle client can lose its connection (server restart); log instead of crashing the process.
  pool.on("error", (err) => console.error("postgres pool error:", err.message));
  // A checked-out client whose connection dies (server restart mid-query) emits "error" on itself,
  // not on the pool, and an unheard "error" event kills the process. Its query fails anyway.
  pool.on("connect", (client) => client.on("error", (err) => console.error("postgres connection lost:", err.message)));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { db, kind: "postgres", close: () => db.destroy() };
}

export class DatabaseInUseError extends Error {}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * PGlite is single-process: a second process on the same directory would silently overwrite the
 * first one's writes. A lock file holding the owner's pid refuses that (a stale lock from a
 * process that died is taken over).
 */
function lockDataDir(dataDir: string): () => void {
  const lockFile = join(dataDir, "rendition.lock");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockFile, "wx");
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(lockFile, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const owner = Number(readFileSync(lockFile, "utf8").trim());
      // Our own pid in the file is a leftover of an earlier process that had it (pids repeat in
      // containers): this process opens the directory once, so it cannot be a live owner.
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
        throw new DatabaseInUseError(
          `the embedded database in ${dataDir} is in use by process ${owner}: stop that process first, or use PostgreSQL (DATABASE_URL)`,
        );
      }
      rmSync(lockFile, { force: true });
    }
  }
  throw new DatabaseInUseError(`could not lock the embedded database in ${dataDir}`);
}

/** Embedded PostgreSQL (WASM) persisted in `dataDir` (locked to this process); `undefined` keeps it in memory. */
export async function connectPglite(dataDir?: string): Promise<DatabaseHandle> {
  const [{ PGlite }, { PGliteDialect }] = await Promise.all([
    import("@electric-sql/pglite"),
    import("kysely-pglite-dialect"),
  ]);
  let unlock = () => {};
  if (dataDir) {
    mkdirSync(dataDir, { recursive: true });
    unlock = lockDataDir(dataDir);
  }
  try {
    const pglite = await PGlite.create(dataDir);
    const db = new Kysely<Database>({ dialect: new PGliteDialect(pglite) });
    return {
      db,
      kind: "pglite",
      async close() {
        await db.destroy();
        unlock();
      },
    };
  } catch (err) {
    unlock();
    throw err;
  }
}
