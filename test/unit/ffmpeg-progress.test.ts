import { describe, expect, it } from "vitest";
import { parseClock, ProgressParser, ProgressTracker } from "../../workers/ffmpeg/progress.js";

/** One block as ffmpeg 5.1 prints it with -progress pipe:1. */
function block(outTimeUs: number | "N/A", progress: "continue" | "end" = "continue"): string {
  const time = outTimeUs === "N/A" ? "N/A" : String(outTimeUs);
  return [
    "frame=50",
    "fps=0.00",
    "stream_0_0_q=-1.0",
    "bitrate= 757.6kbits/s",
    "total_size=189910",
    `out_time_us=${time}`,
    `out_time_ms=${time}`,
    `out_time=${outTimeUs === "N/A" ? "N/A" : "00:00:01.000000"}`,
    "dup_frames=0",
    "drop_frames=0",
    "speed=31.2x",
    `progress=${progress}`,
    "",
  ].join("\n");
}

describe("ProgressParser", () => {
  it("reads out_time_us per block and the end marker", () => {
    const parser = new ProgressParser();
    expect(parser.push(block(500_000) + block(2_005_333, "end"))).toEqual([
      { outTimeUs: 500_000, end: false },
      { outTimeUs: 2_005_333, end: true },
    ]);
  });

  it("joins lines split across chunks", () => {
    const parser = new ProgressParser();
    const text = block(1_250_000);
    expect(parser.push(text.slice(0, 97))).toEqual([]);
    expect(parser.push(text.slice(97, 130))).toEqual([]);
    expect(parser.push(text.slice(130))).toEqual([{ outTimeUs: 1_250_000, end: false }]);
  });

  it("tolerates N/A, garbage and CRLF", () => {
    const parser = new ProgressParser();
    expect(parser.push(block("N/A"))).toEqual([{ end: false }]);
    expect(parser.push("garbage\r\n=\r\nout_time_us=-5\r\nout_time_us=abc\r\nprogress=continue\r\n")).toEqual([{ end: false }]);
  });

  it("falls back to out_time when no microsecond field is printed", () => {
    const parser = new ProgressParser();
    expect(parser.push("out_time=00:01:02.500000\nprogress=continue\n")).toEqual([{ outTimeUs: 62_500_000, end: false }]);
  });
});

describe("parseClock", () => {
  it("parses HH:MM:SS.micro and rejects the rest", () => {
    expect(parseClock("01:00:00.000001")).toBe(3_600_000_001);
    expect(parseClock("N/A")).toBeUndefined();
    expect(parseClock("-00:00:00.040000")).toBeUndefined();
  });
});

describe("ProgressTracker", () => {
  it("turns out_time into a fraction of the duration that never goes back and ends at 1", () => {
    const tracker = new ProgressTracker(2_000);
    expect(tracker.push(block("N/A"))).toBeUndefined();
    expect(tracker.push(block(500_000))).toBe(0.25);
    expect(tracker.push(block(400_000))).toBeUndefined(); // never backwards
    expect(tracker.push(block(1_500_000))).toBe(0.75);
    expect(tracker.push(block(2_040_000))).toBe(1); // past the probed duration: capped
    expect(tracker.push(block(2_040_000, "end"))).toBeUndefined();
    expect(tracker.fraction).toBe(1);
  });

  it("reports only the end without a duration", () => {
    const tracker = new ProgressTracker(undefined);
    expect(tracker.push(block(1_000_000))).toBeUndefined();
    expect(tracker.push(block(2_000_000, "end"))).toBe(1);
  });
});
