import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { formatOf, segmentContainerOf } from "../../services/jobs/output-formats.js";
import type { StreamRendition } from "../ffmpeg/transcode.js";
import type { MediaInfo, StreamTarget } from "../ffmpeg/types.js";
import { averageBitrate, peakBitrate, type MeasuredSegment } from "./bitrate.js";
import { buildMpd } from "./dash-mpd.js";
import { buildMasterPlaylist } from "./hls-master.js";
import { parseMediaPlaylist } from "./media-playlist.js";
import type { PackagedRendition } from "./packaged.js";
import { readFragmentStart, readTrackInfo, type TrackInfo } from "./track-info.js";

/** What a segmented output wrote, ready for upload as a whole. */
export interface ArtifactSet {
  /** Every file, with its path relative to the output's directory, in upload order (segments first, the manifests naming them last). */
  files: Array<{ local: string; relative: string }>;
  /** The manifest `output_url` names: master.m3u8 (hls, adaptive) or manifest.mpd (dash). */
  primary: string;
  /** Every playlist and manifest, relative: master/MPD first, then the media playlists. */
  manifests: string[];
  /** The WebVTT files of the subtitle renditions, relative. */
  subtitleFiles: string[];
  /** Longest video rendition, from its segments. */
  durationMs: number;
  renditions: PackagedRendition[];
}

export const MASTER_PLAYLIST = "master.m3u8";
export const DASH_MANIFEST = "manifest.mpd";

export interface PackageOptions {
  /** MPEG-TS only: copies the first segment of a rendition into an mp4 file (so its sample entry can be read). */
  remuxToMp4(segment: string, mp4: string): Promise<void>;
  /** MPEG-TS with subtitles: the first video frame's PTS (90 kHz) in a segment, for X-TIMESTAMP-MAP. */
  firstVideoPts(segment: string): Promise<number>;
}

/**
 * Measures every rendition of an encoded segmented output (segment sizes and durations, codec
 * strings from the init segments, segment start times) and writes the master playlist and/or
 * the MPD next to them.
 */
export async function packageStream(target: StreamTarget, renditions: StreamRendition[], info: MediaInfo, options: PackageOptions): Promise<ArtifactSet> {
  const manifests = formatOf(target.spec.type)?.manifests;
  if (!manifests) throw new Error("packageStream needs a segmented output");
  const container = segmentContainerOf(target.spec);
  const measured = await Promise.all(renditions.map((rendition) => measureRendition(target, rendition, info, container, manifests.dash, options)));
  const packaged = measured.map((m) => m.packaged);
  alignPresentationStart(packaged);
  const firstVideoSegment = measured.find((m) => m.packaged.kind === "video")!.segments[0]!;
  const subtitles = await writeSubtitleRenditions(target, packaged, container, firstVideoSegment, options);
  packaged.push(...subtitles.map((s) => s.packaged));

  const files = [...measured.flatMap((m) => [...(m.init ? [m.init] : []), ...m.segments]), ...subtitles.map((s) => s.file)].map((local) => ({ local, relative: path.relative(target.dir, local) }));
  const written: string[] = [];
  if (manifests.hls) {
    await writeFile(path.join(target.dir, MASTER_PLAYLIST), buildMasterPlaylist(packaged));
    written.push(MASTER_PLAYLIST);
  }
  if (manifests.dash) {
    await writeFile(path.join(target.dir, DASH_MANIFEST), buildMpd(packaged));
    written.push(DASH_MANIFEST);
  }
  const mediaPlaylists = manifests.hls ? packaged.map((p) => p.playlistUri) : [];
  const ordered = [...mediaPlaylists, ...written.slice().reverse()];
  files.push(...ordered.map((relative) => ({ local: path.join(target.dir, relative), relative })));
  const video = packaged.filter((p) => p.kind === "video");
  return {
    files,
    subtitleFiles: subtitles.map((s) => path.relative(target.dir, s.file)),
    primary: written[0]!,
    manifests: [...written, ...mediaPlaylists],
    durationMs: Math.round(Math.max(...video.map((p) => p.durationS)) * 1000),
    renditions: packaged,
  };
}

