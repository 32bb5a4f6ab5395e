import { access, chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { constants } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureExecutable, locateMediaTools, MediaToolsNotFoundError } from "../../workers/ffmpeg/binaries.js";

let dir: string;

/** A stand-in binary: a script that answers -version like ffmpeg does. */
async function fakeTool(name: string, version: string, mode = 0o755): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, `#!/bin/sh\necho "${name} version ${version} Copyright (c) 2000-2026 the FFmpeg developers"\necho "built with gcc"\n`);
  await chmod(file, mode);
  return file;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "rendition-binaries-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("locateMediaTools", () => {
  it("uses FFMPEG_PATH / FFPROBE_PATH and describes the build from the first -version line", async () => {
    const ffmpeg = await fakeTool("ffmpeg", "9.9-test");
    const ffprobe = await fakeTool("ffprobe", "9.9-test");
    const located = await locateMediaTools({ FFMPEG_PATH: ffmpeg, FFPROBE_PATH: ffprobe, PATH: "" });
    expect(located).toEqual({ ffmpegPath: ffmpeg, ffprobePath: ffprobe, source: "env", description: `ffmpeg version 9.9-test (env: ${ffmpeg})`, launcher: [] });
  });

  it("finds ffprobe next to FFMPEG_PATH when only that is set", async () => {
    const located = await locateMediaTools({ FFMPEG_PATH: path.join(dir, "ffmpeg"), PATH: "" });
    expect(located.ffprobePath).toBe(path.join(dir, "ffprobe"));
  });

  it("fails clearly (no fallback) when the configured binaries do not work", async () => {
    await expect(locateMediaTools({ FFMPEG_PATH: path.join(dir, "missing"), FFPROBE_PATH: path.join(dir, "ffprobe") })).rejects.toThrow(MediaToolsNotFoundError);
    await expect(locateMediaTools({ FFMPEG_PATH: path.join(dir, "missing") })).rejects.toThrow(/FFMPEG_PATH\/FFPROBE_PATH do not work: .*missing -version failed/);
    await expect(locateMediaTools({ FFPROBE_PATH: path.join(dir, "ffprobe") })).rejects.toThrow(/FFPROBE_PATH is set but FFMPEG_PATH is not/);
  });

  it("refuses a binary that is not ffmpeg", async () => {
    const other = path.join(dir, "not-ffmpeg");
    await writeFile(other, "#!/bin/sh\necho hello\n");
    await chmod(other, 0o755);
    await expect(locateMediaTools({ FFMPEG_PATH: other, FFPROBE_PATH: other })).rejects.toThrow(/printed "hello"/);
  });

  it("takes both tools from PATH", async () => {
    const located = await locateMediaTools({ PATH: ["/nonexistent", dir].join(path.delimiter) });
    expect(located).toMatchObject({ ffmpegPath: path.join(dir, "ffmpeg"), ffprobePath: path.join(dir, "ffprobe"), source: "system" });
  });

  it("falls back to the npm packages when PATH has no ffmpeg", async () => {
    const located = await locateMediaTools({ PATH: path.join(dir, "empty") }, { tmpDir: dir });
    expect(located.source).toBe("npm");
    expect(located.ffmpegPath).toContain("@ffmpeg-installer");
    expect(located.description).toMatch(/^ffmpeg version \S+ \(npm: /);
  }, 20_000);
});

describe("ensureExecutable", () => {
  it("keeps an executable file as it is", async () => {
    const file = await fakeTool("ok-tool", "1");
    expect(await ensureExecutable(file)).toBe(file);
  });

  it("adds the execute bits to a file we own", async () => {
    const file = await fakeTool("no-x-tool", "1", 0o644);
    expect(await ensureExecutable(file)).toBe(file);
    expect((await stat(file)).mode & 0o111).toBe(0o111);
  });

  it("runs a private executable copy of a file owned by someone else", async () => {
    const file = await fakeTool("foreign-tool", "1", 0o644);
    const tmpDir = path.join(dir, "copies");
    // Pretend to be another user: the file is then not ours to chmod.
    const copy = await ensureExecutable(file, { tmpDir, uid: 424242 });
    expect(copy.startsWith(path.join(tmpDir, "rendition-media-tools-424242", "foreign-tool-"))).toBe(true);
    await access(copy, constants.X_OK);
    expect(await readFile(copy, "utf8")).toBe(await readFile(file, "utf8"));
    expect((await stat(file)).mode & 0o111).toBe(0); // the original is untouched
    expect(await ensureExecutable(file, { tmpDir, uid: 424242 })).toBe(copy); // reused
  });
});
