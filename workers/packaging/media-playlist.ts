/** One segment of a media playlist: its URI (relative to the playlist) and EXTINF duration. */
export interface PlaylistSegment {
  uri: string;
  durationS: number;
}

export interface MediaPlaylist {
  targetDurationS: number;
  /** EXT-X-MAP URI (fMP4 init segment), if any. */
  initUri?: string;
  segments: PlaylistSegment[];
}

/**
 * Reads a VOD media playlist as ffmpeg's hls muxer writes it (RFC 8216 §4.3): EXT-X-TARGETDURATION,
 * EXT-X-MAP and EXTINF + URI pairs. Byte ranges and discontinuities are not used by our muxer and
 * refused rather than misread.
 */
export function parseMediaPlaylist(text: string): MediaPlaylist {
  const lines = text.split(/\r?\n/).map((line) => line.trim()).filter(Boolean);
  if (lines[0] !== "#EXTM3U") throw new Error("not an HLS playlist (no #EXTM3U)");
  let targetDurationS = 0;
  let initUri: string | undefined;
  let pending: number | undefined;
  const segments: PlaylistSegment[] = [];
  for (const line of lines.slice(1)) {
    if (line.startsWith("#EXT-X-TARGETDURATION:")) targetDurationS = Number(line.slice(22));
    else if (line.startsWith("#EXT-X-MAP:")) initUri = /URI="([^"]+)"/.exec(line)?.[1];
    else if (line.startsWith("#EXTINF:")) pending = Number.parseFloat(line.slice(8));
    else if (line.startsWith("#EXT-X-BYTERANGE") || line.startsWith("#EXT-X-DISCONTINUITY")) throw new Error(`unexpected ${line.split(":")[0]} in a media playlist`);
    else if (!line.startsWith("#")) {
      if (pending === undefined || !Number.isFinite(pending)) throw new Error(`segment ${line} has no EXTINF duration`);
      segments.push({ uri: line, durationS: pending });
      pending = undefined;
    }
  }
  if (segments.length === 0) throw new Error("the playlist lists no segments");
  return { targetDurationS, initUri, segments };
}
