import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";

import { afterEach, beforeEach, describe, expect, it } from "vitest";

import { LocalDriver } from "../../services/storage/local.driver.js";
import {
  ObjectTooLargeError,
  OriginProbeError,
  createStorageDriver,
} from "../../services/storage/storage-driver.js";

describe("LocalDriver", () => {
  let dir: string;
  let root: string;
  let driver: LocalDriver;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "rendition-local-driver-"));
    root = path.join(dir, "root");
    await mkdir(root);
    driver = new LocalDriver({ rootDir: root });
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("is what the factory builds for provider local", () => {
    expect(createStorageDriver({ provider: "local", local: { rootDir: root } })).toBeInstanceOf(LocalDriver);
  });

  it("probes read and write, creating the base path and leaving no marker behind", async () => {
    await driver.probe("/outputs/videos/", { read: true, write: true });
    expect(await readdir(path.join(root, "outputs/videos"))).toEqual([]);
  });

  it("accepts a read probe on a base path that has no objects yet", async () => {
    await expect(driver.probe("not-yet", { read: true, write: false })).resolves.toBeUndefined();
  });

  it("fails the probe when the root directory is missing", async () => {
    const missing = new LocalDriver({ rootDir: path.join(dir, "nope") });
    await expect(missing.probe("", { read: true, write: false })).rejects.toThrow(OriginProbeError);
    await expect(missing.probe("", { read: false, write: true })).rejects.toThrow(/does not exist/);
  });

  it("fails the probe when the root is a file", async () => {
    await writeFile(path.join(dir, "file"), "x");
    const onFile = new LocalDriver({ rootDir: path.join(dir, "file") });
    await expect(onFile.probe("", { read: true, write: true })).rejects.toThrow(/not a directory/);
  });

  it("fails the write probe when the base path is a file", async () => {
    await writeFile(path.join(root, "taken"), "x");
    await expect(driver.probe("taken", { read: false, write: true })).rejects.toThrow(/^write probe failed: /);
  });

  it("round-trips a file through upload and download", async () => {
    const content = randomBytes(256 * 1024);
    const src = path.join(dir, "src.bin");
    await writeFile(src, content);

    const uploaded = await driver.upload(src, "out/job_1/video.mp4", { contentType: "video/mp4" });
    const stored = path.join(root, "out/job_1/video.mp4");
    expect(uploaded).toEqual({ bytes: content.length, url: pathToFileURL(stored).href });
    expect(await readdir(path.join(root, "out/job_1"))).toEqual(["video.mp4"]); // no partial file left

    const dest = path.join(dir, "dest.bin");
    expect(await driver.download("out/job_1/video.mp4", dest)).toEqual({ bytes: content.length });
    expect((await readFile(dest)).equals(content)).toBe(true); // toEqual walks a Buffer byte by byte: slow
  });

  it("stops a download past maxBytes and removes the partial file", async () => {
    await writeFile(path.join(root, "big.bin"), randomBytes(200_000));
    const dest = path.join(dir, "dest.bin");
    await expect(driver.download("big.bin", dest, { maxBytes: 1000 })).rejects.toThrow(ObjectTooLargeError);
    await expect(readFile(dest)).rejects.toThrow(/ENOENT/);
  });

  it("gives file:// URLs inside the root", () => {
    expect(driver.urlFor("a b/c.mp4")).toBe(pathToFileURL(path.join(root, "a b/c.mp4")).href);
  });

  it.each(["../outside.txt", "a/../../outside.txt", "a/..", "/etc/passwd", "a\\..\\..\\x", "a\0b"])(
    "refuses the path %j",
    async (objectPath) => {
      const outside = path.join(dir, "outside.txt");
      await writeFile(outside, "secret");
      await expect(driver.download(objectPath, path.join(dir, "dest"))).rejects.toThrow(
        /must be relative|must not contain/,
      );
      await expect(driver.upload(outside, objectPath)).rejects.toThrow(/must be relative|must not contain/);
      expect(() => driver.urlFor(objectPath)).toThrow(/must be relative|must not contain/);
    },
  );
});
