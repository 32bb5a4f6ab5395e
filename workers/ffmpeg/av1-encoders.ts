import { isExperimental, type FfmpegCapabilities } from "./capabilities.js";

/** The AV1 encoders the worker knows, in preference order (see VIDEO_ENCODERS.av1). */
export type Av1Encoder = "libsvtav1" | "libaom-av1" | "librav1e";
export const AV1_ENCODERS: readonly Av1Encoder[] = ["libsvtav1", "libaom-av1", "librav1e"];

export function isAv1Encoder(name: string | undefined): name is Av1Encoder {
  return (AV1_ENCODERS as readonly (string | undefined)[]).includes(name);
}

/**
 * AV1 settings on the SVT-AV1 scale (what QUALITY_TIERS.av1 and Av1Options speak): preset 0
 * (slowest) .. 13 (fastest), CRF 0 .. 63. `bitrateKbps` (> 0) switches to constrained VBR.
 * `width` (the encoded frame width, optional) sizes the tile layout of libaom and rav1e; without
 * it they get a layout that is valid at any size.
 */
export interface Av1Settings {
  preset: number;
  crf: number;
  bitrateKbps?: number;
  width?: number;
}

/*
 * How the SVT scale maps onto the other encoders. Measured on a 2 s 320x180 25 fps clip
 * (testsrc2 with temporal noise beside a mandelbrot zoom; lossless source), each tier encoded
 * with the argv below (+ -pix_fmt yuv420p): average kbps, PSNR in dB against the source, wall
 * time on the shared 2-core machine (load 4-6, so times are only relative):
 *
 *   tier      SVT-AV1 1.4 (5.1)        libaom 3.6 (5.1)          libaom 2018 (npm build)        rav1e 0.5 (5.1)
 *   economy   p10 crf45 107k 35.0 2s   cpu8 crf45 101k 35.5 6s   cpu8 crf50  82k 35.3 13s       speed8 qp137 110k 34.8 5s
 *   standard  p6  crf35 174k 37.9 1s   cpu5 crf35 175k 37.7 3s   cpu6 crf40 174k 37.9 39s       speed6 qp87  284k 37.9 11s
 *   premium   p4  crf28 297k 39.9 4s   cpu4 crf28 266k 39.7 8s   cpu5 crf33 304k 39.5 31s       speed5 qp52  640k 40.0 10s
 *
 * - libaom (ffmpeg >= 4.1, libaom >= 2): its CRF lands on the same quantizers as SVT's (both map
 *   0-63 onto qindex 0-255 the same way): same CRF, within 0.5 dB and 10 % in size. cpu-used
 *   follows the preset up to 4, then more slowly; in good-quality mode libaom 3.6 encodes
 *   cpu-used 7 and 8 exactly like 6 (byte-identical output), so 8 just means "fastest".
 * - The 2018 npm build's libaom (ffmpeg marks it experimental there; that is how we recognise it)
 *   spends more bits at the same CRF (cpu5 crf35: 262k 39.1 dB) and is 5-10x slower than SVT-AV1
 *   at every cpu-used: CRF + 5 matches the SVT tier, and cpu-used starts at 3 so that even
 *   preset 0 finishes.
 * - rav1e: `-qp` is the qindex itself (0-255). At a matching PSNR rav1e 0.5 needs 1-2x the bits
 *   (more at high quality; its default psychovisual tuning costs PSNR, but tune=psnr was no
 *   better): we match quality, not size. qp is linear between the measured points (crf 28→52,
 *   35→87, 45→137, slope 5 above). Speeds 9 and 10 give twice the size at a lower PSNR
 *   (speed10 qp140: 228k 33.8 dB against speed8 qp140: 103k 34.6 dB), so presets stop at speed 8.
 */
const LIBAOM_CPU_USED = [0, 1, 2, 3, 4, 4, 5, 5, 6, 6, 8, 8, 8, 8];
const LEGACY_LIBAOM_CPU_USED = [3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 8, 8];
const LEGACY_LIBAOM_CRF_OFFSET = 5;
const RAV1E_SPEED = [2, 3, 3, 4, 5, 5, 6, 6, 7, 7, 8, 8, 8, 8];
/** SVT CRF → rav1e qindex, linear between these points. */
const RAV1E_QP_POINTS: readonly [crf: number, qp: number][] = [
  [0, 0],
  [28, 52],
  [35, 87],
  [45, 137],
  [63, 227],
];

