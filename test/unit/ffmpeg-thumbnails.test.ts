import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ImageFormat, ThumbnailMode, ThumbnailSpecSchema } from "../../gen/rendition/v1/job_pb.js";
import { flattenCommand } from "../../workers/ffmpeg/command.js";
import { buildThumbnailPlan, jpegQscale, MAX_THUMBNAIL_IMAGES, spriteLayout, storyboardVtt, vttTime } from "../../workers/ffmpeg/thumbnails.js";
import type { MediaInfo } from "../../workers/ffmpeg/types.js";
import { INPUT_FORMATS } from "../../workers/ffmpeg/command.js";

const HD: MediaInfo = {
  durationMs: 10_000,
  width: 1920,
  height: 1080,
  videoCodec: "h264",
  bitrateKbps: 5000,
  framerate: 25,
  fileSizeBytes: 6_000_000,
  container: "mov,mp4,m4a,3gp,3g2,mj2",
  audioStreams: [],
};
const GLOBAL = ["-hide_banner", "-nostdin", "-loglevel", "error", "-progress", "pipe:1", "-nostats"];

function plan(spec: MessageInitShape<typeof ThumbnailSpecSchema>, info: MediaInfo = HD) {
  return buildThumbnailPlan({ file: "/in/source.mp4", info }, create(ThumbnailSpecSchema, spec), "/work/thumbs");
}

function vf(options: string[]): string | undefined {
  return options[options.indexOf("-vf") + 1];
}

