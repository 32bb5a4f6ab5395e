import { describe, expect, it } from "vitest";
import { AV1_ENCODERS, av1EncoderOptions, isAv1Encoder, rav1eQp } from "../../workers/ffmpeg/av1-encoders.js";
import {
  AUDIO_ENCODERS,
  describeCapabilities,
  isExperimental,
  parseEncoders,
  parseExperimentalEncoders,
  parseFilters,
  parseMuxers,
  pickEncoder,
  VIDEO_ENCODERS,
  type FfmpegCapabilities,
} from "../../workers/ffmpeg/capabilities.js";

/*
 * Excerpts of real `ffmpeg -hide_banner -encoders|-muxers|-filters` stdout, legend included:
 * Debian's ffmpeg 5.1.9 (/usr/bin/ffmpeg) and the npm-shipped static build N-47683-g0e8eb07980
 * (2018, @ffmpeg-installer/ffmpeg). Rows kept in their original order, others left out.
 */
const DEBIAN_ENCODERS = `Encoders:
 V..... = Video
 A..... = Audio
 S..... = Subtitle
 .F.... = Frame-level multithreading
 ..S... = Slice-level multithreading
 ...X.. = Codec is experimental
 ....B. = Supports draw_horiz_band
 .....D = Supports direct rendering method 1
 ------
 V....D a64multi             Multicolor charset for Commodore 64 (codec a64_multi)
 V....D libaom-av1           libaom AV1 (codec av1)
 V....D librav1e             librav1e AV1 (codec av1)
 V..... libsvtav1            SVT-AV1(Scalable Video Technology for AV1) encoder (codec av1)
 V....D libx264              libx264 H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10 (codec h264)
 V....D libx265              libx265 H.265 / HEVC (codec hevc)
 V....D libvpx-vp9           libvpx VP9 (codec vp9)
 A..... aac                  AAC (Advanced Audio Coding)
 A....D ac3                  ATSC A/52A (AC-3)
 A....D ac3_fixed            ATSC A/52A (AC-3) (codec ac3)
 A....D eac3                 ATSC A/52 E-AC-3
 A..X.. opus                 Opus
 A..... libopus              libopus Opus (codec opus)
 S..... webvtt               WebVTT subtitle
`;

const NPM_2018_ENCODERS = `Encoders:
 V..... = Video
 A..... = Audio
 S..... = Subtitle
 .F.... = Frame-level multithreading
 ..S... = Slice-level multithreading
 ...X.. = Codec is experimental
 ....B. = Supports draw_horiz_band
 .....D = Supports direct rendering method 1
 ------
 V..... a64multi             Multicolor charset for Commodore 64 (codec a64_multi)
 V..X.. libaom-av1           libaom AV1 (codec av1)
 V..... libx264              libx264 H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10 (codec h264)
 V..... libx265              libx265 H.265 / HEVC (codec hevc)
 V..... libvpx-vp9           libvpx VP9 (codec vp9)
 A..... aac                  AAC (Advanced Audio Coding)
 A..... ac3                  ATSC A/52A (AC-3)
 A..... ac3_fixed            ATSC A/52A (AC-3) (codec ac3)
 A..... eac3                 ATSC A/52 E-AC-3
 A..X.. opus                 Opus
 A..... libopus              libopus Opus (codec opus)
 S..... webvtt               WebVTT subtitle
`;

const DEBIAN_MUXERS = `File formats:
 D. = Demuxing supported
 .E = Muxing supported
 --
  E 3g2             3GP2 (3GPP2 file format)
  E dash            DASH Muxer
  E hls             Apple HTTP Live Streaming
  E matroska        Matroska
  E mkvtimestamp_v2 extract pts as timecode v2 format, as defined by mkvtoolnix
  E mov             QuickTime / MOV
  E mp4             MP4 (MPEG-4 Part 14)
  E mpegts          MPEG-TS (MPEG-2 Transport Stream)
  E sdl,sdl2        SDL2 output device
  E stream_segment,ssegment streaming segment muxer
  E webm            WebM
  E webvtt          WebVTT subtitle
`;

