/**
 * A MediaTools double for bench/dispatch.ts only: it "probes" at once (a fixed 2 s 640x360 H.264
 * + AAC description) and "encodes" by writing a tiny mp4 (an ftyp and a moov with a movie header
 * saying 2 s, which is all the worker reads of an mp4 output: its duration) to each output file of
 * the command. Everything around it is real: the command is built, the input copied in, the output
 * copied out, every lease-guarded write and queue ack made.
 */
import { writeFile } from "node:fs/promises";
import type { FfmpegCapabilities, MediaInfo, MediaTools } from "../workers/ffmpeg/types.js";

function box(type: string, body: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32BE(8 + body.length, 0);
  header.write(type, 4, "latin1");
  return Buffer.concat([header, body]);
}

/** ftyp + moov/mvhd (version 0, timescale 1000, duration 2000): 136 bytes. */
export function tinyMp4(durationMs = 2000): Buffer {
  const ftyp = box("ftyp", Buffer.from("isom\0\0\x02\0isomiso2mp41", "latin1"));
  const mvhd = Buffer.alloc(100);
  mvhd.writeUInt32BE(1000, 12); // timescale
  mvhd.writeUInt32BE(durationMs, 16); // duration
  mvhd.writeUInt32BE(0x00010000, 20); // rate 1.0
  mvhd.writeUInt16BE(0x0100, 24); // volume 1.0
  mvhd.writeUInt32BE(0x00010000, 36); // matrix: identity
  mvhd.writeUInt32BE(0x00010000, 52);
  mvhd.writeUInt32BE(0x40000000, 68);
  mvhd.writeUInt32BE(2, 96); // next track id
  return Buffer.concat([ftyp, box("moov", box("mvhd", mvhd))]);
}

const CAPABILITIES: FfmpegCapabilities = {
  encoders: new Set(["libx264", "aac"]),
  muxers: new Set(["mp4", "mov", "hls", "dash", "webm", "matroska", "mpegts"]),
  filters: new Set(["scale", "split", "format", "fps", "setsar"]),
};

export function noopMediaTools(): MediaTools {
  const output = tinyMp4();
  return {
    ffmpegPath: "noop-ffmpeg",
    ffprobePath: "noop-ffprobe",
    description: "no-op media tools (bench/noop-media-tools.ts)",
    capabilities: async () => CAPABILITIES,
    probe: async (_file, _limits, options): Promise<MediaInfo> => {
      options?.signal?.throwIfAborted();
      return {
        durationMs: 2000,
        width: 640,
        height: 360,
        videoCodec: "h264",
        bitrateKbps: 500,
        framerate: 30,
        fileSizeBytes: output.length,
        container: "mov,mp4,m4a,3gp,3g2,mj2",
        audioStreams: [{ index: 0, codec: "aac", channels: 2, sampleRate: 44100, bitrateKbps: 128, language: "" }],
        subtitleStreams: [],
      };
    },
    run: async (command, options) => {
      options?.signal?.throwIfAborted();
      options?.onStart?.({ pid: process.pid, argv: [] });
      await Promise.all(command.outputs.map((o) => writeFile(o.file, output)));
      // As the real adapter does once ffmpeg has exited successfully.
      options?.onProgress?.(1);
    },
  };
}
