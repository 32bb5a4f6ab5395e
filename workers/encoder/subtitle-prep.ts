import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { SubtitleTrack } from "../../gen/rendition/v1/job_pb.js";
import type { NetworkGuard } from "../../services/net/network-guard.js";
import { INPUT_SAFETY_OPTIONS } from "../ffmpeg/command.js";
import { convertCommand, extractStreamCommand, sniffSubtitleFormat, textFormatOfCodec, ttmlToWebVtt, EXTENSION, type PreparedSubtitle, type SubtitleText } from "../ffmpeg/subtitles.js";
import { MediaError, type MediaInfo, type MediaTools } from "../ffmpeg/types.js";
import { classifyInputError, describeError, PermanentFailure } from "./failure.js";
import { inputSource, type DirectInputCredentials } from "./input.js";

/** A subtitle file larger than this is not subtitles. */
const MAX_SUBTITLE_BYTES = 10 * 1024 * 1024;

export interface SubtitleDeps {
  tools: MediaTools;
  guard: NetworkGuard;
  credentials: DirectInputCredentials;
  signal: AbortSignal;
}

/**
 * Makes every subtitle track of one output ready for the encode, in `dir`: a source stream is
 * copied out of the input (mov_text becomes SubRip), a `source_url` is fetched through the
 * network guard (https, or s3/gs with the workers' input credentials) and recognised by its
 * content; TTML, which ffmpeg cannot read, is converted to WebVTT here. Each track also gets a
 * WebVTT copy. A track that cannot be read fails the output (PermanentFailure).
 */
export async function prepareSubtitles(tracks: readonly SubtitleTrack[], input: string, info: MediaInfo, dir: string, deps: SubtitleDeps): Promise<PreparedSubtitle[]> {
  const prepared: PreparedSubtitle[] = [];
  for (const [index, track] of tracks.entries()) {
    const where = `subtitle_tracks[${index}]`;
    const base = join(dir, `subtitle-${index}`);
    let format: SubtitleText;
    let file: string;
    try {
      if (track.sourceStreamIndex !== undefined) {
        const stream = info.subtitleStreams?.[track.sourceStreamIndex];
        const textFormat = stream && textFormatOfCodec(stream.codec);
        if (!stream || !textFormat) throw new PermanentFailure("OUTPUT_SPEC_INVALID", `${where}: the input has no text subtitle stream ${track.sourceStreamIndex}`);
        format = textFormat;
        file = `${base}.${EXTENSION[format]}`;
        await deps.tools.run(extractStreamCommand(input, INPUT_SAFETY_OPTIONS, track.sourceStreamIndex, format, stream.codec, file), { signal: deps.signal, timeoutMs: 120_000 });
      } else {
        ({ format, file } = await fetchSubtitle(track.sourceUrl, base, where, deps));
      }
      let vtt = file;
      if (format !== "webvtt") {
        vtt = `${base}.vtt`;
        await deps.tools.run(convertCommand(file, "webvtt", vtt), { signal: deps.signal, timeoutMs: 120_000 });
      }
      prepared.push({ index, track, file, format, vtt });
    } catch (err) {
      deps.signal.throwIfAborted();
      if (err instanceof PermanentFailure) throw err;
      if (err instanceof MediaError) throw new PermanentFailure("SUBTITLE_UNREADABLE", `${where}: ${err.message}`, { cause: err });
      throw err; // network trouble: retry the job
    }
  }
  return prepared;
}

async function fetchSubtitle(url: string, base: string, where: string, deps: SubtitleDeps): Promise<{ format: SubtitleText; file: string }> {
  const download = `${base}.download`;
  const source = inputSource({ inputUrl: url, inputPath: "" }, undefined, deps.credentials, deps.guard);
  try {
    await source.driver.download(source.path, download, { maxBytes: MAX_SUBTITLE_BYTES, signal: deps.signal });
  } catch (err) {
    deps.signal.throwIfAborted();
    const classified = classifyInputError(err, `${where}.source_url ${source.description}`);
    if (classified instanceof PermanentFailure) throw new PermanentFailure(classified.code === "INPUT_TOO_LARGE" ? "SUBTITLE_UNREADABLE" : classified.code, classified.message, { cause: err });
    throw classified;
  } finally {
    source.driver.destroy?.();
  }
  const text = await readFile(download, "utf8");
  const format = sniffSubtitleFormat(text);
  if (!format) throw new PermanentFailure("SUBTITLE_UNREADABLE", `${where}: ${source.description} is not SubRip, WebVTT, ASS or TTML`);
  if (format === "ttml") {
    const file = `${base}.vtt`;
    try {
      await writeFile(file, ttmlToWebVtt(text));
    } catch (err) {
      throw new PermanentFailure("SUBTITLE_UNREADABLE", `${where}: ${describeError(err)}`, { cause: err });
    }
    return { format: "webvtt", file };
  }
  const file = `${base}.${EXTENSION[format]}`;
  await writeFile(file, text);
  return { format, file };
}