const NPM_2018_MUXERS = `File formats:
 D. = Demuxing supported
 .E = Muxing supported
 --
  E 3g2             3GP2 (3GPP2 file format)
  E dash            DASH Muxer
  E hls             Apple HTTP Live Streaming
  E matroska        Matroska
  E mkvtimestamp_v2 extract pts as timecode v2 format, as defined by mkvtoolnix
  E mov             QuickTime / MOV
  E mp4             MP4 (MPEG-4 Part 14)
  E mpegts          MPEG-TS (MPEG-2 Transport Stream)
  E stream_segment,ssegment streaming segment muxer
  E webm            WebM
  E webvtt          WebVTT subtitle
`;

const DEBIAN_FILTERS = `Filters:
  T.. = Timeline support
  .S. = Slice threading
  ..C = Command support
  A = Audio input/output
  V = Video input/output
  N = Dynamic number and/or type of input/output
  | = Source or sink filter
 ... abench            A->A       Benchmark part of a filtergraph.
 ... loudnorm          A->A       EBU R128 loudness normalization
 ... ass               V->V       Render ASS subtitles onto input video using the libass library.
 ... fps               V->V       Force constant framerate.
 ..C libplacebo        V->V       Apply various GPU filters from libplacebo
 ..C scale             V->V       Scale the input video size and/or convert the image format.
 ... split             V->N       Pass on the input to N video outputs.
 ... subtitles         V->V       Render text subtitles onto input video using the libass library.
 ... tile              V->V       Tile several successive frames together.
 .S. tonemap           V->V       Conversion to/from different dynamic ranges.
 .SC zscale            V->V       Apply resizing, colorspace and bit depth conversion.
 ... buffersink        V->|       Buffer video frames, and make them available to the end of the filter graph.
`;

const NPM_2018_FILTERS = `Filters:
  T.. = Timeline support
  .S. = Slice threading
  ..C = Command support
  A = Audio input/output
  V = Video input/output
  N = Dynamic number and/or type of input/output
  | = Source or sink filter
 ... abench            A->A       Benchmark part of a filtergraph.
 ... loudnorm          A->A       EBU R128 loudness normalization
 ... ass               V->V       Render ASS subtitles onto input video using the libass library.
 ... fps               V->V       Force constant framerate.
 ..C scale             V->V       Scale the input video size and/or convert the image format.
 ... split             V->N       Pass on the input to N video outputs.
 ... subtitles         V->V       Render text subtitles onto input video using the libass library.
 ... tile              V->V       Tile several successive frames together.
 ... tonemap           V->V       Conversion to/from different dynamic ranges.
 ..C zscale            V->V       Apply resizing, colorspace and bit depth conversion.
 ... buffersink        V->|       Buffer video frames, and make them available to the end of the filter graph.
`;

const AV1_TIERS = { economy: { preset: 10, crf: 45 }, standard: { preset: 6, crf: 35 }, premium: { preset: 4, crf: 28 } };

function caps(encoders: string[], experimental: string[] = []): FfmpegCapabilities {
  return { encoders: new Set(encoders), muxers: new Set(), filters: new Set(), experimentalEncoders: new Set(experimental) };
}

const DEBIAN: FfmpegCapabilities = {
  encoders: parseEncoders(DEBIAN_ENCODERS),
  experimentalEncoders: parseExperimentalEncoders(DEBIAN_ENCODERS),
  muxers: parseMuxers(DEBIAN_MUXERS),
  filters: parseFilters(DEBIAN_FILTERS),
};
const NPM_2018: FfmpegCapabilities = {
  encoders: parseEncoders(NPM_2018_ENCODERS),
  experimentalEncoders: parseExperimentalEncoders(NPM_2018_ENCODERS),
  muxers: parseMuxers(NPM_2018_MUXERS),
  filters: parseFilters(NPM_2018_FILTERS),
};

