import { execFile } from "node:child_process";

/**
 * What one ffmpeg build can do, from its own listings. The same binary always gives the same
 * answer: detect once at worker start-up and reuse.
 */
export interface FfmpegCapabilities {
  /** `ffmpeg -encoders` names (video, audio and subtitle encoders). */
  encoders: ReadonlySet<string>;
  /** `ffmpeg -muxers` names; aliases printed together ("sdl,sdl2") are listed one by one. */
  muxers: ReadonlySet<string>;
  /** `ffmpeg -filters` names. */
  filters: ReadonlySet<string>;
  /**
   * Encoders flagged X ("Codec is experimental"): ffmpeg refuses them without `-strict
   * experimental`. E.g. the npm-shipped 2018 build's libaom-av1, and the native `opus` encoder in
   * every build. Optional so a hand-made capability set stays valid; absent means none.
   */
  experimentalEncoders?: ReadonlySet<string>;
  /**
   * Whether the mp4 muxer takes Opus as it is. ffmpeg 4.1 (the npm build) calls Opus in mp4
   * experimental: a progressive file gets `-strict experimental`, but the hls muxer's inner mp4
   * does not inherit it, so Opus cannot go into fMP4 segments there. Absent means yes.
   */
  opusInMp4?: boolean;
}

/** Encoder names from `ffmpeg -hide_banner -encoders` stdout. */
export function parseEncoders(stdout: string): Set<string> {
  return new Set(listingRows(stdout).flatMap((row) => row.names));
}

/** The encoders whose flags column has X (experimental), from `ffmpeg -hide_banner -encoders` stdout. */
export function parseExperimentalEncoders(stdout: string): Set<string> {
  return new Set(listingRows(stdout).flatMap((row) => (row.flags.includes("X") ? row.names : [])));
}

/** Muxer names from `ffmpeg -hide_banner -muxers` stdout. */
export function parseMuxers(stdout: string): Set<string> {
  return new Set(listingRows(stdout).flatMap((row) => row.names));
}

/** Filter names from `ffmpeg -hide_banner -filters` stdout. */
export function parseFilters(stdout: string): Set<string> {
  return new Set(listingRows(stdout).flatMap((row) => row.names));
}

/**
 * The rows of an ffmpeg listing: a title ("Encoders:", "File formats:", "Filters:"), a legend of
 * flag meanings ("V..... = Video"), then one row per entry: flags, name, description.
 * `-encoders` and `-muxers` end the legend with a dashed line (" ------", " --"); `-filters` has no
 * such line, so there the legend rows are told apart by their "=" second column.
 */
function listingRows(stdout: string): { flags: string; names: string[] }[] {
  const lines = stdout.split(/\r?\n/);
  const separator = lines.findIndex((line) => /^\s*-{2,}\s*$/.test(line));
  const body = separator >= 0 ? lines.slice(separator + 1) : lines;
  const rows: { flags: string; names: string[] }[] = [];
  for (const line of body) {
    const match = /^\s*(\S+)\s+(\S+)/.exec(line);
    if (!match) continue; // blank, or the one-word title
    const [, flags, name] = match as unknown as [string, string, string];
    // Legend rows ("T.. = Timeline support", "| = Source or sink filter") and titles.
    if (name === "=" || name.endsWith(":") || !/^[A-Za-z.|]{1,8}$/.test(flags)) continue;
    rows.push({ flags, names: name.split(",").filter(Boolean) });
  }
  return rows;
}

const LISTING_TIMEOUT_MS = 15_000;
/** The 5.1 filter listing is ~40 kB. */
const LISTING_MAX_BUFFER = 4 * 1024 * 1024;

/**
 * Runs `-encoders`, `-muxers` and `-filters` once each (in parallel) and returns the sets.
 * `launcher` is the argv prefix from `LocatedMediaTools.launcher` (`setpriv --pdeathsig KILL --`):
 * the launcher is executed with ffmpeg's path as its first argument. Rejects when a listing fails
 * or comes back empty (not an ffmpeg, or a broken one).
 */
export async function detectCapabilities(ffmpegPath: string, launcher: readonly string[] = []): Promise<FfmpegCapabilities> {
  const [encoders, muxers, filters] = await Promise.all(
    (["-encoders", "-muxers", "-filters"] as const).map((listing) => runListing(ffmpegPath, launcher, listing)),
  );
  const caps = {
    encoders: parseEncoders(encoders!),
    experimentalEncoders: parseExperimentalEncoders(encoders!),
    muxers: parseMuxers(muxers!),
    filters: parseFilters(filters!),
    opusInMp4: true,
  };
  if (caps.encoders.has("libopus")) caps.opusInMp4 = await muxesOpusInMp4(ffmpegPath, launcher);
  for (const [what, set] of [["encoders", caps.encoders], ["muxers", caps.muxers], ["filters", caps.filters]] as const) {
    if (set.size === 0) throw new Error(`${ffmpegPath} -${what} listed no ${what}`);
  }
  return caps;
}

/** A 0.1 s silent Opus stream muxed into mp4 without -strict: does this build take it? */
async function muxesOpusInMp4(ffmpegPath: string, launcher: readonly string[]): Promise<boolean> {
  const [binary, ...prefix] = launcher.length ? [...launcher, ffmpegPath] : [ffmpegPath];
  const args = [...prefix, "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-t", "0.1"];
  return new Promise((resolve) => {
    execFile(binary!, [...args, "-c:a", "libopus", "-f", "mp4", "-movflags", "frag_keyframe+empty_moov", "pipe:1"], { timeout: LISTING_TIMEOUT_MS, killSignal: "SIGKILL", encoding: "buffer", maxBuffer: LISTING_MAX_BUFFER }, (err) => resolve(!err));
  });
}

