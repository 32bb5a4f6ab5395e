import { readFile, writeFile } from "node:fs/promises";
import { join, posix } from "node:path";
import { OutputType } from "../../gen/rendition/v1/common_pb.js";
import { contentTypeOf } from "../../services/jobs/output-formats.js";
import type { JobOutputRecord } from "../../services/jobs/job.types.js";
import { joinObjectPath, ObjectAccessDeniedError, ObjectNotFoundError, type StorageDriver } from "../../services/storage/storage-driver.js";
import { firstFrameCommand, remuxToMp4Command } from "../ffmpeg/command.js";
import { mp4DurationMs } from "../ffmpeg/mp4-duration.js";
import { convertCommand, sidecarName, type SubtitleText } from "../ffmpeg/subtitles.js";
import { streamRenditions } from "../ffmpeg/transcode.js";
import { isStreamTarget, MediaError, type EncodeTarget, type MediaInfo, type MediaTools, type StreamTarget, type TranscodeTarget } from "../ffmpeg/types.js";
import { packageStream } from "../packaging/package-stream.js";
import { describeError, PermanentFailure } from "./failure.js";

/** What one output delivered: the URL its output_url names, the manifests, the bytes stored. */
export interface Delivered {
  url: string;
  manifestUrls: string[];
  subtitleUrls: string[];
  bytes: number;
  durationMs: number;
}

const STORYBOARD = "storyboard.vtt";

/** Segments uploaded at once: enough to hide a store's latency, few enough for one worker. */
const UPLOAD_CONCURRENCY = 4;

/** A sprite sheet a run rendered (thumbnails mode sprite), for the storyboards of streaming outputs. */
export interface RenderedSprite {
  /** The thumbnail set's path in the origin. */
  path: string;
  image: string;
  storyboard: string;
}

/**
 * Puts a run's outputs into the output origin, each as a whole: a progressive file with its
 * subtitle sidecars, or a segmented output's artifact set (packaged first: measured manifests,
 * WebVTT renditions, the storyboard) in an order that never shows a manifest before what it names.
 */
export class OutputDelivery {
  readonly basePath: string;

  constructor(
    private readonly ctx: {
      driver: StorageDriver;
      basePath: string;
      tools: MediaTools;
      signal: AbortSignal;
      tmpDir: string;
      sprites: readonly RenderedSprite[];
    },
  ) {
    this.basePath = ctx.basePath;
  }

  async file(output: JobOutputRecord, target: TranscodeTarget): Promise<Delivered> {
    const { basePath } = this.ctx;
    const [durationMs, { bytes, url }] = await Promise.all([this.durationOf(output, target.file), this.put(target.file, joinObjectPath(basePath, output.path))]);
    const dir = posix.dirname(output.path);
    const sidecars = await this.sidecars(output, target, dir === "." ? basePath : joinObjectPath(basePath, dir));
    return { url, manifestUrls: [], subtitleUrls: sidecars.urls, bytes: bytes + sidecars.bytes, durationMs };
  }

  /** Tracks with operation "extract": a subtitle file in the track's format beside the output. */
  private async sidecars(output: JobOutputRecord, target: EncodeTarget, dir: string): Promise<{ urls: string[]; bytes: number }> {
    const urls: string[] = [];
    let bytes = 0;
    for (const prepared of (target.subtitles ?? []).filter((s) => s.track.operation === "extract")) {
      const name = sidecarName(output.path, isStreamTarget(target), prepared);
      const format = (prepared.track.format || "webvtt") as SubtitleText | "ttml";
      const local = join(this.ctx.tmpDir, `${output.id}-${name}`);
      try {
        await this.ctx.tools.run(convertCommand(prepared.file, format, local), { signal: this.ctx.signal, timeoutMs: 120_000 });
      } catch (err) {
        this.ctx.signal.throwIfAborted();
        if (err instanceof MediaError) throw new MediaError(err.code, `subtitle_tracks[${prepared.index}] could not be written as ${format}: ${err.message}`, { cause: err });
        throw err;
      }
      const put = await this.put(local, joinObjectPath(dir, name));
      urls.push(put.url);
      bytes += put.bytes;
    }
    return { urls, bytes };
  }

