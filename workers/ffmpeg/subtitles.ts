import path from "node:path";
import { OutputType } from "../../gen/rendition/v1/common_pb.js";
import type { SubtitleTrack } from "../../gen/rendition/v1/job_pb.js";
import { absoluteFile, QUIET_GLOBAL_OPTIONS } from "./command.js";
import type { FfmpegCommand } from "./types.js";

/** The text formats subtitles are kept in between fetching and delivery. */
export type SubtitleText = "srt" | "webvtt" | "ass";

/**
 * One subtitle track of an output, made ready before the encode: its text in a local file (the
 * source's own format when ffmpeg reads it: SubRip, WebVTT or ASS) and the same cues as WebVTT
 * (what HLS and DASH players take).
 */
export interface PreparedSubtitle {
  /** Position in the output's subtitle_tracks. */
  index: number;
  track: SubtitleTrack;
  file: string;
  format: SubtitleText;
  vtt: string;
}

/** ffprobe codec names of text subtitles we can read, with the format we keep them in. */
const TEXT_CODECS: Record<string, SubtitleText> = { subrip: "srt", srt: "srt", webvtt: "webvtt", ass: "ass", ssa: "ass", mov_text: "srt", text: "srt" };

/** The text format a subtitle stream of the input is kept in, or undefined for bitmap subtitles (PGS, DVB, VobSub). */
export function textFormatOfCodec(codec: string): SubtitleText | undefined {
  return TEXT_CODECS[codec];
}

/** What a fetched subtitle file is, from its first bytes (the URL's extension can lie). */
export function sniffSubtitleFormat(text: string): SubtitleText | "ttml" | undefined {
  const head = text.replace(/^\uFEFF/, "").trimStart().slice(0, 2000);
  if (/^WEBVTT(\s|$)/.test(head)) return "webvtt";
  if (/^\[Script Info\]/i.test(head)) return "ass";
  if (/^(<\?xml[^>]*>\s*)?(<!--[\s\S]*?-->\s*)*<tt[\s>:]/.test(head)) return "ttml";
  if (/^\d+\s*\r?\n\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}\s*-->/.test(head)) return "srt";
  return undefined;
}

/** Demuxers a subtitle input may be read with: the three text formats, nothing that opens other files. */
export const SUBTITLE_INPUT_OPTIONS: readonly string[] = ["-protocol_whitelist", "file", "-format_whitelist", "srt,webvtt,ass"];

const MUXER: Record<SubtitleText, string> = { srt: "srt", webvtt: "webvtt", ass: "ass" };
const ENCODER: Record<SubtitleText, string> = { srt: "srt", webvtt: "webvtt", ass: "ass" };
export const EXTENSION: Record<SubtitleText | "ttml", string> = { srt: "srt", webvtt: "vtt", ass: "ass", ttml: "ttml" };


/** Copies subtitle stream `index` of the input into a text file (mov_text becomes SubRip). */
export function extractStreamCommand(input: string, inputOptions: readonly string[], index: number, format: SubtitleText, codec: string, file: string): FfmpegCommand {
  const copy = TEXT_CODECS[codec] === format && codec !== "mov_text" && codec !== "text";
  return {
    global: [...QUIET_GLOBAL_OPTIONS],
    inputs: [{ options: [...inputOptions], file: absoluteFile(input) }],
    outputs: [{ options: ["-map", `0:s:${index}`, "-c:s", copy ? "copy" : ENCODER[format], "-f", MUXER[format]], file: absoluteFile(file) }],
  };
}

/** Converts one text subtitle file into another format (WebVTT for players, a sidecar's format). */
export function convertCommand(file: string, to: SubtitleText | "ttml", out: string): FfmpegCommand {
  return {
    global: [...QUIET_GLOBAL_OPTIONS],
    inputs: [{ options: [...SUBTITLE_INPUT_OPTIONS], file: absoluteFile(file) }],
    outputs: [{ options: ["-map", "0:s:0", "-c:s", to === "ttml" ? "ttml" : ENCODER[to], "-f", to === "ttml" ? "ttml" : MUXER[to]], file: absoluteFile(out) }],
  };
}

/** The subtitle codec a track gets inside a progressive file, by container and operation. */
export function embeddedCodec(type: OutputType, track: SubtitleTrack, source: SubtitleText): string {
  if (type === OutputType.MP4 || type === OutputType.MOV) return "mov_text";
  if (type === OutputType.WEBM) return "webvtt";
  const wanted = track.operation === "convert" && track.format ? (track.format as SubtitleText) : source;
  return ENCODER[wanted];
}

