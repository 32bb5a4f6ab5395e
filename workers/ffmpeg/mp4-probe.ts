import { open, type FileHandle } from "node:fs/promises";

/**
 * What ffprobe would report for a plain mp4/mov file, read from its movie header (`moov`) in
 * TypeScript instead of starting a process (ffprobe's start-up alone takes ~70 ms on Debian, most
 * of a small job's probe). Shaped as ffprobe's `-show_format -show_streams` JSON so that
 * `parseProbe` applies the same checks and limits to it.
 *
 * Only the common, unambiguous case is answered, computed the way libavformat's mov demuxer does:
 *   - format duration = mvhd duration, format bit_rate = file size * 8 / duration;
 *   - one video track (H.264 `avc1`/`avc3` with avcC, or HEVC `hvc1`/`hev1` with hvcC), its size
 *     from the sample entry, avg_frame_rate = samples * timescale / sum of sample durations (stts);
 *   - audio tracks of AAC-LC (`mp4a` with a version 0 sound description, as in mp4 files; esds object type 0x40, AudioSpecificConfig object type 2,
 *     1 to 6 channels, 32 kHz or more), channels and sample rate from the AudioSpecificConfig as the decoder reads them;
 *     bit_rate = sample bytes (stsz) * 8 * timescale / sum of sample durations; language (mdhd).
 * Anything else gives undefined and the caller asks ffprobe: no moov or a moov past the end
 * (truncated, or not mp4 at all), fragments (moof/mvex), a rotation or other matrix, another
 * codec, any track that is neither video nor audio (subtitles, timecode, chapters), a second
 * video track, a QuickTime language code, any box that does not add up.
 */
export interface Mp4ProbeJson {
  format: { format_name: string; duration: string; bit_rate: string };
  streams: Array<Record<string, unknown>>;
}

const FORMAT_NAME = "mov,mp4,m4a,3gp,3g2,mj2";
/** A movie header larger than this is not worth reading into memory here: ffprobe handles it. */
const MAX_MOOV_BYTES = 16 * 1024 * 1024;
const IDENTITY = [0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000];
const VIDEO_CODECS: Record<string, { codec: string; config: string }> = {
  avc1: { codec: "h264", config: "avcC" },
  avc3: { codec: "h264", config: "avcC" },
  hvc1: { codec: "hevc", config: "hvcC" },
  hev1: { codec: "hevc", config: "hvcC" },
};
const AAC_RATES = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

class NotPlain extends Error {}
const bail = (): never => {
  throw new NotPlain();
};

interface Box {
  type: string;
  /** Body start and end, relative to the buffer. */
  body: number;
  end: number;
}

/** The boxes in [start, end) of `buf`; throws NotPlain when they do not add up exactly. */
function children(buf: Buffer, start: number, end: number): Box[] {
  const boxes: Box[] = [];
  let offset = start;
  while (offset < end) {
    if (offset + 8 > end) bail();
    let size = buf.readUInt32BE(offset);
    let header = 8;
    if (size === 1) {
      if (offset + 16 > end) bail();
      size = Number(buf.readBigUInt64BE(offset + 8));
      header = 16;
    } else if (size === 0) size = end - offset;
    if (size < header || offset + size > end) bail();
    boxes.push({ type: buf.toString("latin1", offset + 4, offset + 8), body: offset + header, end: offset + size });
    offset += size;
  }
  return boxes;
}

function only(boxes: Box[], type: string): Box {
  const found = boxes.filter((b) => b.type === type);
  if (found.length !== 1) bail();
  return found[0]!;
}

function need(buf: Buffer, box: Box, bytes: number): void {
  if (box.end - box.body < bytes) bail();
  void buf;
}

/** The top-level boxes of the file, reading only their headers; the moov's body read whole. */
async function readMoov(handle: FileHandle, size: number): Promise<Buffer | undefined> {
  const header = Buffer.alloc(16);
  let offset = 0;
  let moov: Buffer | undefined;
  while (offset + 8 <= size) {
    await handle.read(header, 0, 16, offset);
    let boxSize = header.readUInt32BE(0);
    if (boxSize === 1) boxSize = Number(header.readBigUInt64BE(8));
    else if (boxSize === 0) boxSize = size - offset;
    const type = header.toString("latin1", 4, 8);
    if (boxSize < 8 || offset + boxSize > size) return undefined;
    if (type === "moof" || type === "mfra") return undefined; // fragmented
    if (type === "moov") {
      if (moov || boxSize > MAX_MOOV_BYTES) return undefined;
      moov = Buffer.alloc(boxSize);
      const { bytesRead } = await handle.read(moov, 0, boxSize, offset);
      if (bytesRead !== boxSize) return undefined;
    }
    offset += boxSize;
  }
  return offset === size ? moov : undefined;
}

function fullBoxVersion(buf: Buffer, box: Box): number {
  need(buf, box, 4);
  return buf[box.body]!;
}

