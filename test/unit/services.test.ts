import net from "node:net";

import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import {
  ensureNats,
  ensurePostgres,
  freePort,
  locateNatsServer,
  locatePostgres,
  probeNats,
  probePostgres,
} from "../support/services.js";

const havePostgresBinaries = (await locatePostgres()) !== undefined;
const haveNatsServer = locateNatsServer() !== undefined;

/** A TCP server on 127.0.0.1 that writes `greeting` to every client, then closes. */
async function fakeServer(greeting: string): Promise<{ url: string; close(): Promise<void> }> {
  const server = net.createServer((socket) => socket.end(greeting));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return { url: `nats://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe("test services", () => {
  let deadPort: number;
  const lines: string[] = [];
  const log = (line: string) => lines.push(line);
  const noEnv = { PATH: process.env.PATH };

  beforeAll(async () => {
    deadPort = await freePort(); // free a moment ago: nothing listens there
  });

  describe("probeNats", () => {
    const servers: { close(): Promise<void> }[] = [];
    afterAll(() => Promise.all(servers.map((s) => s.close())));

    it("accepts a server whose INFO says jetstream:true", async () => {
      const server = await fakeServer('INFO {"server_id":"x","version":"2.9.10","jetstream":true}\r\n');
      servers.push(server);
      expect(await probeNats(server.url)).toBeUndefined();
    });

    it("rejects a server without JetStream", async () => {
      const server = await fakeServer('INFO {"server_id":"x","version":"2.9.10","headers":true}\r\n');
      servers.push(server);
      expect(await probeNats(server.url)).toMatch(/without JetStream/);
    });

    it("rejects something that is not NATS", async () => {
      const server = await fakeServer("HTTP/1.1 400 Bad Request\r\n\r\n");
      servers.push(server);
      expect(await probeNats(server.url)).toMatch(/not a NATS server/);
    });

    it("reports a closed port", async () => {
      expect(await probeNats(`nats://127.0.0.1:${deadPort}`)).toMatch(/ECONNREFUSED/);
    });
  });

  it("probePostgres reports a closed port", async () => {
    expect(await probePostgres(`postgres://postgres@127.0.0.1:${deadPort}/postgres`)).toMatch(/ECONNREFUSED/);
  });

  describe("without a server and without binaries", () => {
    it("ensurePostgres names the Debian package", async () => {
      await expect(
        ensurePostgres({ env: noEnv, probeUrl: `postgres://postgres@127.0.0.1:${deadPort}/postgres`, binaryDirs: [], log }),
      ).rejects.toThrow(/apt-get install -y postgresql/);
    });

    it("ensureNats names the Debian package", async () => {
      await expect(
        ensureNats({ env: noEnv, probeUrl: `nats://127.0.0.1:${deadPort}`, binaryDirs: [], log }),
      ).rejects.toThrow(/apt-get install -y nats-server/);
    });
  });

  describe("an explicit URL that does not work is an error, not a reason to start a server", () => {
    it("RENDITION_TEST_DATABASE_URL", async () => {
      const env = { ...noEnv, RENDITION_TEST_DATABASE_URL: `postgres://postgres@127.0.0.1:${deadPort}/postgres` };
      await expect(ensurePostgres({ env, log })).rejects.toThrow(/RENDITION_TEST_DATABASE_URL .* is not usable/);
    });

    it("RENDITION_TEST_NATS_URL", async () => {
      const env = { ...noEnv, RENDITION_TEST_NATS_URL: `nats://127.0.0.1:${deadPort}` };
      await expect(ensureNats({ env, log })).rejects.toThrow(/RENDITION_TEST_NATS_URL .* is not usable/);
    });
  });

  // The fallback the suite relies on when the machine's servers are down: start private ones.
  describe("starting a private server when nothing answers", () => {
    it.skipIf(!haveNatsServer)("nats-server with JetStream", async () => {
      const nats = await ensureNats({ env: noEnv, probeUrl: `nats://127.0.0.1:${deadPort}`, log });
      try {
        expect(nats.origin).toBe("started");
        expect(lines.at(-1)).toMatch(/NATS: nothing usable .* started .* with JetStream at nats:\/\/127\.0\.0\.1:\d+/);
        expect(await probeNats(nats.url)).toBeUndefined();
      } finally {
        await nats.stop();
      }
      expect(await probeNats(nats.url, 1000)).toMatch(/ECONNREFUSED/);
    });

    it.skipIf(!havePostgresBinaries)("PostgreSQL", async () => {
      const postgres = await ensurePostgres({
        env: noEnv,
        probeUrl: `postgres://postgres@127.0.0.1:${deadPort}/postgres`,
        log,
      });
      try {
        expect(postgres.origin).toBe("started");
        expect(lines.at(-1)).toMatch(/PostgreSQL: nothing usable .* started .* at postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres/);
        const client = new pg.Client(postgres.url);
        await client.connect();
        try {
          const { rows } = await client.query<{ user: string }>("SELECT current_user AS user");
          expect(rows[0]!.user).toBe("postgres");
        } finally {
          await client.end();
        }
      } finally {
        await postgres.stop();
      }
      expect(await probePostgres(postgres.url, 1000)).toMatch(/ECONNREFUSED/);
    });
  });
});
