import { describe, expect, it } from "vitest";
import { averageBitrate, peakBitrate } from "../../workers/packaging/bitrate.js";
import { buildMpd } from "../../workers/packaging/dash-mpd.js";
import { buildMasterPlaylist } from "../../workers/packaging/hls-master.js";
import { parseMediaPlaylist } from "../../workers/packaging/media-playlist.js";
import type { PackagedRendition } from "../../workers/packaging/packaged.js";
import { bcp47 } from "../../workers/packaging/package-stream.js";

describe("media playlists", () => {
  it("reads ffmpeg's VOD playlist: target duration, init segment, segments", () => {
    const text = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:6.000000,\nseg_00001.m4s\n#EXTINF:2.5,\nseg_00002.m4s\n#EXT-X-ENDLIST\n";
    expect(parseMediaPlaylist(text)).toEqual({ targetDurationS: 6, initUri: "init.mp4", segments: [{ uri: "seg_00001.m4s", durationS: 6 }, { uri: "seg_00002.m4s", durationS: 2.5 }] });
    expect(() => parseMediaPlaylist("#EXTM3U\n#EXT-X-ENDLIST\n")).toThrow(/no segments/);
    expect(() => parseMediaPlaylist("seg.ts\n")).toThrow(/not an HLS playlist/);
    expect(() => parseMediaPlaylist("#EXTM3U\n#EXT-X-BYTERANGE:100@0\n#EXTINF:1,\na.ts\n")).toThrow(/BYTERANGE/);
  });
});

describe("RFC 8216 bit rates", () => {
  it("takes the peak over runs of 0.5-1.5 target durations, not one short segment", () => {
    // 6 s target: segments of 6 s at 1, 3 and 1 Mb/s, then a 0.5 s tail at 8 Mb/s.
    const segments = [
      { bytes: 750_000, durationS: 6 },
      { bytes: 2_250_000, durationS: 6 },
      { bytes: 750_000, durationS: 6 },
      { bytes: 500_000, durationS: 0.5 },
    ];
    // The tail alone is shorter than 3 s; with the segment before it: (750000+500000)*8/6.5.
    expect(peakBitrate(segments, 6)).toBe(3_000_000);
    expect(peakBitrate([{ bytes: 1000, durationS: 1 }], 6)).toBe(8000);
    expect(averageBitrate(segments)).toBe(Math.ceil((4_250_000 * 8) / 18.5));
  });
});

const video = (id: string, width: number, height: number, peak: number): PackagedRendition => ({
  id,
  kind: "video",
  playlistUri: `${id}/index.m3u8`,
  codec: "avc1.64001f",
  peakBps: peak,
  averageBps: peak - 1000,
  durationS: 12,
  width,
  height,
  frameRate: 29.97,
  segments: { timescale: 15360, initUri: `${id}/init.mp4`, mediaTemplate: `${id}/seg_$Number%05d$.m4s`, startNumber: 1, presentationTimeOffset: 0, timeline: [{ start: 0, duration: 92160 }, { start: 92160, duration: 92160 }] },
});
const audio = (id: string, language: string, name: string, isDefault: boolean, codec = "mp4a.40.2"): PackagedRendition => ({
  id,
  kind: "audio",
  playlistUri: `${id}/index.m3u8`,
  codec,
  peakBps: 130_000,
  averageBps: 128_000,
  durationS: 12.02,
  channels: 2,
  sampleRate: 48000,
  language,
  name,
  isDefault,
  segments: { timescale: 48000, initUri: `${id}/init.mp4`, mediaTemplate: `${id}/seg_$Number%05d$.m4s`, startNumber: 1, presentationTimeOffset: 0, timeline: [{ start: 0, duration: 288768 }, { start: 288768, duration: 287232 }, { start: 576000, duration: 1024 }] },
});

