import { mkdtempSync, rmSync, statSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, inject, it } from "vitest";
import { createApp, type App } from "../../services/app.js";
import { bootstrapIfEmpty } from "../../services/bootstrap.js";
import { loadConfig } from "../../services/config.js";
import { createEmptyDatabase } from "../support/database.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function replica(databaseUrl: string, dataDir: string): Promise<App> {
  const config = loadConfig({ DATABASE_URL: databaseUrl, RENDITION_DATA_DIR: dataDir, RENDITION_ENCRYPTION_KEY: Buffer.alloc(32, 1).toString("base64") });
  const app = await createApp(config, () => {});
  cleanups.push(() => app.close());
  return app;
}

describe("first-start bootstrap on PostgreSQL", () => {
  it("happens once when replicas start together", async () => {
    const database = await createEmptyDatabase(inject("databaseUrl"));
    cleanups.push(() => database.drop());
    const dataDir = mkdtempSync(join(tmpdir(), "rendition-bootstrap-"));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    // Migrate once first: concurrent first migrations are the Migrator's business, not this test's.
    const first = await replica(database.url, dataDir);
    const others = await Promise.all([replica(database.url, dataDir), replica(database.url, dataDir)]);
    const config = loadConfig({ DATABASE_URL: database.url, RENDITION_DATA_DIR: dataDir });

    const results = await Promise.all([first, ...others].map((app) => bootstrapIfEmpty(app, config)));
    const made = results.filter((r) => r !== undefined);
    expect(made).toHaveLength(1);
    expect(await first.auth.countOrganizations()).toBe(1);
    const file = join(dataDir, "credentials.json");
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual(made[0]);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it("leaves nothing behind when it fails, so the next start can do it", async () => {
    const database = await createEmptyDatabase(inject("databaseUrl"));
    cleanups.push(() => database.drop());
    const dataDir = mkdtempSync(join(tmpdir(), "rendition-bootstrap-"));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const app = await replica(database.url, dataDir);
    const config = loadConfig({ DATABASE_URL: database.url, RENDITION_DATA_DIR: dataDir });

    writeFileSync(join(dataDir, "storage"), "a file where the storage directory should be");
    await expect(bootstrapIfEmpty(app, config)).rejects.toThrow();
    expect(await app.auth.countOrganizations()).toBe(0);

    rmSync(join(dataDir, "storage"));
    const credentials = await bootstrapIfEmpty(app, config);
    expect(credentials?.api_key).toMatch(/^rnd_live_/);
    expect(await app.auth.countOrganizations()).toBe(1);
  });
});
