import { realpath, stat } from "node:fs/promises";
import path, { posix } from "node:path";
import { fileURLToPath } from "node:url";
import { NotFoundError } from "../common/errors.js";
import type { JobManager } from "../jobs/job.service.js";
import type { OutputStatusName } from "../jobs/job.types.js";
import { contentTypeOf } from "../jobs/output-formats.js";
import { isProgressive } from "../jobs/output-formats.js";
import type { OriginManager } from "../origins/origin.service.js";
import { joinObjectPath, type OriginConfig, type S3Config } from "../storage/storage-driver.js";
import type { S3Presigner } from "../storage/s3-presigner.js";
import { HttpRefusal } from "./http-refusal.js";
import type { PublicUrl, UrlSigner } from "./url-signer.js";
import { DEFAULT_EXPIRES_S } from "./upload.service.js";

export interface OutputDownloads {
  outputId: string;
  status: OutputStatusName;
  available: boolean;
  outputUrl: string;
  manifestUrls: string[];
  subtitleUrls: string[];
}

export interface ThumbnailDownloads {
  thumbnailId: string;
  status: OutputStatusName;
  available: boolean;
  urls: string[];
  storyboardUrl: string;
}

export interface JobDownloads {
  jobId: string;
  outputs: OutputDownloads[];
  thumbnails: ThumbnailDownloads[];
  expiresAt: Date;
}

/**
 * What a /files/<token>/... URL may reach: `k: "f"` exactly the file `p`, `k: "d"` anything below
 * the directory `p` (a streaming output: the playlists name their segments relatively, so they
 * resolve to URLs under the same signed prefix). `p` is relative to the origin's root.
 */
interface FileToken {
  g: string;
  o: string;
  p: string;
  k: "f" | "d";
  e: number;
}

export interface ResolvedFile {
  file: string;
  size: number;
  contentType: string;
  mtime: Date;
}

/**
 * Signed, expiring URLs for a finished job's files: presigned GETs for s3 origins, Rendition's
 * own /files/<token>/<relative path> route for local origins.
 */
export class DownloadManager {
  constructor(
    private readonly jobs: Pick<JobManager, "get">,
    private readonly origins: Pick<OriginManager, "get" | "configOf">,
    private readonly presigner: (config: S3Config) => S3Presigner,
    private readonly signer: UrlSigner,
    private readonly publicUrl: PublicUrl,
  ) {}

