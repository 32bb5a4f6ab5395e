import { describe, expect, it } from "vitest";
import { formatDuration, frameRate, parseProbe } from "../../workers/ffmpeg/probe.js";
import { MediaError } from "../../workers/ffmpeg/types.js";

const LIMITS = { maxDurationMs: 4 * 3600_000, maxWidth: 3840, maxHeight: 2160 };

/** Trimmed real ffprobe 5.1 output for a 2 s 320x240 h264 + aac mp4. */
const MP4 = {
  streams: [
    {
      index: 0,
      codec_name: "h264",
      codec_type: "video",
      width: 320,
      height: 240,
      r_frame_rate: "30000/1001",
      avg_frame_rate: "30000/1001",
      duration: "2.002000",
      bit_rate: "697432",
      disposition: { default: 1, attached_pic: 0 },
      tags: { language: "und", handler_name: "VideoHandler" },
    },
    {
      index: 1,
      codec_name: "aac",
      codec_type: "audio",
      sample_rate: "48000",
      channels: 2,
      r_frame_rate: "0/0",
      avg_frame_rate: "0/0",
      duration: "2.000000",
      bit_rate: "70155",
      disposition: { default: 1, attached_pic: 0 },
      tags: { language: "eng" },
    },
    { index: 2, codec_name: "opus", codec_type: "audio", sample_rate: "48000", channels: 6, tags: { language: "fra" } },
  ],
  format: { filename: "/tmp/x.mp4", nb_streams: 3, format_name: "mov,mp4,m4a,3gp,3g2,mj2", duration: "2.002000", size: "194580", bit_rate: "777542" },
};

function expectMediaError(fn: () => unknown, code: string, message: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MediaError);
    expect((err as MediaError).code).toBe(code);
    expect((err as MediaError).message).toMatch(message);
    return;
  }
  throw new Error("expected a MediaError");
}

