/**
 * A PostgreSQL connection that dies while a query runs on it (a server restart, a failover, an
 * operator's pg_terminate_backend) fails that query and nothing else: the process lives on and
 * the pool opens a new connection. Before the fix, the checked-out client's unheard `error`
 * event killed every API and worker process when PostgreSQL restarted (npm run chaos, scenario c).
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { sql } from "kysely";
import pg from "pg";
import { connectPostgres, type DatabaseHandle } from "../../services/db/connect.js";
import { createEmptyDatabase } from "../support/database.js";

let database: { url: string; drop(): Promise<void> };
let handle: DatabaseHandle;
let admin: pg.Client;

beforeAll(async () => {
  database = await createEmptyDatabase(inject("databaseUrl"));
  handle = connectPostgres(database.url, 2);
  admin = new pg.Client({ connectionString: inject("databaseUrl") });
  await admin.connect();
});

afterAll(async () => {
  await admin?.end();
  await handle?.close();
  await database?.drop();
});

describe("a PostgreSQL connection lost while checked out", () => {
  it("fails the transaction on it, keeps the process alive, and the next query runs on a new connection", async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on("uncaughtException", onUncaught);
    try {
      // Inside a transaction the client stays checked out between statements: the server ending
      // the connection then (a restart; here pg_terminate_backend) reaches no query, only the
      // client's "error" event.
      const outcome = await handle.db
        .transaction()
        .execute(async (trx) => {
          const { rows } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx);
          await admin.query("SELECT pg_terminate_backend($1)", [rows[0]!.pid]);
          await new Promise((resolve) => setTimeout(resolve, 300));
          await sql`SELECT 1`.execute(trx);
          return "committed";
        })
        .catch((error: Error) => `failed: ${error.message}`);

      expect(outcome).toMatch(/^failed: /);
      expect(uncaught).toEqual([]);
      const { rows } = await sql<{ one: number }>`SELECT 1 AS one`.execute(handle.db);
      expect(rows).toEqual([{ one: 1 }]);
    } finally {
      process.off("uncaughtException", onUncaught);
    }
  });
});