/** Stream flags for subtitle stream `n` of a file: codec, language, title, dispositions. */
export function subtitleStreamOptions(type: OutputType, prepared: PreparedSubtitle, n: number): string[] {
  const { track } = prepared;
  const dispositions = [...(track.default ? ["default"] : []), ...(track.forced ? ["forced"] : []), ...(track.hearingImpaired ? ["hearing_impaired"] : [])];
  const s = `s:${n}`;
  return [
    `-c:${s}`,
    embeddedCodec(type, track, prepared.format),
    ...(track.language ? [`-metadata:s:${s}`, `language=${track.language}`] : []),
    ...(track.label ? [`-metadata:s:${s}`, `title=${track.label}`] : []),
    `-disposition:${s}`,
    dispositions.length ? dispositions.join("+") : "0",
  ];
}

/**
 * The filter that draws a subtitle file into the video (libass: SubRip and WebVTT in its default
 * style, ASS with its own styles). The path is one of ours (the job's temp directory); one with
 * characters the filter graph would read as syntax is refused rather than escaped.
 */
export function burnInFilter(file: string): string {
  const absolute = absoluteFile(file);
  if (!/^[\w/.-]+$/.test(absolute)) throw new Error(`subtitle file path ${absolute} has characters a filter graph cannot take`);
  return `subtitles=filename=${absolute}`;
}

/** Where a track's sidecar goes, relative to the output: next to a file, inside a directory. */
export function sidecarName(outputPath: string, segmented: boolean, prepared: PreparedSubtitle): string {
  const format = (prepared.track.format || "webvtt") as SubtitleText | "ttml";
  const name = `${prepared.index}${prepared.track.language ? `.${prepared.track.language}` : ""}.${EXTENSION[format]}`;
  if (segmented) return `subtitles_${name}`;
  const base = path.posix.basename(outputPath).replace(/\.[^.]+$/, "");
  return `${base}.${name}`;
}

/**
 * A TTML (W3C Timed Text / IMSC text profile) document as WebVTT: every `<p>` with begin/end (or
 * dur) becomes a cue, `<br/>` a line break; styling is dropped. ffmpeg writes TTML but cannot
 * read it. Times: clock (00:00:01.500, 00:00:01:12 with frames), offset (1.5s, 1500ms, 90t).
 */
export function ttmlToWebVtt(xml: string): string {
  const frameRate = Number(/ttp:frameRate="(\d+)"/.exec(xml)?.[1] ?? 30);
  const tickRate = Number(/ttp:tickRate="(\d+)"/.exec(xml)?.[1] ?? 1);
  const seconds = (value: string): number => {
    const clock = /^(\d+):(\d{2}):(\d{2})(?:\.(\d+)|:(\d+))?$/.exec(value);
    if (clock) return Number(clock[1]) * 3600 + Number(clock[2]) * 60 + Number(clock[3]) + (clock[4] ? Number(`0.${clock[4]}`) : 0) + (clock[5] ? Number(clock[5]) / frameRate : 0);
    const offset = /^([\d.]+)(h|m|s|ms|f|t)$/.exec(value);
    if (!offset) throw new Error(`TTML time "${value}" is not one Rendition reads`);
    const n = Number(offset[1]);
    return { h: n * 3600, m: n * 60, s: n, ms: n / 1000, f: n / frameRate, t: n / tickRate }[offset[2] as "h"]!;
  };
  const cues: string[] = [];
  for (const match of xml.matchAll(/<(?:\w+:)?p\b([^>]*)>([\s\S]*?)<\/(?:\w+:)?p>/g)) {
    const attributes = match[1]!;
    const begin = /\bbegin="([^"]+)"/.exec(attributes)?.[1];
    const end = /\bend="([^"]+)"/.exec(attributes)?.[1];
    const dur = /\bdur="([^"]+)"/.exec(attributes)?.[1];
    if (!begin || (!end && !dur)) continue;
    const start = seconds(begin);
    const stop = end ? seconds(end) : start + seconds(dur!);
    const text = match[2]!
      .replace(/<(?:\w+:)?br\s*\/?>/g, "\n")
      .replace(/<[^>]+>/g, "")
      .replace(/&lt;/g, "<")
      .replace(/&gt;/g, ">")
      .replace(/&quot;/g, '"')
      .replace(/&apos;/g, "'")
      .replace(/&amp;/g, "&")
      .split("\n")
      .map((line) => line.trim())
      .filter(Boolean)
      .join("\n");
    if (text && stop > start) cues.push(`${vttTime(start)} --> ${vttTime(stop)}\n${text.replace(/-->/g, "->")}`);
  }
  if (cues.length === 0) throw new Error("the TTML document has no timed <p> cues");
  return `WEBVTT\n\n${cues.join("\n\n")}\n`;
}

function vttTime(seconds: number): string {
  const ms = Math.round(seconds * 1000);
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = Math.floor((ms % 60_000) / 1000);
  return `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}.${String(ms % 1000).padStart(3, "0")}`;
}
