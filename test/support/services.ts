/**
 * PostgreSQL and NATS (JetStream) for the test suite.
 *
 * Each `ensure*` function, in this order:
 *   1. uses the URL from the environment (RENDITION_TEST_DATABASE_URL / RENDITION_TEST_NATS_URL)
 *      when set; it must be usable, or the function throws;
 *   2. reuses the machine's service at the standard address (127.0.0.1:5432 / 127.0.0.1:4222)
 *      when it answers;
 *   3. otherwise starts a private server from the installed binaries, on a free port of 127.0.0.1
 *      and in a temp directory, and returns a `stop()` that shuts it down and removes the directory;
 *   4. throws, naming the Debian package to install, when there are no binaries either.
 *
 * `stop()` of a reused or configured service does nothing. A started server is also killed when
 * the Node process exits without calling `stop()` (vitest turns SIGINT/SIGTERM into an exit).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, rmSync, statSync } from "node:fs";
import { appendFile, chown, mkdir, mkdtemp, readFile, realpath, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import pg from "pg";

export interface TestService {
  /** postgres://… or nats://… */
  url: string;
  /** "env", "reused" or "started": where the URL came from. */
  origin: "env" | "reused" | "started";
  /** Stops the server if this process started it and removes its directory; otherwise a no-op. Idempotent. */
  stop(): Promise<void>;
}

export interface EnsureOptions {
  /** Address tried before starting a server. Defaults to the machine's standard one. */
  probeUrl?: string;
  /** Environment to read the RENDITION_TEST_* override and PATH from (default: process.env). */
  env?: NodeJS.ProcessEnv;
  /** Directories searched for the server binaries, replacing PATH and the Debian locations. */
  binaryDirs?: string[];
  /** Where the one line saying which server is used goes (default: console.log). */
  log?: (line: string) => void;
}

export const DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres";
export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";

const noop = async () => {};
const defaultLog = (line: string) => console.log(line);

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

export async function ensurePostgres(options: EnsureOptions = {}): Promise<TestService> {
  const env = options.env ?? process.env;
  const log = options.log ?? defaultLog;

  const configured = env.RENDITION_TEST_DATABASE_URL;
  if (configured) {
    const problem = await probePostgres(configured);
    if (problem) {
      throw new Error(`RENDITION_TEST_DATABASE_URL (${redact(configured)}) is not usable: ${problem}`);
    }
    log(`[test services] PostgreSQL: using RENDITION_TEST_DATABASE_URL ${redact(configured)}`);
    return { url: configured, origin: "env", stop: noop };
  }

  const probeUrl = options.probeUrl ?? DEFAULT_POSTGRES_URL;
  const problem = await probePostgres(probeUrl);
  if (!problem) {
    log(`[test services] PostgreSQL: reusing the running server at ${redact(probeUrl)}`);
    return { url: probeUrl, origin: "reused", stop: noop };
  }

  const binDir = await locatePostgres(env, options.binaryDirs);
  if (!binDir) {
    throw new Error(
      `PostgreSQL is not reachable at ${redact(probeUrl)} (${problem}) and no PostgreSQL server binaries ` +
        `(initdb, pg_ctl, postgres) were found on PATH or in /usr/lib/postgresql/*/bin. ` +
        `Install them with: apt-get install -y postgresql ` +
        `(or point RENDITION_TEST_DATABASE_URL at a server).`,
    );
  }
  const server = await startPostgres(binDir);
  log(
    `[test services] PostgreSQL: nothing usable at ${redact(probeUrl)} (${problem}); ` +
      `started ${server.version} from ${binDir} at ${server.url} (data in ${server.baseDir})`,
  );
  return { url: server.url, origin: "started", stop: server.stop };
}

/** Returns undefined when `SELECT 1` works at `url`, else a short reason. */
export async function probePostgres(url: string, timeoutMs = 3000): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  client.on("error", () => {}); // a late socket error must not crash the process
  try {
    await client.connect();
    await client.query("SELECT 1");
    return undefined;
  } catch (error) {
    return describeError(error);
  } finally {
    await client.end().catch(() => {});
  }
}