async function measureRendition(
  target: StreamTarget,
  rendition: StreamRendition,
  info: MediaInfo,
  container: "fmp4" | "ts",
  dash: boolean,
  options: PackageOptions,
): Promise<{ packaged: PackagedRendition; init?: string; segments: string[] }> {
  const playlist = parseMediaPlaylist(await readFile(path.join(rendition.dir, "index.m3u8"), "utf8"));
  const segments = playlist.segments.map((s) => path.join(rendition.dir, s.uri));
  const sizes: MeasuredSegment[] = await Promise.all(playlist.segments.map(async (s, i) => ({ bytes: (await stat(segments[i]!)).size, durationS: s.durationS })));
  const init = playlist.initUri ? path.join(rendition.dir, playlist.initUri) : undefined;
  let track: TrackInfo;
  if (init) {
    track = await readTrackInfo(init);
  } else {
    const probe = path.join(target.dir, `.${rendition.id}-probe.mp4`);
    await options.remuxToMp4(segments[0]!, probe);
    track = await readTrackInfo(probe);
  }
  const durationS = playlist.segments.reduce((sum, s) => sum + s.durationS, 0);
  const relativeDir = path.relative(target.dir, rendition.dir);
  const packaged: PackagedRendition = {
    id: rendition.id,
    kind: rendition.kind,
    playlistUri: `${relativeDir}/index.m3u8`,
    codec: track.codec,
    peakBps: peakBitrate(sizes, playlist.targetDurationS),
    averageBps: averageBitrate(sizes),
    durationS,
  };
  if (rendition.kind === "video") {
    Object.assign(packaged, { width: track.width, height: track.height, frameRate: rendition.variant!.framerate || info.framerate || undefined });
  } else {
    const language = bcp47(rendition.track?.language);
    const name = rendition.track?.label || (language ? languageName(language) : undefined);
    Object.assign(packaged, { channels: track.channels, sampleRate: track.sampleRate, language, name, isDefault: rendition.track?.default ?? false });
  }
  if (dash && container === "fmp4" && init) {
    const starts = await Promise.all(segments.map((segment) => readFragmentStart(segment)));
    const lastDuration = Math.round(playlist.segments.at(-1)!.durationS * track.timescale);
    packaged.segments = {
      timescale: track.timescale,
      initUri: `${relativeDir}/${playlist.initUri}`,
      mediaTemplate: `${relativeDir}/${segmentPattern(playlist.segments[0]!.uri)}`,
      startNumber: segmentNumber(playlist.segments[0]!.uri),
      presentationTimeOffset: 0,
      timeline: starts.map((start, i) => ({ start, duration: i + 1 < starts.length ? starts[i + 1]! - start : lastDuration })),
    };
  }
  return { packaged, init, segments };
}

/** seg_00001.m4s → seg_$Number%05d$.m4s (the hls muxer's `seg_%05d` names). */
function segmentPattern(uri: string): string {
  const match = /^(.*?)(\d+)(\.\w+)$/.exec(uri);
  if (!match) throw new Error(`segment name ${uri} has no number`);
  return `${match[1]}$Number%0${match[2]!.length}d$${match[3]}`;
}

function segmentNumber(uri: string): number {
  return Number(/(\d+)\.\w+$/.exec(uri)?.[1] ?? 1);
}

/** ISO 639-2 ("eng", as the API takes it) → BCP 47 ("en", as HLS LANGUAGE and DASH @lang want it). */
export function bcp47(language: string | undefined): string | undefined {
  if (!language || language === "und") return undefined;
  try {
    return Intl.getCanonicalLocales(language)[0];
  } catch {
    return language;
  }
}

function languageName(language: string): string | undefined {
  try {
    return new Intl.DisplayNames(["en"], { type: "language" }).of(language);
  } catch {
    return undefined;
  }
}