describe("listing parsers", () => {
  it("reads encoder names after the legend (second column), not the legend", () => {
    expect([...parseEncoders(DEBIAN_ENCODERS)]).toEqual([
      "a64multi",
      "libaom-av1",
      "librav1e",
      "libsvtav1",
      "libx264",
      "libx265",
      "libvpx-vp9",
      "aac",
      "ac3",
      "ac3_fixed",
      "eac3",
      "opus",
      "libopus",
      "webvtt",
    ]);
    const npm = parseEncoders(NPM_2018_ENCODERS);
    expect(npm.has("libaom-av1")).toBe(true);
    expect(npm.has("libsvtav1")).toBe(false);
    expect(npm.has("librav1e")).toBe(false);
    for (const legend of ["=", "Video", "V.....", "------", "Encoders:"]) expect(npm.has(legend)).toBe(false);
  });

  it("reads the experimental flag (X): the 2018 libaom-av1 and the native opus encoder", () => {
    expect([...parseExperimentalEncoders(DEBIAN_ENCODERS)]).toEqual(["opus"]);
    expect([...parseExperimentalEncoders(NPM_2018_ENCODERS)]).toEqual(["libaom-av1", "opus"]);
    expect(isExperimental("libaom-av1", NPM_2018)).toBe(true);
    expect(isExperimental("libaom-av1", DEBIAN)).toBe(false);
    expect(isExperimental("libaom-av1", { experimentalEncoders: undefined })).toBe(false);
  });

  it("reads muxers after the ' --' separator and splits aliases", () => {
    const muxers = parseMuxers(DEBIAN_MUXERS);
    for (const name of ["3g2", "dash", "hls", "matroska", "mkvtimestamp_v2", "mov", "mp4", "mpegts", "webm", "webvtt", "sdl", "sdl2", "stream_segment", "ssegment"]) {
      expect(muxers.has(name), name).toBe(true);
    }
    expect(muxers.size).toBe(14);
    expect(muxers.has("D.")).toBe(false);
    expect(muxers.has("=")).toBe(false);
    expect(muxers.has("formats:")).toBe(false);
    expect(parseMuxers(NPM_2018_MUXERS).has("sdl")).toBe(false);
    expect(parseMuxers(NPM_2018_MUXERS).has("hls")).toBe(true);
  });

  it("reads filters, whose legend has no separator line", () => {
    const filters = parseFilters(DEBIAN_FILTERS);
    expect([...filters]).toEqual(["abench", "loudnorm", "ass", "fps", "libplacebo", "scale", "split", "subtitles", "tile", "tonemap", "zscale", "buffersink"]);
    const npm = parseFilters(NPM_2018_FILTERS);
    expect(npm.has("libplacebo")).toBe(false);
    expect(npm.has("zscale")).toBe(true);
    for (const legend of ["=", "|", "A", "V", "N", "T..", "Filters:"]) expect(npm.has(legend)).toBe(false);
  });

  it("copes with CRLF, blank lines and empty output", () => {
    expect([...parseEncoders(" V..... = Video\r\n ------\r\n V....D libx264  libx264 H.264\r\n\r\n A..... aac  AAC\r\n")]).toEqual(["libx264", "aac"]);
    expect(parseEncoders("").size).toBe(0);
    expect(parseFilters("Filters:\n  T.. = Timeline support\n").size).toBe(0);
  });
});