function postgresSearchDirs(env: NodeJS.ProcessEnv): string[] {
  const dirs = pathDirs(env);
  const root = "/usr/lib/postgresql";
  const versions = (existsSync(root) ? readdirSync(root) : [])
    .filter((name) => /^\d+(\.\d+)?$/.test(name))
    .sort((a, b) => Number(b) - Number(a)); // highest version first
  return [...dirs, ...versions.map((v) => path.join(root, v, "bin"))];
}

/**
 * The directory of the PostgreSQL server binaries: the first of PATH, then /usr/lib/postgresql/<highest>/bin,
 * (or of `dirs`) holding initdb and pg_ctl, with symlinks resolved, so that postgres sits next to them.
 */
export async function locatePostgres(
  env: NodeJS.ProcessEnv = process.env,
  dirs: string[] = postgresSearchDirs(env),
): Promise<string | undefined> {
  for (const dir of dirs) {
    const initdb = path.join(dir, "initdb");
    if (!isExecutable(initdb) || !isExecutable(path.join(dir, "pg_ctl"))) continue;
    const realDir = path.dirname(await realpath(initdb));
    if (["initdb", "pg_ctl", "postgres"].every((name) => isExecutable(path.join(realDir, name)))) {
      return realDir;
    }
  }
  return undefined;
}

interface StartedPostgres {
  url: string;
  version: string;
  baseDir: string;
  /** Stops the server and removes its files. */
  stop(): Promise<void>;
  /** Outage tests: stops the server at once (`-m immediate`, as a crash), keeping its files. */
  halt(): Promise<void>;
  /** Starts the halted server again on the same port. */
  resume(): Promise<void>;
}

/** A PostgreSQL cluster of the test's own (so it can be stopped without touching the shared one). */
export async function startPrivatePostgres(): Promise<StartedPostgres> {
  const binDir = await locatePostgres();
  if (!binDir) throw new Error("no PostgreSQL binaries (initdb, pg_ctl): apt-get install -y postgresql");
  // A crash of the server (halt) must keep what it acknowledged, as a real one does.
  return startPostgres(binDir, { durable: true });
}