  async urls(organizationId: string, jobId: string, expiresInSeconds: number): Promise<JobDownloads> {
    const job = await this.jobs.get(organizationId, jobId);
    const expiresIn = expiresInSeconds || DEFAULT_EXPIRES_S;
    const expiresAt = new Date(Date.now() + expiresIn * 1000);
    const origin = await this.origins.get(organizationId, job.outputOriginId).catch((err) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
    const config = origin && this.origins.configOf(origin);
    const base = origin?.basePath ?? job.outputOrigin.path;
    const presigner = config?.provider === "s3" ? this.presigner(config.s3) : undefined;
    const e = Math.floor(expiresAt.getTime() / 1000);
    try {
      /** Signs `urls` (as stored: s3:// or file://) for a file `f` or under a directory prefix `d`. */
      const signer = async (urls: string[], scope: { kind: "f" | "d"; objectPath: string }): Promise<string[]> => {
        if (!config) return urls.map(() => "");
        if (config.provider === "s3") {
          const prefix = `s3://${config.s3.bucket}/`;
          return Promise.all(urls.map((url) => (url.startsWith(prefix) ? presigner!.presignGet(url.slice(prefix.length), expiresIn) : "")));
        }
        if (config.provider !== "local") return urls.map(() => "");
        const token = (p: string, k: "f" | "d") => this.signer.sign({ g: organizationId, o: origin!.id, p, k, e } satisfies FileToken);
        const dirToken = scope.kind === "d" ? token(scope.objectPath, "d") : undefined;
        return urls.map((url) => {
          const objectPath = localObjectPath(config, url);
          if (objectPath === undefined) return "";
          if (dirToken) {
            const relative = posix.relative(scope.objectPath, objectPath);
            if (!relative || relative.startsWith("..")) return "";
            return `${this.publicUrl.base}/files/${dirToken}/${relative.split("/").map(encodeURIComponent).join("/")}`;
          }
          return `${this.publicUrl.base}/files/${token(objectPath, "f")}/${encodeURIComponent(posix.basename(objectPath))}`;
        });
      };

      const outputs: OutputDownloads[] = [];
      for (const output of job.outputs) {
        const entry: OutputDownloads = { outputId: output.id, status: output.status, available: false, outputUrl: "", manifestUrls: [], subtitleUrls: [] };
        outputs.push(entry);
        if (output.status !== "completed" || !output.outputUrl || !config) continue;
        const progressive = isProgressive(output.spec.type);
        const scope = { kind: progressive ? ("f" as const) : ("d" as const), objectPath: joinObjectPath(base, output.path) };
        const [main, ...rest] = await signer([output.outputUrl, ...output.manifestUrls, ...output.subtitleUrls], scope);
        entry.outputUrl = main!;
        entry.manifestUrls = rest.slice(0, output.manifestUrls.length);
        entry.subtitleUrls = rest.slice(output.manifestUrls.length);
        entry.available = entry.outputUrl !== "";
      }
      const thumbnails: ThumbnailDownloads[] = [];
      for (const thumb of job.thumbnails) {
        const entry: ThumbnailDownloads = { thumbnailId: thumb.id, status: thumb.status, available: false, urls: [], storyboardUrl: "" };
        thumbnails.push(entry);
        if (thumb.status !== "completed" || !config) continue;
        const scope = { kind: "d" as const, objectPath: joinObjectPath(base, thumb.path) };
        const signed = await signer([...thumb.urls, ...(thumb.storyboardUrl ? [thumb.storyboardUrl] : [])], scope);
        entry.urls = signed.slice(0, thumb.urls.length);
        entry.storyboardUrl = thumb.storyboardUrl ? signed.at(-1)! : "";
        entry.available = entry.urls.length > 0 && entry.urls.every(Boolean);
      }
      return { jobId: job.id, outputs, thumbnails, expiresAt };
    } finally {
      presigner?.destroy();
    }
  }

  /**
   * The file a GET /files/<token>/<segments> names, after every check: the signature, the expiry,
   * the segments (decoded; no "", ".", "..", "/", "\" or NUL), the token's scope (its file, or
   * below its directory, symbolic links resolved), a regular file.
   */
  async resolve(token: string, segments: string[]): Promise<ResolvedFile> {
    const claims = this.signer.verify<FileToken>(token);
    if (!claims || typeof claims.p !== "string" || typeof claims.e !== "number" || (claims.k !== "f" && claims.k !== "d")) {
      throw new HttpRefusal(403, "invalid download token");
    }
    if (claims.e * 1000 <= Date.now()) throw new HttpRefusal(403, "this download url has expired");
    if (segments.length === 0 || segments.some((s) => s === "" || s === "." || s === ".." || /[\\/\0]/.test(s))) {
      throw new HttpRefusal(400, "invalid file path");
    }
    if (claims.k === "f" && (segments.length !== 1 || segments[0] !== posix.basename(claims.p))) throw new HttpRefusal(404, "no such file");
    const origin = await this.origins.get(claims.g, claims.o).catch(() => undefined);
    const config = origin && this.origins.configOf(origin);
    if (config?.provider !== "local") throw new HttpRefusal(404, "no such file");
    const root = path.resolve(config.local.rootDir);
    const scope = path.resolve(root, claims.p);
    const requested = claims.k === "f" ? scope : path.resolve(scope, ...segments);
    if (!isInside(root, scope) || !isInside(scope, requested)) throw new HttpRefusal(400, "invalid file path");
    try {
      const [realScope, realFile] = await Promise.all([realpath(scope), realpath(requested)]);
      if (claims.k === "f" ? realFile !== realScope : !isInside(realScope, realFile)) throw new HttpRefusal(404, "no such file");
      const info = await stat(realFile);
      if (!info.isFile()) throw new HttpRefusal(404, "no such file");
      return { file: realFile, size: info.size, contentType: contentTypeOf(segments.at(-1)!), mtime: info.mtime };
    } catch (err) {
      if (err instanceof HttpRefusal) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR" || code === "ELOOP" || code === "EACCES") throw new HttpRefusal(404, "no such file");
      throw err;
    }
  }
}

/** A stored file:// URL as a path relative to the local origin's root, or undefined when it lies elsewhere. */
function localObjectPath(config: Extract<OriginConfig, { provider: "local" }>, url: string): string | undefined {
  if (!url.startsWith("file://")) return undefined;
  const root = path.resolve(config.local.rootDir);
  const relative = path.relative(root, fileURLToPath(url));
  if (!relative || relative.startsWith("..") || path.isAbsolute(relative)) return undefined;
  return relative.split(path.sep).join("/");
}

function isInside(root: string, target: string): boolean {
  const rel = path.relative(root, target);
  return !rel.startsWith("..") && !path.isAbsolute(rel);
}
