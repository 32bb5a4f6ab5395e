/**
 * The private servers `npm run chaos` breaks on purpose: a PostgreSQL cluster (initdb into a temp
 * directory, its own port) and a nats-server (JetStream, its own store and port), each stopped and
 * started again on the same data, and a network namespace with a veth pair for cutting one worker
 * off. Nothing here touches the machine's shared PostgreSQL (5432) or NATS (4222).
 *
 * Every resource registers a synchronous cleanup that runs at process exit, so a failed or
 * interrupted run leaves no server, namespace or link behind.
 */
import { execFile, execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { appendFileSync, chownSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort, locateNatsServer, locatePostgres, probeNats, probePostgres } from "../../test/support/services.js";

const run = promisify(execFile);

const cleanups: Array<() => void> = [];
/** Runs every registered cleanup once, last registered first (processes before servers before links). */
export function cleanupAll(): void {
  while (cleanups.length) {
    try {
      cleanups.pop()!();
    } catch {
      // keep cleaning
    }
  }
}
export function onCleanup(fn: () => void): void {
  cleanups.push(fn);
}
process.on("exit", cleanupAll);

async function until(what: string, timeoutMs: number, check: () => Promise<string | undefined>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let problem: string | undefined = "not tried";
  while (Date.now() < deadline) {
    problem = await check();
    if (!problem) return;
    await sleep(100);
  }
  throw new Error(`${what}: ${problem}`);
}

/** A PostgreSQL cluster of this run: initdb'd once, then stopped (immediate) and started on the same data and port. */
export class PrivatePostgres {
  readonly url: string;
  private readonly dataDir: string;
  private readonly logFile: string;
  private running = false;

  private constructor(
    private readonly binDir: string,
    baseDir: string,
    readonly port: number,
    readonly host: string,
    private readonly runAs: string | undefined,
  ) {
    this.dataDir = join(baseDir, "data");
    this.logFile = join(baseDir, "postgres.log");
    this.url = `postgres://postgres@${host}:${port}/postgres`;
  }

  /** `listen`: addresses besides 127.0.0.1 (the veth end); `trustNet`: a CIDR allowed in pg_hba besides loopback. */
  static async create(baseDir: string, options: { listen?: string; trustNet?: string } = {}): Promise<PrivatePostgres> {
    const binDir = await locatePostgres();
    if (!binDir) throw new Error("no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin: apt-get install -y postgresql");
    // initdb and postgres refuse root: run them as the Debian package's `postgres` user.
    const runAs = process.getuid?.() === 0 ? "postgres" : undefined;
    mkdirSync(baseDir, { recursive: true });
    if (runAs) {
      const uid = Number(execFileSync("id", ["-u", runAs], { encoding: "utf8" }).trim());
      const gid = Number(execFileSync("id", ["-g", runAs], { encoding: "utf8" }).trim());
      chownSync(baseDir, uid, gid);
    }
    const pg = new PrivatePostgres(binDir, baseDir, await freePort(), options.listen ?? "127.0.0.1", runAs);
    await pg.as(join(binDir, "initdb"), ["-D", pg.dataDir, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"]);
    const listen = ["127.0.0.1", ...(options.listen && options.listen !== "127.0.0.1" ? [options.listen] : [])].join(",");
    appendFileSync(
      join(pg.dataDir, "postgresql.conf"),
      [
        "",
        "# rendition chaos run: durable settings (the defaults), so a crash loses no committed transaction",
        `port = ${pg.port}`,
        `listen_addresses = '${listen}'`,
        `unix_socket_directories = '${baseDir}'`,
        "fsync = on",
        "synchronous_commit = on",
        "max_connections = 200",
        "",
      ].join("\n"),
    );
    if (options.trustNet) appendFileSync(join(pg.dataDir, "pg_hba.conf"), `\nhost all all ${options.trustNet} trust\n`);
    onCleanup(() => pg.stopSync());
    await pg.start();
    return pg;
  }

  private as(command: string, args: string[]): Promise<unknown> {
    return this.runAs ? run("runuser", ["-u", this.runAs, "--", command, ...args]) : run(command, args);
  }

  async start(): Promise<void> {
    await this.as(join(this.binDir, "pg_ctl"), ["-D", this.dataDir, "-l", this.logFile, "-w", "-t", "60", "start"]);
    this.running = true;
    await until(`PostgreSQL at ${this.url}`, 30_000, () => probePostgres(this.url, 2000));
  }

  /** `pg_ctl stop -m immediate`: every backend killed at once, no checkpoint; crash recovery at the next start. */
  async stopImmediate(): Promise<void> {
    await this.as(join(this.binDir, "pg_ctl"), ["-D", this.dataDir, "-m", "immediate", "-w", "stop"]);
    this.running = false;
  }

  private stopSync(): void {
    if (this.running) {
      const args = ["-D", this.dataDir, "-m", "immediate", "-w", "stop"];
      const pgCtl = join(this.binDir, "pg_ctl");
      spawnSync(this.runAs ? "runuser" : pgCtl, this.runAs ? ["-u", this.runAs, "--", pgCtl, ...args] : args, { stdio: "ignore", timeout: 15_000 });
      this.running = false;
    }
  }
}

/** A nats-server with JetStream of this run: killed (SIGKILL or SIGTERM) and started again on the same store and port. */
export class PrivateNats {
  readonly url: string;
  private child: ChildProcess | undefined;
  private readonly storeDir: string;

  private constructor(
    private readonly binary: string,
    baseDir: string,
    readonly host: string,
    readonly port: number,
  ) {
    this.storeDir = join(baseDir, "jetstream");
    this.url = `nats://${host}:${port}`;
  }

  static async create(baseDir: string, host = "127.0.0.1"): Promise<PrivateNats> {
    let binary = locateNatsServer();
    if (!binary && process.getuid?.() === 0) {
      spawnSync("apt-get", ["install", "-y", "-q", "nats-server"], { stdio: "inherit" });
      binary = locateNatsServer();
    }
    if (!binary) throw new Error("no nats-server binary on PATH or in /usr/sbin: apt-get install -y nats-server");
    mkdirSync(join(baseDir, "jetstream"), { recursive: true });
    const nats = new PrivateNats(binary, baseDir, host, await freePort());
    onCleanup(() => {
      if (nats.alive()) nats.child!.kill("SIGKILL");
    });
    await nats.start();
    return nats;
  }

  alive(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(): Promise<void> {
    const child = spawn(this.binary, ["-a", this.host, "-p", String(this.port), "-js", "-sd", this.storeDir], { stdio: "ignore" });
    this.child = child;
    await until(`nats-server at ${this.url}`, 20_000, async () => (this.alive() ? probeNats(this.url, 1000) : `exited (${child.exitCode ?? child.signalCode})`));
  }

  async stop(signal: "SIGKILL" | "SIGTERM"): Promise<void> {
    const child = this.child;
    if (!child || !this.alive()) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill(signal);
    await Promise.race([exited, sleep(10_000)]);
    if (this.alive()) {
      child.kill("SIGKILL");
      await exited;
    }
  }
}

/**
 * A network namespace joined to the host by a veth pair on a private /30: the host end carries
 * `hostIp` (the servers listen on it), the namespace end `nsIp`. `cut()` sets the namespace end
 * down: the namespace loses its route to the host (new connections fail at once, established
 * ones hear nothing), while host processes still reach `hostIp` (a local address).
 */
export class NetworkNamespace {
  readonly hostIp: string;
  readonly nsIp: string;
  readonly cidr: string;
  private readonly hostLink: string;
  private readonly nsLink: string;

  private constructor(
    readonly name: string,
    subnet: number,
  ) {
    this.hostIp = `10.231.${subnet}.1`;
    this.nsIp = `10.231.${subnet}.2`;
    this.cidr = `10.231.${subnet}.0/30`;
    const tag = `rc${process.pid % 100000}`;
    this.hostLink = `${tag}h`;
    this.nsLink = `${tag}n`;
  }

  /** The namespace, or the reason it cannot be made here (not root, no `ip`, no CAP_NET_ADMIN...). */
  static create(): NetworkNamespace | string {
    if (process.getuid?.() !== 0) return "not running as root (ip netns add needs CAP_SYS_ADMIN and CAP_NET_ADMIN)";
    if (!existsSync("/usr/sbin/ip") && !existsSync("/sbin/ip") && !existsSync("/usr/bin/ip")) return "no `ip` command (apt-get install -y iproute2)";
    const ns = new NetworkNamespace(`rchaos_${process.pid}`, 1 + (process.pid % 250));
    onCleanup(() => ns.destroy());
    const steps: string[][] = [
      ["netns", "add", ns.name],
      ["link", "add", ns.hostLink, "type", "veth", "peer", "name", ns.nsLink, "netns", ns.name],
      ["addr", "add", `${ns.hostIp}/30`, "dev", ns.hostLink],
      ["link", "set", ns.hostLink, "up"],
      ["-n", ns.name, "addr", "add", `${ns.nsIp}/30`, "dev", ns.nsLink],
      ["-n", ns.name, "link", "set", ns.nsLink, "up"],
      ["-n", ns.name, "link", "set", "lo", "up"],
    ];
    for (const step of steps) {
      const result = spawnSync("ip", step, { encoding: "utf8" });
      if (result.status !== 0) {
        ns.destroy();
        return `\`ip ${step.join(" ")}\` failed: ${(result.stderr || result.error?.message || "").trim()}`;
      }
    }
    return ns;
  }

  /** The command prefix that runs a program inside the namespace. */
  get exec(): string[] {
    return ["ip", "netns", "exec", this.name];
  }

  cut(): void {
    execFileSync("ip", ["-n", this.name, "link", "set", this.nsLink, "down"]);
  }

  restore(): void {
    execFileSync("ip", ["-n", this.name, "link", "set", this.nsLink, "up"]);
  }

  /** Deleting the namespace deletes the veth pair with it; the host end is removed too in case the pair was half made. */
  destroy(): void {
    spawnSync("ip", ["netns", "del", this.name], { stdio: "ignore" });
    spawnSync("ip", ["link", "del", this.hostLink], { stdio: "ignore" });
  }
}

/** Deletes the base directory of the run (servers stopped first). */
export function removeLater(dir: string): void {
  // Registered first, so it runs last.
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
}
