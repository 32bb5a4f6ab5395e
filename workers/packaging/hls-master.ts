import type { PackagedRendition } from "./packaged.js";

const quote = (value: string) => `"${value.replace(/["\r\n]/g, "")}"`;
const SUBTITLE_GROUP = "subs";

/** Audio renditions grouped by codec: a variant can only switch between tracks of one codec. */
function audioGroups(audio: PackagedRendition[]): Array<{ id: string; codec: string; tracks: PackagedRendition[] }> {
  const groups = new Map<string, PackagedRendition[]>();
  for (const track of audio) groups.set(track.codec, [...(groups.get(track.codec) ?? []), track]);
  return [...groups].map(([codec, tracks]) => ({ id: `audio-${codec.split(".")[0]!.replace(/[^a-z0-9]/gi, "")}`, codec, tracks }));
}

/**
 * The HLS master playlist (RFC 8216 §4.3.4), written from measured renditions rather than taken
 * from ffmpeg (whose master has no CODECS for VP9/AV1/Opus, BANDWIDTH = nominal + 10 %, and which
 * the 2018 npm build cannot write at all for several variants):
 * - BANDWIDTH = the variant's peak segment bit rate + the largest peak of its audio group, and
 *   AVERAGE-BANDWIDTH the same with averages (§4.3.4.2);
 * - CODECS from the sample entries, RESOLUTION, FRAME-RATE, CLOSED-CAPTIONS=NONE;
 * - one EXT-X-MEDIA per subtitle track (WebVTT, one segment) with LANGUAGE, NAME, DEFAULT, FORCED
 *   and, for hearing-impaired tracks, Apple's accessibility CHARACTERISTICS;
 * - one EXT-X-MEDIA per audio track with LANGUAGE, NAME, DEFAULT, AUTOSELECT, CHANNELS. Tracks of
 *   different codecs go into different groups, and each video variant is listed once per group
 *   (Apple's HLS authoring spec does the same).
 */
export function buildMasterPlaylist(renditions: PackagedRendition[]): string {
  const video = renditions.filter((r) => r.kind === "video");
  const groups = audioGroups(renditions.filter((r) => r.kind === "audio"));
  const lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS", ""];
  for (const group of groups) {
    const defaultIndex = Math.max(0, group.tracks.findIndex((t) => t.isDefault));
    group.tracks.forEach((track, i) => {
      const attributes = [
        "TYPE=AUDIO",
        `GROUP-ID=${quote(group.id)}`,
        ...(track.language ? [`LANGUAGE=${quote(track.language)}`] : []),
        `NAME=${quote(track.name || `Audio ${i + 1}`)}`,
        `DEFAULT=${i === defaultIndex ? "YES" : "NO"}`,
        "AUTOSELECT=YES",
        ...(track.channels ? [`CHANNELS=${quote(String(track.channels))}`] : []),
        `URI=${quote(track.playlistUri)}`,
      ];
      lines.push(`#EXT-X-MEDIA:${attributes.join(",")}`);
    });
  }
  const subtitles = renditions.filter((r) => r.kind === "subtitles");
  subtitles.forEach((track, i) => {
    const attributes = [
      "TYPE=SUBTITLES",
      `GROUP-ID=${quote(SUBTITLE_GROUP)}`,
      ...(track.language ? [`LANGUAGE=${quote(track.language)}`] : []),
      `NAME=${quote(track.name || `Subtitles ${i + 1}`)}`,
      `DEFAULT=${track.isDefault ? "YES" : "NO"}`,
      // RFC 8216 §4.3.4.1: FORCED=YES needs AUTOSELECT=YES; every track may be picked by language.
      "AUTOSELECT=YES",
      `FORCED=${track.forced ? "YES" : "NO"}`,
      ...(track.hearingImpaired ? [`CHARACTERISTICS=${quote("public.accessibility.transcribes-spoken-dialog,public.accessibility.describes-music-and-sound")}`] : []),
      `URI=${quote(track.playlistUri)}`,
    ];
    lines.push(`#EXT-X-MEDIA:${attributes.join(",")}`);
  });
  if (groups.length || subtitles.length) lines.push("");
  for (const group of groups.length ? groups : [undefined]) {
    const audioPeak = Math.max(0, ...(group?.tracks.map((t) => t.peakBps) ?? []));
    const audioAverage = Math.max(0, ...(group?.tracks.map((t) => t.averageBps) ?? []));
    for (const variant of video) {
      const attributes = [
        `BANDWIDTH=${variant.peakBps + audioPeak}`,
        `AVERAGE-BANDWIDTH=${variant.averageBps + audioAverage}`,
        `CODECS=${quote([variant.codec, ...(group ? [group.codec] : [])].join(","))}`,
        ...(variant.width && variant.height ? [`RESOLUTION=${variant.width}x${variant.height}`] : []),
        ...(variant.frameRate ? [`FRAME-RATE=${variant.frameRate.toFixed(3)}`] : []),
        ...(group ? [`AUDIO=${quote(group.id)}`] : []),
        ...(subtitles.length ? [`SUBTITLES=${quote(SUBTITLE_GROUP)}`] : []),
        "CLOSED-CAPTIONS=NONE",
      ];
      lines.push(`#EXT-X-STREAM-INF:${attributes.join(",")}`, variant.playlistUri);
    }
  }
  return `${lines.join("\n")}\n`;
}
