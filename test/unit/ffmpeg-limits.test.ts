import os from "node:os";
import { describe, expect, it } from "vitest";
import { DECODE_ERROR_LINE, limitFailure, processPrefix } from "../../workers/ffmpeg/media-tools.js";

const SANDBOX = { prlimit: "/usr/bin/prlimit", env: "/usr/bin/env", nice: "/usr/bin/nice" };
const SETPRIV = ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--"];
const ENV = { PATH: "/usr/bin:/bin", HOME: "/home/w", DATABASE_URL: "postgres://secret", RENDITION_ENCRYPTION_KEY: "k", AWS_SECRET_ACCESS_KEY: "s" };

describe("processPrefix: the exec chain in front of ffmpeg/ffprobe", () => {
  it("applies the configured CPU seconds (SIGXCPU at S, SIGKILL at S+1), the data limit, TMPDIR and the niceness, keeping only harmless variables", () => {
    const { prefix, applied } = processPrefix({ launcher: SETPRIV, sandbox: SANDBOX }, { cpuSeconds: 5, memoryBytes: 1 << 30, nice: 10 }, "/tmp/job-1", 60_000, ENV);
    expect(prefix).toEqual([
      ...SETPRIV,
      "/usr/bin/prlimit",
      "--cpu=5:6",
      `--data=${1 << 30}`,
      "--",
      "/usr/bin/env",
      "-i",
      "TMPDIR=/tmp/job-1",
      "PATH=/usr/bin:/bin",
      "HOME=/home/w",
      "/usr/bin/nice",
      "-n",
      "10",
    ]);
    expect(applied).toEqual({ cpuSeconds: 5, memoryBytes: 1 << 30 });
    expect(prefix.join(" ")).not.toMatch(/secret|DATABASE_URL|RENDITION_|AWS_/);
  });

  it("without a configured CPU limit, allows the wall-clock limit × the cores; none without a wall clock; no --data with memory 0", () => {
    const derived = processPrefix({ sandbox: SANDBOX }, { cpuSeconds: 0, memoryBytes: 0, nice: 0 }, "/w", 10_500, {});
    const cpu = Math.ceil(10.5 * os.availableParallelism());
    expect(derived.prefix).toEqual(["/usr/bin/prlimit", `--cpu=${cpu}:${cpu + 1}`, "--", "/usr/bin/env", "-i", "TMPDIR=/w", "/usr/bin/nice", "-n", "0"]);
    expect(derived.applied).toEqual({ cpuSeconds: cpu, memoryBytes: 0 });
    const unbounded = processPrefix({ sandbox: SANDBOX }, { cpuSeconds: 0, memoryBytes: 0, nice: 5 }, "/w", undefined, {});
    expect(unbounded.prefix.slice(0, 2)).toEqual(["/usr/bin/prlimit", "--"]);
  });

  it("without prlimit/env/nice: only the launcher, and no limits to blame failures on", () => {
    expect(processPrefix({ launcher: SETPRIV }, { cpuSeconds: 5, memoryBytes: 1 << 30, nice: 10 }, "/w", 1000, ENV)).toEqual({ prefix: SETPRIV });
    expect(processPrefix({}, { cpuSeconds: 5, memoryBytes: 1 << 30, nice: 10 }, "/w", 1000, ENV)).toEqual({ prefix: [] });
  });
});

describe("limitFailure: which limit stopped a process", () => {
  const applied = { cpuSeconds: 4, memoryBytes: 32 * 2 ** 20 };
  const exit = (code: number | null, signal: NodeJS.Signals | null = null) => ({ code, signal });

  it("memory: the loader or malloc failing, or a crash that an unchecked malloc causes", () => {
    for (const stderr of [
      "ffmpeg: error while loading shared libraries: libgsm.so.1: failed to map segment from shared object",
      "ffmpeg: error while loading shared libraries: cannot allocate symbol search list: Cannot allocate memory",
      "x264 [error]: malloc of size 1062400 failed",
    ]) {
      const err = limitFailure("ffmpeg", applied, exit(1), stderr, 100, 2);
      expect(err).toMatchObject({ code: "RESOURCE_LIMIT_EXCEEDED", message: "ffmpeg ran out of memory under its 32 MiB memory limit (RENDITION_FFMPEG_MEMORY_LIMIT_MB)" });
    }
    expect(limitFailure("ffprobe", applied, exit(null, "SIGSEGV"), "", 100, 2)?.message).toMatch(/^ffprobe ran out of memory/);
    // No memory limit: a crash is a crash (retryable elsewhere), not a limit.
    expect(limitFailure("ffmpeg", { cpuSeconds: 0, memoryBytes: 0 }, exit(null, "SIGSEGV"), "Cannot allocate memory", 100, 2)).toBeUndefined();
  });

  it("CPU: exit 255 (SIGXCPU handled), SIGXCPU or SIGKILL, only when it ran long enough to use that much CPU", () => {
    for (const e of [exit(255), exit(null, "SIGXCPU"), exit(null, "SIGKILL")]) {
      expect(limitFailure("ffmpeg", applied, e, "", 2000, 2)).toMatchObject({
        code: "RESOURCE_LIMIT_EXCEEDED",
        message: "ffmpeg used up its CPU-time limit of 4 s (RENDITION_FFMPEG_CPU_LIMIT_S) and was stopped",
      });
    }
    // 1 s on 2 cores is at most 2 CPU-seconds: not the 4 s limit (someone else's SIGKILL, the OOM killer).
    expect(limitFailure("ffmpeg", applied, exit(null, "SIGKILL"), "", 1000, 2)).toBeUndefined();
    // An ordinary failure is not a limit.
    expect(limitFailure("ffmpeg", applied, exit(1), "Invalid data found when processing input", 10_000, 2)).toBeUndefined();
    expect(limitFailure("ffmpeg", undefined, exit(255), "", 10_000, 2)).toBeUndefined();
    expect(limitFailure("ffmpeg", applied, undefined, "", 10_000, 2)).toBeUndefined();
  });
});

describe("DECODE_ERROR_LINE: which stderr lines count as decode errors", () => {
  it("counts refused packets, concealed slices and missing packet data, not other errors", () => {
    const counted = [
      "Error while decoding stream #0:0: Invalid data found when processing input",
      "[h264 @ 0x563cd07d9fc0] error while decoding MB 13 13",
      "[mpeg2video @ 0x55] concealing 450 DC, 450 AC, 450 MV errors in P frame",
      "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55c2eb4ff980] stream 0, offset 0xee4a: partial file",
    ];
    const ignored = [
      "[h264 @ 0x563cd07d9fc0] out of range intra chroma pred mode", // the line before "error while decoding MB": one error, not two
      "[NULL @ 0x563cd076eec0] Invalid NAL unit size (-1734101877 > 2781).",
      "Error initializing output stream 0:0 -- Error while opening encoder for output stream #0:0",
      "x264 [error]: malloc of size 8194 failed",
    ];
    expect(counted.filter((line) => DECODE_ERROR_LINE.test(line))).toEqual(counted);
    expect(ignored.filter((line) => DECODE_ERROR_LINE.test(line))).toEqual([]);
  });
});
