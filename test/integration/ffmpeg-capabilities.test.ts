import { execFile } from "node:child_process";
import { accessSync, constants, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AV1_ENCODERS, av1EncoderOptions, type Av1Encoder } from "../../workers/ffmpeg/av1-encoders.js";
import { ensureExecutable, locateMediaTools } from "../../workers/ffmpeg/binaries.js";
import { AUDIO_ENCODERS, describeCapabilities, detectCapabilities, pickEncoder, VIDEO_ENCODERS, type FfmpegCapabilities } from "../../workers/ffmpeg/capabilities.js";
import { ffprobeJson } from "../support/media.js";

const run = promisify(execFile);
const require = createRequire(import.meta.url);

/** ffmpeg on PATH (Debian's 5.1 here), found synchronously so the tests can be skipped without it. */
function systemFfmpeg(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter).filter(Boolean)) {
    const file = path.join(dir, "ffmpeg");
    try {
      if (!statSync(file).isFile()) continue;
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

function npmFfmpeg(): string | undefined {
  try {
    return (require("@ffmpeg-installer/ffmpeg") as { path: string }).path;
  } catch {
    return undefined;
  }
}

const SYSTEM = systemFfmpeg();
const NPM = npmFfmpeg();

const ECONOMY = { preset: 10, crf: 45 };
const TIERS = [ECONOMY, { preset: 6, crf: 35 }, { preset: 4, crf: 28 }, { preset: 0, crf: 20 }, { preset: 13, crf: 63 }];
/** Flags every encoder takes from ffmpeg itself (not in `-h encoder=...`). */
const GENERIC_FLAGS = new Set(["-c:v", "-b:v", "-maxrate", "-bufsize", "-strict:v"]);

let dir: string;
let launcher: string[] = [];
const binaries: { system?: { path: string; caps: FfmpegCapabilities }; npm?: { path: string; caps: FfmpegCapabilities } } = {};

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "rendition-ffmpeg-caps-"));
  // The worker's launcher (setpriv) when this machine has one: detection must work through it.
  launcher = (await locateMediaTools({ PATH: process.env.PATH })).launcher ?? [];
  if (SYSTEM) binaries.system = { path: SYSTEM, caps: await detectCapabilities(SYSTEM, launcher) };
  if (NPM) {
    const npmPath = await ensureExecutable(NPM, { tmpDir: dir });
    binaries.npm = { path: npmPath, caps: await detectCapabilities(npmPath, launcher) };
  }
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const MUXERS = ["hls", "dash", "webvtt", "mp4", "matroska", "webm", "mov", "mpegts"];
const FILTERS = ["split", "scale", "fps", "subtitles", "ass", "tile", "loudnorm", "zscale", "tonemap"];

