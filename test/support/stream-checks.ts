/**
 * Checks of a streaming output on disk, with real parsers (m3u8-parser, mpd-parser) and
 * ffprobe: what each test of HLS/DASH outputs asserts.
 */
import { readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Parser } from "m3u8-parser";
import { parse as parseMpd } from "mpd-parser";
import { ffprobeJson } from "./media.js";

export interface ParsedVariant {
  uri: string;
  bandwidth: number;
  averageBandwidth: number;
  codecs: string;
  width: number;
  height: number;
  frameRate: number;
  audioGroup?: string;
}

export interface ParsedAudio {
  group: string;
  name: string;
  language: string;
  isDefault: boolean;
  autoselect: boolean;
  uri: string;
  channels?: string;
}

export function parseM3u8(file: string) {
  const parser = new Parser();
  parser.push(readFileSync(file, "utf8"));
  parser.end();
  return parser.manifest;
}

/** The master playlist's variants and audio renditions, as m3u8-parser reads them. */
export function readMaster(file: string): { variants: ParsedVariant[]; audio: ParsedAudio[]; text: string } {
  const manifest = parseM3u8(file);
  const variants = (manifest.playlists ?? []).map((p: { uri: string; attributes: Record<string, unknown> }) => ({
    uri: p.uri,
    bandwidth: p.attributes.BANDWIDTH as number,
    averageBandwidth: Number(p.attributes["AVERAGE-BANDWIDTH"]),
    codecs: p.attributes.CODECS as string,
    width: (p.attributes.RESOLUTION as { width: number }).width,
    height: (p.attributes.RESOLUTION as { height: number }).height,
    frameRate: Number(p.attributes["FRAME-RATE"]),
    audioGroup: p.attributes.AUDIO as string | undefined,
  }));
  const audio: ParsedAudio[] = [];
  for (const [group, renditions] of Object.entries(manifest.mediaGroups?.AUDIO ?? {})) {
    for (const [name, r] of Object.entries(renditions as Record<string, { language: string; default: boolean; autoselect: boolean; uri: string }>)) {
      audio.push({ group, name, language: r.language, isDefault: r.default, autoselect: r.autoselect, uri: r.uri });
    }
  }
  return { variants, audio, text: readFileSync(file, "utf8") };
}

/** A media playlist's segments: local file, EXTINF duration, size; and its target duration. */
export function readMediaPlaylist(file: string): { targetDuration: number; init?: string; segments: Array<{ file: string; duration: number; bytes: number }> } {
  const manifest = parseM3u8(file);
  const dir = dirname(file);
  const segments = manifest.segments.map((s: { uri: string; duration: number }) => ({ file: join(dir, s.uri), duration: s.duration, bytes: statSync(join(dir, s.uri)).size }));
  const map = manifest.segments[0]?.map?.uri as string | undefined;
  return { targetDuration: manifest.targetDuration, init: map ? join(dir, map) : undefined, segments };
}

/** Largest bit rate of any single segment at least half a target duration long (a lower bound of the RFC 8216 peak). */
export function measuredPeak(playlist: ReturnType<typeof readMediaPlaylist>): number {
  const long = playlist.segments.filter((s) => s.duration >= playlist.targetDuration / 2);
  return Math.max(...long.map((s) => (s.bytes * 8) / s.duration));
}

export function readMpd(file: string) {
  return parseMpd(readFileSync(file, "utf8"), { manifestUri: pathToFileURL(file).toString() });
}

/** The RFC 6381 prefix ffprobe's view of a stream implies, to compare with CODECS. */
export async function codecOf(file: string): Promise<{ codec: string; profile?: string; width?: number; height?: number }> {
  const probe = await ffprobeJson(file);
  const stream = probe.streams[0];
  return { codec: stream.codec_name, profile: stream.profile, width: stream.width, height: stream.height };
}

/** RFC 6381 sample entry → ffprobe codec_name. */
export const CODEC_NAMES: Record<string, string> = { avc1: "h264", hvc1: "hevc", vp09: "vp9", av01: "av1", "mp4a": "aac", opus: "opus", "ac-3": "ac3", "ec-3": "eac3" };

export function localPath(url: string): string {
  return fileURLToPath(url);
}
