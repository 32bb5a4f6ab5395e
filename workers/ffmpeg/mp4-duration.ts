import { open, type FileHandle } from "node:fs/promises";

/**
 * The duration of an mp4/mov file from its movie header (`moov`/`mvhd`), in ms, read without
 * starting a process: what ffprobe reports as the format duration for the files we write.
 * Undefined when the file has no readable movie header (then ask ffprobe).
 */
export async function mp4DurationMs(file: string): Promise<number | undefined> {
  const handle = await open(file, "r");
  try {
    const { size } = await handle.stat();
    const moov = await findBox(handle, 0, size, "moov");
    if (!moov) return undefined;
    const mvhd = await findBox(handle, moov.body, moov.end, "mvhd");
    if (!mvhd || mvhd.end - mvhd.body < 32) return undefined;
    const b = Buffer.alloc(32);
    await handle.read(b, 0, 32, mvhd.body);
    // version 0: 32-bit creation/modification times and duration; version 1: 64-bit ones.
    const [timescale, duration] = b[0] === 1 ? [b.readUInt32BE(20), Number(b.readBigUInt64BE(24))] : [b.readUInt32BE(12), b.readUInt32BE(16)];
    if (!timescale) return undefined;
    return Math.round((duration * 1000) / timescale);
  } finally {
    await handle.close();
  }
}

/** The first box of `type` among the boxes in [start, end): where its body starts and where it ends. */
async function findBox(handle: FileHandle, start: number, end: number, type: string): Promise<{ body: number; end: number } | undefined> {
  const header = Buffer.alloc(16);
  let offset = start;
  while (offset + 8 <= end) {
    await handle.read(header, 0, 16, offset);
    let size = header.readUInt32BE(0);
    let headerSize = 8;
    if (size === 1) {
      size = Number(header.readBigUInt64BE(8));
      headerSize = 16;
    } else if (size === 0) {
      size = end - offset; // the last box runs to the end
    }
    if (size < headerSize || offset + size > end) return undefined; // not a box structure we trust
    if (header.toString("latin1", 4, 8) === type) return { body: offset + headerSize, end: offset + size };
    offset += size;
  }
  return undefined;
}
