/**
 * Spawning the real entry point (`node --import tsx services/main.ts ...`) for end-to-end tests,
 * plus a `curl` wrapper. Every child is tracked, so `killAllChildren()` in afterEach/afterAll
 * leaves nothing running even when a test fails half-way.
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

/** The repository root (cwd of every spawned entry point). */
export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Environment variables of the test process that must not leak into a spawned server. */
const SCRUBBED = /^(PORT|HOST|DATABASE_URL|NATS_URL|FFMPEG_PATH|FFPROBE_PATH|RENDITION_.*)$/;

export interface ExitResult {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RenditionProcess {
  child: ChildProcess;
  /** Everything written so far. */
  readonly stdout: string;
  readonly stderr: string;
  /** stdout + stderr in arrival order. */
  readonly output: string;
  /** Resolves with the first match of `pattern` in the output (stdout and stderr); rejects on exit or timeout. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resolves when the process has exited; rejects after `timeoutMs`. */
  exited(timeoutMs?: number): Promise<ExitResult>;
  /** Waits for `rendition API listening on HOST:PORT` and returns the port and base URL. */
  listening(timeoutMs?: number): Promise<{ port: number; baseUrl: string }>;
}

const children = new Set<ChildProcess>();

function describe(proc: { stdout: string; stderr: string }): string {
  const tail = (s: string) => (s.length > 4000 ? "…" + s.slice(-4000) : s);
  return `\n--- stdout ---\n${tail(proc.stdout)}\n--- stderr ---\n${tail(proc.stderr)}`;
}

export interface SpawnOptions {
  /**
   * Its own process group (the pid is the group id), so `process.kill(-pid, "SIGKILL")` takes its
   * ffmpeg children with it (bench/chaos kills workers this way).
   */
  detached?: boolean;
  /** A command the entry point runs under, e.g. `["ip", "netns", "exec", "ns1"]` (it must exec). */
  prefix?: string[];
}

/**
 * Starts `services/main.ts` with `args`. The environment is the test process's minus any
 * PORT/HOST/DATABASE_URL/RENDITION_* setting, plus `env`.
 */
export function spawnRendition(args: string[], env: Record<string, string>, options: SpawnOptions = {}): RenditionProcess {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !SCRUBBED.test(k)));
  const command = [...(options.prefix ?? []), process.execPath, "--import", "tsx", "services/main.ts", ...args];
  const child = spawn(command[0]!, command.slice(1), {
    cwd: REPO_ROOT,
    env: { ...base, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.detached ?? false,
  });
  children.add(child);

  let stdout = "";
  let stderr = "";
  let output = "";
  const listeners = new Set<() => void>();
  const changed = () => listeners.forEach((l) => l());
  child.stdout!.setEncoding("utf8").on("data", (s: string) => {
    stdout += s;
    output += s;
    changed();
  });
  child.stderr!.setEncoding("utf8").on("data", (s: string) => {
    stderr += s;
    output += s;
    changed();
  });

  // "close" (not "exit"): all output has been read by then.
  let exit: ExitResult | undefined;
  const closed = new Promise<ExitResult>((resolve) => {
    child.on("close", (code, signal) => {
      exit = { code, signal };
      children.delete(child);
      resolve(exit);
      changed();
    });
  });
  child.on("error", () => children.delete(child));

  const proc: RenditionProcess = {
    child,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    get output() {
      return output;
    },
    waitFor(pattern, timeoutMs = 45_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = output.match(pattern);
          if (match) return done(() => resolve(match));
          if (exit) return done(() => reject(new Error(`process exited (${exit!.code ?? exit!.signal}) before printing ${pattern}${describe(proc)}`)));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`no ${pattern} within ${timeoutMs} ms${describe(proc)}`))), timeoutMs);
        const done = (settle: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          settle();
        };
        listeners.add(check);
        check();
      });
    },
    exited(timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`process did not exit within ${timeoutMs} ms${describe(proc)}`)), timeoutMs);
        void closed.then((result) => {
          clearTimeout(timer);
          resolve(result);
        });
      });
    },
    async listening(timeoutMs) {
      const match = await proc.waitFor(/rendition API listening on ([^\s:]+):(\d+)/, timeoutMs);
      const port = Number(match[2]);
      return { port, baseUrl: `http://${match[1]}:${port}` };
    },
  };
  return proc;
}

/** Runs a command that exits by itself (migrate, org, key, ...) and returns its output and exit code. */
export async function runRendition(
  args: string[],
  env: Record<string, string>,
  timeoutMs = 45_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawnRendition(args, env);
  const { code } = await proc.exited(timeoutMs);
  return { code, stdout: proc.stdout, stderr: proc.stderr };
}

/** SIGKILLs every child still running and waits for them to go. */
export async function killAllChildren(): Promise<void> {
  const running = [...children];
  await Promise.all(
    running.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) {
            children.delete(child);
            return resolve();
          }
          child.once("close", () => resolve());
          child.kill("SIGKILL");
        }),
    ),
  );
}

/** The real `curl` binary; `args` come after `-sS`. Returns the HTTP status and the body. */
export function curl(args: string[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    execFile("curl", ["-sS", "--max-time", "20", "-w", "\n%{http_code}", ...args], (err, stdout, stderr) => {
      if (err) return reject(new Error(`curl failed: ${err.message}\n${stderr}`));
      const cut = stdout.lastIndexOf("\n");
      resolve({ status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) });
    });
  });
}

/** A Connect JSON unary call with curl. */
export async function curlRpc(
  baseUrl: string,
  method: string,
  auth: { apiKey: string; organizationId: string },
  body: unknown,
): Promise<{ status: number; json: any }> {
  const { status, body: text } = await curl([
    "-X",
    "POST",
    `${baseUrl}/${method}`,
    "-H",
    `Authorization: Bearer ${auth.apiKey}`,
    "-H",
    `X-Organization-ID: ${auth.organizationId}`,
    "-H",
    "Content-Type: application/json",
    "-d",
    JSON.stringify(body),
  ]);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`${method} answered HTTP ${status} with a non-JSON body: ${text}`);
  }
  return { status, json };
}

/** Whether a process with this pid exists (signal 0 checks without sending anything). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
