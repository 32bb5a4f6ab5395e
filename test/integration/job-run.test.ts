/**
 * JobRun on its own: the stages of one leased run against in-memory PGlite, the in-process event
 * bus and a local origin, with a fake MediaTools instead of ffmpeg (progressive outputs only; the
 * segmented path needs real fMP4 and is covered by streaming.test.ts).
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { basename, join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OutputType, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import type { Lease } from "../../services/jobs/job-run.repository.js";
import type { JobEvent } from "../../services/queue/event-bus.js";
import { JobRun, LeaseLostError } from "../../workers/encoder/job-run.js";
import { MediaError } from "../../workers/ffmpeg/types.js";
import {
  capabilitiesWithoutAv1,
  createEncoderFixture,
  FakeMediaTools,
  minimalMp4,
  recordingRuns,
  untilAborted,
  type EncoderFixture,
  type RecordedWrite,
} from "../support/encoder-fixture.js";

let fx: EncoderFixture;

beforeAll(async () => {
  fx = await createEncoderFixture();
});
afterAll(async () => {
  await fx?.close();
});

const H264_720 = { type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_720P }] };
const H264_480 = { type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_480P }] };
const AV1_720 = { type: OutputType.MP4, video: [{ codec: VideoCodec.AV1, resolution: Resolution.RESOLUTION_720P }] };
const VP9_480 = { type: OutputType.WEBM, video: [{ codec: VideoCodec.VP9, resolution: Resolution.RESOLUTION_480P }] };

interface Started {
  run: JobRun;
  lease: Lease;
  writes: RecordedWrite[];
  tmp: string;
  abort: AbortController;
}

/** A JobRun of `jobId` as the worker starts one: claimed, its own temp dir, a recording repository. */
async function startRun(jobId: string, tools: FakeMediaTools, attempts = 1): Promise<Started> {
  const lease = await fx.claim(jobId);
  const { runs, writes } = recordingRuns(fx.runs);
  const tmp = await mkdtemp(join(fx.scratch, `rendition-${jobId}-`));
  const abort = new AbortController();
  return { run: new JobRun(fx.deps(tools, { runs }), lease, tmp, abort.signal, attempts), lease, writes, tmp, abort };
}

/** Write names in order, without progress (fire-and-forget, so not ordered against the others). */
const names = (writes: RecordedWrite[]) => writes.filter((w) => w.name !== "progress").map((w) => w.name);
const statuses = (events: JobEvent[]) => events.filter((e) => e.kind === "status").map((e) => e.status);
/** The output file the fake wrote for `outputId` among a run call's files. */
const fileOf = (files: string[], outputId: string) => files.find((f) => basename(f).startsWith(outputId));

