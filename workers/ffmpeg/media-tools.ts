import { execFile, type ChildProcess } from "node:child_process";
import { stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { isDeepStrictEqual } from "node:util";
import Ffmpeg from "fluent-ffmpeg";
import type { LocatedMediaTools } from "./binaries.js";
import { INPUT_SAFETY_OPTIONS, absoluteFile, flattenCommand } from "./command.js";
import { formatDuration, parseProbe } from "./probe.js";
import { probeMp4Header } from "./mp4-probe.js";
import { ProgressTracker } from "./progress.js";
import { detectCapabilities } from "./capabilities.js";
import {
  MediaError,
  type FfmpegCapabilities,
  type FfmpegCommand,
  type InputLimits,
  type MediaInfo,
  type MediaTools,
  type ProcessLimits,
  type RunOptions,
} from "./types.js";

const PROBE_TIMEOUT_MS = 60_000;
/** ffprobe's JSON for a file with many streams is large; past this it is not an input we want. */
const PROBE_MAX_BUFFER = 16 * 1024 * 1024;
/** ≤ 4 progress callbacks per second. */
const PROGRESS_INTERVAL_MS = 250;
/** Fractions reported while ffmpeg runs stay below 1: exactly 1 means "finished successfully". */
const RUNNING_MAX_FRACTION = 0.99;
/** Characters of ffmpeg's stderr quoted in an ENCODE_FAILED message. */
const STDERR_TAIL_CHARS = 500;

/** fluent-ffmpeg internals we rely on (version pinned at 2.1.3; `toFluentCommand` checks the argv). */
interface FluentInternals {
  ffmpegProc?: ChildProcess;
  _getArguments(): string[];
  _getFfmpegPath(callback: (err: Error | null, path?: string) => void): void;
  _checkCapabilities(callback: (err?: Error | null) => void): void;
  availableEncoders(callback: (err: Error | null, encoders: Record<string, unknown>) => void): void;
}

/** What processes get without a configuration: no CPU cap past the wall-clock one, 8 GiB of data, nice 10. */
export const DEFAULT_PROCESS_LIMITS: ProcessLimits = { cpuSeconds: 0, memoryBytes: 8 * 2 ** 30, nice: 10 };

/**
 * Variables ffmpeg keeps from the worker's environment (plus TMPDIR, set to its work directory).
 * Everything else is dropped: the worker's environment holds DATABASE_URL, the encryption key
 * and storage secrets, which no media process needs.
 */
const KEPT_ENV = ["PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "FONTCONFIG_FILE", "FONTCONFIG_PATH", "XDG_CACHE_HOME", "LD_LIBRARY_PATH"];

/**
 * ffmpeg's stderr lines (at -loglevel error) that report input it could not decode: a packet
 * the decoder refused ("Error while decoding stream #0:0: ...") or a slice it concealed
 * ("[h264 @ …] error while decoding MB 13 13", "concealing 120 DC, ... errors in P frame"), or
 * packet data missing from a truncated file ("[mov,mp4,… @ …] stream 0, offset 0xee4a: partial file").
 */
export const DECODE_ERROR_LINE = /^Error while decoding stream #|\] error while decoding MB |\] concealing \d+ |\] stream \d+, offset 0x[0-9a-f]+: partial file$/;

/**
 * The MediaTools adapter: ffmpeg runs through fluent-ffmpeg, ffprobe through execFile. With
 * `located.sandbox`, every process runs under `limits` (default DEFAULT_PROCESS_LIMITS), niced,
 * in its own work directory (cwd and TMPDIR: the input's directory, i.e. the job's temp dir)
 * with a cleaned environment.
 */
export function createMediaTools(located: LocatedMediaTools, options: { limits?: ProcessLimits } = {}): MediaTools {
  const limits = options.limits ?? DEFAULT_PROCESS_LIMITS;
  let capabilities: Promise<FfmpegCapabilities> | undefined;
  return {
    capabilities: () => {
      const cached = capabilities ?? detectCapabilities(located.ffmpegPath, located.launcher);
      // A failed listing is asked again next time rather than cached.
      if (!capabilities) cached.catch(() => (capabilities = undefined));
      capabilities = cached;
      return cached;
    },
    ffmpegPath: located.ffmpegPath,
    ffprobePath: located.ffprobePath,
    description: `${located.description}; ${describeLimits(located, limits)}`,
    probe: (file, inputLimits, probeOptions) => probeFile(located, limits, file, inputLimits, probeOptions?.signal),
    run: (command, runOptions) => runCommand(located, limits, command, runOptions ?? {}),
  };
}

/**
 * Maps our command onto fluent-ffmpeg and checks that the argv fluent will spawn is exactly
 * `flattenCommand(cmd)`. What fluent would otherwise do on its own, and how we neutralise it:
 * - it puts each input's options and `-i` first and inserts `-y` after the inputs for file
 *   outputs: our global options travel as options of the first input, and `flattenCommand`
 *   already places `-y` where fluent does;
 * - it splits an option list element that contains exactly one space when given an array:
 *   we pass options as separate arguments (the argv check catches what remains);
 * - it reads the ffmpeg path from a module-global cache (`setFfmpegPath`) and, before the first
 *   run, spawns `ffmpeg -formats` and `ffmpeg -encoders` (also cached module-wide, for every
 *   binary) to check codecs and add `-strict experimental` after -acodec/-vcodec: we give this
 *   command its own path and skip those probes (ffmpeg itself fails clearly on an unknown encoder).
 * With a `launcher` (setpriv), fluent spawns the launcher and ffmpeg's path becomes the first
 * argument: the argv is then `[...launcher.slice(1), ffmpegPath, ...flattenCommand(cmd)]`.
 */
export function toFluentCommand(cmd: FfmpegCommand, ffmpegPath: string, launcher: string[] = [], cwd?: string): Ffmpeg.FfmpegCommand {
  if (cmd.inputs.length === 0 || cmd.outputs.length === 0) throw new Error("an ffmpeg command needs at least one input and one output");
  const fluent = Ffmpeg({ stdoutLines: 100, ...(cwd ? { cwd } : {}) });
  const internals = fluent as unknown as FluentInternals;
  const prefix = launcher.length ? [...launcher.slice(1), ffmpegPath] : [];
  internals._getFfmpegPath = (callback) => callback(null, launcher[0] ?? ffmpegPath);
  internals._checkCapabilities = (callback) => callback(null);
  internals.availableEncoders = (callback) => callback(null, {});

  const global = cmd.global.filter((option) => option !== "-y");
  cmd.inputs.forEach((input, i) => {
    fluent.input(input.file);
    addOptions(fluent.inputOptions.bind(fluent), i === 0 ? [...prefix, ...global, ...input.options] : input.options);
  });
  for (const output of cmd.outputs) {
    fluent.output(output.file);
    addOptions(fluent.outputOptions.bind(fluent), output.options);
  }

  const actual = internals._getArguments();
  const expected = [...prefix, ...flattenCommand(cmd)];
  if (!isDeepStrictEqual(actual, expected)) {
    throw new Error(`fluent-ffmpeg would run ${JSON.stringify(actual)} instead of ${JSON.stringify(expected)}`);
  }
  return fluent;
}

function addOptions(add: (...options: string[]) => unknown, options: string[]): void {
  if (options.length > 0) add(...options);
}

/** The limits one process gets: the CPU seconds resolved for its wall-clock limit. */
interface AppliedLimits {
  cpuSeconds: number;
  memoryBytes: number;
}

/**
 * The argv prefix that starts one ffmpeg/ffprobe: [setpriv --pdeathsig KILL --] prlimit
 * --cpu=S:S+1 --data=B -- env -i TMPDIR=<dir> PATH=… nice -n N. Each program execs the next, so
 * the limits, the environment and the niceness are ffmpeg's, and the pid is ffmpeg's. CPU:
 * SIGXCPU at S seconds (ffmpeg stops cleanly, exit 255), SIGKILL one CPU-second later.
 * Without a sandbox (prlimit/env/nice missing) only the launcher: nothing is limited.
 */
export function processPrefix(located: Pick<LocatedMediaTools, "launcher" | "sandbox">, limits: ProcessLimits, workDir: string, wallClockMs: number | undefined, env: NodeJS.ProcessEnv = process.env): { prefix: string[]; applied?: AppliedLimits } {
  const launcher = located.launcher ?? [];
  const sandbox = located.sandbox;
  if (!sandbox) return { prefix: launcher };
  const applied = { cpuSeconds: cpuSecondsFor(limits, wallClockMs), memoryBytes: limits.memoryBytes };
  const rlimits = [
    ...(applied.cpuSeconds > 0 ? [`--cpu=${applied.cpuSeconds}:${applied.cpuSeconds + 1}`] : []),
    ...(applied.memoryBytes > 0 ? [`--data=${applied.memoryBytes}`] : []),
  ];
  const kept = KEPT_ENV.filter((name) => env[name] !== undefined).map((name) => `${name}=${env[name]}`);
  return {
    prefix: [...launcher, sandbox.prlimit, ...rlimits, "--", sandbox.env, "-i", `TMPDIR=${workDir}`, ...kept, sandbox.nice, "-n", String(limits.nice)],
    applied,
  };
}

/** The configured CPU seconds, else the wall-clock limit × the cores (so only a configured value ever binds first). */
function cpuSecondsFor(limits: ProcessLimits, wallClockMs: number | undefined): number {
  if (limits.cpuSeconds > 0) return limits.cpuSeconds;
  return wallClockMs && wallClockMs > 0 ? Math.ceil((wallClockMs / 1000) * os.availableParallelism()) : 0;
}

function describeLimits(located: LocatedMediaTools, limits: ProcessLimits): string {
  if (!located.sandbox) return "no process limits (prlimit, env or nice not found)";
  const cpu = limits.cpuSeconds > 0 ? `${limits.cpuSeconds} s CPU` : "CPU up to the wall-clock limit";
  const memory = limits.memoryBytes > 0 ? `${Math.round(limits.memoryBytes / 2 ** 20)} MiB data` : "no memory limit";
  return `each process: ${cpu}, ${memory}, nice ${limits.nice}`;
}

/**
 * A process that ended without us killing it, seen through its limits: the memory limit when
 * it failed to allocate (the loader cannot map a library, malloc fails, or a library that does
 * not check malloc crashes), the CPU limit when it ended the way RLIMIT_CPU ends it (SIGXCPU
 * handled: exit 255; or SIGXCPU/SIGKILL) and could have used that much CPU in the time it ran.
 */
export function limitFailure(
  tool: "ffmpeg" | "ffprobe",
  applied: AppliedLimits | undefined,
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined,
  stderr: string,
  elapsedMs: number,
  cores = os.availableParallelism(),
): MediaError | undefined {
  if (!applied || !exit) return undefined;
  if (applied.memoryBytes > 0) {
    const allocation = /Cannot allocate memory|failed to map segment|malloc of size \d+ failed|out of memory|std::bad_alloc/i.test(stderr);
    if (allocation || exit.signal === "SIGSEGV" || exit.signal === "SIGABRT" || exit.signal === "SIGBUS") {
      return new MediaError("RESOURCE_LIMIT_EXCEEDED", `${tool} ran out of memory under its ${Math.round(applied.memoryBytes / 2 ** 20)} MiB memory limit (RENDITION_FFMPEG_MEMORY_LIMIT_MB)`);
    }
  }
  if (applied.cpuSeconds > 0) {
    const cpuEnd = exit.code === 255 || exit.signal === "SIGXCPU" || exit.signal === "SIGKILL";
    const couldHaveUsed = (elapsedMs / 1000) * cores >= applied.cpuSeconds;
    if (cpuEnd && couldHaveUsed) {
      return new MediaError("RESOURCE_LIMIT_EXCEEDED", `${tool} used up its CPU-time limit of ${applied.cpuSeconds} s (RENDITION_FFMPEG_CPU_LIMIT_S) and was stopped`);
    }
  }
  return undefined;
}

/** Why we killed the process, if we did. */
type KillReason = { kind: "abort" } | { kind: "timeout" } | { kind: "callback"; error: unknown };

async function runCommand(located: LocatedMediaTools, limits: ProcessLimits, command: FfmpegCommand, options: RunOptions): Promise<void> {
  const { signal, timeoutMs, durationMs, onProgress, onStart, onDecodeErrors } = options;
  signal?.throwIfAborted();
  // The job's temp dir (where the input was downloaded): cwd and TMPDIR of the process.
  const workDir = options.workDir ?? path.dirname(absoluteFile(command.inputs[0]?.file ?? "."));
  const { prefix: launcher, applied } = processPrefix(located, limits, workDir, timeoutMs);
  const fluent = toFluentCommand(command, located.ffmpegPath, launcher, workDir);
  // spawnargs = [binary, ...args]; with a launcher, args start with its options and ffmpeg's path.
  const argvStart = launcher.length ? launcher.length + 1 : 1;
  const internals = fluent as unknown as FluentInternals;
  const startedAt = Date.now();
  let decodeErrors = 0;
  if (onDecodeErrors) {
    fluent.on("stderr", (line: string) => {
      if (!DECODE_ERROR_LINE.test(line.trim())) return;
      decodeErrors++;
      try {
        onDecodeErrors(decodeErrors);
      } catch {
        // a counter's trouble never stops an encode
      }
    });
  }

  return new Promise<void>((resolve, reject) => {
    let child: ChildProcess | undefined;
    let killed: KillReason | undefined;
    let settled = false;

    const kill = (reason: KillReason) => {
      if (killed) return;
      killed = reason;
      // SIGKILL: ffmpeg may take seconds to flush on SIGTERM; a canceled job must stop now.
      // Before the spawn this only records the reason; the 'start' handler kills at once.
      child?.kill("SIGKILL");
    };
    const onAbort = () => kill({ kind: "abort" });
    signal?.addEventListener("abort", onAbort, { once: true });
    const timer = timeoutMs && timeoutMs > 0 ? setTimeout(() => kill({ kind: "timeout" }), timeoutMs) : undefined;

    const progress = progressReporter(durationMs, onProgress, (error) => kill({ kind: "callback", error }));

    fluent.on("start", () => {
      child = internals.ffmpegProc;
      if (!child) return;
      child.stdout?.on("data", (chunk: Buffer) => progress.push(chunk.toString("utf8")));
      if (killed) {
        child.kill("SIGKILL");
        return;
      }
      if (child.pid !== undefined && onStart) {
        try {
          // setpriv, prlimit, env and nice each exec the next in place: the pid is ffmpeg's.
          onStart({ pid: child.pid, argv: child.spawnargs.slice(argvStart) });
        } catch (error) {
          kill({ kind: "callback", error });
        }
      }
    });

    // fluent emits 'end' / 'error' once the process has exited and its pipes are closed (or when
    // it could not be spawned at all), so settling here never leaves an ffmpeg behind.
    const finish = (err: Error | undefined, stderr: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      if (killed?.kind === "abort") return reject(signal?.reason);
      if (killed?.kind === "callback") return reject(killed.error);
      if (killed?.kind === "timeout") {
        return reject(new MediaError("ENCODE_TIMEOUT", `ffmpeg ran longer than the ${formatDuration(timeoutMs!)} limit and was stopped`));
      }
      if (!err) {
        progress.finish();
        return resolve();
      }
      // Node sets exitCode/signalCode before fluent's exit handler can settle the run.
      const exit = child ? { code: child.exitCode, signal: child.signalCode } : undefined;
      reject(limitFailure("ffmpeg", applied, exit, stderr, Date.now() - startedAt) ?? runFailure(err, exit, stderr, command));
    };
    fluent.on("end", (_stdout: string | null, stderr: string | null) => finish(undefined, stderr ?? ""));
    fluent.on("error", (err: Error, _stdout: string | null, stderr: string | null) => finish(err, stderr ?? ""));

    try {
      fluent.run();
    } catch (err) {
      finish(err instanceof Error ? err : new Error(String(err)), "");
    }
  });
}

/**
 * Non-zero exit → MediaError ENCODE_FAILED quoting stderr (permanent: same input, same result).
 * Anything else (killed by a signal we did not send, e.g. the OOM killer; ffmpeg not startable)
 * is an infrastructure problem: a plain Error, so the job can be retried.
 */
function runFailure(err: Error | undefined, exit: { code: number | null; signal: NodeJS.Signals | null } | undefined, stderr: string, command: FfmpegCommand): Error {
  if (exit && exit.code !== null && exit.code !== 0) {
    const tail = stderrTail(stderr, command);
    return new MediaError("ENCODE_FAILED", `ffmpeg exited with code ${exit.code}${tail ? `: ${tail}` : ""}`, { cause: err });
  }
  if (exit?.signal) return new Error(`ffmpeg was killed by ${exit.signal}`, { cause: err });
  return new Error(`ffmpeg could not run: ${err?.message ?? "unknown error"}`, { cause: err });
}

/**
 * The last lines of ffmpeg's stderr, at most ~500 characters, without encoder chatter
 * (SVT-AV1 and x265 print info lines whatever -loglevel says), with local paths shortened to
 * their file names and `@ 0x55d...` pointers dropped.
 */
export function stderrTail(stderr: string, command?: FfmpegCommand, max = STDERR_TAIL_CHARS): string {
  const files = command ? [...command.inputs, ...command.outputs].map((f) => f.file) : [];
  const lines = stderr
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line && !/^(Svt\[info\]|x265 \[info\])/.test(line));
  let text = lines.join("\n").replace(/ @ 0x[0-9a-f]+\]/g, "]");
  for (const file of files) text = text.split(file).join(path.basename(file));
  return text.length > max ? `…${text.slice(text.length - max + 1)}` : text;
}

