/**
 * End-to-end tests of the entry point (services/main.ts) as real processes: embedded first start
 * and restart, `api` and `migrate` on PostgreSQL, the admin commands, graceful shutdown and bad
 * configuration. HTTP goes through the real `curl` binary, except Watch (generated client).
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, inject, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { JobStatus, OutputType, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobService, WatchEvent } from "../../gen/rendition/v1/job_pb.js";
import { OriginPermission, OriginService } from "../../gen/rendition/v1/origin_pb.js";
import { authHeaders } from "../support/api-harness.js";
import { createEmptyDatabase } from "../support/database.js";
import { curl, curlRpc, killAllChildren, runRendition, spawnRendition, type RenditionProcess } from "../support/process.js";

// --- per-test resources, released in afterEach even when a test fails -------------------------

const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  await killAllChildren();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "rendition-e2e-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function emptyDatabase(): Promise<string> {
  const database = await createEmptyDatabase(inject("databaseUrl"));
  cleanups.push(() => database.drop());
  return database.url;
}

/** The environment every spawned server gets: its own data dir, a free port on loopback. */
function serverEnv(dataDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return { RENDITION_DATA_DIR: dataDir, PORT: "0", HOST: "127.0.0.1", ...extra };
}

interface Credentials {
  organization_id: string;
  api_key: string;
  local_origin_id: string;
  webhook_secret: string;
}

function readCredentials(dataDir: string): Credentials {
  return JSON.parse(readFileSync(join(dataDir, "credentials.json"), "utf8")) as Credentials;
}

const authOf = (c: Pick<Credentials, "api_key" | "organization_id">) => ({ apiKey: c.api_key, organizationId: c.organization_id });

/** SIGTERM, then the exit code and how long the process took to go. */
async function terminate(proc: RenditionProcess, timeoutMs = 10_000): Promise<{ code: number | null; signal: string | null; ms: number }> {
  const started = Date.now();
  proc.child.kill("SIGTERM");
  const { code, signal } = await proc.exited(timeoutMs);
  return { code, signal, ms: Date.now() - started };
}

/** The one JSON line an admin command prints on stdout. */
function jsonLine(stdout: string): Record<string, string> {
  const line = stdout.split("\n").find((l) => l.startsWith("{"));
  expect(line, `no JSON line in stdout:\n${stdout}`).toBeDefined();
  return JSON.parse(line!) as Record<string, string>;
}

