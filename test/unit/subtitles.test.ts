import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { OutputType, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { OutputSpecSchema, SubtitleTrackSchema } from "../../gen/rendition/v1/job_pb.js";
import { burnInFilter, embeddedCodec, sidecarName, sniffSubtitleFormat, ttmlToWebVtt, type PreparedSubtitle } from "../../workers/ffmpeg/subtitles.js";
import { buildTranscodeCommand } from "../../workers/ffmpeg/transcode.js";
import type { MediaInfo } from "../../workers/ffmpeg/types.js";
import { buildMasterPlaylist } from "../../workers/packaging/hls-master.js";
import { buildMpd } from "../../workers/packaging/dash-mpd.js";
import type { PackagedRendition } from "../../workers/packaging/packaged.js";

const INFO: MediaInfo = {
  durationMs: 6000,
  width: 640,
  height: 360,
  videoCodec: "h264",
  bitrateKbps: 1000,
  framerate: 30,
  fileSizeBytes: 1,
  container: "matroska,webm",
  audioStreams: [{ index: 0, codec: "aac", channels: 2, sampleRate: 48000, bitrateKbps: 128, language: "eng" }],
  subtitleStreams: [{ index: 0, codec: "subrip", language: "eng" }],
};

function prepared(index: number, init: Parameters<typeof create<typeof SubtitleTrackSchema>>[1], format: PreparedSubtitle["format"] = "srt"): PreparedSubtitle {
  return { index, track: create(SubtitleTrackSchema, init), file: `/tmp/job/subtitle-${index}.${format === "webvtt" ? "vtt" : format}`, format, vtt: `/tmp/job/subtitle-${index}.vtt` };
}

describe("subtitle formats", () => {
  it("recognises a fetched file by its content", () => {
    expect(sniffSubtitleFormat("\uFEFFWEBVTT\n\n00:01.000 --> 00:02.000\nhi")).toBe("webvtt");
    expect(sniffSubtitleFormat("1\r\n00:00:01,000 --> 00:00:02,000\r\nhi")).toBe("srt");
    expect(sniffSubtitleFormat("[Script Info]\nScriptType: v4.00+")).toBe("ass");
    expect(sniffSubtitleFormat('<?xml version="1.0"?>\n<tt xmlns="http://www.w3.org/ns/ttml">')).toBe("ttml");
    expect(sniffSubtitleFormat("<html><body>404</body></html>")).toBeUndefined();
  });

  it("turns TTML into WebVTT: clock, offset and tick times, line breaks, entities", () => {
    const ttml = `<tt xmlns="http://www.w3.org/ns/ttml" xmlns:ttp="http://www.w3.org/ns/ttml#parameter" ttp:tickRate="10000000"><body><div>
      <p begin="00:00:01.500" end="00:00:03.000">Hello<br/>there &amp; more</p>
      <p begin="4s" dur="500ms"><span tts:color="red">Short</span></p>
      <p begin="50000000t" end="60000000t">Ticks</p>
      <p>untimed</p></div></body></tt>`;
    expect(ttmlToWebVtt(ttml)).toBe(
      "WEBVTT\n\n00:00:01.500 --> 00:00:03.000\nHello\nthere & more\n\n00:00:04.000 --> 00:00:04.500\nShort\n\n00:00:05.000 --> 00:00:06.000\nTicks\n",
    );
    expect(() => ttmlToWebVtt("<tt><body/></tt>")).toThrow(/no timed/);
  });

  it("picks the codec a container carries: mov_text in mp4, WebVTT in webm, the track's own in mkv", () => {
    const track = create(SubtitleTrackSchema, { operation: "passthrough" });
    expect(embeddedCodec(OutputType.MP4, track, "srt")).toBe("mov_text");
    expect(embeddedCodec(OutputType.WEBM, track, "ass")).toBe("webvtt");
    expect(embeddedCodec(OutputType.MKV, track, "ass")).toBe("ass");
    expect(embeddedCodec(OutputType.MKV, create(SubtitleTrackSchema, { operation: "convert", format: "webvtt" }), "srt")).toBe("webvtt");
  });

  it("names sidecars after the output, by track index and language", () => {
    expect(sidecarName("job_1/out_1.mp4", false, prepared(2, { operation: "extract", language: "fra", format: "srt" }))).toBe("out_1.2.fra.srt");
    expect(sidecarName("job_1/out_2", true, prepared(0, { operation: "extract" }))).toBe("subtitles_0.vtt");
  });

  it("refuses a burn-in path the filter graph would misread", () => {
    expect(burnInFilter("/tmp/job/subtitle-0.srt")).toBe("subtitles=filename=/tmp/job/subtitle-0.srt");
    expect(() => burnInFilter("/tmp/it's:here.srt")).toThrow(/filter graph/);
  });
});

describe("subtitles in the ffmpeg command", () => {
  it("adds each embedded track as an input with its stream flags, and draws a burned-in one on the video", () => {
    const spec = create(OutputSpecSchema, {
      type: OutputType.MKV,
      video: [{ codec: VideoCodec.H264, height: 360 }],
      subtitleTracks: [
        { operation: "passthrough", sourceStreamIndex: 0, language: "eng", label: "English", default: true },
        { operation: "burn_in", sourceUrl: "https://x/y.srt" },
        { operation: "convert", sourceUrl: "https://x/f.ttml", format: "webvtt", language: "fra", forced: true },
        { operation: "extract", sourceStreamIndex: 0 },
      ],
    });
    const subtitles = [prepared(0, spec.subtitleTracks[0]!), prepared(1, spec.subtitleTracks[1]!), prepared(2, spec.subtitleTracks[2]!, "webvtt"), prepared(3, spec.subtitleTracks[3]!)];
    const cmd = buildTranscodeCommand({ file: "/in/a.mkv", info: INFO }, [{ spec, file: "/out/a.mkv", subtitles }]);
    expect(cmd.global[cmd.global.indexOf("-filter_complex") + 1]).toBe("[0:v:0]scale=640:360,subtitles=filename=/tmp/job/subtitle-1.srt[v0]");
    expect(cmd.inputs.map((i) => i.file)).toEqual(["/in/a.mkv", "/tmp/job/subtitle-0.srt", "/tmp/job/subtitle-2.vtt"]);
    expect(cmd.inputs[1]!.options).toEqual(["-protocol_whitelist", "file", "-format_whitelist", "srt,webvtt,ass"]);
    const options = cmd.outputs[0]!.options;
    const from = options.indexOf("-map", options.indexOf("1:s:0") - 1);
    expect(options.slice(from, options.indexOf("-map_metadata"))).toEqual([
      "-map", "1:s:0", "-c:s:0", "srt", "-metadata:s:s:0", "language=eng", "-metadata:s:s:0", "title=English", "-disposition:s:0", "default",
      "-map", "2:s:0", "-c:s:1", "webvtt", "-metadata:s:s:1", "language=fra", "-disposition:s:1", "forced",
    ]);
  });
});

describe("subtitle renditions in the manifests", () => {
  const video: PackagedRendition = { id: "v0", kind: "video", playlistUri: "v0/index.m3u8", codec: "avc1.64001e", peakBps: 500_000, averageBps: 400_000, durationS: 6, width: 640, height: 360, frameRate: 30 };
  const subs: PackagedRendition = {
    id: "s0",
    kind: "subtitles",
    playlistUri: "s0/index.m3u8",
    fileUri: "s0/subtitles.vtt",
    codec: "wvtt",
    peakBps: 100,
    averageBps: 100,
    durationS: 6,
    language: "en",
    name: "English (CC)",
    isDefault: true,
    hearingImpaired: true,
  };

  it("HLS: a SUBTITLES group every variant names", () => {
    const text = buildMasterPlaylist([video, subs]);
    expect(text).toContain(
      '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",LANGUAGE="en",NAME="English (CC)",DEFAULT=YES,AUTOSELECT=YES,FORCED=NO,CHARACTERISTICS="public.accessibility.transcribes-spoken-dialog,public.accessibility.describes-music-and-sound",URI="s0/index.m3u8"',
    );
    expect(text).toContain('SUBTITLES="subs",CLOSED-CAPTIONS=NONE\nv0/index.m3u8');
  });

  it("DASH: a text AdaptationSet over the WebVTT file", () => {
    const mpd = buildMpd([{ ...video, segments: { timescale: 15360, initUri: "v0/init.mp4", mediaTemplate: "v0/seg_$Number%05d$.m4s", startNumber: 1, presentationTimeOffset: 0, timeline: [{ start: 0, duration: 92160 }] } }, subs]);
    expect(mpd).toContain('<AdaptationSet id="1" contentType="text" mimeType="text/vtt" lang="en">\n      <Role schemeIdUri="urn:mpeg:dash:role:2011" value="caption"/>\n      <Label>English (CC)</Label>\n      <Representation id="s0" bandwidth="100">\n        <BaseURL>s0/subtitles.vtt</BaseURL>');
    expect(mpd).toContain('mediaPresentationDuration="PT6.000S"');
  });
});