function runListing(ffmpegPath: string, launcher: readonly string[], listing: string): Promise<string> {
  const [binary, ...prefix] = launcher.length ? [...launcher, ffmpegPath] : [ffmpegPath];
  return new Promise((resolve, reject) => {
    execFile(
      binary!,
      [...prefix, "-hide_banner", listing],
      { timeout: LISTING_TIMEOUT_MS, killSignal: "SIGKILL", maxBuffer: LISTING_MAX_BUFFER, encoding: "utf8", windowsHide: true },
      (err, stdout) => {
        if (err) reject(new Error(`${ffmpegPath} ${listing} failed: ${err.message.split("\n")[0]}`, { cause: err }));
        else resolve(stdout);
      },
    );
  });
}

export type VideoCodecName = "h264" | "h265" | "vp9" | "av1";
export type AudioCodecName = "aac" | "opus" | "ac3" | "eac3";

/**
 * Encoders to try for each codec, best first: the first one the build has wins (`pickEncoder`).
 * This is PeerTube's scheme: its encoder profiles name an ordered `encodersToTry` list per stream
 * type (getDefaultEncodersToTry in packages/ffmpeg/src/ffmpeg-default-transcoding-profile.ts) and
 * FFmpegCommandWrapper.getEncoderBuilderResult (packages/ffmpeg/src/ffmpeg-command-wrapper.ts)
 * skips the ones `ffmpeg -encoders` does not list.
 * Only encoders whose flags the worker knows are listed (no hardware encoders, no libfdk_aac:
 * neither build here has them, so their flags are untested).
 * - av1: SVT-AV1 (fastest at a given quality), then libaom (the reference encoder: slow, but in
 *   nearly every build, including the npm-shipped 2018 one), then rav1e. `av1EncoderOptions`
 *   (av1-encoders.ts) translates the SVT-scale preset/CRF for each.
 */
export const VIDEO_ENCODERS: Record<VideoCodecName, readonly string[]> = {
  h264: ["libx264"],
  h265: ["libx265"],
  vp9: ["libvpx-vp9"],
  av1: ["libsvtav1", "libaom-av1", "librav1e"],
};

/**
 * - opus: libopus only. ffmpeg's native `opus` encoder is not a usable fallback for our outputs
 *   (checked on ffmpeg 5.1 and the 2018 build): it is experimental (refused without
 *   `-strict -2`), encodes only 48 kHz (AudioSettings allows 8/12/16/24 kHz Opus) and only mono or
 *   stereo (`-ac 6` fails with "Specified channel layout '5.1' is not supported"; without `-ac` a
 *   5.1 source is silently downmixed). A build without libopus reports opus as unavailable.
 * - ac3: ac3_fixed (the fixed-point AC-3 encoder) takes the same flags as ac3 (checked in both
 *   builds: 5.1 at 48 kHz, -b:a 640k), so it is a safe second choice.
 */
export const AUDIO_ENCODERS: Record<AudioCodecName, readonly string[]> = {
  aac: ["aac"],
  opus: ["libopus"],
  ac3: ["ac3", "ac3_fixed"],
  eac3: ["eac3"],
};

/** The first encoder of `list` this build has, or undefined. */
export function pickEncoder(list: readonly string[], caps: FfmpegCapabilities): string | undefined {
  return list.find((encoder) => caps.encoders.has(encoder));
}

/** True when ffmpeg needs `-strict experimental` to use this encoder in this build. */
export function isExperimental(encoder: string, caps: Pick<FfmpegCapabilities, "experimentalEncoders">): boolean {
  return caps.experimentalEncoders?.has(encoder) ?? false;
}

/**
 * One line for the worker's start-up log: the encoder each codec will use, the preferred encoders
 * the build lacks, and the codecs it cannot encode at all. E.g. for the npm-shipped 2018 build:
 * "encoders: h264=libx264 h265=libx265 vp9=libvpx-vp9 av1=libaom-av1 (experimental; no libsvtav1)
 * aac=aac opus=libopus ac3=ac3 eac3=eac3".
 */
export function describeCapabilities(caps: FfmpegCapabilities): string {
  const all: [string, readonly string[]][] = [...Object.entries(VIDEO_ENCODERS), ...Object.entries(AUDIO_ENCODERS)];
  const parts = all.map(([codec, list]) => {
    const picked = pickEncoder(list, caps);
    if (!picked) return `${codec}=none (no ${list.join(", ")})`;
    const missing = list.slice(0, list.indexOf(picked));
    const notes = [...(isExperimental(picked, caps) ? ["experimental"] : []), ...(missing.length ? [`no ${missing.join(", ")}`] : [])];
    return notes.length ? `${codec}=${picked} (${notes.join("; ")})` : `${codec}=${picked}`;
  });
  const unavailable = all.filter(([, list]) => !pickEncoder(list, caps)).map(([codec]) => codec);
  const opus = caps.opusInMp4 === false ? "; opus cannot go into fMP4 segments (this build calls it experimental)" : "";
  return `encoders: ${parts.join(" ")}${unavailable.length ? `; unavailable: ${unavailable.join(", ")}` : ""}${opus}`;
}
