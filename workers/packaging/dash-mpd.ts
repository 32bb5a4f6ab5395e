import type { PackagedRendition } from "./packaged.js";

const escapeXml = (value: string) => value.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** xs:duration with millisecond precision: PT12.345S. */
function isoDuration(seconds: number): string {
  return `PT${(Math.round(seconds * 1000) / 1000).toFixed(3)}S`;
}

/** `<S t d r>` runs: equal consecutive durations folded into one element (ISO/IEC 23009-1 §5.3.9.6). */
function segmentTimeline(timeline: Array<{ start: number; duration: number }>): string[] {
  const runs: Array<{ start: number; duration: number; repeat: number }> = [];
  for (const segment of timeline) {
    const last = runs.at(-1);
    if (last && last.duration === segment.duration && last.start + last.duration * (last.repeat + 1) === segment.start) last.repeat++;
    else runs.push({ ...segment, repeat: 0 });
  }
  return runs.map((run, i) => {
    // t only where the timeline does not simply continue from the previous run.
    const previous = runs[i - 1];
    const continues = previous && previous.start + previous.duration * (previous.repeat + 1) === run.start;
    return `<S${continues ? "" : ` t="${run.start}"`} d="${run.duration}"${run.repeat ? ` r="${run.repeat}"` : ""}/>`;
  });
}

function segmentTemplate(rendition: PackagedRendition, indent: string): string[] {
  const s = rendition.segments;
  if (!s) throw new Error(`rendition ${rendition.id} has no fMP4 segments for DASH`);
  return [
    `${indent}<SegmentTemplate timescale="${s.timescale}" initialization="${escapeXml(s.initUri)}" media="${escapeXml(s.mediaTemplate)}" startNumber="${s.startNumber}" presentationTimeOffset="${s.presentationTimeOffset}">`,
    `${indent}  <SegmentTimeline>`,
    ...segmentTimeline(s.timeline).map((line) => `${indent}    ${line}`),
    `${indent}  </SegmentTimeline>`,
    `${indent}</SegmentTemplate>`,
  ];
}

/** Video renditions that can switch among each other: same codec family (avc1, hvc1, vp09, av01). */
function videoSets(video: PackagedRendition[]): PackagedRendition[][] {
  const sets = new Map<string, PackagedRendition[]>();
  for (const rendition of video) {
    const family = rendition.codec.split(".")[0]!;
    sets.set(family, [...(sets.get(family) ?? []), rendition]);
  }
  return [...sets.values()];
}

/**
 * A static (VOD) MPD over the same fMP4 segments the HLS playlists list (ISO/IEC 23009-1, the
 * isoff-live profile: SegmentTemplate + SegmentTimeline built from each segment's tfdt, so
 * segment times are exact, not rounded EXTINF sums). One AdaptationSet per video codec family,
 * one per audio track (lang, Label, Role main for the default track, AudioChannelConfiguration),
 * one text AdaptationSet per subtitle track (a WebVTT sidecar; Role subtitle, caption or
 * forced-subtitle).
 * bandwidth is the peak segment bit rate, as in the HLS master.
 */
export function buildMpd(renditions: PackagedRendition[]): string {
  const video = renditions.filter((r) => r.kind === "video");
  const audio = renditions.filter((r) => r.kind === "audio");
  const duration = Math.max(0, ...renditions.filter((r) => r.kind !== "subtitles").map((r) => r.durationS));
  const minSegment = Math.max(1, ...video.map((r) => Math.ceil(Math.max(...(r.segments?.timeline.map((t) => t.duration / r.segments!.timescale) ?? [0])))));
  const lines = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="static" mediaPresentationDuration="${isoDuration(duration)}" minBufferTime="${isoDuration(minSegment)}">`,
    `  <Period id="0" start="PT0S">`,
  ];
  let setId = 0;
  for (const set of videoSets(video)) {
    const maxWidth = Math.max(...set.map((r) => r.width ?? 0));
    const maxHeight = Math.max(...set.map((r) => r.height ?? 0));
    lines.push(`    <AdaptationSet id="${setId++}" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1" maxWidth="${maxWidth}" maxHeight="${maxHeight}">`);
    for (const r of set) {
      const frameRate = r.frameRate ? ` frameRate="${frameRateAttribute(r.frameRate)}"` : "";
      lines.push(`      <Representation id="${r.id}" codecs="${escapeXml(r.codec)}" bandwidth="${r.peakBps}" width="${r.width}" height="${r.height}"${frameRate}>`);
      lines.push(...segmentTemplate(r, "        "), `      </Representation>`);
    }
    lines.push(`    </AdaptationSet>`);
  }
  const defaultIndex = Math.max(0, audio.findIndex((t) => t.isDefault));
  audio.forEach((r, i) => {
    const lang = r.language ? ` lang="${escapeXml(r.language)}"` : "";
    lines.push(`    <AdaptationSet id="${setId++}" contentType="audio" mimeType="audio/mp4"${lang} segmentAlignment="true" startWithSAP="1">`);
    lines.push(`      <Role schemeIdUri="urn:mpeg:dash:role:2011" value="${i === defaultIndex ? "main" : "alternate"}"/>`);
    if (r.name) lines.push(`      <Label>${escapeXml(r.name)}</Label>`);
    lines.push(`      <Representation id="${r.id}" codecs="${escapeXml(r.codec)}" bandwidth="${r.peakBps}"${r.sampleRate ? ` audioSamplingRate="${r.sampleRate}"` : ""}>`);
    if (r.channels) lines.push(`        <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="${r.channels}"/>`);
    lines.push(...segmentTemplate(r, "        "), `      </Representation>`, `    </AdaptationSet>`);
  });
  for (const r of renditions.filter((t) => t.kind === "subtitles")) {
    // A sidecar WebVTT file per track: the dash muxer refuses WebVTT, players take it this way.
    const lang = r.language ? ` lang="${escapeXml(r.language)}"` : "";
    lines.push(`    <AdaptationSet id="${setId++}" contentType="text" mimeType="text/vtt"${lang}>`);
    const role = r.forced ? "forced-subtitle" : r.hearingImpaired ? "caption" : "subtitle";
    lines.push(`      <Role schemeIdUri="urn:mpeg:dash:role:2011" value="${role}"/>`);
    if (r.name) lines.push(`      <Label>${escapeXml(r.name)}</Label>`);
    lines.push(`      <Representation id="${r.id}" bandwidth="${Math.max(1, r.averageBps)}">`, `        <BaseURL>${escapeXml(r.fileUri!)}</BaseURL>`, `      </Representation>`);
    lines.push(`    </AdaptationSet>`);
  }
  lines.push(`  </Period>`, `</MPD>`);
  return `${lines.join("\n")}\n`;
}

/** 30 → "30", 29.97 → "30000/1001", 23.976 → "24000/1001"; other rates as a ratio over 1000. */
function frameRateAttribute(fps: number): string {
  if (Number.isInteger(fps)) return String(fps);
  for (const base of [24, 30, 60, 120]) {
    if (Math.abs(fps - (base * 1000) / 1001) < 0.01) return `${base * 1000}/1001`;
  }
  return `${Math.round(fps * 1000)}/1000`;
}
