import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { JobStatus, OutputType } from "../../gen/rendition/v1/common_pb.js";
import { ExecutionSchema, JobSchema } from "../../gen/rendition/v1/job_pb.js";
import {
  formatBytes,
  formatDuration,
  jobCost,
  looksLikeJobId,
  matchesSearch,
  parseMetadata,
  parseStoryboard,
  playerFor,
  statusLabel,
  storyboardImageUrl,
  timeline,
} from "../../web/src/format.js";

const at = (iso: string) => timestampFromDate(new Date(iso));

describe("dashboard formatting", () => {
  it("names statuses in words", () => {
    expect(statusLabel(JobStatus.AWAITING_CONFIRMATION)).toBe("Awaiting confirmation");
    expect(statusLabel(JobStatus.COMPLETED)).toBe("Completed");
  });

  it("formats durations and sizes", () => {
    expect(formatDuration(250)).toBe("250 ms");
    expect(formatDuration(2500n)).toBe("2.50 s");
    expect(formatDuration(75_000)).toBe("1 min 15 s");
    expect(formatBytes(0)).toBe("—");
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536n)).toBe("1.5 KiB");
  });

  it("shows the actual cost once known, else the estimate", () => {
    expect(jobCost({ totalActualCost: "0.12", totalEstimatedCost: "0.10", currency: "USD", test: false })).toEqual({ text: "0.12 USD", estimate: false });
    expect(jobCost({ totalActualCost: "", totalEstimatedCost: "0.10", currency: "USD", test: false })).toEqual({ text: "≈ 0.10 USD", estimate: true });
    expect(jobCost({ totalActualCost: "", totalEstimatedCost: "", currency: "", test: false })).toEqual({ text: "—", estimate: false });
  });

  it("searches ids, inputs and metadata; key=value matches that key only", () => {
    const job = create(JobSchema, { id: "job_01ABC", inputUrl: "https://cdn.example/ep12.mp4", metadata: { customer: "Acme", episode: "12" } });
    expect(matchesSearch(job, "")).toBe(true);
    expect(matchesSearch(job, "01abc")).toBe(true);
    expect(matchesSearch(job, "ep12")).toBe(true);
    expect(matchesSearch(job, "acme")).toBe(true);
    expect(matchesSearch(job, "customer=ac")).toBe(true);
    expect(matchesSearch(job, "episode=acme")).toBe(false);
    expect(matchesSearch(job, "nothing")).toBe(false);
    expect(looksLikeJobId(" job_01ABC ")).toBe(true);
    expect(looksLikeJobId("customer=acme")).toBe(false);
  });

  it("builds the timeline from the job's timestamps and execution", () => {
    const done = create(JobSchema, {
      status: JobStatus.COMPLETED,
      createdAt: at("2026-01-01T00:00:00Z"),
      probedAt: at("2026-01-01T00:00:01Z"),
      startedAt: at("2026-01-01T00:00:02Z"),
      completedAt: at("2026-01-01T00:00:09Z"),
      execution: create(ExecutionSchema, { probeDurationMs: 800n, queueDurationMs: 1200n, encodeDurationMs: 6000n, uploadDurationMs: 300n }),
    });
    expect(timeline(done).map((s) => [s.label, s.state, s.detail])).toEqual([
      ["Created", "done", undefined],
      ["Probed", "done", "probe 800 ms"],
      ["Started", "done", "queued 1.20 s"],
      ["Completed", "done", "encode 6.00 s, upload 300 ms"],
    ]);
    const waiting = create(JobSchema, { status: JobStatus.AWAITING_CONFIRMATION, delayedStart: true, createdAt: at("2026-01-01T00:00:00Z"), probedAt: at("2026-01-01T00:00:01Z") });
    expect(timeline(waiting).map((s) => [s.label, s.state])).toEqual([
      ["Created", "done"],
      ["Probed", "done"],
      ["Confirmed", "current"],
      ["Started", "pending"],
      ["Completed", "pending"],
    ]);
    const canceled = create(JobSchema, { status: JobStatus.CANCELED, createdAt: at("2026-01-01T00:00:00Z"), completedAt: at("2026-01-01T00:00:03Z") });
    expect(timeline(canceled).map((s) => [s.label, s.state])).toEqual([
      ["Created", "done"],
      ["Probed", "skipped"],
      ["Started", "skipped"],
      ["Canceled", "failed"],
    ]);
  });

  it("reads a sprite storyboard and finds its signed image", () => {
    const vtt = "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nsprite.jpg#xywh=0,0,160,90\n\n00:00:02.000 --> 00:01:04.500 align:start\nsprite.jpg#xywh=160,0,160,90\n\nNOTE not a tile\n\n00:01:04.500 --> 00:01:05.000\nplain text cue\n";
    expect(parseStoryboard(vtt)).toEqual([
      { start: 0, end: 2, image: "sprite.jpg", x: 0, y: 0, w: 160, h: 90 },
      { start: 2, end: 64.5, image: "sprite.jpg", x: 160, y: 0, w: 160, h: 90 },
    ]);
    const signed = ["https://s3.example/b/thumbs/sprite.jpg?X-Amz-Signature=abc"];
    expect(storyboardImageUrl("sprite.jpg", "https://s3.example/b/thumbs/storyboard.vtt?X-Amz-Signature=def", signed)).toBe(signed[0]);
    expect(storyboardImageUrl("sprite.jpg", "http://localhost:8080/files/tok/thumbs/storyboard.vtt", [])).toBe("http://localhost:8080/files/tok/thumbs/sprite.jpg");
  });

  it("parses metadata lines and reports malformed ones", () => {
    expect(parseMetadata("a=1\n\n b = two=2 \n")).toEqual({ metadata: { a: "1", b: "two=2" }, errors: [] });
    expect(parseMetadata("a=1\nnope\n=x").errors).toEqual(["metadata line 2: write key=value", "metadata line 3: write key=value"]);
  });

  it("picks the player from the manifest's extension, then the output type", () => {
    expect(playerFor(OutputType.ADAPTIVE, "http://h/files/t/master.m3u8?x=1")).toBe("hls");
    expect(playerFor(OutputType.ADAPTIVE, "http://h/files/t/manifest.mpd")).toBe("dash");
    expect(playerFor(OutputType.HLS, "http://h/files/t/out")).toBe("hls");
    expect(playerFor(OutputType.MP4, "http://h/files/t/out.mp4")).toBe("video");
  });
});
