import { randomUUID } from "node:crypto";
import { constants } from "node:fs";
import { copyFile, mkdir, readdir, realpath, rename, rm, rmdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";

import {
  type LocalConfig,
  type OriginPermissions,
  type StorageDriver,
  ObjectAccessDeniedError,
  ObjectNotFoundError,
  ObjectTooLargeError,
  OriginProbeError,
  joinObjectPath,
  writeStreamToFile,
} from "./storage-driver.js";

/** A directory on this machine (the embedded mode's default origin). */
export class LocalDriver implements StorageDriver {
  private readonly rootDir: string;

  constructor(config: LocalConfig) {
    this.rootDir = path.resolve(config.rootDir);
  }

  async probe(basePath: string, permissions: OriginPermissions): Promise<void> {
    const rootStat = await stat(this.rootDir).catch(() => undefined);
    if (!rootStat?.isDirectory()) {
      throw new OriginProbeError(`root directory ${this.rootDir} does not exist or is not a directory`);
    }
    // basePath is origin configuration, so a leading "/" means "from the root", as for S3 prefixes.
    const baseDir = this.resolve(joinObjectPath(basePath));
    if (permissions.read) {
      try {
        await readdir(baseDir);
      } catch (err) {
        // A base path with nothing in it yet is fine, like an empty S3 prefix.
        if (errorCode(err) !== "ENOENT") throw new OriginProbeError(`read probe failed: ${describe(err)}`);
      }
    }
    if (permissions.write) {
      const marker = path.join(baseDir, `.rendition-probe-${randomUUID()}`);
      try {
        await mkdir(baseDir, { recursive: true });
        await writeFile(marker, "rendition write probe\n");
        await rm(marker);
      } catch (err) {
        throw new OriginProbeError(`write probe failed: ${describe(err)}`);
      }
    }
  }

  async download(objectPath: string, destFile: string, opts: { maxBytes?: number; signal?: AbortSignal } = {}) {
    try {
      const source = this.resolve(objectPath);
      const info = await stat(source);
      // Not a FIFO or a device (a copy would never end) nor a directory.
      if (!info.isFile()) throw new ObjectNotFoundError(`${objectPath} is not a file in the origin`);
      if (opts.maxBytes !== undefined && info.size > opts.maxBytes) throw new ObjectTooLargeError(opts.maxBytes);
      opts.signal?.throwIfAborted();
      // copy_file_range / reflink where the filesystem has them: no bytes through JavaScript.
      await copyFile(source, destFile, constants.COPYFILE_FICLONE);
      return { bytes: info.size };
    } catch (err) {
      if (errorCode(err) === "ENOENT") throw new ObjectNotFoundError(`${objectPath} does not exist in the origin`, { cause: err });
      if (errorCode(err) === "EACCES") throw new ObjectAccessDeniedError(describe(err), { cause: err });
      throw err;
    }
  }

  async upload(srcFile: string, objectPath: string, opts: { contentType?: string; signal?: AbortSignal } = {}) {
    const dest = this.resolve(objectPath);
    await mkdir(path.dirname(dest), { recursive: true });
    // Write beside the target and rename, so readers never see a half-written output.
    const partial = `${dest}.partial-${randomUUID()}`;
    opts.signal?.throwIfAborted();
    try {
      await copyFile(srcFile, partial, constants.COPYFILE_FICLONE);
      await rename(partial, dest);
    } catch (err) {
      await rm(partial, { force: true });
      if (errorCode(err) === "EACCES") throw new ObjectAccessDeniedError(describe(err), { cause: err });
      throw err;
    }
    const { size: bytes } = await stat(dest);
    return { bytes, url: pathToFileURL(dest).href };
  }

  /**
   * Streams a body (an HTTP upload) to `objectPath`: into a partial file beside it, renamed into
   * place once complete, so a half upload never appears under the final name. Past `maxBytes` the
   * partial file is removed and ObjectTooLargeError thrown. The target directory must not lead
   * out of the root through a symbolic link.
   */
  async writeStream(objectPath: string, body: NodeJS.ReadableStream, opts: { maxBytes?: number; signal?: AbortSignal } = {}) {
    const dest = this.resolve(objectPath);
    await mkdir(path.dirname(dest), { recursive: true });
    const [root, dir] = await Promise.all([realpath(this.rootDir), realpath(path.dirname(dest))]);
    const relative = path.relative(root, dir);
    if (relative.startsWith("..") || path.isAbsolute(relative)) throw new ObjectAccessDeniedError(`${objectPath} leads out of the origin root`);
    const partial = `${dest}.partial-${randomUUID()}`;
    const { bytes } = await writeStreamToFile(body, partial, opts);
    try {
      await rename(partial, dest);
    } catch (err) {
      await rm(partial, { force: true });
      throw err;
    }
    return { bytes, url: pathToFileURL(dest).href };
  }

  async remove(objectPath: string): Promise<void> {
    const file = this.resolve(objectPath);
    await rm(file, { force: true });
    // The staging directory a worker made for its chunks goes with its last file.
    await rmdir(path.dirname(file)).catch(() => {});
  }

  urlFor(objectPath: string): string {
    return pathToFileURL(this.resolve(objectPath)).href;
  }

  /**
   * Object paths come from API callers (input_path, templates), so they must never reach outside
   * rootDir: absolute paths and ".." segments are refused outright rather than normalised.
   */
  private resolve(objectPath: string): string {
    if (objectPath.includes("\0")) throw new Error("object path must not contain NUL bytes");
    if (path.isAbsolute(objectPath)) throw new Error(`object path must be relative to the origin root: ${objectPath}`);
    if (objectPath.split(/[\\/]/).includes("..")) throw new Error(`object path must not contain "..": ${objectPath}`);
    const resolved = path.resolve(this.rootDir, objectPath);
    // Belt and braces: the checks above should make this impossible.
    const relative = path.relative(this.rootDir, resolved);
    if (relative.startsWith("..") || path.isAbsolute(relative)) {
      throw new Error(`object path escapes the origin root: ${objectPath}`);
    }
    return resolved;
  }
}

function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** Node's fs messages already read well: "EACCES: permission denied, open '/srv/x'". */
function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