  async stream(output: JobOutputRecord, target: StreamTarget, info: MediaInfo): Promise<Delivered> {
    const { basePath } = this.ctx;
    let artifacts;
    try {
      artifacts = await packageStream(target, streamRenditions(target, info), info, {
        remuxToMp4: (segment, mp4) => this.ctx.tools.run(remuxToMp4Command(segment, mp4), { signal: this.ctx.signal, timeoutMs: 60_000 }),
        firstVideoPts: async (segment) => {
          const out = `${segment}.framemd5`;
          await this.ctx.tools.run(firstFrameCommand(segment, out), { signal: this.ctx.signal, timeoutMs: 60_000 });
          return parseFirstPts(await readFile(out, "utf8"));
        },
      });
    } catch (err) {
      this.ctx.signal.throwIfAborted();
      if (err instanceof MediaError) throw err;
      throw new MediaError("ENCODE_FAILED", `the encoded renditions could not be packaged: ${describeError(err)}`, { cause: err });
    }
    const storyboard = await this.writeStoryboard(output, target);
    // Uploaded with the segments (it names the sprite, already stored), listed after the manifests.
    if (storyboard) artifacts.files.unshift(storyboard);
    const urls = new Map<string, string>();
    let bytes = 0;
    // Segments, then the media playlists naming them, then the master / MPD naming those: a
    // manifest a player can read never names a file that is not there yet.
    const topLevel = artifacts.manifests.filter((m) => !m.includes("/"));
    const segments = artifacts.files.filter((f) => !artifacts.manifests.includes(f.relative));
    const mediaPlaylists = artifacts.files.filter((f) => artifacts.manifests.includes(f.relative) && !topLevel.includes(f.relative));
    const manifests = artifacts.files.filter((f) => topLevel.includes(f.relative));
    for (const batch of [segments, mediaPlaylists, manifests]) {
      const pending = [...batch];
      await Promise.all(
        Array.from({ length: Math.min(UPLOAD_CONCURRENCY, pending.length) }, async () => {
          for (let file = pending.shift(); file; file = pending.shift()) {
            const put = await this.put(file.local, joinObjectPath(basePath, output.path, file.relative));
            bytes += put.bytes;
            urls.set(file.relative, put.url);
          }
        }),
      );
    }
    const sidecars = await this.sidecars(output, target, joinObjectPath(basePath, output.path));
    return {
      url: urls.get(artifacts.primary)!,
      manifestUrls: [...artifacts.manifests, ...(storyboard ? [storyboard.relative] : [])].map((m) => urls.get(m)!),
      subtitleUrls: [...artifacts.subtitleFiles.map((f) => urls.get(f)!), ...sidecars.urls],
      bytes: bytes + sidecars.bytes,
      durationMs: artifacts.durationMs,
    };
  }

  /**
   * The job's first sprite sheet as a WebVTT thumbnails track beside a streaming output's
   * manifests (`storyboard.vtt`, the format Shaka's addThumbnailsTrack, Video.js and JW Player
   * take): the thumbnail set's own storyboard with its cues pointing at the sprite through a path
   * relative to the output, so both resolve on any origin.
   */
  private async writeStoryboard(output: JobOutputRecord, target: StreamTarget): Promise<{ local: string; relative: string } | undefined> {
    const sprite = this.ctx.sprites[0];
    if (!sprite) return undefined;
    const image = posix.join(posix.relative(output.path, sprite.path), sprite.image);
    const local = join(target.dir, STORYBOARD);
    await writeFile(local, sprite.storyboard.split(`${sprite.image}#`).join(`${image}#`));
    return { local, relative: STORYBOARD };
  }

  /**
   * An output's own duration, which prices it and is reported. mp4/mov: the movie header, read
   * in process (the same number ffprobe reports, without its ~90 ms start-up); else ffprobe.
   * Not ffmpeg's last progress time, which lags the real end by the encoder's delay.
   */
  private async durationOf(output: JobOutputRecord, file: string): Promise<number> {
    if (output.spec.type === OutputType.MP4 || output.spec.type === OutputType.MOV) {
      const fromHeader = await mp4DurationMs(file);
      if (fromHeader !== undefined) return fromHeader;
    }
    const produced = await this.ctx.tools.probe(file, { maxDurationMs: Number.MAX_SAFE_INTEGER, maxWidth: 1 << 16, maxHeight: 1 << 16 }, { signal: this.ctx.signal });
    return produced.durationMs;
  }

  /**
   * Uploads with a few quick retries; what still fails is left to the job's redelivery, unless
   * the store refuses outright (no access, no bucket), which no retry will change.
   */
  async put(file: string, path: string): Promise<{ bytes: number; url: string }> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.ctx.driver.upload(file, path, { contentType: contentTypeOf(file), signal: this.ctx.signal });
      } catch (err) {
        this.ctx.signal.throwIfAborted();
        if (err instanceof ObjectAccessDeniedError || err instanceof ObjectNotFoundError) throw new PermanentFailure("UPLOAD_FAILED", `the output origin refused ${path}: ${describeError(err)}`, { cause: err });
        if (attempt >= 3) throw new Error(`upload of ${path} failed: ${describeError(err)}`, { cause: err });
        await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      }
    }
  }
}

/** framemd5 lines read "0, dts, pts, duration, size, md5" in the stream's time base (1/90000 for MPEG-TS). */
function parseFirstPts(framemd5: string): number {
  const line = framemd5.split("\n").find((l) => /^\d+,/.test(l.trim()));
  const pts = Number(line?.split(",")[2]);
  if (!Number.isFinite(pts)) throw new Error("the segment has no video packet");
  return pts;
}
