/**
 * Pure parts of the `rendition` CLI: the rate/ETA estimate, flag parsing into the Create request,
 * credential resolution and error formatting. The CLI against a real server is
 * test/e2e/rendition-cli.test.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { OutputType, Quality, Resolution, VideoCodec, JobStatusSchema } from "../../gen/rendition/v1/common_pb.js";
import { parseEnumFlag, enumLabel } from "../../cli/client.js";
import { CliUsageError, resolveCredentials } from "../../cli/credentials.js";
import { describeError } from "../../cli/output.js";
import { formatDuration, formatRate, ProgressRate } from "../../cli/progress-rate.js";
import { outputsFromFlags, type SubmitFlags } from "../../cli/submit.command.js";

describe("ProgressRate", () => {
  it("derives speed, fps and ETA from progress over server time, from the first processing sample", () => {
    const rate = new ProgressRate();
    const input = { durationMs: 60_000, framerate: 25 };
    expect(rate.observe({ atMs: 0, progress: 0, processing: false, ...input })).toEqual({});
    expect(rate.observe({ atMs: 1_000, progress: 10, processing: true, ...input })).toEqual({});
    // 20 % in 10 s: 2 %/s, so 70 % left is 35 s; 20 % of 60 s of input (12 s) in 10 s is 1.2x, 30 fps.
    const measured = rate.observe({ atMs: 11_000, progress: 30, processing: true, ...input });
    expect(measured.etaSeconds).toBeCloseTo(35);
    expect(measured.speed).toBeCloseTo(1.2);
    expect(measured.fps).toBeCloseTo(30);
  });

  it("shows nothing before progress moves, without an input duration no speed, and restarts when progress goes back", () => {
    const rate = new ProgressRate();
    rate.observe({ atMs: 0, progress: 5, processing: true });
    expect(rate.observe({ atMs: 5_000, progress: 5, processing: true })).toEqual({});
    expect(rate.observe({ atMs: 10_000, progress: 55, processing: true })).toEqual({ etaSeconds: 9 });
    // A retried job starts over: the old baseline would give nonsense.
    expect(rate.observe({ atMs: 11_000, progress: 0, processing: true })).toEqual({});
    expect(rate.observe({ atMs: 12_000, progress: 10, processing: true }).etaSeconds).toBeCloseTo(9);
  });

  it("formats durations and unknown values", () => {
    expect(formatDuration(7)).toBe("0:07");
    expect(formatDuration(3723)).toBe("1:02:03");
    expect(formatRate({})).toEqual({ speed: "--", fps: "-- fps", eta: "--" });
    expect(formatRate({ speed: 2.345, fps: 58.6, etaSeconds: 12 })).toEqual({ speed: "2.3x", fps: "59 fps", eta: "0:12" });
  });
});

const flags = (over: Partial<SubmitFlags>): SubmitFlags => ({ preset: [], output: [], resolution: [], metadata: [], ...over });

describe("submit flags", () => {
  it("default to one H.264 mp4 at the source's size", async () => {
    const [output, ...rest] = await outputsFromFlags(flags({}));
    expect(rest).toEqual([]);
    expect(output!.type).toBe(OutputType.MP4);
    expect(output!.video.map((v) => [v.codec, v.resolution])).toEqual([[VideoCodec.H264, 0]]);
  });

  it("make one output per --preset and --output, and one from the inline flags with a variant per resolution", async () => {
    const outputs = await outputsFromFlags(
      flags({ preset: ["h264_720p_economy"], output: ['{"type": "webm", "video": [{"codec": "vp9"}]}'], type: "hls", codec: "H265", resolution: ["1080p,720p"], quality: "premium" }),
    );
    expect(outputs.map((o) => o.preset)).toEqual(["h264_720p_economy", "", ""]);
    expect(outputs[1]!.type).toBe(OutputType.WEBM);
    expect(outputs[2]!.type).toBe(OutputType.HLS);
    expect(outputs[2]!.video.map((v) => [v.codec, v.resolution, v.quality])).toEqual([
      [VideoCodec.H265, Resolution.RESOLUTION_1080P, Quality.PREMIUM],
      [VideoCodec.H265, Resolution.RESOLUTION_720P, Quality.PREMIUM],
    ]);
  });

  it("refuse unknown enum values and bad JSON as usage errors naming the flag", async () => {
    await expect(outputsFromFlags(flags({ codec: "h266" }))).rejects.toThrow(/^--codec: unknown value "h266"; expected one of h264, h265, vp9, av1$/);
    await expect(outputsFromFlags(flags({ output: ['{"type": "mp5"}'] }))).rejects.toThrow(/--output #1: type: unknown value "mp5"/);
    await expect(outputsFromFlags(flags({ output: ["{"] }))).rejects.toBeInstanceOf(CliUsageError);
    expect(() => parseEnumFlag(JobStatusSchema, "--status", "unspecified")).toThrow(CliUsageError);
    expect(enumLabel(JobStatusSchema, parseEnumFlag(JobStatusSchema, "--status", "JOB_STATUS_AWAITING_CONFIRMATION"))).toBe("awaiting_confirmation");
  });
});

describe("resolveCredentials", () => {
  const withFile = (run: (dir: string) => void) => {
    const dir = mkdtempSync(join(tmpdir(), "rendition-cli-unit-"));
    try {
      writeFileSync(join(dir, "credentials.json"), JSON.stringify({ organization_id: "org_file", api_key: "rnd_live_file", local_origin_id: "ori_file", webhook_secret: "whsec_x" }));
      run(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it("takes flags over the environment over the credentials file", () =>
    withFile((dir) => {
      expect(resolveCredentials({}, { RENDITION_DATA_DIR: dir }, "/")).toMatchObject({ url: "http://localhost:8080", apiKey: "rnd_live_file", organizationId: "org_file", localOriginId: "ori_file" });
      expect(resolveCredentials({}, { RENDITION_DATA_DIR: dir, RENDITION_URL: "http://h:1/", RENDITION_ORG: "org_env" }, "/")).toMatchObject({ url: "http://h:1", apiKey: "rnd_live_file", organizationId: "org_env" });
      expect(resolveCredentials({ apiKey: "rnd_live_flag", org: "org_flag", url: "http://f" }, { RENDITION_DATA_DIR: dir, RENDITION_API_KEY: "rnd_live_env" }, "/")).toMatchObject({
        url: "http://f",
        apiKey: "rnd_live_flag",
        organizationId: "org_flag",
        localOriginId: undefined,
      });
      // Another key never borrows the file's organization.
      expect(() => resolveCredentials({ apiKey: "rnd_live_other" }, { RENDITION_DATA_DIR: dir }, "/")).toThrow(/^no organization/);
      expect(resolveCredentials({ dataDir: "." }, {}, dir).apiKey).toBe("rnd_live_file");
    }));

  it("says where it looked when nothing is found", () => {
    expect(() => resolveCredentials({}, { RENDITION_DATA_DIR: "/nonexistent/rendition" }, "/")).toThrow(/no API key: .*looked for \/nonexistent\/rendition\/credentials\.json/);
  });
});

describe("describeError", () => {
  it("gives Connect errors their code name and usage errors exit code 2", () => {
    expect(describeError(new ConnectError("job job_x not found", Code.NotFound))).toMatchObject({ code: "not_found", message: "job job_x not found", exitCode: 1 });
    expect(describeError(new CliUsageError("missing_credentials", "no API key"))).toMatchObject({ code: "missing_credentials", exitCode: 2 });
  });
});
