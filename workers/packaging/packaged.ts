/** A rendition after encoding, with everything the manifests say about it measured. */
export interface PackagedRendition {
  /** "v0", "a1": its directory under the output. */
  id: string;
  kind: "video" | "audio" | "subtitles";
  /** The media playlist, relative to the output directory ("v0/index.m3u8"). */
  playlistUri: string;
  /** RFC 6381 codec string from the init segment's sample entry. */
  codec: string;
  /** RFC 8216 peak segment bit rate and the average, bits per second. */
  peakBps: number;
  averageBps: number;
  /** Sum of the segments' durations, seconds. */
  durationS: number;
  width?: number;
  height?: number;
  frameRate?: number;
  channels?: number;
  sampleRate?: number;
  /** BCP 47 language ("en"), or undefined when the track has none. */
  language?: string;
  /** Human-readable track name (the track's label, else the language's name). */
  name?: string;
  isDefault?: boolean;
  /** Subtitles: FORCED / forced-subtitle role, and the accessibility characteristics. */
  forced?: boolean;
  hearingImpaired?: boolean;
  /** Subtitles: the WebVTT file itself, relative to the output directory ("s0/subtitles.vtt"). */
  fileUri?: string;
  /** fMP4 only (DASH): the init segment, a SegmentTemplate media pattern and the timeline. */
  segments?: {
    timescale: number;
    initUri: string;
    /** e.g. "v0/seg_$Number%05d$.m4s" */
    mediaTemplate: string;
    startNumber: number;
    /** Media time at which the presentation starts (every rendition's timeline is offset by the same amount). */
    presentationTimeOffset: number;
    /** Start and duration of each segment, in `timescale` units. */
    timeline: Array<{ start: number; duration: number }>;
  };
}