/** mdhd: timescale and language (ISO 639-2/T packed in 15 bits). */
function mediaHeader(buf: Buffer, mdhd: Box): { timescale: number; language: string } {
  const v = fullBoxVersion(buf, mdhd);
  const at = mdhd.body + (v === 1 ? 20 : 12);
  need(buf, mdhd, v === 1 ? 36 : 24);
  const timescale = buf.readUInt32BE(at);
  const code = buf.readUInt16BE(at + (v === 1 ? 12 : 8));
  if (!timescale) bail();
  // 0x7fff: unspecified (ffmpeg's .mov without a language), no tag. Below 0x400: a Macintosh
  // language code, mapped by a table (0 is English): ffprobe's business.
  if (code === 0x7fff) return { timescale, language: "" };
  if (code < 0x400) bail();
  const language = [10, 5, 0].map((shift) => String.fromCharCode(((code >> shift) & 0x1f) + 0x60)).join("");
  if (!/^[a-z]{3}$/.test(language)) bail();
  return { timescale, language };
}

/** stts: sample count and the sum of their durations. */
function timeToSample(buf: Buffer, stts: Box): { samples: number; duration: number } {
  need(buf, stts, 8);
  const entries = buf.readUInt32BE(stts.body + 4);
  if (stts.end - stts.body < 8 + entries * 8) bail();
  let samples = 0;
  let duration = 0;
  for (let i = 0; i < entries; i++) {
    const count = buf.readUInt32BE(stts.body + 8 + i * 8);
    samples += count;
    duration += count * buf.readUInt32BE(stts.body + 12 + i * 8);
  }
  if (!samples || !duration) bail();
  return { samples, duration };
}

/** stsz: total bytes of the samples. */
function sampleBytes(buf: Buffer, stsz: Box, samples: number): number {
  need(buf, stsz, 12);
  const fixed = buf.readUInt32BE(stsz.body + 4);
  const count = buf.readUInt32BE(stsz.body + 8);
  if (count !== samples) bail();
  if (fixed) return fixed * count;
  if (stsz.end - stsz.body < 12 + count * 4) bail();
  let total = 0;
  for (let i = 0; i < count; i++) total += buf.readUInt32BE(stsz.body + 12 + i * 4);
  return total;
}

/** The tkhd matrix is the identity (no rotation or flip: ffprobe would report side data). */
function checkMatrix(buf: Buffer, tkhd: Box): void {
  const v = fullBoxVersion(buf, tkhd);
  const at = tkhd.body + (v === 1 ? 52 : 40);
  need(buf, tkhd, (v === 1 ? 52 : 40) + 36);
  IDENTITY.forEach((value, i) => {
    if (buf.readUInt32BE(at + i * 4) !== value) bail();
  });
}

/** An ES descriptor's length: up to four 7-bit groups. */
function descriptorLength(buf: Buffer, at: number, end: number): { length: number; next: number } {
  let length = 0;
  for (let i = 0; i < 4; i++) {
    if (at >= end) bail();
    const byte = buf[at++]!;
    length = (length << 7) | (byte & 0x7f);
    if (!(byte & 0x80)) return { length, next: at };
  }
  return bail();
}

/** esds -> the AAC AudioSpecificConfig's object type, sample rate and channel configuration. */
function aacConfig(buf: Buffer, esds: Box): { objectType: number; sampleRate: number; channels: number } {
  let at = esds.body + 4; // version + flags
  const end = esds.end;
  const tag = (expected: number) => {
    if (buf[at] !== expected) bail();
    const { length, next } = descriptorLength(buf, at + 1, end);
    if (next + length > end) bail();
    at = next;
    return next + length;
  };
  tag(0x03); // ES_Descriptor
  const flags = buf[at + 2]!;
  at += 3;
  if (flags & 0x80) at += 2; // dependsOn_ES_ID
  if (flags & 0x40) at += 1 + buf[at]!; // URL
  if (flags & 0x20) at += 2; // OCR_ES_Id
  tag(0x04); // DecoderConfigDescriptor
  if (buf[at] !== 0x40) bail(); // MPEG-4 audio
  at += 13;
  const asEnd = tag(0x05); // DecoderSpecificInfo: AudioSpecificConfig
  if (asEnd - at < 2) bail();
  const bits = buf.readUInt16BE(at);
  const objectType = bits >> 11;
  const rateIndex = (bits >> 7) & 0x0f;
  const channels = (bits >> 3) & 0x0f;
  if (rateIndex >= AAC_RATES.length) bail();
  return { objectType, sampleRate: AAC_RATES[rateIndex]!, channels };
}

function ratio(num: number, den: number): string {
  const gcd = (a: number, b: number): number => (b ? gcd(b, a % b) : a);
  const g = gcd(num, den) || 1;
  return `${num / g}/${den / g}`;
}