describe("buildThumbnailPlan", () => {
  it("single: one seeked frame at the timestamp, jpeg at quality 80 by default", () => {
    const p = plan({ mode: ThumbnailMode.SINGLE, timestamp: 4.25, width: 320 });
    expect(p.files).toEqual(["/work/thumbs/thumbnail.jpg"]);
    expect(p.storyboard).toBeUndefined();
    expect(p.commands.map(flattenCommand)).toEqual([
      [
        ...GLOBAL,
        "-ss", "4.250", "-protocol_whitelist", "file", "-format_whitelist", INPUT_FORMATS, "-i", "/in/source.mp4",
        "-y",
        "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", "scale=320:180", "-frames:v", "1",
        "-c:v", "mjpeg", "-q:v", "8", "-update", "1", "-f", "image2",
        "/work/thumbs/thumbnail.jpg",
      ],
    ]);
  });

  it("single: clamps a timestamp past the end to the last frame, and keeps the source size by default", () => {
    const p = plan({ mode: ThumbnailMode.SINGLE, timestamp: 3600 });
    const argv = flattenCommand(p.commands[0]!);
    expect(argv[argv.indexOf("-ss") + 1]).toBe("9.960"); // 10 s minus one 25 fps frame
    expect(vf(p.commands[0]!.outputs[0]!.options)).toBe("scale=1920:1080");
  });

  it("maps the image formats: jpeg -q:v from quality, png lossless, webp -quality", () => {
    expect(jpegQscale(100)).toBe(2);
    expect(jpegQscale(1)).toBe(31);
    expect(jpegQscale(80)).toBe(8);
    const png = plan({ mode: ThumbnailMode.SINGLE, format: ImageFormat.PNG, quality: 10 });
    expect(png.files).toEqual(["/work/thumbs/thumbnail.png"]);
    expect(png.commands[0]!.outputs[0]!.options).toEqual(expect.arrayContaining(["-c:v", "png"]));
    expect(png.commands[0]!.outputs[0]!.options).not.toContain("-q:v");
    const webp = plan({ mode: ThumbnailMode.SINGLE, format: ImageFormat.WEBP, quality: 65 });
    expect(webp.files).toEqual(["/work/thumbs/thumbnail.webp"]);
    const options = webp.commands[0]!.outputs[0]!.options;
    expect(options.slice(options.indexOf("-c:v"), options.indexOf("-c:v") + 4)).toEqual(["-c:v", "libwebp", "-quality", "65"]);
  });

  it("keeps the aspect with one side given and covers + crops an exact box with both", () => {
    expect(vf(plan({ mode: ThumbnailMode.SINGLE, height: 90 }).commands[0]!.outputs[0]!.options)).toBe("scale=160:90");
    expect(vf(plan({ mode: ThumbnailMode.SINGLE, width: 200, height: 200 }).commands[0]!.outputs[0]!.options)).toBe(
      "scale=200:200:force_original_aspect_ratio=increase,crop=200:200",
    );
  });

  it("interval: fps=1/interval, one numbered image per interval that starts before the end", () => {
    const p = plan({ mode: ThumbnailMode.INTERVAL, intervalSeconds: 2.5, width: 160 });
    expect(p.files).toEqual(["/work/thumbs/thumb_0001.jpg", "/work/thumbs/thumb_0002.jpg", "/work/thumbs/thumb_0003.jpg", "/work/thumbs/thumb_0004.jpg"]);
    expect(p.commands).toHaveLength(1);
    expect(p.commands[0]!.inputs).toEqual([{ options: ["-protocol_whitelist", "file", "-format_whitelist", INPUT_FORMATS], file: "/in/source.mp4" }]);
    expect(p.commands[0]!.outputs).toEqual([
      {
        options: ["-map", "0:v:0", "-an", "-sn", "-dn", "-vf", "fps=1000/2500,scale=160:90", "-frames:v", "4", "-c:v", "mjpeg", "-q:v", "8", "-start_number", "1", "-f", "image2"],
        file: "/work/thumbs/thumb_%04d.jpg",
      },
    ]);
  });

  it("interval: a hostile spec stops at the image cap and keeps its spacing", () => {
    const long = { ...HD, durationMs: 24 * 3600_000 };
    const p = plan({ mode: ThumbnailMode.INTERVAL, intervalSeconds: 0.5 }, long);
    expect(p.files).toHaveLength(MAX_THUMBNAIL_IMAGES);
    expect(p.files.at(-1)).toBe("/work/thumbs/thumb_1000.jpg");
    expect(vf(p.commands[0]!.outputs[0]!.options)).toMatch(/^fps=1000\/500,/);
  });

  it("timestamps: one image per timestamp in the given order, clamped, ten seeks per process", () => {
    const timestamps = [1, 0, 99, ...Array.from({ length: 9 }, (_, i) => i + 0.5)];
    const p = plan({ mode: ThumbnailMode.TIMESTAMPS, timestamps, width: 320 });
    expect(p.files).toHaveLength(12);
    expect(p.files[0]).toBe("/work/thumbs/thumb_0001.jpg");
    expect(p.files[11]).toBe("/work/thumbs/thumb_0012.jpg");
    expect(p.commands).toHaveLength(2);
    const [first, second] = p.commands;
    expect(first!.inputs).toHaveLength(10);
    expect(first!.inputs.slice(0, 3).map((i) => i.options)).toEqual([
      ["-ss", "1.000", "-protocol_whitelist", "file", "-format_whitelist", INPUT_FORMATS],
      ["-ss", "0.000", "-protocol_whitelist", "file", "-format_whitelist", INPUT_FORMATS],
      ["-ss", "9.960", "-protocol_whitelist", "file", "-format_whitelist", INPUT_FORMATS],
    ]);
    expect(first!.outputs[2]!.options.slice(0, 2)).toEqual(["-map", "2:v:0"]);
    expect(first!.outputs[2]!.file).toBe("/work/thumbs/thumb_0003.jpg");
    expect(second!.inputs).toHaveLength(2);
    expect(second!.outputs.map((o) => [o.options[1], o.file])).toEqual([
      ["0:v:0", "/work/thumbs/thumb_0011.jpg"],
      ["1:v:0", "/work/thumbs/thumb_0012.jpg"],
    ]);
  });

  it("sprite: 160 px tiles by default, a COLSxROWS grid with rows = ceil(count / cols), and a storyboard", () => {
    const p = plan({ mode: ThumbnailMode.SPRITE, intervalSeconds: 1, spriteColumns: 4 });
    expect(p.files).toEqual(["/work/thumbs/sprite.jpg"]);
    expect(p.commands[0]!.outputs[0]!.options).toEqual([
      "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", "fps=1000/1000,scale=160:90,tile=4x3", "-frames:v", "1",
      "-c:v", "mjpeg", "-q:v", "8", "-update", "1", "-f", "image2",
    ]);
    expect(p.storyboard!.file).toBe("/work/thumbs/storyboard.vtt");
    const cues = p.storyboard!.content.split("\n\n");
    expect(cues[0]).toBe("WEBVTT");
    expect(cues).toHaveLength(11);
    expect(cues[1]).toBe("00:00:00.000 --> 00:00:01.000\nsprite.jpg#xywh=0,0,160,90");
    expect(cues[4]).toBe("00:00:03.000 --> 00:00:04.000\nsprite.jpg#xywh=480,0,160,90");
    expect(cues[5]).toBe("00:00:04.000 --> 00:00:05.000\nsprite.jpg#xywh=0,90,160,90");
    expect(cues[10]).toBe("00:00:09.000 --> 00:00:10.000\nsprite.jpg#xywh=160,180,160,90\n");
  });

  it("sprite: the last cue ends at the duration, and fewer tiles than columns make one row", () => {
    const { layout } = spriteLayout({ ...HD, durationMs: 2_500 }, create(ThumbnailSpecSchema, { mode: ThumbnailMode.SPRITE, intervalSeconds: 1, width: 100 }));
    expect(layout).toEqual({ tile: { width: 100, height: 56 }, columns: 3, rows: 1, count: 3, intervalMs: 1000 });
    expect(storyboardVtt(layout, 2_500, "sprite.webp")).toBe(
      "WEBVTT\n\n" +
        "00:00:00.000 --> 00:00:01.000\nsprite.webp#xywh=0,0,100,56\n\n" +
        "00:00:01.000 --> 00:00:02.000\nsprite.webp#xywh=100,0,100,56\n\n" +
        "00:00:02.000 --> 00:00:02.500\nsprite.webp#xywh=200,0,100,56\n",
    );
  });

  it("sprite: a long input widens the interval so the sheet stays bounded and still covers it all", () => {
    const twoHours = { ...HD, durationMs: 2 * 3600_000 };
    const { layout } = spriteLayout(twoHours, create(ThumbnailSpecSchema, { mode: ThumbnailMode.SPRITE, intervalSeconds: 1 }));
    expect(layout.count).toBe(MAX_THUMBNAIL_IMAGES);
    expect(layout.intervalMs).toBe(7200);
    expect(layout.rows * layout.tile.height).toBeLessThanOrEqual(16383);
    expect(layout.count * layout.intervalMs).toBeGreaterThanOrEqual(twoHours.durationMs);
  });

  it("formats WebVTT times", () => {
    expect(vttTime(0)).toBe("00:00:00.000");
    expect(vttTime(3_723_004)).toBe("01:02:03.004");
  });
});
