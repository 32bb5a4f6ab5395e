/**
 * vitest globalSetup: makes sure PostgreSQL and NATS JetStream are there for the whole run
 * (reusing the machine's servers, or starting private ones; see ./services.ts), prepares the
 * template database, and hands both URLs to the tests:
 *
 *   import { inject } from "vitest";
 *   const databaseUrl = inject("databaseUrl"); // admin URL (database "postgres")
 *   const natsUrl = inject("natsUrl");
 */
import type { TestProject } from "vitest/node";

import { buildWeb } from "../../scripts/build-web.js";
import { prepareTemplateDatabase } from "./database.js";
import { ensureNats, ensurePostgres, type TestService } from "./services.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Admin connection URL of the test PostgreSQL server (superuser `postgres`, database `postgres`). */
    databaseUrl: string;
    /** URL of a NATS server with JetStream enabled. */
    natsUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started: TestService[] = [];
  const stopAll = async () => {
    const services = started.splice(0).reverse();
    await Promise.allSettled(services.map((service) => service.stop()));
  };

  // The dashboard is built once here, so the tests' many `npm start`s (which build it when it is
  // stale) never build it at the same time into the same directory.
  const web = buildWeb({ ifStale: true });
  // Both servers come up in parallel; if either fails, whatever did start is stopped again.
  const results = await Promise.allSettled([
    web,
    ensurePostgres().then(async (postgres) => {
      started.push(postgres);
      await prepareTemplateDatabase(postgres.url);
      return postgres;
    }),
    ensureNats().then((nats) => {
      started.push(nats);
      return nats;
    }),
  ]);
  const failures = results.flatMap((result) => (result.status === "rejected" ? [result.reason as unknown] : []));
  if (failures.length > 0) {
    await stopAll();
    throw failures.length === 1 ? failures[0] : new AggregateError(failures, "test services failed to start");
  }
  const [, postgres, nats] = results.map((result) => (result as PromiseFulfilledResult<TestService>).value) as [
    unknown,
    TestService,
    TestService,
  ];

  project.provide("databaseUrl", postgres.url);
  project.provide("natsUrl", nats.url);

  return stopAll;
}