/**
 * The argv from `-c:v` on for an AV1 encode with `encoder`, so a quality tier gives comparable
 * results whichever AV1 encoder the build has: speed, rate control, and the threading flags the
 * encoder needs (libaom: row multithreading and tiles; rav1e: tiles, its only parallelism; SVT-AV1
 * threads on its own). Without -pix_fmt and -g: the caller adds those.
 * - `caps` (the build's capabilities) matters for libaom only: when the build flags libaom-av1
 *   experimental (ffmpeg < 4.1, libaom 1.0: the npm-shipped 2018 build), the argv carries
 *   `-strict:v experimental` (otherwise ffmpeg refuses the encoder) and the legacy calibration.
 * - An explicit bitrate gives -b:v with -maxrate 1.5x / -bufsize 2x (as transcode.ts's
 *   bitrateOptions), except for rav1e, whose ffmpeg wrapper uses only -b:v (and would let -qp
 *   win over it, so no -qp then).
 * Every flag here exists in both ffmpeg builds that have the encoder (`ffmpeg -h encoder=...`).
 */
export function av1EncoderOptions(encoder: Av1Encoder, settings: Av1Settings, caps?: Pick<FfmpegCapabilities, "experimentalEncoders">): string[] {
  const preset = clampInt(settings.preset, 0, 13);
  const crf = clampInt(settings.crf, 0, 63);
  const kbps = settings.bitrateKbps && settings.bitrateKbps > 0 ? Math.round(settings.bitrateKbps) : undefined;
  const constrainedVbr = kbps ? ["-b:v", `${kbps}k`, "-maxrate", `${Math.round(kbps * 1.5)}k`, "-bufsize", `${kbps * 2}k`] : undefined;
  switch (encoder) {
    case "libsvtav1":
      return ["-c:v", "libsvtav1", "-preset", String(preset), ...(constrainedVbr ?? ["-crf", String(crf)])];
    case "libaom-av1": {
      const legacy = caps ? isExperimental("libaom-av1", caps) : false;
      const cpuUsed = (legacy ? LEGACY_LIBAOM_CPU_USED : LIBAOM_CPU_USED)[preset]!;
      const aomCrf = legacy && crf > 0 ? Math.min(63, crf + LEGACY_LIBAOM_CRF_OFFSET) : crf;
      const tileColumnsLog2 = libaomTileColumnsLog2(settings.width);
      return [
        "-c:v",
        "libaom-av1",
        ...(legacy ? ["-strict:v", "experimental"] : []),
        "-cpu-used",
        String(cpuUsed),
        // Constant quality needs -b:v 0 next to -crf (otherwise libaom caps it with a default bitrate).
        ...(constrainedVbr ?? ["-crf", String(aomCrf), "-b:v", "0"]),
        "-row-mt",
        "1",
        ...(tileColumnsLog2 > 0 ? ["-tile-columns", String(tileColumnsLog2), "-tile-rows", "0"] : []),
      ];
    }
    case "librav1e":
      return ["-c:v", "librav1e", "-speed", String(RAV1E_SPEED[preset]!), ...(kbps ? ["-b:v", `${kbps}k`] : ["-qp", String(rav1eQp(crf))]), "-tiles", String(rav1eTiles(settings.width))];
    default:
      throw new Error(`unknown AV1 encoder ${String(encoder)}`);
  }
}

/** SVT-scale CRF (0-63) → rav1e quantizer (qindex 0-255). */
export function rav1eQp(crf: number): number {
  const c = Math.min(63, Math.max(0, crf));
  for (let i = 1; i < RAV1E_QP_POINTS.length; i++) {
    const [c1, q1] = RAV1E_QP_POINTS[i]!;
    if (c > c1) continue;
    const [c0, q0] = RAV1E_QP_POINTS[i - 1]!;
    return Math.min(255, Math.round(q0 + ((c - c0) * (q1 - q0)) / (c1 - c0)));
  }
  return 227;
}

/**
 * log2 of libaom's tile columns. ffmpeg refuses a layout the frame cannot hold ("Invalid tile
 * sizing: frame not large enough", e.g. 8 columns at 160 px), so tiles only from 1280 px up
 * (2 columns; 4 from 2560 px); row-mt alone parallelises smaller frames.
 */
function libaomTileColumnsLog2(width: number | undefined): number {
  if (!width) return 0;
  if (width >= 2560) return 2;
  if (width >= 1280) return 1;
  return 0;
}

/** rav1e's tile count ("at least this many"): rav1e itself shrinks it to what the frame holds. */
function rav1eTiles(width: number | undefined): number {
  if (width && width >= 2560) return 8;
  if (width && width >= 1280) return 4;
  return 2;
}

function clampInt(value: number, min: number, max: number): number {
  if (!Number.isFinite(value)) return min;
  return Math.min(max, Math.max(min, Math.round(value)));
}
