import { execFile, type ChildProcess } from "node:child_process";
import { stat } from "node:fs/promises";
import path from "node:path";
import { isDeepStrictEqual } from "node:util";
import Ffmpeg from "fluent-ffmpeg";
import type { LocatedMediaTools } from "./binaries.js";
import { INPUT_SAFETY_OPTIONS, absoluteFile, flattenCommand } from "./command.js";
import { formatDuration, parseProbe } from "./probe.js";
import { probeMp4Header } from "./mp4-probe.js";
import { ProgressTracker } from "./progress.js";
import { detectCapabilities } from "./capabilities.js";
import { MediaError, type FfmpegCapabilities, type FfmpegCommand, type InputLimits, type MediaInfo, type MediaTools, type RunOptions } from "./types.js";

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

/** The MediaTools adapter: ffmpeg runs through fluent-ffmpeg, ffprobe through execFile. */
export function createMediaTools(located: LocatedMediaTools): MediaTools {
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
    description: located.description,
    probe: (file, limits, options) => probeFile(located, file, limits, options?.signal),
    run: (command, options) => runCommand(located, command, options ?? {}),
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
export function toFluentCommand(cmd: FfmpegCommand, ffmpegPath: string, launcher: string[] = []): Ffmpeg.FfmpegCommand {
  if (cmd.inputs.length === 0 || cmd.outputs.length === 0) throw new Error("an ffmpeg command needs at least one input and one output");
  const fluent = Ffmpeg({ stdoutLines: 100 });
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

/** Why we killed the process, if we did. */
type KillReason = { kind: "abort" } | { kind: "timeout" } | { kind: "callback"; error: unknown };

async function runCommand(located: LocatedMediaTools, command: FfmpegCommand, options: RunOptions): Promise<void> {
  const { signal, timeoutMs, durationMs, onProgress, onStart } = options;
  signal?.throwIfAborted();
  const launcher = located.launcher ?? [];
  const fluent = toFluentCommand(command, located.ffmpegPath, launcher);
  // spawnargs = [binary, ...args]; with a launcher, args start with its options and ffmpeg's path.
  const argvStart = launcher.length ? launcher.length + 1 : 1;
  const internals = fluent as unknown as FluentInternals;

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
          // setpriv execs ffmpeg in place: the pid is ffmpeg's.
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
      reject(runFailure(err, exit, stderr, command));
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

async function probeFile(located: LocatedMediaTools, file: string, limits: InputLimits, signal?: AbortSignal): Promise<MediaInfo> {
  signal?.throwIfAborted();
  const absolute = absoluteFile(file);
  const info = await stat(absolute); // a missing file is our bug, not the input's: plain error
  if (!info.isFile()) throw new MediaError("INPUT_UNREADABLE", "the input is not a regular file");
  if (info.size === 0) throw new MediaError("INPUT_UNREADABLE", "the input file is empty");
  // A plain mp4/mov is described from its movie header, as ffprobe would: no process to start.
  const fromHeader = await probeMp4Header(absolute);
  if (fromHeader) return parseProbe(fromHeader, info.size, limits);
  const launcher = located.launcher ?? [];
  const [binary, ...prefix] = launcher.length ? [...launcher, located.ffprobePath] : [located.ffprobePath];
  const stdout = await runFfprobe(binary!, [...prefix, ...PROBE_ARGS, absolute], signal);
  return parseProbe(stdout, info.size, limits);
}

/** ffprobe's JSON; settles only after the process has exited (an abort kills it first). */
function runFfprobe(binary: string, args: string[], signal?: AbortSignal): Promise<string> {
  const file = args[args.length - 1]!;
  return new Promise<string>((resolve, reject) => {
    const child = execFile(
      binary,
      args,
      { timeout: PROBE_TIMEOUT_MS, killSignal: "SIGKILL", maxBuffer: PROBE_MAX_BUFFER, encoding: "utf8", windowsHide: true },
      (err, stdout, stderr) => {
        signal?.removeEventListener("abort", onAbort);
        if (signal?.aborted) return reject(signal.reason);
        if (!err) return resolve(stdout);
        const code = (err as NodeJS.ErrnoException).code as unknown;
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