describe("pickEncoder", () => {
  it("takes the first encoder of the list the build has", () => {
    expect(pickEncoder(VIDEO_ENCODERS.av1, DEBIAN)).toBe("libsvtav1");
    expect(pickEncoder(VIDEO_ENCODERS.av1, NPM_2018)).toBe("libaom-av1");
    expect(pickEncoder(VIDEO_ENCODERS.av1, caps(["librav1e", "libaom-av1"]))).toBe("libaom-av1");
    expect(pickEncoder(VIDEO_ENCODERS.av1, caps(["librav1e"]))).toBe("librav1e");
    expect(pickEncoder(VIDEO_ENCODERS.av1, caps(["libx264"]))).toBeUndefined();
    expect(pickEncoder(AUDIO_ENCODERS.ac3, caps(["ac3_fixed"]))).toBe("ac3_fixed");
  });

  it("never falls back to the native (experimental, 48 kHz stereo-only) opus encoder", () => {
    expect(AUDIO_ENCODERS.opus).toEqual(["libopus"]);
    expect(pickEncoder(AUDIO_ENCODERS.opus, caps(["opus"], ["opus"]))).toBeUndefined();
  });

  it("finds every codec's encoder in both captured builds", () => {
    for (const build of [DEBIAN, NPM_2018]) {
      for (const [codec, list] of [...Object.entries(VIDEO_ENCODERS), ...Object.entries(AUDIO_ENCODERS)]) {
        expect(pickEncoder(list, build), codec).toBeDefined();
      }
    }
  });

  it("prefers SVT-AV1, then libaom, then rav1e (PeerTube-style ordered lists)", () => {
    expect(VIDEO_ENCODERS).toEqual({ h264: ["libx264"], h265: ["libx265"], vp9: ["libvpx-vp9"], av1: ["libsvtav1", "libaom-av1", "librav1e"] });
    expect(VIDEO_ENCODERS.av1).toEqual(AV1_ENCODERS);
    expect(VIDEO_ENCODERS.av1.every((name) => isAv1Encoder(name))).toBe(true);
    expect(isAv1Encoder("libx264")).toBe(false);
    expect(isAv1Encoder(undefined)).toBe(false);
  });
});

describe("describeCapabilities", () => {
  it("names each codec's encoder", () => {
    expect(describeCapabilities(DEBIAN)).toBe("encoders: h264=libx264 h265=libx265 vp9=libvpx-vp9 av1=libsvtav1 aac=aac opus=libopus ac3=ac3 eac3=eac3");
  });

  it("says which preferred encoders are missing and when the chosen one is experimental", () => {
    expect(describeCapabilities(NPM_2018)).toBe(
      "encoders: h264=libx264 h265=libx265 vp9=libvpx-vp9 av1=libaom-av1 (experimental; no libsvtav1) aac=aac opus=libopus ac3=ac3 eac3=eac3",
    );
    expect(describeCapabilities(caps(["libx264", "libaom-av1", "aac", "ac3", "eac3"]))).toBe(
      "encoders: h264=libx264 h265=none (no libx265) vp9=none (no libvpx-vp9) av1=libaom-av1 (no libsvtav1) aac=aac opus=none (no libopus) ac3=ac3 eac3=eac3; unavailable: h265, vp9, opus",
    );
    expect(describeCapabilities(caps(["librav1e", "ac3_fixed"]))).toContain(" av1=librav1e (no libsvtav1, libaom-av1) ");
    expect(describeCapabilities(caps(["librav1e", "ac3_fixed"]))).toContain(" ac3=ac3_fixed (no ac3) ");
  });
});

