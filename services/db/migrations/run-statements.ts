import { sql, type Kysely } from "kysely";

/**
 * Runs a migration script one statement at a time: PGlite's query path (extended protocol)
 * takes a single statement, and one code path for both databases is the point. Statements are
 * split at a `;` that ends a line, so keep such semicolons out of string literals.
 */
export async function runStatements(db: Kysely<unknown>, script: string): Promise<void> {
  const statements = script
    .split(/;\s*$/m)
    .map((s) => s.replace(/^\s*--.*$/gm, "").trim())
    .filter((s) => s.length > 0);
  for (const statement of statements) {
    await sql.raw(statement).execute(db);
  }
}
