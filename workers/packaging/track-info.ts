import { open, readFile } from "node:fs/promises";
import { createFile, MP4BoxBuffer, type Movie } from "mp4box";

/** What the sample entry of an ISO BMFF track says about it. */
export interface TrackInfo {
  /** RFC 6381 codec string from the sample entry (avc1.64001f, hvc1.1.6.L93.90, vp09.00.31.08, av01.0.05M.08, mp4a.40.2, opus, ac-3, ec-3). */
  codec: string;
  timescale: number;
  width?: number;
  height?: number;
  channels?: number;
  sampleRate?: number;
}

/**
 * The first track of an mp4 / fMP4 init segment, read by mp4box.js (GPAC's parser, the one
 * browsers' players are tested against), so CODECS comes from the real avcC/hvcC/vpcC/av1C/esds
 * boxes, not from guesses. mp4box spells Opus "Opus"; RFC 6381 / MSE use "opus".
 */
export async function readTrackInfo(file: string): Promise<TrackInfo> {
  const bytes = await readFile(file);
  const movie = parseMovie(bytes);
  const track = movie?.tracks[0];
  if (!track) throw new Error(`${file} has no track mp4box can read`);
  return {
    codec: track.codec === "Opus" ? "opus" : track.codec,
    timescale: track.timescale,
    width: track.video?.width,
    height: track.video?.height,
    channels: track.audio?.channel_count,
    sampleRate: track.audio?.sample_rate,
  };
}

function parseMovie(bytes: Buffer): Movie | undefined {
  const file = createFile();
  let movie: Movie | undefined;
  file.onReady = (info) => {
    movie = info;
  };
  file.appendBuffer(MP4BoxBuffer.fromArrayBuffer(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength), 0));
  file.flush();
  return movie;
}

/**
 * When a media segment's first sample is presented, in the track's timescale: the first track
 * fragment's baseMediaDecodeTime (tfdt, ISO/IEC 14496-12 §8.8.12) plus the first sample's
 * composition offset (trun, §8.8.8). A segment starts with a keyframe, which in a closed GOP is
 * also its earliest presented frame. Reads only the boxes before the first mdat.
 */
export async function readFragmentStart(file: string): Promise<number> {
  const handle = await open(file, "r");
  try {
    const head = Buffer.alloc(64 * 1024);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    const traf = findBox(head.subarray(0, bytesRead), ["moof", "traf"]);
    const tfdt = traf && findBox(traf, ["tfdt"]);
    if (!tfdt) throw new Error(`${file} has no moof/traf/tfdt box`);
    const decodeTime = tfdt.readUInt8(0) === 1 ? Number(tfdt.readBigUInt64BE(4)) : tfdt.readUInt32BE(4);
    const trun = findBox(traf, ["trun"]);
    return decodeTime + (trun ? firstCompositionOffset(trun) : 0);
  } finally {
    await handle.close();
  }
}

/** The first sample's composition time offset in a trun payload; 0 when the box carries none. */
function firstCompositionOffset(trun: Buffer): number {
  const version = trun.readUInt8(0);
  const flags = trun.readUIntBE(1, 3);
  if (!(flags & 0x800) || trun.readUInt32BE(4) === 0) return 0;
  let offset = 8; // version+flags, sample_count
  if (flags & 0x001) offset += 4; // data_offset
  if (flags & 0x004) offset += 4; // first_sample_flags
  for (const field of [0x100, 0x200, 0x400]) if (flags & field) offset += 4; // duration, size, flags
  return version === 0 ? trun.readUInt32BE(offset) : trun.readInt32BE(offset);
}

/** The payload of the box at `path` (each name a child of the previous), or undefined. */
function findBox(data: Buffer, path: string[]): Buffer | undefined {
  let offset = 0;
  while (offset + 8 <= data.length) {
    let size = data.readUInt32BE(offset);
    const type = data.toString("latin1", offset + 4, offset + 8);
    let header = 8;
    if (size === 1) {
      if (offset + 16 > data.length) return undefined;
      size = Number(data.readBigUInt64BE(offset + 8));
      header = 16;
    } else if (size === 0) {
      size = data.length - offset;
    }
    if (size < header) return undefined;
    if (type === path[0]) {
      const payload = data.subarray(offset + header, Math.min(data.length, offset + size));
      return path.length === 1 ? payload : findBox(payload, path.slice(1));
    }
    offset += size;
  }
  return undefined;
}