/** Monotonic, throttled progress with a final 1; callback errors are handed to `fail`. */
function progressReporter(durationMs: number | undefined, onProgress: ((fraction: number) => void) | undefined, fail: (err: unknown) => void) {
  const tracker = new ProgressTracker(durationMs);
  let reported = 0;
  let reportedAt = 0;
  const call = (fraction: number) => {
    if (!onProgress) return;
    try {
      onProgress(fraction);
    } catch (err) {
      fail(err);
    }
  };
  return {
    push(chunk: string) {
      const fraction = tracker.push(chunk);
      if (fraction === undefined) return;
      const capped = Math.min(fraction, RUNNING_MAX_FRACTION);
      const now = Date.now();
      if (capped <= reported || now - reportedAt < PROGRESS_INTERVAL_MS) return;
      reported = capped;
      reportedAt = now;
      call(capped);
    },
    finish() {
      call(1);
    },
  };
}

const PROBE_ARGS = ["-v", "error", ...INPUT_SAFETY_OPTIONS, "-probesize", "50M", "-analyzeduration", "100M", "-show_format", "-show_streams", "-of", "json"];

async function probeFile(located: LocatedMediaTools, processLimits: ProcessLimits, file: string, limits: InputLimits, signal?: AbortSignal): Promise<MediaInfo> {
  signal?.throwIfAborted();
  const absolute = absoluteFile(file);
  const info = await stat(absolute); // a missing file is our bug, not the input's: plain error
  if (!info.isFile()) throw new MediaError("INPUT_UNREADABLE", "the input is not a regular file");
  if (info.size === 0) throw new MediaError("INPUT_UNREADABLE", "the input file is empty");
  // A plain mp4/mov is described from its movie header, as ffprobe would: no process to start.
  const fromHeader = await probeMp4Header(absolute);
  if (fromHeader) return parseProbe(fromHeader, info.size, limits);
  const workDir = path.dirname(absolute);
  const { prefix: launcher, applied } = processPrefix(located, processLimits, workDir, PROBE_TIMEOUT_MS);
  const [binary, ...prefix] = [...launcher, located.ffprobePath];
  const stdout = await runFfprobe(binary!, [...prefix, ...PROBE_ARGS, absolute], { signal, cwd: workDir, applied });
  return parseProbe(stdout, info.size, limits);
}

