import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access, chmod, copyFile, mkdir, rename, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";

/** Where ffmpeg and ffprobe were found, and what they are. */
export interface LocatedMediaTools {
  ffmpegPath: string;
  ffprobePath: string;
  source: "env" | "system" | "npm";
  /** e.g. "ffmpeg version 5.1.6-0+deb12u1 (system: /usr/bin/ffmpeg)". */
  description: string;
  /**
   * argv prefix that starts ffmpeg/ffprobe so the kernel kills them when the worker dies
   * (`setpriv --pdeathsig KILL --`, Linux); empty when unavailable. ffmpeg ignores SIGPIPE and
   * failed progress writes, so without it a SIGKILLed worker leaves its encode running.
   */
  launcher?: string[];
  /**
   * `prlimit`, `env` and `nice` (util-linux, coreutils), found on PATH and checked to start
   * ffmpeg in a chain: what applies ProcessLimits, a private TMPDIR and a cleaned environment.
   * Each execs the next, so the pid is still ffmpeg's. Unset when one is missing or the chain
   * does not run (other platforms): processes then run without CPU or memory limits.
   */
  sandbox?: { prlimit: string; env: string; nice: string };
}

export class MediaToolsNotFoundError extends Error {
  override name = "MediaToolsNotFoundError";
}

/**
 * Finds a working ffmpeg + ffprobe pair, in this order:
 * 1. FFMPEG_PATH / FFPROBE_PATH (an explicit choice: if it does not work we fail, no fallback;
 *    with only FFMPEG_PATH set, ffprobe is looked for next to it);
 * 2. both on PATH (the system packages: the newest build, with SVT-AV1);
 * 3. the npm packages @ffmpeg-installer/ffmpeg and @ffprobe-installer/ffprobe (static 2018
 *    builds, no AV1 encoder): a last resort for machines without ffmpeg.
 * Each candidate must answer `-version`.
 */
export async function locateMediaTools(env: NodeJS.ProcessEnv = process.env, options: { tmpDir?: string } = {}): Promise<LocatedMediaTools> {
  const found = await findBinaries(env, options);
  return { ...found, launcher: await findLauncher(env, found.ffmpegPath), sandbox: await findSandbox(env, found.ffmpegPath) };
}

async function findBinaries(env: NodeJS.ProcessEnv, options: { tmpDir?: string }): Promise<Omit<LocatedMediaTools, "launcher">> {
  if (env.FFMPEG_PATH || env.FFPROBE_PATH) return fromEnv(env);
  const reasons: string[] = [];
  try {
    return await verify(await fromPath(env), "system");
  } catch (err) {
    reasons.push(`PATH: ${message(err)}`);
  }
  try {
    return await verify(await fromNpm(options.tmpDir), "npm");
  } catch (err) {
    reasons.push(`npm packages: ${message(err)}`);
  }
  throw new MediaToolsNotFoundError(
    `no working ffmpeg/ffprobe found (install the ffmpeg package, or set FFMPEG_PATH and FFPROBE_PATH). Tried: ${reasons.join("; ")}`,
  );
}

/**
 * `setpriv --pdeathsig KILL --` (util-linux) when it is on PATH and really starts ffmpeg;
 * otherwise none (other platforms, minimal images): encodes then outlive a crashed worker.
 */
async function findLauncher(env: NodeJS.ProcessEnv, ffmpegPath: string): Promise<string[]> {
  if (process.platform !== "linux") return [];
  try {
    const setpriv = await which("setpriv", (env.PATH ?? "").split(path.delimiter).filter(Boolean));
    const launcher = [setpriv, "--pdeathsig", "KILL", "--"];
    await versionLine(launcher[0]!, [...launcher.slice(1), ffmpegPath]);
    return launcher;
  } catch {
    return [];
  }
}

/** prlimit + env + nice, when all three are on PATH and `prlimit … env -i … nice … ffmpeg -version` works. */
async function findSandbox(env: NodeJS.ProcessEnv, ffmpegPath: string): Promise<LocatedMediaTools["sandbox"]> {
  if (process.platform !== "linux") return undefined;
  try {
    const dirs = (env.PATH ?? "").split(path.delimiter).filter(Boolean);
    const sandbox = { prlimit: await which("prlimit", dirs), env: await which("env", dirs), nice: await which("nice", dirs) };
    await versionLine(sandbox.prlimit, ["--cpu=60", "--", sandbox.env, "-i", sandbox.nice, "-n", "1", ffmpegPath]);
    return sandbox;
  } catch {
    return undefined;
  }
}