describe("the HLS master playlist", () => {
  it("adds the audio peak to each variant, lists tracks with language, name and default", () => {
    const text = buildMasterPlaylist([video("v0", 1280, 720, 2_000_000), video("v1", 640, 360, 600_000), audio("a0", "en", "English", false), audio("a1", "fr", "Français", true)]);
    expect(text).toBe(
      [
        "#EXTM3U",
        "#EXT-X-VERSION:6",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        "",
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio-mp4a",LANGUAGE="en",NAME="English",DEFAULT=NO,AUTOSELECT=YES,CHANNELS="2",URI="a0/index.m3u8"',
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio-mp4a",LANGUAGE="fr",NAME="Français",DEFAULT=YES,AUTOSELECT=YES,CHANNELS="2",URI="a1/index.m3u8"',
        "",
        '#EXT-X-STREAM-INF:BANDWIDTH=2130000,AVERAGE-BANDWIDTH=2127000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=29.970,AUDIO="audio-mp4a",CLOSED-CAPTIONS=NONE',
        "v0/index.m3u8",
        '#EXT-X-STREAM-INF:BANDWIDTH=730000,AVERAGE-BANDWIDTH=727000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=640x360,FRAME-RATE=29.970,AUDIO="audio-mp4a",CLOSED-CAPTIONS=NONE',
        "v1/index.m3u8",
        "",
      ].join("\n"),
    );
  });

  it("lists each variant once per audio codec group, and no AUDIO without audio", () => {
    const grouped = buildMasterPlaylist([video("v0", 1280, 720, 2_000_000), audio("a0", "en", "English", true), audio("a1", "en", "English 5.1", false, "ec-3")]);
    expect(grouped.match(/^#EXT-X-STREAM-INF.*$/gm)).toEqual([
      expect.stringContaining('CODECS="avc1.64001f,mp4a.40.2"'),
      expect.stringContaining('CODECS="avc1.64001f,ec-3",RESOLUTION=1280x720,FRAME-RATE=29.970,AUDIO="audio-ec3"'),
    ]);
    // Each group has its own default.
    expect(grouped.match(/DEFAULT=YES/g)).toHaveLength(2);
    const silent = buildMasterPlaylist([video("v0", 1280, 720, 2_000_000)]);
    expect(silent).toContain('#EXT-X-STREAM-INF:BANDWIDTH=2000000,AVERAGE-BANDWIDTH=1999000,CODECS="avc1.64001f",RESOLUTION=1280x720,FRAME-RATE=29.970,CLOSED-CAPTIONS=NONE\nv0/index.m3u8');
    expect(silent).not.toContain("EXT-X-MEDIA");
  });
});

describe("the DASH MPD", () => {
  it("is a static isoff-live MPD with SegmentTimeline from the measured segment times", () => {
    const mpd = buildMpd([video("v0", 1280, 720, 2_000_000), video("v1", 640, 360, 600_000), audio("a0", "en", "English", true)]);
    expect(mpd).toContain('type="static" mediaPresentationDuration="PT12.020S" minBufferTime="PT6.000S"');
    expect(mpd).toContain('<AdaptationSet id="0" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1" maxWidth="1280" maxHeight="720">');
    expect(mpd).toContain('<Representation id="v1" codecs="avc1.64001f" bandwidth="600000" width="640" height="360" frameRate="30000/1001">');
    expect(mpd).toContain('<SegmentTemplate timescale="15360" initialization="v0/init.mp4" media="v0/seg_$Number%05d$.m4s" startNumber="1" presentationTimeOffset="0">');
    expect(mpd).toContain('<S t="0" d="92160" r="1"/>');
    expect(mpd).toMatch(/<S t="0" d="288768"\/>\s+<S d="287232"\/>\s+<S d="1024"\/>/);
    expect(mpd).toContain('<AdaptationSet id="1" contentType="audio" mimeType="audio/mp4" lang="en" segmentAlignment="true" startWithSAP="1">');
    expect(mpd).toContain('<Role schemeIdUri="urn:mpeg:dash:role:2011" value="main"/>');
    expect(mpd).toContain('<AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="2"/>');
  });

  it("puts different codec families in different adaptation sets and escapes labels", () => {
    const mpd = buildMpd([video("v0", 1280, 720, 2_000_000), { ...video("v1", 1280, 720, 1_500_000), codec: "vp09.00.31.08" }, audio("a0", "en", "Tom & \"Jerry\"", true)]);
    expect(mpd.match(/contentType="video"/g)).toHaveLength(2);
    expect(mpd).toContain("<Label>Tom &#38; &#34;Jerry&#34;</Label>");
  });
});

describe("languages", () => {
  it("maps the API's ISO 639-2 codes to BCP 47, dropping und", () => {
    expect([bcp47("eng"), bcp47("fra"), bcp47("deu"), bcp47("und"), bcp47("")]).toEqual(["en", "fr", "de", undefined, undefined]);
  });
});