async function startPostgres(binDir: string, options: { durable?: boolean } = {}): Promise<StartedPostgres> {
  // initdb and postgres refuse to run as root: then the directory belongs to, and the
  // commands run as, the `postgres` user (created by Debian's package), via runuser.
  const runAs = process.getuid?.() === 0 ? await lookupUnprivilegedUser() : undefined;
  const asUser = (command: string, args: string[]): [string, string[]] =>
    runAs ? ["runuser", ["-u", runAs.name, "--", command, ...args]] : [command, args];

  const baseDir = await mkdtemp(path.join(tmpdir(), "rendition-pg-"));
  const dataDir = path.join(baseDir, "data");
  const logFile = path.join(baseDir, "postgres.log");
  const pgCtl = path.join(binDir, "pg_ctl");
  let running = false;

  const stopSync = () => {
    if (running) {
      const [cmd, args] = asUser(pgCtl, ["-D", dataDir, "-m", "immediate", "-w", "stop"]);
      spawnSync(cmd, args, { stdio: "ignore", timeout: 15_000 });
      running = false;
    }
    rmSync(baseDir, { recursive: true, force: true });
  };
  process.on("exit", stopSync);

  try {
    if (runAs) await chown(baseDir, runAs.uid, runAs.gid);

    const initdb = asUser(path.join(binDir, "initdb"), [
      "-D", dataDir, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync",
    ]);
    await run(initdb[0], initdb[1], "initdb");

    const version = (await run(path.join(binDir, "postgres"), ["--version"], "postgres --version")).trim();

    let lastError: unknown;
    for (let attempt = 1; attempt <= 3; attempt++) {
      const port = await freePort();
      // Settings go into the data directory's config (the file keeps its owner and mode).
      await appendFile(
        path.join(dataDir, "postgresql.conf"),
        [
          "",
          "# rendition test server",
          `port = ${port}`,
          "listen_addresses = '127.0.0.1'",
          `unix_socket_directories = '${baseDir.replace(/'/g, "''")}'`,
          // Only an OS crash needs fsync; a server crash loses unflushed commits without synchronous_commit.
          "fsync = off",
          `synchronous_commit = ${options.durable ? "on" : "off"}`,
          "full_page_writes = off",
          "max_connections = 200",
          "",
        ].join("\n"),
      );
      const [cmd, args] = asUser(pgCtl, ["-D", dataDir, "-l", logFile, "-w", "-t", "60", "start"]);
      try {
        running = true;
        await run(cmd, args, "pg_ctl start");
        const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
        const problem = await waitFor(() => probePostgres(url), 20_000);
        if (problem) throw new Error(`started but not answering at ${url}: ${problem}`);

        let stopped: Promise<void> | undefined;
        const stop = () =>
          (stopped ??= (async () => {
            process.off("exit", stopSync);
            if (running) {
              const [c, a] = asUser(pgCtl, ["-D", dataDir, "-m", "fast", "-w", "-t", "30", "stop"]);
              await run(c, a, "pg_ctl stop").catch(() => {
                const [ci, ai] = asUser(pgCtl, ["-D", dataDir, "-m", "immediate", "-w", "stop"]);
                spawnSync(ci, ai, { stdio: "ignore", timeout: 15_000 });
              });
              running = false;
            }
            await rm(baseDir, { recursive: true, force: true });
          })());
        const halt = async () => {
          const [c, a] = asUser(pgCtl, ["-D", dataDir, "-m", "immediate", "-w", "stop"]);
          await run(c, a, "pg_ctl stop");
          running = false;
        };
        const resume = async () => {
          const [c, a] = asUser(pgCtl, ["-D", dataDir, "-l", logFile, "-w", "-t", "60", "start"]);
          running = true;
          await run(c, a, "pg_ctl start");
          const problem = await waitFor(() => probePostgres(url), 20_000);
          if (problem) throw new Error(`restarted but not answering at ${url}: ${problem}`);
        };
        return { url, version, baseDir, stop, halt, resume };
      } catch (error) {
        // Most likely the port was taken between choosing and binding it: try another one.
        lastError = new Error(`${describeError(error)}\n${await tail(logFile)}`);
        const [c, a] = asUser(pgCtl, ["-D", dataDir, "-m", "immediate", "-w", "stop"]);
        spawnSync(c, a, { stdio: "ignore", timeout: 15_000 });
        running = false;
      }
    }
    throw new Error(`could not start PostgreSQL from ${binDir}: ${describeError(lastError)}`);
  } catch (error) {
    stopSync();
    process.off("exit", stopSync);
    throw error;
  }
}