describe("parseProbe", () => {
  it("maps ffprobe JSON to MediaInfo", () => {
    expect(parseProbe(MP4, 194_580, LIMITS)).toEqual({
      durationMs: 2002,
      width: 320,
      height: 240,
      videoCodec: "h264",
      bitrateKbps: 778,
      framerate: 29.97,
      fileSizeBytes: 194_580,
      container: "mov,mp4,m4a,3gp,3g2,mj2",
      audioStreams: [
        { index: 0, codec: "aac", channels: 2, sampleRate: 48000, bitrateKbps: 70, language: "eng" },
        { index: 1, codec: "opus", channels: 6, sampleRate: 48000, bitrateKbps: 0, language: "fra" },
      ],
      subtitleStreams: [],
    });
  });

  it("lists subtitle streams in their own numbering, as source_stream_index counts them", () => {
    const withSubs = { ...MP4, streams: [...MP4.streams, { index: 3, codec_type: "subtitle", codec_name: "subrip", tags: { language: "eng" } }, { index: 4, codec_type: "subtitle", codec_name: "hdmv_pgs_subtitle" }] };
    expect(parseProbe(withSubs, 1, LIMITS).subtitleStreams).toEqual([
      { index: 0, codec: "subrip", language: "eng" },
      { index: 1, codec: "hdmv_pgs_subtitle", language: "" },
    ]);
  });

  it("accepts the JSON text as well", () => {
    expect(parseProbe(JSON.stringify(MP4), 1, LIMITS).durationMs).toBe(2002);
  });

  it("swaps width and height for a quarter-turn rotation (side data or the old rotate tag)", () => {
    const rotated = structuredClone(MP4);
    Object.assign(rotated.streams[0]!, { side_data_list: [{ side_data_type: "Display Matrix", rotation: -90 }] });
    expect(parseProbe(rotated, 1, LIMITS)).toMatchObject({ width: 240, height: 320 });
    const tagged = structuredClone(MP4);
    Object.assign(tagged.streams[0]!.tags, { rotate: "270" });
    expect(parseProbe(tagged, 1, LIMITS)).toMatchObject({ width: 240, height: 320 });
  });

  it("takes the duration from the stream or the Matroska DURATION tag when the format has none", () => {
    const mkv = {
      streams: [{ codec_type: "video", codec_name: "vp9", width: 640, height: 360, avg_frame_rate: "25/1", tags: { DURATION: "00:01:02.500000000" } }],
      format: { format_name: "matroska,webm" },
    };
    expect(parseProbe(mkv, 1, LIMITS)).toMatchObject({ durationMs: 62_500, framerate: 25, bitrateKbps: 0, audioStreams: [] });
  });

  it("falls back to r_frame_rate when avg_frame_rate is 0/0", () => {
    const odd = structuredClone(MP4);
    odd.streams[0]!.avg_frame_rate = "0/0";
    odd.streams[0]!.r_frame_rate = "24/1";
    expect(parseProbe(odd, 1, LIMITS).framerate).toBe(24);
    expect(frameRate("garbage")).toBe(0);
    expect(frameRate("1/0")).toBe(0);
  });

  it("refuses output that is not ffprobe JSON (a text file makes ffprobe fail; garbage never parses)", () => {
    expectMediaError(() => parseProbe("hello world, not json", 22, LIMITS), "INPUT_UNREADABLE", /could not parse/);
    expectMediaError(() => parseProbe([], 22, LIMITS), "INPUT_UNREADABLE", /could not parse/);
    expectMediaError(() => parseProbe({ streams: "x" }, 22, LIMITS), "INPUT_UNREADABLE", /could not parse/);
  });

  it("refuses inputs without a video stream: audio-only media with INPUT_NO_VIDEO, anything else INPUT_UNREADABLE", () => {
    expectMediaError(() => parseProbe({}, 22, LIMITS), "INPUT_UNREADABLE", /no video stream/);
    const dataOnly = { streams: [{ codec_type: "data", codec_name: "bin_data" }], format: { format_name: "mpegts", duration: "3.0" } };
    expectMediaError(() => parseProbe(dataOnly, 22, LIMITS), "INPUT_UNREADABLE", /^the input has no video stream$/);
    const audioOnly = { streams: [MP4.streams[1]], format: { format_name: "wav", duration: "3.0" } };
    expectMediaError(() => parseProbe(audioOnly, 22, LIMITS), "INPUT_NO_VIDEO", /^the input is audio only, no video stream$/);
    const mp3WithCover = {
      streams: [
        { codec_type: "audio", codec_name: "mp3", sample_rate: "44100", channels: 2 },
        { codec_type: "video", codec_name: "mjpeg", width: 500, height: 500, disposition: { attached_pic: 1 } },
      ],
      format: { format_name: "mp3", duration: "180.0" },
    };
    expectMediaError(() => parseProbe(mp3WithCover, 22, LIMITS), "INPUT_NO_VIDEO", /audio with cover art/);
    const coverOnly = { streams: [mp3WithCover.streams[1]!], format: { format_name: "mp3", duration: "180.0" } };
    expectMediaError(() => parseProbe(coverOnly, 22, LIMITS), "INPUT_UNREADABLE", /only cover art/);
  });

  it("refuses a header claiming frames over the limit as too large, even when it gives no duration", () => {
    const y4m = { streams: [{ codec_type: "video", codec_name: "rawvideo", width: 16000, height: 16000, avg_frame_rate: "25/1" }], format: { format_name: "yuv4mpegpipe" } };
    expectMediaError(() => parseProbe(y4m, 4096, LIMITS), "INPUT_TOO_LARGE", /^the input is 16000x16000; the limit is 3840x2160$/);
    const small = { ...y4m, streams: [{ ...y4m.streams[0]!, width: 64, height: 64 }] };
    expectMediaError(() => parseProbe(small, 4096, LIMITS), "INPUT_UNREADABLE", /duration/);
  });

  it("refuses a single still image", () => {
    // ffprobe's real answer for a PNG: an image demuxer, no duration.
    const png = { streams: [{ codec_type: "video", codec_name: "png", width: 64, height: 48, avg_frame_rate: "25/1", disposition: { attached_pic: 0 } }], format: { format_name: "png_pipe" } };
    expectMediaError(() => parseProbe(png, 200, LIMITS), "INPUT_UNREADABLE", /still image \(png\), not a video/);
  });

  it("refuses a zero or missing duration and a missing frame size", () => {
    const noDuration = { streams: [{ codec_type: "video", codec_name: "h264", width: 320, height: 240 }], format: { format_name: "h264", duration: "0.000000" } };
    expectMediaError(() => parseProbe(noDuration, 1, LIMITS), "INPUT_UNREADABLE", /duration/);
    const noSize = structuredClone(MP4);
    noSize.streams[0]!.width = 0;
    expectMediaError(() => parseProbe(noSize, 1, LIMITS), "INPUT_UNREADABLE", /frame size/);
  });

  it("refuses inputs over the duration or dimension limits, with readable messages", () => {
    const long = structuredClone(MP4);
    long.format.duration = String(5 * 3600 + 62);
    expectMediaError(() => parseProbe(long, 1, LIMITS), "INPUT_TOO_LARGE", /^the input is 5h 1m 2s long; the limit is 4h$/);
    const big = structuredClone(MP4);
    big.streams[0]!.width = 7680;
    big.streams[0]!.height = 4320;
    expectMediaError(() => parseProbe(big, 1, LIMITS), "INPUT_TOO_LARGE", /^the input is 7680x4320; the limit is 3840x2160$/);
  });

  it("checks dimensions whatever the orientation: a 2160x3840 phone video fits 3840x2160 limits", () => {
    const portrait = structuredClone(MP4);
    portrait.streams[0]!.width = 2160;
    portrait.streams[0]!.height = 3840;
    expect(parseProbe(portrait, 1, LIMITS)).toMatchObject({ width: 2160, height: 3840 });
  });
});

describe("formatDuration", () => {
  it("writes durations for messages", () => {
    expect(formatDuration(2_500)).toBe("2.5s");
    expect(formatDuration(3_600_000)).toBe("1h");
    expect(formatDuration(7_384_000)).toBe("2h 3m 4s");
  });
});