function sh(command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("sh", ["-c", command], { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${command}\nfailed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

// --- 1. embedded first start, curl, restart ----------------------------------------------------

describe("embedded start (no DATABASE_URL)", () => {
  it(
    "bootstraps once, prints a working curl command, shuts down on SIGTERM and keeps its data across a restart",
    async () => {
      const dataDir = tempDataDir();
      const first = spawnRendition([], serverEnv(dataDir));
      const { baseUrl } = await first.listening(60_000);
      expect(first.output).toContain("embedded PGlite");

      // The banner, printed right after the listening line.
      await first.waitFor(/-d '\{.*\}'\n/, 10_000);
      const banner = first.stdout;
      expect(banner).toContain("First start: created an organization, an API key and a local storage origin.");
      await first.waitFor(/The web dashboard: http:\/\/\S+\/ /, 10_000);
      const printed = {
        organization_id: banner.match(/organization_id: (org_\S+)/)?.[1],
        api_key: banner.match(/api_key: +(rnd_live_\S+)/)?.[1],
        local_origin_id: banner.match(/local_origin_id: (ori_\S+)/)?.[1],
      };

      // credentials.json: the same three values and the webhook secret (the banner shows only its
      // start), readable by the owner only.
      const file = join(dataDir, "credentials.json");
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const { webhook_secret: webhookSecret, ...credentials } = readCredentials(dataDir);
      expect(Object.keys(credentials).sort()).toEqual(["api_key", "local_origin_id", "organization_id"]);
      expect(credentials).toEqual(printed);
      expect(webhookSecret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
      expect(banner).toContain(`webhook_secret:  ${webhookSecret.slice(0, 12)}…`);
      expect(banner).not.toContain(webhookSecret);
      expect(banner).toContain(file);

      // The printed command, pasted into a shell as is (line continuations and quoting included).
      const command = banner.slice(banner.indexOf("  curl -sS -X POST")).match(/^[\s\S]*?-d '\{.*\}'/)![0];
      expect(command).toContain(`${baseUrl}/rendition.v1.JobService/Create`);
      const createdText = await sh(command);
      expect(createdText).toContain('"status":"JOB_STATUS_PENDING"');
      const job = (JSON.parse(createdText) as { job: { id: string; status: string; input_origin: { id: string } } }).job;
      expect(job.id).toMatch(/^job_/);
      expect(job.input_origin.id).toBe(credentials.local_origin_id);

      // The sample clip written at first start becomes a 720p H.264 mp4 that ffprobe reads.
      const auth = authOf(credentials);
      let got = await curlRpc(baseUrl, "rendition.v1.JobService/Get", auth, { id: job.id });
      for (let i = 0; i < 600 && !/COMPLETED|FAILED|CANCELED|PARTIAL/.test(got.json.job.status); i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        got = await curlRpc(baseUrl, "rendition.v1.JobService/Get", auth, { id: job.id });
      }
      expect(got.status).toBe(200);
      expect(got.json.job).toMatchObject({ id: job.id, status: "JOB_STATUS_COMPLETED" });
      const produced = fileURLToPath(got.json.job.outputs[0].output_url);
      expect(produced.startsWith(join(dataDir, "storage"))).toBe(true);
      const probed = JSON.parse(await sh(`ffprobe -v error -show_streams -of json '${produced}'`));
      expect(probed.streams.find((st: { codec_type: string }) => st.codec_type === "video")).toMatchObject({ codec_name: "h264", width: 1280, height: 720 });
      const listed = await curlRpc(baseUrl, "rendition.v1.JobService/List", auth, {});
      expect(listed.status).toBe(200);
      expect(listed.json.jobs.map((j: { id: string }) => j.id)).toEqual([job.id]);

      const stopped = await terminate(first);
      expect(stopped).toMatchObject({ code: 0, signal: null });
      expect(stopped.ms).toBeLessThan(5_000);
      expect(first.output).toMatch(/SIGTERM: finishing in-flight calls and shutting down[\s\S]*stopped/);

      // Restart on the same data directory: no second bootstrap, same key, same job.
      const second = spawnRendition([], serverEnv(dataDir));
      const restarted = await second.listening(60_000);
      const again = await curlRpc(restarted.baseUrl, "rendition.v1.JobService/Get", auth, { id: job.id });
      expect(again.status).toBe(200);
      expect(again.json.job).toMatchObject({ id: job.id, status: "JOB_STATUS_COMPLETED" });
      const listedAgain = await curlRpc(restarted.baseUrl, "rendition.v1.JobService/List", auth, {});
      expect(listedAgain.json.jobs.map((j: { id: string }) => j.id)).toEqual([job.id]);
      expect(listedAgain.json.pagination.total_count).toBe(1);
      expect(second.output).not.toContain("First start");
      expect(second.output).not.toContain("rnd_live_");
      expect(readCredentials(dataDir)).toEqual({ ...credentials, webhook_secret: webhookSecret });

      expect(await terminate(second)).toMatchObject({ code: 0, signal: null });
    },
    150_000,
  );

  it(
    "does not lose what an admin command writes while the server is running on the same data directory",
    async () => {
      const dataDir = tempDataDir();
      const server = spawnRendition([], serverEnv(dataDir));
      await server.listening(60_000);
      await server.waitFor(/-d '\{.*\}'\n/, 10_000);

      // Two processes on one PGlite directory: the command must either refuse (non-zero exit,
      // saying why) or its write must survive.
      const org = await runRendition(["org", "create", "While", "running"], serverEnv(dataDir), 60_000);
      expect(await terminate(server)).toMatchObject({ code: 0, signal: null });
      if (org.code !== 0) {
        expect(org.stderr).toMatch(/in use|lock|running/i);
        return;
      }
      const { organization_id: orgId } = jsonLine(org.stdout);
      const key = await runRendition(["key", "create", "--org", orgId!], serverEnv(dataDir), 60_000);
      expect(key.stderr, `org create printed ${orgId} and exited 0, but the organization is gone after the server stopped`).not.toContain(
        "does not exist",
      );
      expect(key.code).toBe(0);
    },
    150_000,
  );
});

// --- 2-5. PostgreSQL ---------------------------------------------------------------------------

describe("api on an empty PostgreSQL database", () => {
  it(
    "migrates, bootstraps (banner and credentials.json) and reports ready",
    async () => {
      const databaseUrl = await emptyDatabase();
      const dataDir = tempDataDir();
      const server = spawnRendition(["api"], serverEnv(dataDir, { DATABASE_URL: databaseUrl }));
      const { baseUrl } = await server.listening();
      expect(server.output).toMatch(/listening on 127\.0\.0\.1:\d+ \(database: PostgreSQL; queue: in-process; no encoder in this process\)/);
      expect(server.output).toContain("NATS_URL is not set");
      await server.waitFor(/-d '\{.*\}'\n/, 10_000);
      expect(server.stdout).toContain("First start");

      const credentials = readCredentials(dataDir);
      expect(statSync(join(dataDir, "credentials.json")).mode & 0o777).toBe(0o600);
      expect(server.stdout).toContain(credentials.api_key);

      const ready = await curl([`${baseUrl}/readyz`]);
      expect(ready).toEqual({ status: 200, body: JSON.stringify({ status: "ok" }) });
      const healthy = await curl([`${baseUrl}/healthz`]);
      expect(healthy.status).toBe(200);
      const listed = await curlRpc(baseUrl, "rendition.v1.JobService/List", authOf(credentials), {});
      expect(listed).toMatchObject({ status: 200, json: { jobs: [] } });

      expect(await terminate(server)).toMatchObject({ code: 0, signal: null });
    },
    60_000,
  );
});

describe("migrate", () => {
  it(
    "applies the migrations to an empty database, then finds it up to date",
    async () => {
      const env = serverEnv(tempDataDir(), { DATABASE_URL: await emptyDatabase() });
      const first = await runRendition(["migrate"], env);
      expect(first.code, first.stderr).toBe(0);
      expect(first.stdout).toContain("applied: 0001_initial");
      const second = await runRendition(["migrate"], env);
      expect(second.code, second.stderr).toBe(0);
      expect(second.stdout).toContain("database is up to date");
      expect(second.stdout).not.toContain("applied");
    },
    60_000,
  );
});

describe("admin commands", () => {
  it(
    "create an organization and a key that authenticates, revoke it, and refuse bad input",
    async () => {
      const dataDir = tempDataDir();
      const env = serverEnv(dataDir, { DATABASE_URL: await emptyDatabase() });

      const org = await runRendition(["org", "create", "Acme", "Inc"], env);
      expect(org.code, org.stderr).toBe(0);
      const { organization_id: orgId, name, webhook_secret: webhookSecret } = jsonLine(org.stdout);
      expect(orgId).toMatch(/^org_/);
      expect(name).toBe("Acme Inc");
      expect(webhookSecret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);

      const created = await runRendition(["key", "create", "--org", orgId!], env);
      expect(created.code, created.stderr).toBe(0);
      const key = jsonLine(created.stdout);
      expect(key.organization_id).toBe(orgId);
      expect(key.key_id).toMatch(/^ak_/);
      // 32 random bytes in base64url after the prefix: 43 characters, 256 bits.
      expect(key.api_key).toMatch(/^rnd_live_[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(key.api_key!.slice("rnd_live_".length), "base64url")).toHaveLength(32);
      expect(created.stdout.split(key.api_key!)).toHaveLength(2); // printed once
      expect(created.stderr).toContain("shown only once");

      // A server on the same database: the organization exists, so no bootstrap.
      const server = spawnRendition(["api"], env);
      const { baseUrl } = await server.listening();
      const auth = { apiKey: key.api_key!, organizationId: orgId! };
      const listed = await curlRpc(baseUrl, "rendition.v1.JobService/List", auth, {});
      expect(listed).toMatchObject({ status: 200, json: { jobs: [] } });
      expect(server.output).not.toContain("First start");

      // A test key from the CLI, listed over the API next to the first one (one table, one repository).
      const testKey = jsonLine((await runRendition(["key", "create", "--org", orgId!, "--name", "sandbox", "--test"], env)).stdout);
      expect(testKey.api_key).toMatch(/^rnd_test_[A-Za-z0-9_-]{43}$/);
      expect(testKey.test).toBe(true);
      const keys = await curlRpc(baseUrl, "rendition.v1.ApiKeyService/List", auth, {});
      expect(keys.status).toBe(200);
      expect(keys.json.api_keys.map((k: { id: string; name: string; test: boolean; current: boolean }) => [k.id, k.name, k.test, k.current])).toEqual([
        [testKey.key_id, "sandbox", true, false],
        [key.key_id, "", false, true],
      ]);

      const revoked = await runRendition(["key", "revoke", key.key_id!], env);
      expect(revoked.code, revoked.stderr).toBe(0);
      expect(revoked.stdout).toContain(`revoked ${key.key_id}`);
      const refused = await curlRpc(baseUrl, "rendition.v1.JobService/List", auth, {});
      expect(refused.status).toBe(401);
      expect(refused.json.code).toBe("unauthenticated");
      const revokedAgain = await runRendition(["key", "revoke", key.key_id!], env);
      expect(revokedAgain.code).toBe(1);
      expect(revokedAgain.stderr).toContain(`no active key ${key.key_id}`);

      const noOrg = await runRendition(["key", "create", "--org", "org_nope"], env);
      expect(noOrg.code).toBe(1);
      expect(noOrg.stderr).toContain("error: organization org_nope does not exist");
      expect(noOrg.stderr).not.toContain("fatal");
      expect(noOrg.stdout).not.toContain("rnd_live_");

      const unknown = await runRendition(["frobnicate"], env);
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toContain("Usage: npm start -- [command]");
      const missingOrg = await runRendition(["key", "create"], env);
      expect(missingOrg.code).toBe(2);
      expect(missingOrg.stderr).toContain("Usage:");

      expect(await terminate(server)).toMatchObject({ code: 0, signal: null });
    },
    120_000,
  );

  it(
    "print only their JSON on stdout, even on a fresh data directory (so `| jq` works)",
    async () => {
      const env = serverEnv(tempDataDir(), { DATABASE_URL: await emptyDatabase() });
      const org = await runRendition(["org", "create", "Acme"], env);
      expect(org.code, org.stderr).toBe(0);
      expect(() => JSON.parse(org.stdout), `stdout is not one JSON document:\n${org.stdout}`).not.toThrow();
      const key = await runRendition(["key", "create", "--org", (JSON.parse(org.stdout) as { organization_id: string }).organization_id], env);
      expect(key.code, key.stderr).toBe(0);
      expect(() => JSON.parse(key.stdout), `stdout is not one JSON document:\n${key.stdout}`).not.toThrow();
    },
    60_000,
  );

  it(
    "answer an unknown option with the usage and exit 2",
    async () => {
      const result = await runRendition(["key", "create", "--org", "org_x", "--bogus"], serverEnv(tempDataDir()));
      expect(result.stderr).toContain("Usage:");
      expect(result.stderr).not.toContain("fatal");
      expect(result.code).toBe(2);
    },
    60_000,
  );
});

describe("graceful shutdown", () => {
  it(
    "ends Watch streams cleanly, lets an in-flight call finish and exits 0",
    async () => {
      const dataDir = tempDataDir();
      const server = spawnRendition(["api"], serverEnv(dataDir, { DATABASE_URL: await emptyDatabase(), RENDITION_NETWORK_ALLOW: "127.0.0.1/32" }));
      const { baseUrl } = await server.listening();
      await server.waitFor(/-d '\{.*\}'\n/, 10_000);
      const credentials = readCredentials(dataDir);
      const transport = createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [authHeaders(authOf(credentials))] });
      const jobs = createClient(JobService, transport);
      const origins = createClient(OriginService, transport);

      // A slow HTTP storage host: OriginService.Create probes it, so that call stays in flight
      // on the server until this host answers.
      let probeArrived!: () => void;
      const probing = new Promise<void>((resolve) => (probeArrived = resolve));
      const slowHost = http.createServer((req, res) => {
        probeArrived();
        setTimeout(() => res.writeHead(200, { "content-length": "0" }).end(), 2_000);
      });
      await new Promise<void>((resolve) => slowHost.listen(0, "127.0.0.1", resolve));
      cleanups.push(() => new Promise<void>((resolve) => slowHost.close(() => resolve())));
      const slowUrl = `http://127.0.0.1:${(slowHost.address() as AddressInfo).port}`;

      const { job } = await jobs.create({
        inputOriginId: credentials.local_origin_id,
        inputPath: "in.mp4",
        outputOriginId: credentials.local_origin_id,
        outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_720P }] }],
      });
      expect(job!.status).toBe(JobStatus.PENDING);

      const events: WatchEvent[] = [];
      let snapshot!: () => void;
      const gotSnapshot = new Promise<void>((resolve) => (snapshot = resolve));
      let streamEndedAt = 0;
      // Settles to "ended" or the error, so a failure is reported by the assertion below.
      const watching = (async () => {
        for await (const message of jobs.watch({ id: job!.id })) {
          events.push(message.event);
          if (message.event === WatchEvent.SNAPSHOT) snapshot();
        }
        streamEndedAt = Date.now();
      })().then(
        () => "ended",
        (err: unknown) => err,
      );
      await Promise.race([gotSnapshot, watching.then((r) => Promise.reject(new Error(`Watch ended before its snapshot: ${String(r)}`)))]);

      let unaryEndedAt = 0;
      const inFlight = origins
        .create({ name: "slow", permissions: [OriginPermission.READ], http: { baseUrl: slowUrl } })
        .finally(() => (unaryEndedAt = Date.now()));
      // Wait until the server is inside the Create handler (fail fast if the call ended before).
      await Promise.race([probing, inFlight.then((r) => Promise.reject(new Error(`Create ended before probing: ${JSON.stringify(r)}`)))]);

      const sigtermAt = Date.now();
      const stopping = terminate(server);
      stopping.catch(() => {}); // awaited below; this only keeps an earlier failure from also reporting it as unhandled
      const { origin } = await inFlight;
      expect(origin!.id).toMatch(/^ori_/);
      expect(origin!.name).toBe("slow");

      expect(await watching).toBe("ended"); // the for-await loop finished without throwing
      expect(events).toEqual([WatchEvent.SNAPSHOT]);
      // The call really was in flight across the signal, and the stream ended at once on SIGTERM
      // rather than being held until the other calls had drained.
      expect(unaryEndedAt - sigtermAt).toBeGreaterThanOrEqual(1_000);
      expect(streamEndedAt).toBeLessThan(unaryEndedAt);

      const stopped = await stopping;
      expect(stopped).toMatchObject({ code: 0, signal: null });
      expect(stopped.ms).toBeLessThan(5_000);
      expect(server.stderr).not.toContain("internal error");
    },
    60_000,
  );
});

// --- 6. bad configuration ----------------------------------------------------------------------

describe("bad configuration", () => {
  it(
    "exits 1 naming the variable",
    async () => {
      const dataDir = tempDataDir();
      const [port, database] = await Promise.all([
        runRendition([], serverEnv(dataDir, { PORT: "abc" })),
        runRendition(["api"], serverEnv(dataDir, { DATABASE_URL: "mysql://x" })),
      ]);
      expect(port.code).toBe(1);
      expect(port.stderr).toMatch(/^error: PORT must be an integer between 0 and 65535, got "abc"/m);
      expect(port.stdout).not.toContain("listening");
      expect(database.code).toBe(1);
      expect(database.stderr).toMatch(/^error: DATABASE_URL must be a postgres:\/\/ URL, got "mysql:\/\/x"/m);
      expect(database.stdout).not.toContain("listening");
      for (const result of [port, database]) expect(result.stderr).not.toContain("fatal");
    },
    60_000,
  );
});