async function fromEnv(env: NodeJS.ProcessEnv): Promise<Omit<LocatedMediaTools, "launcher">> {
  if (!env.FFMPEG_PATH) throw new MediaToolsNotFoundError("FFPROBE_PATH is set but FFMPEG_PATH is not: set both");
  const ffprobePath = env.FFPROBE_PATH || path.join(path.dirname(env.FFMPEG_PATH), "ffprobe");
  try {
    return await verify({ ffmpegPath: env.FFMPEG_PATH, ffprobePath }, "env");
  } catch (err) {
    throw new MediaToolsNotFoundError(`FFMPEG_PATH/FFPROBE_PATH do not work: ${message(err)}`);
  }
}

async function fromPath(env: NodeJS.ProcessEnv): Promise<{ ffmpegPath: string; ffprobePath: string }> {
  const dirs = (env.PATH ?? "").split(path.delimiter).filter(Boolean);
  return { ffmpegPath: await which("ffmpeg", dirs), ffprobePath: await which("ffprobe", dirs) };
}

async function which(name: string, dirs: string[]): Promise<string> {
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    if (await isExecutableFile(candidate)) return candidate;
  }
  throw new Error(`${name} not found on PATH`);
}

async function isExecutableFile(file: string): Promise<boolean> {
  try {
    const info = await stat(file);
    if (!info.isFile()) return false;
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The npm packages resolve their own binary; their postinstall (a chmod) may not have run. */
async function fromNpm(tmpDir?: string): Promise<{ ffmpegPath: string; ffprobePath: string }> {
  const require = createRequire(import.meta.url);
  const load = (pkg: string): string => {
    try {
      return (require(pkg) as { path: string }).path;
    } catch (err) {
      throw new Error(`${pkg}: ${message(err)}`);
    }
  };
  const ffmpegPath = load("@ffmpeg-installer/ffmpeg");
  const ffprobePath = load("@ffprobe-installer/ffprobe");
  return {
    ffmpegPath: await ensureExecutable(ffmpegPath, { tmpDir }),
    ffprobePath: await ensureExecutable(ffprobePath, { tmpDir }),
  };
}

/**
 * A path to `file` we may execute. npm 11 skips install scripts, so a package's chmod +x may be
 * missing: add the bits when we own the file, else run a private copy (in `tmpDir`, default the
 * OS temp dir) made executable. The copy is written under a temp name and renamed, so concurrent
 * workers never execute a half-written binary.
 */
export async function ensureExecutable(file: string, options: { tmpDir?: string; uid?: number } = {}): Promise<string> {
  if (await isExecutableFile(file)) return file;
  const info = await stat(file);
  const uid = options.uid ?? process.getuid?.();
  if (uid !== undefined && info.uid === uid) {
    await chmod(file, info.mode | 0o111);
    return file;
  }
  const dir = path.join(options.tmpDir ?? os.tmpdir(), `rendition-media-tools-${uid ?? "user"}`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // Size and mtime in the name: a package upgrade gets a fresh copy.
  const copy = path.join(dir, `${path.basename(file)}-${info.size}-${Math.round(info.mtimeMs)}`);
  if (await isExecutableFile(copy)) return copy;
  const partial = `${copy}.${process.pid}.${Date.now()}.tmp`;
  await copyFile(file, partial);
  await chmod(partial, 0o755);
  await rename(partial, copy);
  return copy;
}

async function verify(paths: { ffmpegPath: string; ffprobePath: string }, source: LocatedMediaTools["source"]): Promise<Omit<LocatedMediaTools, "launcher">> {
  const ffmpegVersion = await versionLine(paths.ffmpegPath);
  await versionLine(paths.ffprobePath);
  return { ...paths, source, description: `${ffmpegVersion} (${source}: ${paths.ffmpegPath})` };
}

/** "ffmpeg version 5.1.6-0+deb12u1 Copyright (c) ..." → "ffmpeg version 5.1.6-0+deb12u1". */
async function versionLine(binary: string, prefix: string[] = []): Promise<string> {
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(binary, [...prefix, "-version"], { timeout: 15_000, killSignal: "SIGKILL", maxBuffer: 1 << 20 }, (err, out) => {
      if (err) reject(new Error(`${binary} -version failed: ${err.message.split("\n")[0]}`));
      else resolve(out);
    });
  });
  const first = stdout.split("\n")[0]?.trim() ?? "";
  if (!/^ff(mpeg|probe) version /.test(first)) throw new Error(`${binary} -version printed ${JSON.stringify(first.slice(0, 80))}`);
  // Static builds add a URL after the version: keep "ffmpeg version X".
  return first.split(/\s+/).slice(0, 3).join(" ");
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