async function lookupUnprivilegedUser(): Promise<{ name: string; uid: number; gid: number }> {
  for (const name of ["postgres", "nobody"]) {
    const uid = spawnSync("id", ["-u", name], { encoding: "utf8" });
    const gid = spawnSync("id", ["-g", name], { encoding: "utf8" });
    if (uid.status === 0 && gid.status === 0) {
      return { name, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
    }
  }
  throw new Error(
    "running as root, and initdb refuses root, but there is no 'postgres' (or 'nobody') user to run it as; " +
      "apt-get install -y postgresql creates it",
  );
}

// ---------------------------------------------------------------------------------------------
// NATS
// ---------------------------------------------------------------------------------------------

export async function ensureNats(options: EnsureOptions = {}): Promise<TestService> {
  const env = options.env ?? process.env;
  const log = options.log ?? defaultLog;

  const configured = env.RENDITION_TEST_NATS_URL;
  if (configured) {
    const problem = await probeNats(configured);
    if (problem) throw new Error(`RENDITION_TEST_NATS_URL (${redact(configured)}) is not usable: ${problem}`);
    log(`[test services] NATS: using RENDITION_TEST_NATS_URL ${redact(configured)}`);
    return { url: configured, origin: "env", stop: noop };
  }

  const probeUrl = options.probeUrl ?? DEFAULT_NATS_URL;
  const problem = await probeNats(probeUrl);
  if (!problem) {
    log(`[test services] NATS: reusing the running JetStream server at ${probeUrl}`);
    return { url: probeUrl, origin: "reused", stop: noop };
  }

  const binary = locateNatsServer(env, options.binaryDirs);
  if (!binary) {
    throw new Error(
      `NATS with JetStream is not usable at ${probeUrl} (${problem}) and no nats-server binary was found ` +
        `on PATH or in /usr/sbin. Install it with: apt-get install -y nats-server ` +
        `(or point RENDITION_TEST_NATS_URL at a server started with -js).`,
    );
  }
  const server = await startNats(binary);
  log(
    `[test services] NATS: nothing usable at ${probeUrl} (${problem}); ` +
      `started ${binary} with JetStream at ${server.url} (store in ${server.baseDir})`,
  );
  return { url: server.url, origin: "started", stop: server.stop };
}

/**
 * Returns undefined when a NATS server with JetStream answers at `url`, else a short reason.
 * A server greets every client with `INFO {json}\r\n` before anything else; that is enough.
 */
export async function probeNats(url: string, timeoutMs = 3000): Promise<string | undefined> {
  let host: string;
  let port: number;
  try {
    const first = url.split(",")[0]!.trim();
    const parsed = new URL(first.includes("://") ? first : `nats://${first}`);
    host = parsed.hostname.replace(/^\[|\]$/g, "");
    port = Number(parsed.port || 4222);
  } catch {
    return `not a NATS URL: ${url}`;
  }
  return new Promise((resolve) => {
    let buffer = "";
    let done = false;
    const socket = net.connect({ host, port });
    const finish = (result: string | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish(`no INFO from ${host}:${port} within ${timeoutMs} ms`), timeoutMs);
    socket.setEncoding("utf8");
    socket.on("error", (error) => finish(describeError(error)));
    socket.on("close", () => finish(`${host}:${port} closed the connection before sending INFO`));
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      const end = buffer.indexOf("\r\n");
      if (end < 0) {
        if (buffer.length > 64 * 1024) finish("no INFO line in the first 64 KiB");
        return;
      }
      const line = buffer.slice(0, end);
      if (!line.startsWith("INFO ")) return finish(`not a NATS server (first line: ${line.slice(0, 60)})`);
      let info: { jetstream?: unknown };
      try {
        info = JSON.parse(line.slice(5)) as { jetstream?: unknown };
      } catch {
        return finish("unparsable INFO line");
      }
      finish(info.jetstream === true ? undefined : "the NATS server runs without JetStream (-js)");
    });
  });
}

/** nats-server on PATH, else in /usr/sbin (Debian's package), or in `dirs` when given. */
export function locateNatsServer(
  env: NodeJS.ProcessEnv = process.env,
  dirs: string[] = [...pathDirs(env), "/usr/sbin", "/usr/bin"],
): string | undefined {
  return dirs.map((dir) => path.join(dir, "nats-server")).find(isExecutable);
}

/**
 * A nats-server (JetStream) of the test's own on a fixed free port, so it can be killed and
 * started again at the same address, as in a NATS outage.
 */