describe.skipIf(!SYSTEM)("detectCapabilities: the system ffmpeg (Debian 5.1)", () => {
  it("lists every encoder, muxer and filter the worker uses", () => {
    const { caps } = binaries.system!;
    for (const encoder of ["libx264", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1", "librav1e", "aac", "libopus", "ac3", "eac3"]) {
      expect(caps.encoders.has(encoder), encoder).toBe(true);
    }
    for (const muxer of MUXERS) expect(caps.muxers.has(muxer), muxer).toBe(true);
    for (const filter of FILTERS) expect(caps.filters.has(filter), filter).toBe(true);
    expect([...caps.experimentalEncoders!]).toContain("opus");
    expect(caps.experimentalEncoders!.has("libaom-av1")).toBe(false);
    expect(pickEncoder(VIDEO_ENCODERS.av1, caps)).toBe("libsvtav1");
    expect(describeCapabilities(caps)).toBe("encoders: h264=libx264 h265=libx265 vp9=libvpx-vp9 av1=libsvtav1 aac=aac opus=libopus ac3=ac3 eac3=eac3");
  });

  it("gives the same answer with and without the launcher", async () => {
    const direct = await detectCapabilities(SYSTEM!);
    const { caps } = binaries.system!;
    expect(direct.encoders).toEqual(caps.encoders);
    expect(direct.muxers).toEqual(caps.muxers);
    expect(direct.filters).toEqual(caps.filters);
  });
});

describe.skipIf(!NPM)("detectCapabilities: the npm-shipped 2018 ffmpeg", () => {
  it("has libaom-av1 (experimental) but neither SVT-AV1 nor rav1e", () => {
    const { caps } = binaries.npm!;
    for (const encoder of ["libx264", "libx265", "libvpx-vp9", "libaom-av1", "aac", "libopus", "ac3", "eac3"]) expect(caps.encoders.has(encoder), encoder).toBe(true);
    expect(caps.encoders.has("libsvtav1")).toBe(false);
    expect(caps.encoders.has("librav1e")).toBe(false);
    expect(caps.experimentalEncoders!.has("libaom-av1")).toBe(true);
    for (const muxer of MUXERS) expect(caps.muxers.has(muxer), muxer).toBe(true);
    for (const filter of FILTERS) expect(caps.filters.has(filter), filter).toBe(true);
    expect(pickEncoder(VIDEO_ENCODERS.av1, caps)).toBe("libaom-av1");
    expect(pickEncoder(AUDIO_ENCODERS.opus, caps)).toBe("libopus");
    expect(describeCapabilities(caps)).toBe(
      "encoders: h264=libx264 h265=libx265 vp9=libvpx-vp9 av1=libaom-av1 (experimental; no libsvtav1) aac=aac opus=libopus ac3=ac3 eac3=eac3; opus cannot go into fMP4 segments (this build calls it experimental)",
    );
    expect(caps.opusInMp4).toBe(false);
    expect(binaries.system?.caps.opusInMp4 ?? true).toBe(true);
  });

  it("refuses its libaom-av1 without -strict experimental (why av1EncoderOptions adds it)", async () => {
    const out = path.join(dir, "refused.mp4");
    const failed = run(binaries.npm!.path, ["-hide_banner", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=10:duration=1", "-c:v", "libaom-av1", "-crf", "45", "-b:v", "0", out], { timeout: 30_000 });
    await expect(failed).rejects.toMatchObject({ stderr: expect.stringMatching(/experimental codecs are not enabled/) });
  });
});

describe("detectCapabilities: failures", () => {
  it("rejects a missing binary and one that lists nothing", async () => {
    await expect(detectCapabilities(path.join(os.tmpdir(), "no-such-ffmpeg"))).rejects.toThrow(/no-such-ffmpeg -(encoders|muxers|filters) failed/);
    await expect(detectCapabilities("/bin/true")).rejects.toThrow(/listed no/);
  });
});

/** Each (binary, AV1 encoder it has) pair; computed in the test body since detection is async. */
function av1Pairs(): { label: string; path: string; caps: FfmpegCapabilities; encoder: Av1Encoder }[] {
  return Object.entries(binaries).flatMap(([label, binary]) =>
    AV1_ENCODERS.filter((encoder) => binary.caps.encoders.has(encoder)).map((encoder) => ({ label, path: binary.path, caps: binary.caps, encoder })),
  );
}

describe("av1EncoderOptions against the real builds", () => {
  it("covers libsvtav1, libaom-av1 and librav1e on the system build and libaom-av1 on the npm one", () => {
    const pairs = av1Pairs().map((p) => `${p.label}:${p.encoder}`);
    if (SYSTEM) expect(pairs).toEqual(expect.arrayContaining(["system:libsvtav1", "system:libaom-av1", "system:librav1e"]));
    if (NPM) expect(pairs).toContain("npm:libaom-av1");
  });

  it("only uses flags each build's encoder has (ffmpeg -h encoder=...)", async () => {
    for (const { label, path: ffmpeg, caps, encoder } of av1Pairs()) {
      const { stdout } = await run(ffmpeg, ["-hide_banner", "-h", `encoder=${encoder}`], { timeout: 15_000 });
      const known = new Set([...stdout.matchAll(/^\s+(-[\w-]+)\s+</gm)].map((m) => m[1]));
      for (const tier of TIERS) {
        for (const extra of [{}, { bitrateKbps: 900 }, { width: 3840 }]) {
          const argv = av1EncoderOptions(encoder, { ...tier, ...extra }, caps);
          for (const flag of argv.filter((token) => token.startsWith("-") && !/^-\d/.test(token) && !GENERIC_FLAGS.has(token))) {
            expect(known.has(flag), `${label} ${encoder} ${flag}`).toBe(true);
          }
        }
      }
    }
  });

  it("encodes 1 s of 160x90 with each encoder of each build into AV1 ffprobe reads", async () => {
    for (const { label, path: ffmpeg, caps, encoder } of av1Pairs()) {
      const out = path.join(dir, `${label}-${encoder}.mp4`);
      const args = [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x90:rate=10:duration=1",
        ...av1EncoderOptions(encoder, { ...ECONOMY, width: 160 }, caps),
        "-pix_fmt",
        "yuv420p",
        "-g",
        "10",
        out,
      ];
      await run(ffmpeg, args, { timeout: 60_000 });
      const probe = await ffprobeJson(out);
      const video = probe.streams.filter((s) => s.codec_type === "video");
      expect(video, `${label} ${encoder}`).toHaveLength(1);
      expect(video[0], `${label} ${encoder}`).toMatchObject({ codec_name: "av1", width: 160, height: 90, pix_fmt: "yuv420p" });
      expect(Number(probe.format.duration), `${label} ${encoder}`).toBeCloseTo(1, 0);
    }
  });
});