/** ffprobe's JSON; settles only after the process has exited (an abort kills it first). */
function runFfprobe(binary: string, args: string[], options: { signal?: AbortSignal; cwd: string; applied?: AppliedLimits }): Promise<string> {
  const { signal } = options;
  const file = args[args.length - 1]!;
  const startedAt = Date.now();
  return new Promise<string>((resolve, reject) => {
    const child = execFile(
      binary,
      args,
      { timeout: PROBE_TIMEOUT_MS, killSignal: "SIGKILL", maxBuffer: PROBE_MAX_BUFFER, encoding: "utf8", windowsHide: true, cwd: options.cwd },
      (err, stdout, stderr) => {
        signal?.removeEventListener("abort", onAbort);
        if (signal?.aborted) return reject(signal.reason);
        if (!err) return resolve(stdout);
        const code = (err as NodeJS.ErrnoException).code as unknown;
        const killedByUs = (err as { killed?: boolean }).killed === true;
        const exit = killedByUs ? undefined : { code: typeof code === "number" ? code : null, signal: (err as { signal?: NodeJS.Signals | null }).signal ?? null };
        const overLimit = limitFailure("ffprobe", options.applied, exit, stderr, Date.now() - startedAt);
        if (overLimit) return reject(overLimit);
        if (code === "ERR_CHILD_PROCESS_STDIO_MAXBUFFER") {
          return reject(new MediaError("INPUT_UNREADABLE", "ffprobe's report on the input is too large (too many streams?)", { cause: err }));
        }
        if ((err as { killed?: boolean }).killed) {
          return reject(new MediaError("INPUT_UNREADABLE", `ffprobe could not analyse the input within ${PROBE_TIMEOUT_MS / 1000} s`, { cause: err }));
        }
        if (typeof code === "number") {
          const refused = /\[([\w,]+) @ [^\]]*\] Format not on whitelist/.exec(stderr);
          if (refused) {
            return reject(new MediaError("INPUT_UNREADABLE", `the input is ${refused[1]!.split(",")[0]} data, not a video container Rendition reads (mp4/mov, mkv/webm, avi, flv, mpeg-ts, mxf, wmv, ogg...)`, { cause: err }));
          }
          // ffmpeg's own sanity limit on frame sizes (width × height under INT_MAX / 8): a header claiming more.
          const huge = /Picture size (\d+)x(\d+) is invalid/.exec(stderr);
          if (huge) return reject(new MediaError("INPUT_TOO_LARGE", `the input claims ${huge[1]}x${huge[2]} frames, larger than ffmpeg decodes`, { cause: err }));
          const detail = stderrTail(stderr, { global: [], inputs: [{ options: [], file }], outputs: [] }, 300);
          return reject(new MediaError("INPUT_UNREADABLE", `ffprobe could not read the input${detail ? `: ${detail}` : ""}`, { cause: err }));
        }
        reject(new Error(`ffprobe could not run: ${err.message}`, { cause: err }));
      },
    );
    const onAbort = () => child.kill("SIGKILL");
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