export async function startPrivateNats(): Promise<{ url: string; stop(): Promise<void>; halt(): Promise<void>; resume(): Promise<void> }> {
  const binary = locateNatsServer();
  if (!binary) throw new Error("no nats-server binary: apt-get install -y nats-server");
  const baseDir = await mkdtemp(path.join(tmpdir(), "rendition-nats-"));
  const storeDir = path.join(baseDir, "jetstream");
  await mkdir(storeDir);
  const port = await freePort();
  const url = `nats://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  const killSync = () => child?.kill("SIGKILL");
  process.on("exit", killSync);
  const halt = async () => {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    proc.kill("SIGKILL");
    await exited;
  };
  const resume = async () => {
    const proc = spawn(binary, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", storeDir], { stdio: "ignore" });
    child = proc;
    const problem = await waitFor(async () => (proc.exitCode !== null ? `exited (${proc.exitCode})` : probeNats(url, 1000)), 15_000, (p) => p.startsWith("exited"));
    if (problem) throw new Error(`could not start ${binary} on port ${port}: ${problem}`);
  };
  await resume();
  return {
    url,
    halt,
    resume,
    async stop() {
      process.off("exit", killSync);
      await halt();
      await rm(baseDir, { recursive: true, force: true });
    },
  };
}

async function startNats(binary: string): Promise<{ url: string; baseDir: string; stop(): Promise<void> }> {
  const baseDir = await mkdtemp(path.join(tmpdir(), "rendition-nats-"));
  const storeDir = path.join(baseDir, "jetstream");
  const logFile = path.join(baseDir, "nats-server.log");
  await mkdir(storeDir);

  let child: ChildProcess | undefined;
  const killSync = () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    rmSync(baseDir, { recursive: true, force: true });
  };
  process.on("exit", killSync);

  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    const url = `nats://127.0.0.1:${port}`;
    const proc = spawn(binary, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", storeDir, "-l", logFile], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    child = proc;
    let stderr = "";
    proc.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.once("error", (error) => (stderr += `${describeError(error)}\n`));

    const problem = await waitFor(async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return `exited (${proc.exitCode ?? proc.signalCode})`;
      return probeNats(url, 1000);
    }, 15_000, (p) => p.startsWith("exited"));

    if (!problem) {
      let stopped: Promise<void> | undefined;
      const stop = () =>
        (stopped ??= (async () => {
          process.off("exit", killSync);
          if (proc.exitCode === null && proc.signalCode === null) {
            proc.kill("SIGTERM");
            const timedOut = await Promise.race([exited.then(() => false), sleep(10_000, undefined, { ref: false }).then(() => true)]);
            if (timedOut) {
              proc.kill("SIGKILL");
              await exited;
            }
          }
          await rm(baseDir, { recursive: true, force: true });
        })());
      return { url, baseDir, stop };
    }

    lastError = new Error(`${problem}\n${stderr}${await tail(logFile)}`);
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGKILL");
      await exited;
    }
  }
  killSync();
  process.off("exit", killSync);
  throw new Error(`could not start ${binary}: ${describeError(lastError)}`);
}

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Calls `check` until it returns undefined (ready) or `timeoutMs` passes; returns the last reason. */
async function waitFor(
  check: () => Promise<string | undefined>,
  timeoutMs: number,
  isFatal: (problem: string) => boolean = () => false,
): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const problem = await check();
    if (!problem || isFatal(problem) || Date.now() > deadline) return problem;
    await sleep(100);
  }
}

/** Runs a command to completion; rejects with its output when it fails. Resolves with stdout. */
function run(command: string, args: string[], label: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    let stdout = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => ((stdout += chunk), (output += chunk)));
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    child.once("error", (error) => reject(new Error(`${label}: ${describeError(error)}`)));
    child.once("close", (code, signal) => {
      if (code === 0) resolve(stdout);
      else reject(new Error(`${label} failed (${code ?? signal}): ${[command, ...args].join(" ")}\n${output.trim()}`));
    });
  });
}

function pathDirs(env: NodeJS.ProcessEnv): string[] {
  return (env.PATH ?? "").split(path.delimiter).filter(Boolean);
}

function isExecutable(file: string): boolean {
  try {
    const stats = statSync(file);
    return stats.isFile() && (stats.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

async function tail(file: string, lines = 20): Promise<string> {
  try {
    const text = await readFile(file, "utf8");
    return `--- last lines of ${file} ---\n${text.trimEnd().split("\n").slice(-lines).join("\n")}`;
  } catch {
    return "";
  }
}

function describeError(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) {
    return error.errors.map(describeError).join("; ");
  }
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code && !error.message.includes(code) ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

/** Hides a password in a URL for logging. */
function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return url;
  }
}
