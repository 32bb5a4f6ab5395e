import { describe, expect, it } from "vitest";
import { floorMicroseconds, planChunks } from "../../workers/chunking/chunk-plan.js";
import { chunkVideoCommand, seekOption } from "../../workers/chunking/chunk-commands.js";
import { flattenCommand } from "../../workers/ffmpeg/command.js";

describe("chunk plan", () => {
  it("keeps short inputs in one piece and puts every frame in exactly one chunk", async () => {
    const times = (n: number) => Array.from({ length: n }, (_, i) => ({ pts: BigInt(i * 512), num: 1, den: 12800 }));
    expect(planChunks(times(100), { chunkSeconds: 2, alignSeconds: 2, minInputSeconds: 5 })).toBeUndefined();
    // 30 s at 25 fps, chunks of 12 s (10 rounded to the 4 s segments); the 6 s rest, under half
    // a chunk, joins the chunk before it.
    const plan = planChunks(times(750), { chunkSeconds: 10, alignSeconds: 4, minInputSeconds: 5 })!;
    expect(plan.map((c) => [c.startFrame, c.frames])).toEqual([[0, 300], [300, 450]]);
    expect(plan[1]!.seekUs).toBe(12_000_000);
    // 32 s: the 8 s rest is a chunk of its own.
    const longer = planChunks(times(800), { chunkSeconds: 10, alignSeconds: 4, minInputSeconds: 5 })!;
    expect(longer.map((c) => [c.startFrame, c.frames])).toEqual([[0, 300], [300, 300], [600, 200]]);
    expect(longer.map((c) => c.durationSeconds)).toEqual([12, 12, 8]);
    // Presentation order, whatever order the packets came in (B-frames decode out of order).
    expect(planChunks([...times(800)].reverse(), { chunkSeconds: 10, alignSeconds: 4, minInputSeconds: 5 })).toEqual(longer);
  });

  it("seeks to the first frame's time rounded down to the microsecond", () => {
    expect(floorMicroseconds({ pts: 120n, num: 1001, den: 30000 })).toBe(4_004_000);
    expect(floorMicroseconds({ pts: 1n, num: 1, den: 3 })).toBe(333_333);
    expect(floorMicroseconds({ pts: -1n, num: 1, den: 3 })).toBe(-333_334);
    expect(seekOption(4_003_999)).toBe("4.003999");
    expect(seekOption(12_000_000)).toBe("12.000000");
  });

  it("puts the decoder, filters and encoder of a chunk on the threads asked for, and leaves them alone otherwise", () => {
    const chunk = { index: 1, startFrame: 300, frames: 300, seekUs: 12_000_000, startSeconds: 12, durationSeconds: 12 };
    const argv = flattenCommand(chunkVideoCommand("/in.mp4", chunk, ["-c:v", "libx264"], "/out.mp4", 1));
    const input = argv.indexOf("-i");
    expect(argv.slice(0, input)).toEqual(expect.arrayContaining(["-ss", "12.000000", "-threads", "1", "-filter_threads", "1"]));
    expect(argv.slice(input)).toEqual(["-i", "/in.mp4", "-y", "-map", "0:v:0", "-an", "-sn", "-dn", "-c:v", "libx264", "-threads", "1", "-frames:v", "300", "/out.mp4"]);
    expect(flattenCommand(chunkVideoCommand("/in.mp4", chunk, [], "/out.mp4"))).not.toContain("-threads");
  });
});
