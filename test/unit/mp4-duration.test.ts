import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { mp4DurationMs } from "../../workers/ffmpeg/mp4-duration.js";

const dir = mkdtempSync(join(tmpdir(), "rendition-mp4-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function box(type: string, body: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32BE(8 + body.length, 0);
  header.write(type, 4, "latin1");
  return Buffer.concat([header, body]);
}

/** A 64-bit-size box (size field 1, then the real size). */
function largeBox(type: string, body: Buffer): Buffer {
  const header = Buffer.alloc(16);
  header.writeUInt32BE(1, 0);
  header.write(type, 4, "latin1");
  header.writeBigUInt64BE(BigInt(16 + body.length), 8);
  return Buffer.concat([header, body]);
}

function mvhd(version: 0 | 1, timescale: number, duration: number): Buffer {
  const body = Buffer.alloc(version === 1 ? 112 : 100);
  body[0] = version;
  if (version === 1) {
    body.writeUInt32BE(timescale, 20);
    body.writeBigUInt64BE(BigInt(duration), 24);
  } else {
    body.writeUInt32BE(timescale, 12);
    body.writeUInt32BE(duration, 16);
  }
  return box("mvhd", body);
}

function file(name: string, ...boxes: Buffer[]): string {
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat(boxes));
  return path;
}

describe("mp4DurationMs", () => {
  it("reads a version 0 movie header after other boxes (faststart: moov before mdat)", async () => {
    const path = file("v0.mp4", box("ftyp", Buffer.from("isom\0\0\0\0")), box("moov", Buffer.concat([mvhd(0, 1000, 2021), box("trak", Buffer.alloc(20))])), box("mdat", Buffer.alloc(64)));
    expect(await mp4DurationMs(path)).toBe(2021);
  });

  it("reads a version 1 header at the end of the file, past a 64-bit mdat", async () => {
    const path = file("v1.mp4", box("ftyp", Buffer.alloc(8)), largeBox("mdat", Buffer.alloc(100)), box("moov", mvhd(1, 90_000, 90_000 * 7261)));
    expect(await mp4DurationMs(path)).toBe(7_261_000);
  });

  it("rounds to milliseconds", async () => {
    expect(await mp4DurationMs(file("round.mp4", box("moov", mvhd(0, 44_100, 88_245))))).toBe(2001);
  });

  it.each([
    ["no moov", () => file("nomoov.mp4", box("ftyp", Buffer.alloc(8)), box("mdat", Buffer.alloc(32)))],
    ["a zero timescale", () => file("zero.mp4", box("moov", mvhd(0, 0, 10)))],
    ["a box claiming more bytes than the file has", () => file("short.mp4", Buffer.from([0, 0, 0xff, 0xff, 0x6d, 0x6f, 0x6f, 0x76]))],
    ["text", () => file("text.mp4", Buffer.from("this is not an mp4 file at all\n"))],
  ])("answers undefined for %s (the caller then asks ffprobe)", async (_what, make) => {
    expect(await mp4DurationMs(make())).toBeUndefined();
  });
});