describe("JobRun with a fake MediaTools", () => {
  it("carries a progressive job from pending to completed: status events, named writes, the stored file", async () => {
    const job = await fx.createJob({ outputs: [H264_720] });
    const output = job.outputs[0]!;
    const events = await fx.recordEvents(job.id);
    const tools = new FakeMediaTools();
    const { run, writes, tmp } = await startRun(job.id, tools);
    const claimedAt = new Date();
    await run.run(claimedAt);

    expect(statuses(events)).toEqual(["probing", "processing", "completed"]);
    expect(events.at(-1)).toMatchObject({ kind: "status", status: "completed", progress: 100 });
    // fraction 0.5 → 45 % of the job (encoding is 0-90 %); the report of 1 is sent only if 250 ms passed since.
    const progress = events.filter((e) => e.kind === "progress");
    expect(progress[0]).toEqual({ jobId: job.id, organizationId: fx.organizationId, kind: "progress", status: "processing", progress: 45 });
    expect(progress.slice(1).map((e) => e.progress)).toEqual(progress.length > 1 ? [90] : []);

    expect(names(writes)).toEqual(["startProbe", "recordProbe", "completeOutput", "finish"]);
    expect(writes.every((w) => w.result === true)).toBe(true);
    const [, probe, next] = writes.find((w) => w.name === "recordProbe")!.args as [Lease, { estimatedCostMinor: number; outputCostsMinor: Array<[string, number]> }, unknown];
    expect(probe.estimatedCostMinor).toBeGreaterThan(0);
    expect(probe.outputCostsMinor).toEqual([[output.id, probe.estimatedCostMinor]]);
    expect(next).toEqual({ pause: false, encoding: [output.id] });
    const stored = join(fx.originRoot, "out", output.path);
    const [, outputId, delivered, jobProgress] = writes.find((w) => w.name === "completeOutput")!.args as [Lease, string, Record<string, unknown>, number];
    expect(outputId).toBe(output.id);
    expect(delivered).toMatchObject({ url: pathToFileURL(stored).href, manifestUrls: [], bytes: minimalMp4(0).length, durationMs: 9_960 });
    expect(jobProgress).toBe(99);

    // One ffmpeg run, writing into the job's temp dir, with the timeout floor (20 x 10 s is less than 600 s).
    expect(tools.runs).toHaveLength(1);
    expect(tools.runs[0]!.files).toEqual([join(tmp, `${output.id}.mp4`)]);
    expect(tools.runs[0]!.options).toMatchObject({ timeoutMs: 600_000, durationMs: 10_000 });
    // The mp4's duration comes from its movie header: ffprobe ran on the input only.
    expect(tools.probes).toEqual([join(tmp, "input")]);
    expect(readFileSync(stored)).toEqual(minimalMp4(9_960));

    const done = (await fx.jobRepository.get(fx.organizationId, job.id))!;
    // Money and sizes are int8: strings from node-postgres, numbers from PGlite; compare as numbers.
    expect(done).toMatchObject({ status: "completed", progress: 100, errorCode: "" });
    expect(Number(done.estimatedCostMinor)).toBe(probe.estimatedCostMinor);
    expect(done.inputMetadata).toMatchObject({ durationMs: "10000", width: 1280, height: 720, codec: "h264", framerate: 25, audioStreams: [{ codec: "aac", language: "eng" }] });
    expect(done.probedAt).toBeInstanceOf(Date);
    expect(done.startedAt).toBeInstanceOf(Date);
    expect(done.completedAt).toBeInstanceOf(Date);
    expect(done.outputs[0]).toMatchObject({
      status: "completed",
      outputUrl: pathToFileURL(stored).href,
      progress: 100,
      errorCode: "",
    });
    expect([done.outputs[0]!.fileSizeBytes, done.outputs[0]!.durationMs, done.outputs[0]!.estimatedCostMinor].map(Number)).toEqual([minimalMp4(0).length, 9_960, probe.estimatedCostMinor]);
    // Priced at the output's real (slightly shorter) duration; the job's total is its one output's.
    const actual = Number(done.outputs[0]!.actualCostMinor);
    expect(actual).toBeGreaterThan(0);
    expect(actual).toBeLessThanOrEqual(probe.estimatedCostMinor);
    expect(Number(done.actualCostMinor)).toBe(actual);
    const execution = done.execution as Record<string, number>;
    expect(execution.attempts).toBe(1);
    expect(execution.queueDurationMs).toBeGreaterThanOrEqual(0);
    expect(execution.queueDurationMs).toBeLessThanOrEqual(claimedAt.getTime() - job.createdAt.getTime() + 1);
    expect(execution.totalDurationMs).toBeGreaterThan(0);
    for (const key of ["probeDurationMs", "encodeDurationMs", "uploadDurationMs"]) expect(execution[key]).toBeGreaterThanOrEqual(0);
    // The lease ended with the run.
    expect(await fx.row(job.id)).toMatchObject({ lease_owner: "", lease_expires_at: null, claims: 1 });
  });

  it("pauses a delayed_start job with its estimate and gives the claim back; after Confirm it encodes as the first attempt", async () => {
    const job = await fx.createJob({ delayedStart: true });
    const events = await fx.recordEvents(job.id);
    const tools = new FakeMediaTools();
    const first = await startRun(job.id, tools);
    await first.run.run(new Date());

    expect(statuses(events)).toEqual(["probing", "awaiting_confirmation"]);
    expect(names(first.writes)).toEqual(["startProbe", "recordProbe"]);
    expect(first.writes[1]!.args[2]).toEqual({ pause: true });
    expect(tools.runs).toEqual([]);
    const waiting = (await fx.jobRepository.get(fx.organizationId, job.id))!;
    expect(waiting).toMatchObject({ status: "awaiting_confirmation", startedAt: null, actualCostMinor: null });
    expect(Number(waiting.estimatedCostMinor)).toBeGreaterThan(0);
    expect(waiting.outputs[0]!.status).toBe("pending");
    expect(Number(waiting.outputs[0]!.estimatedCostMinor)).toBe(Number(waiting.estimatedCostMinor));
    expect((waiting.execution as Record<string, number>).attempts).toBe(0);
    // Lease given back and the claim refunded: probing is not an attempt.
    expect(await fx.row(job.id)).toMatchObject({ lease_owner: "", lease_expires_at: null, claims: 0 });
    expect(await fx.runs.renew(first.lease, 60_000)).toBe(false);

    await fx.jobs.confirm(fx.organizationId, job.id);
    const second = await startRun(job.id, tools, 1);
    await second.run.run(new Date());
    expect(names(second.writes)).toEqual(["startEncoding", "completeOutput", "finish"]);
    expect(statuses(events)).toEqual(["probing", "awaiting_confirmation", "processing", "completed"]); // processing: Confirm's event
    expect(tools.probes.filter((p) => basename(p) === "input")).toHaveLength(2); // the input is fetched again after Confirm
    const done = (await fx.jobRepository.get(fx.organizationId, job.id))!;
    expect(done.status).toBe("completed");
    expect(done.startedAt!.getTime()).toBeGreaterThanOrEqual(done.confirmedAt!.getTime());
    expect((done.execution as Record<string, number>).attempts).toBe(1);
    expect(await fx.row(job.id)).toMatchObject({ claims: 1 });
  });

  it("fails an output needing an encoder the build lacks (AV1) alone with CODEC_UNSUPPORTED; the job ends partial", async () => {
    const job = await fx.createJob({ outputs: [H264_720, AV1_720] });
    const [h264, av1] = job.outputs;
    const events = await fx.recordEvents(job.id);
    const tools = new FakeMediaTools();
    tools.caps = capabilitiesWithoutAv1();
    const { run, writes, tmp } = await startRun(job.id, tools);
    await run.run(new Date());

    // Planned out before ffmpeg: the one run encodes the H.264 output only.
    expect(tools.runs.map((r) => r.files)).toEqual([[join(tmp, `${h264!.id}.mp4`)]]);
    expect(writes.find((w) => w.name === "recordProbe")!.args[2]).toEqual({ pause: false, encoding: [h264!.id] });
    expect(names(writes)).toEqual(["startProbe", "recordProbe", "completeOutput", "finish"]);
    expect(statuses(events)).toEqual(["probing", "processing", "partial"]);

    const done = (await fx.jobRepository.get(fx.organizationId, job.id))!;
    expect(done).toMatchObject({ status: "partial", errorCode: "", errorMessage: "" });
    expect(done.outputs[0]!.status).toBe("completed");
    expect(done.outputs[1]).toMatchObject({ id: av1!.id, status: "failed", errorCode: "CODEC_UNSUPPORTED", outputUrl: "", actualCostMinor: null });
    expect(done.outputs[1]!.errorMessage).toMatch(/has no av1 encoder \(looked for libsvtav1, libaom-av1, librav1e\)/);
    expect(Number(done.actualCostMinor)).toBe(Number(done.outputs[0]!.actualCostMinor));
  });

  it("fails an output the build cannot make at the probe, before a delayed start pauses: it is not in the price to confirm", async () => {
    const job = await fx.createJob({ delayedStart: true, outputs: [H264_720, AV1_720] });
    const [h264, av1] = job.outputs;
    const tools = new FakeMediaTools();
    tools.caps = capabilitiesWithoutAv1();
    const first = await startRun(job.id, tools);
    await first.run.run(new Date());

    const waiting = (await fx.jobRepository.get(fx.organizationId, job.id))!;
    expect(waiting.status).toBe("awaiting_confirmation");
    expect(waiting.outputs[1]).toMatchObject({ id: av1!.id, status: "failed", errorCode: "CODEC_UNSUPPORTED", estimatedCostMinor: null });
    expect(Number(waiting.estimatedCostMinor)).toBe(Number(waiting.outputs[0]!.estimatedCostMinor));

    await fx.jobs.confirm(fx.organizationId, job.id);
    const second = await startRun(job.id, tools, 1);
    await second.run.run(new Date());
    expect(tools.runs.map((r) => r.files)).toEqual([[join(second.tmp, `${h264!.id}.mp4`)]]);
    const done = (await fx.jobRepository.get(fx.organizationId, job.id))!;
    // The output failed at the probe still counts: the job is partial, not completed.
    expect(done.status).toBe("partial");
    expect(done.outputs.map((o) => [o.status, o.errorCode])).toEqual([["completed", ""], ["failed", "CODEC_UNSUPPORTED"]]);
  });

  it("retries each output alone after a combined run fails with a MediaError: only the bad one fails", async () => {
    const job = await fx.createJob({ outputs: [H264_720, H264_480, VP9_480] });
    const [good, bad, webm] = job.outputs;
    const tools = new FakeMediaTools();
    tools.onRun = async (call) => {
      if (call.files.length > 1) throw new MediaError("ENCODE_FAILED", "ffmpeg exited with code 1: the combined run");
      if (fileOf(call.files, bad!.id)) throw new MediaError("ENCODE_FAILED", "ffmpeg exited with code 1: Error while opening encoder for output stream #1:0");
      await tools.writeOutputs(call);
    };
    const { run, writes, tmp } = await startRun(job.id, tools);
    await run.run(new Date());

    expect(tools.runs.map((r) => r.files.map((f) => basename(f)))).toEqual([
      [`${good!.id}.mp4`, `${bad!.id}.mp4`, `${webm!.id}.webm`],
      [`${good!.id}.mp4`],
      [`${bad!.id}.mp4`],
      [`${webm!.id}.webm`],
    ]);
    // webm has no movie header: its duration is ffprobe's.
    expect(tools.probes).toEqual([join(tmp, "input"), join(tmp, `${webm!.id}.webm`)]);
    expect(names(writes)).toEqual(["startProbe", "recordProbe", "completeOutput", "completeOutput", "finish"]);

    const done = (await fx.jobRepository.get(fx.organizationId, job.id))!;
    expect(done.status).toBe("partial");
    expect(done.outputs.map((o) => [o.status, o.errorCode])).toEqual([
      ["completed", ""],
      ["failed", "ENCODE_FAILED"],
      ["completed", ""],
    ]);
    expect(done.outputs[1]!.errorMessage).toContain("Error while opening encoder");
    expect([done.outputs[2]!.durationMs, done.outputs[2]!.fileSizeBytes].map(Number)).toEqual([9_960, "fake media\n".length]);
    expect(Number(done.actualCostMinor)).toBe(Number(done.outputs[0]!.actualCostMinor) + Number(done.outputs[2]!.actualCostMinor));
  });

  it("does not retry output by output when the combined run fails for a reason that is not the media's: the run throws it", async () => {
    const job = await fx.createJob({ outputs: [H264_720, H264_480] });
    const tools = new FakeMediaTools();
    const killed = new Error("ffmpeg was killed by SIGKILL");
    tools.onRun = () => {
      throw killed;
    };
    const { run, writes } = await startRun(job.id, tools);
    await expect(run.run(new Date())).rejects.toBe(killed);
    expect(tools.runs).toHaveLength(1);
    // What the attempt measured is kept; the outputs are left for the next attempt.
    expect(names(writes)).toEqual(["startProbe", "recordProbe", "saveExecution"]);
    const after = (await fx.jobRepository.get(fx.organizationId, job.id))!;
    expect(after.status).toBe("processing");
    expect(after.outputs.map((o) => o.status)).toEqual(["processing", "processing"]);
    expect((after.execution as Record<string, number>).attempts).toBe(1);
  });

  it("fails every output of the run with ENCODE_TIMEOUT, without trying them one by one", async () => {
    const job = await fx.createJob({ outputs: [H264_720, H264_480] });
    const tools = new FakeMediaTools();
    tools.info = { ...tools.info, durationMs: 60_000 };
    tools.onRun = () => {
      throw new MediaError("ENCODE_TIMEOUT", "ffmpeg ran longer than 1200 s and was stopped");
    };
    const events = await fx.recordEvents(job.id);
    const { run } = await startRun(job.id, tools);
    await run.run(new Date());

    expect(tools.runs).toHaveLength(1);
    expect(tools.runs[0]!.options!.timeoutMs).toBe(1_200_000); // 20 x the input's 60 s, above the 600 s floor
    const done = (await fx.jobRepository.get(fx.organizationId, job.id))!;
    expect(done).toMatchObject({ status: "failed", errorCode: "ENCODE_TIMEOUT", errorMessage: "ffmpeg ran longer than 1200 s and was stopped" });
    expect(done.outputs.map((o) => [o.status, o.errorCode])).toEqual([
      ["failed", "ENCODE_TIMEOUT"],
      ["failed", "ENCODE_TIMEOUT"],
    ]);
    expect(statuses(events)).toEqual(["probing", "processing", "failed"]);
  });

  it("stops with LeaseLostError and writes nothing more when the job is canceled mid-run (the worker aborts the signal)", async () => {
    const job = await fx.createJob({ outputs: [H264_720] });
    const events = await fx.recordEvents(job.id);
    const tools = new FakeMediaTools();
    let writesAtCancel = -1;
    const started = await startRun(job.id, tools);
    tools.onRun = async (call) => {
      await fx.jobs.cancel(fx.organizationId, job.id);
      writesAtCancel = started.writes.length;
      // What EncoderWorker does when it hears the canceled event: kill ffmpeg with a LeaseLostError.
      started.abort.abort(new LeaseLostError("canceled"));
      await untilAborted(call.options?.signal);
    };
    await expect(started.run.run(new Date())).rejects.toBeInstanceOf(LeaseLostError);

    expect(started.writes.slice(writesAtCancel)).toEqual([]);
    expect(statuses(events)).toEqual(["probing", "processing", "canceled"]);
    const after = (await fx.jobRepository.get(fx.organizationId, job.id))!;
    expect(after).toMatchObject({ status: "canceled", actualCostMinor: null });
    expect(after.outputs[0]).toMatchObject({ status: "canceled", outputUrl: "" });
    expect(existsSync(join(fx.originRoot, "out", job.outputs[0]!.path))).toBe(false);
  });

  it("stops with LeaseLostError at its next write when the cancel is not heard: every write after it is refused", async () => {
    const job = await fx.createJob({ outputs: [H264_720] });
    const events = await fx.recordEvents(job.id);
    const tools = new FakeMediaTools();
    const started = await startRun(job.id, tools);
    let writesAtCancel = -1;
    let canceledAt: Date | undefined;
    tools.onRun = async (call) => {
      canceledAt = (await fx.quietJobs.cancel(fx.organizationId, job.id)).updatedAt;
      writesAtCancel = started.writes.length;
      await tools.writeOutputs(call); // ffmpeg goes on: nobody told it
    };
    await expect(started.run.run(new Date())).rejects.toBeInstanceOf(LeaseLostError);

    const late = started.writes.slice(writesAtCancel);
    expect(late.filter((w) => w.name !== "progress").map((w) => w.name)).toEqual(["completeOutput", "saveExecution"]);
    expect(late.every((w) => w.result === false)).toBe(true);
    expect(statuses(events)).toEqual(["probing", "processing"]); // nothing after the (unheard) cancel
    const after = (await fx.jobRepository.get(fx.organizationId, job.id))!;
    expect(after).toMatchObject({ status: "canceled", actualCostMinor: null, progress: 0 });
    expect(after.updatedAt.getTime()).toBe(canceledAt!.getTime());
    expect(after.outputs[0]).toMatchObject({ status: "canceled", outputUrl: "", fileSizeBytes: null });
  });
});