function parseMoov(moov: Buffer, fileSize: number): Mp4ProbeJson {
  const top = children(moov, 8, moov.length);
  if (top.some((b) => b.type === "mvex")) bail();
  const mvhd = only(top, "mvhd");
  const v = fullBoxVersion(moov, mvhd);
  need(moov, mvhd, v === 1 ? 32 : 20);
  const movieTimescale = moov.readUInt32BE(mvhd.body + (v === 1 ? 20 : 12));
  const movieDuration = v === 1 ? Number(moov.readBigUInt64BE(mvhd.body + 24)) : moov.readUInt32BE(mvhd.body + 16);
  if (!movieTimescale || !movieDuration) bail();
  // libavformat keeps durations in microseconds (AV_TIME_BASE).
  const durationUs = Math.round((movieDuration * 1_000_000) / movieTimescale);

  const streams: Array<Record<string, unknown>> = [];
  let videos = 0;
  for (const trak of top.filter((b) => b.type === "trak")) {
    const parts = children(moov, trak.body, trak.end);
    const tkhd = only(parts, "tkhd");
    const mdia = only(parts, "mdia");
    const media = children(moov, mdia.body, mdia.end);
    const hdlr = only(media, "hdlr");
    need(moov, hdlr, 12);
    const handler = moov.toString("latin1", hdlr.body + 8, hdlr.body + 12);
    const { timescale, language } = mediaHeader(moov, only(media, "mdhd"));
    const minf = only(media, "minf");
    const stbl = only(children(moov, minf.body, minf.end), "stbl");
    const table = children(moov, stbl.body, stbl.end);
    const stsd = only(table, "stsd");
    need(moov, stsd, 8);
    if (moov.readUInt32BE(stsd.body + 4) !== 1) bail(); // one sample description
    const [entry] = children(moov, stsd.body + 8, stsd.end);
    const { samples, duration } = timeToSample(moov, only(table, "stts"));
    const bytes = sampleBytes(moov, only(table, "stsz"), samples);
    const index = streams.length;
    if (handler === "vide") {
      if (++videos > 1) bail();
      checkMatrix(moov, tkhd);
      const codec = VIDEO_CODECS[entry!.type] ?? bail();
      // VisualSampleEntry: 8 bytes SampleEntry, 16 pre-defined/reserved, then width, height; 78 bytes before its boxes.
      if (entry!.end - entry!.body < 78) bail();
      const width = moov.readUInt16BE(entry!.body + 24);
      const height = moov.readUInt16BE(entry!.body + 26);
      only(children(moov, entry!.body + 78, entry!.end), codec.config);
      if (!width || !height) bail();
      streams.push({
        index,
        codec_type: "video",
        codec_name: codec.codec,
        width,
        height,
        avg_frame_rate: ratio(timescale * samples, duration),
        r_frame_rate: ratio(timescale * samples, duration),
        duration: (duration / timescale).toFixed(6),
        bit_rate: String(Math.floor((bytes * 8 * timescale) / duration)),
        disposition: { attached_pic: 0 },
        tags: language ? { language } : {},
      });
    } else if (handler === "soun") {
      if (entry!.type !== "mp4a") bail();
      // AudioSampleEntry (version 0): 8 bytes SampleEntry, version, 6 reserved, channels, sample size, 4, rate 16.16; 28 bytes.
      if (entry!.end - entry!.body < 28 || moov.readUInt16BE(entry!.body + 8) !== 0) bail();
      // The decoder (and so ffprobe) goes by the AudioSpecificConfig: the mp4 muxer writes 2
      // channels in the sample entry whatever the stream has. Configurations 1-6 are 1-6 channels.
      const { objectType, channels, sampleRate } = aacConfig(moov, only(children(moov, entry!.body + 28, entry!.end), "esds"));
      // Below 32 kHz the stream may carry SBR signalled only in-band (HE-AAC), which doubles
      // the rate the decoder reports: ffprobe decodes a frame to know.
      if (objectType !== 2 || channels < 1 || channels > 6 || sampleRate < 32000) bail();
      streams.push({
        index,
        codec_type: "audio",
        codec_name: "aac",
        sample_rate: String(sampleRate),
        channels,
        duration: (duration / timescale).toFixed(6),
        bit_rate: String(Math.floor((bytes * 8 * timescale) / duration)),
        disposition: { attached_pic: 0 },
        tags: language ? { language } : {},
      });
    } else {
      bail(); // subtitles, timecode, chapters, hint, metadata: ffprobe knows them better
    }
  }
  if (videos !== 1) bail();
  return {
    format: { format_name: FORMAT_NAME, duration: (durationUs / 1_000_000).toFixed(6), bit_rate: String(Math.floor((fileSize * 8 * 1_000_000) / durationUs)) },
    streams,
  };
}

/** ffprobe-shaped JSON for a plain mp4/mov file, or undefined when ffprobe should be asked. */
export async function probeMp4Header(file: string): Promise<Mp4ProbeJson | undefined> {
  const handle = await open(file, "r");
  try {
    const { size } = await handle.stat();
    const moov = await readMoov(handle, size);
    if (!moov) return undefined;
    return parseMoov(moov, size);
  } catch (err) {
    if (err instanceof NotPlain || err instanceof RangeError) return undefined;
    throw err;
  } finally {
    await handle.close();
  }
}