describe("av1EncoderOptions", () => {
  it("SVT-AV1: the tier's preset and CRF as they are (what transcode.ts emits today)", () => {
    expect(av1EncoderOptions("libsvtav1", AV1_TIERS.economy)).toEqual(["-c:v", "libsvtav1", "-preset", "10", "-crf", "45"]);
    expect(av1EncoderOptions("libsvtav1", AV1_TIERS.standard)).toEqual(["-c:v", "libsvtav1", "-preset", "6", "-crf", "35"]);
    expect(av1EncoderOptions("libsvtav1", AV1_TIERS.premium)).toEqual(["-c:v", "libsvtav1", "-preset", "4", "-crf", "28"]);
    // Explicit Av1Options: preset 0 is a real value.
    expect(av1EncoderOptions("libsvtav1", { preset: 0, crf: 20 })).toEqual(["-c:v", "libsvtav1", "-preset", "0", "-crf", "20"]);
    expect(av1EncoderOptions("libsvtav1", { preset: 6, crf: 35, bitrateKbps: 2000 })).toEqual([
      "-c:v", "libsvtav1", "-preset", "6", "-b:v", "2000k", "-maxrate", "3000k", "-bufsize", "4000k",
    ]);
  });

  it("libaom (ffmpeg 5.1): same CRF in constant-quality mode, cpu-used from the preset, row-mt", () => {
    const aom = (s: { preset: number; crf: number; bitrateKbps?: number; width?: number }) => av1EncoderOptions("libaom-av1", s, DEBIAN);
    expect(aom(AV1_TIERS.economy)).toEqual(["-c:v", "libaom-av1", "-cpu-used", "8", "-crf", "45", "-b:v", "0", "-row-mt", "1"]);
    expect(aom(AV1_TIERS.standard)).toEqual(["-c:v", "libaom-av1", "-cpu-used", "5", "-crf", "35", "-b:v", "0", "-row-mt", "1"]);
    expect(aom(AV1_TIERS.premium)).toEqual(["-c:v", "libaom-av1", "-cpu-used", "4", "-crf", "28", "-b:v", "0", "-row-mt", "1"]);
    expect(aom({ preset: 0, crf: 20 })).toEqual(["-c:v", "libaom-av1", "-cpu-used", "0", "-crf", "20", "-b:v", "0", "-row-mt", "1"]);
    expect(aom({ preset: 13, crf: 63 }).slice(0, 6)).toEqual(["-c:v", "libaom-av1", "-cpu-used", "8", "-crf", "63"]);
    expect(aom({ ...AV1_TIERS.standard, bitrateKbps: 1000 })).toEqual([
      "-c:v", "libaom-av1", "-cpu-used", "5", "-b:v", "1000k", "-maxrate", "1500k", "-bufsize", "2000k", "-row-mt", "1",
    ]);
    // Without caps: the modern mapping, no -strict.
    expect(av1EncoderOptions("libaom-av1", AV1_TIERS.standard)).toEqual(aom(AV1_TIERS.standard));
  });

  it("libaom tiles only where the frame holds them", () => {
    const tiles = (width?: number) => av1EncoderOptions("libaom-av1", { ...AV1_TIERS.standard, width }).slice(10);
    expect(tiles(undefined)).toEqual([]);
    expect(tiles(160)).toEqual([]);
    expect(tiles(854)).toEqual([]);
    expect(tiles(1280)).toEqual(["-tile-columns", "1", "-tile-rows", "0"]);
    expect(tiles(1920)).toEqual(["-tile-columns", "1", "-tile-rows", "0"]);
    expect(tiles(3840)).toEqual(["-tile-columns", "2", "-tile-rows", "0"]);
  });

  it("libaom in the 2018 build: -strict:v experimental, CRF + 5, faster cpu-used", () => {
    const aom = (s: { preset: number; crf: number; bitrateKbps?: number }) => av1EncoderOptions("libaom-av1", s, NPM_2018);
    expect(aom(AV1_TIERS.economy)).toEqual(["-c:v", "libaom-av1", "-strict:v", "experimental", "-cpu-used", "8", "-crf", "50", "-b:v", "0", "-row-mt", "1"]);
    expect(aom(AV1_TIERS.standard)).toEqual(["-c:v", "libaom-av1", "-strict:v", "experimental", "-cpu-used", "6", "-crf", "40", "-b:v", "0", "-row-mt", "1"]);
    expect(aom(AV1_TIERS.premium)).toEqual(["-c:v", "libaom-av1", "-strict:v", "experimental", "-cpu-used", "5", "-crf", "33", "-b:v", "0", "-row-mt", "1"]);
    expect(aom({ preset: 0, crf: 60 }).slice(4, 8)).toEqual(["-cpu-used", "3", "-crf", "63"]);
    expect(aom({ ...AV1_TIERS.premium, bitrateKbps: 800 })).toEqual([
      "-c:v", "libaom-av1", "-strict:v", "experimental", "-cpu-used", "5", "-b:v", "800k", "-maxrate", "1200k", "-bufsize", "1600k", "-row-mt", "1",
    ]);
  });

  it("rav1e: -speed, -qp on the qindex scale, tiles; a bitrate replaces -qp", () => {
    expect(av1EncoderOptions("librav1e", AV1_TIERS.economy)).toEqual(["-c:v", "librav1e", "-speed", "8", "-qp", "137", "-tiles", "2"]);
    expect(av1EncoderOptions("librav1e", AV1_TIERS.standard)).toEqual(["-c:v", "librav1e", "-speed", "6", "-qp", "87", "-tiles", "2"]);
    expect(av1EncoderOptions("librav1e", AV1_TIERS.premium)).toEqual(["-c:v", "librav1e", "-speed", "5", "-qp", "52", "-tiles", "2"]);
    expect(av1EncoderOptions("librav1e", { preset: 13, crf: 63 })).toEqual(["-c:v", "librav1e", "-speed", "8", "-qp", "227", "-tiles", "2"]);
    expect(av1EncoderOptions("librav1e", { preset: 0, crf: 0 })).toEqual(["-c:v", "librav1e", "-speed", "2", "-qp", "0", "-tiles", "2"]);
    expect(av1EncoderOptions("librav1e", { ...AV1_TIERS.standard, bitrateKbps: 1500, width: 1920 })).toEqual(["-c:v", "librav1e", "-speed", "6", "-b:v", "1500k", "-tiles", "4"]);
    expect(av1EncoderOptions("librav1e", { ...AV1_TIERS.standard, width: 3840 }).slice(-2)).toEqual(["-tiles", "8"]);
    // The caps do not change rav1e or SVT-AV1.
    expect(av1EncoderOptions("librav1e", AV1_TIERS.standard, NPM_2018)).toEqual(av1EncoderOptions("librav1e", AV1_TIERS.standard));
  });

  it("rav1eQp is monotonic over the whole CRF range and stays within 0-255", () => {
    let previous = -1;
    for (let crf = 0; crf <= 63; crf++) {
      const qp = rav1eQp(crf);
      expect(qp).toBeGreaterThan(previous);
      expect(qp).toBeLessThanOrEqual(255);
      previous = qp;
    }
    expect([rav1eQp(-5), rav1eQp(28), rav1eQp(35), rav1eQp(45), rav1eQp(99)]).toEqual([0, 52, 87, 137, 227]);
  });

  it("clamps out-of-range settings onto the SVT scale and never emits -pix_fmt or -g", () => {
    expect(av1EncoderOptions("libsvtav1", { preset: 20, crf: 99 })).toEqual(["-c:v", "libsvtav1", "-preset", "13", "-crf", "63"]);
    expect(av1EncoderOptions("libaom-av1", { preset: -3, crf: 30.4 }).slice(2, 6)).toEqual(["-cpu-used", "0", "-crf", "30"]);
    for (const encoder of AV1_ENCODERS) {
      for (const tier of Object.values(AV1_TIERS)) {
        const argv = av1EncoderOptions(encoder, { ...tier, bitrateKbps: 500, width: 1920 }, NPM_2018);
        expect(argv.slice(0, 2)).toEqual(["-c:v", encoder]);
        expect(argv).not.toContain("-pix_fmt");
        expect(argv).not.toContain("-g");
      }
    }
  });
});