/**
 * The MPD's presentationTimeOffset: the earliest first-segment time over all renditions, in each
 * one's timescale, so the period starts where the first media does (one instant for every
 * rendition: they stay in sync) rather than after a gap players would have to jump.
 */
function alignPresentationStart(renditions: PackagedRendition[]): void {
  const timed = renditions.filter((r) => r.segments?.timeline.length);
  if (timed.length === 0) return;
  const start = Math.min(...timed.map((r) => r.segments!.timeline[0]!.start / r.segments!.timescale));
  for (const r of timed) r.segments!.presentationTimeOffset = Math.floor(start * r.segments!.timescale);
}

/**
 * One WebVTT rendition per passthrough/convert subtitle track: `s<i>/subtitles.vtt`, and for HLS
 * a one-segment playlist naming it (PeerTube's way: ffmpeg's own WebVTT segmenting allows one
 * track per variant, names them subtitle_N and cuts cues at keyframes). MPEG-TS segments start
 * at a PTS of their own, so the file maps its zero onto the first video frame's PTS with
 * X-TIMESTAMP-MAP (RFC 8216 §3.5; without it cues show ~11 s early, measured in hls.js). fMP4
 * segments start at the media's zero and need no map.
 */
async function writeSubtitleRenditions(
  target: StreamTarget,
  packaged: PackagedRendition[],
  container: "fmp4" | "ts",
  firstVideoSegment: string,
  options: PackageOptions,
): Promise<Array<{ packaged: PackagedRendition; file: string }>> {
  const tracks = (target.subtitles ?? []).filter((s) => s.track.operation === "passthrough" || s.track.operation === "convert");
  if (tracks.length === 0) return [];
  const video = packaged.find((p) => p.kind === "video")!;
  const durationS = video.durationS;
  let timestampMap = "";
  if (container === "ts") {
    const pts = await options.firstVideoPts(firstVideoSegment);
    timestampMap = `X-TIMESTAMP-MAP=MPEGTS:${pts},LOCAL:00:00:00.000\n`;
  }
  const written: Array<{ packaged: PackagedRendition; file: string }> = [];
  for (const [n, prepared] of tracks.entries()) {
    const id = `s${n}`;
    const dir = path.join(target.dir, id);
    await mkdir(dir, { recursive: true });
    const text = (await readFile(prepared.vtt, "utf8")).replace(/^\uFEFF/, "");
    const [header, ...rest] = text.split(/\r?\n/);
    const file = path.join(dir, "subtitles.vtt");
    await writeFile(file, [header, ...(timestampMap ? [timestampMap.trimEnd()] : []), ...rest].join("\n"));
    const playlist = ["#EXTM3U", "#EXT-X-VERSION:3", `#EXT-X-TARGETDURATION:${Math.ceil(durationS)}`, "#EXT-X-MEDIA-SEQUENCE:1", "#EXT-X-PLAYLIST-TYPE:VOD", `#EXTINF:${durationS.toFixed(6)},`, "subtitles.vtt", "#EXT-X-ENDLIST", ""].join("\n");
    await writeFile(path.join(dir, "index.m3u8"), playlist);
    const language = bcp47(prepared.track.language);
    const bytes = (await stat(file)).size;
    written.push({
      file,
      packaged: {
        id,
        kind: "subtitles",
        playlistUri: `${id}/index.m3u8`,
        fileUri: `${id}/subtitles.vtt`,
        codec: "wvtt",
        peakBps: Math.ceil((bytes * 8) / Math.max(1, durationS)),
        averageBps: Math.ceil((bytes * 8) / Math.max(1, durationS)),
        durationS,
        language,
        name: prepared.track.label || (language ? languageName(language) : undefined),
        isDefault: prepared.track.default,
        forced: prepared.track.forced,
        hearingImpaired: prepared.track.hearingImpaired,
      },
    });
  }
  return written;
}
