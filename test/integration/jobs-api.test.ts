import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { JobStatus, OutputType, Priority, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobServiceCreateRequestSchema, ThumbnailMode, WatchEvent, type JobServiceCreateRequest } from "../../gen/rendition/v1/job_pb.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { localJobRequest, startTestApi, type TestApi } from "../support/api-harness.js";
import { connectError, violationsOf } from "../support/rpc.js";
import { OriginProvider } from "../../gen/rendition/v1/origin_pb.js";

let database: TestDatabase;
let api: TestApi;

beforeAll(async () => {
  database = await createTestDatabase(inject("databaseUrl"));
  api = await startTestApi(database.url);
});
afterAll(async () => {
  await api?.close();
  await database?.drop();
});

type CreateInit = Omit<MessageInitShape<typeof JobServiceCreateRequestSchema>, "$typeName">;

function mp4Output() {
  return { type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_720P }] };
}

function request(overrides: Partial<CreateInit> = {}): JobServiceCreateRequest {
  return localJobRequest(api, overrides);
}

describe("JobService.Create", () => {
  it("stores a pending job with resolved output paths and an outbox message in the same transaction", async () => {
    const { job } = await api.jobs.create(request({ metadata: { source: "test" }, priority: Priority.PREMIUM }));
    expect(job!.id).toMatch(/^job_[0-9a-z]{26}$/);
    expect(job!.status).toBe(JobStatus.PENDING);
    expect(job!.priority).toBe(Priority.PREMIUM);
    expect(job!.currency).toBe("EUR");
    expect(job!.metadata).toEqual({ source: "test" });
    expect(job!.inputOrigin).toMatchObject({ id: api.credentials.local_origin_id, provider: OriginProvider.LOCAL, path: "uploads/in.mp4" });
    const [output] = job!.outputs;
    expect(output!.id).toMatch(/^out_/);
    expect(output!.path).toBe(`${job!.id}/${output!.id}.mp4`);

    const outbox = await database.db.selectFrom("outbox").selectAll().where("job_id", "=", job!.id).execute();
    expect(outbox).toHaveLength(1);
    expect(outbox[0]).toMatchObject({ topic: "job.created", sent_at: null });
  });

  it("resolves path templates with output > job precedence and every variable", async () => {
    const { job } = await api.jobs.create(
      request({
        outputPathTemplate: "renders/{date}/{job_id}/{output_index}_{codec}_{resolution}_{quality}.{format}",
        outputs: [
          { type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_1080P }] },
          { type: OutputType.WEBM, video: [{ codec: VideoCodec.VP9, width: 640 }], pathTemplate: "web/{output_id}" },
        ],
      }),
    );
    const date = job!.createdAt!.seconds ? new Date(Number(job!.createdAt!.seconds) * 1000).toISOString().slice(0, 10).replaceAll("-", "/") : "";
    expect(job!.outputs[0]!.path).toBe(`renders/${date}/${job!.id}/0_h264_1080p_standard.mp4`);
    expect(job!.outputs[1]!.path).toBe(`web/${job!.outputs[1]!.id}.webm`);
  });

  it("names every violation at once (protovalidate rules and cross-field rules)", async () => {
    const err = await connectError(
      api.jobs.create(
        create(JobServiceCreateRequestSchema, {
          inputOriginId: api.credentials.local_origin_id, // input_path missing: cross-field rule
          outputOriginId: api.credentials.local_origin_id,
          outputs: [{ type: OutputType.MP4, video: [{ resolution: Resolution.RESOLUTION_720P, bitrate: 50 }] }],
          idempotencyKey: "k".repeat(129),
        }),
      ),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    const [violations] = err.findDetails(ViolationsSchema);
    const fields = violations!.violations.map((v) => v.field!.elements.map((e) => e.fieldName + (e.subscript.case === "index" ? `[${e.subscript.value}]` : "")).join("."));
    expect(fields.sort()).toEqual(["idempotency_key", "input_path", "outputs[0].video[0].bitrate", "outputs[0].video[0].codec"]);
    expect(err.rawMessage).toContain("outputs[0].video[0].codec");
  });

  it("enforces reference limits: 1-10 outputs, 5 thumbnails, 20 metadata entries", async () => {
    const many = Array.from({ length: 11 }, () => ({ type: OutputType.MP4, video: [{ codec: VideoCodec.H264 }] }));
    const metadata = Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, "v"]));
    const thumbnails = Array.from({ length: 6 }, () => ({ mode: ThumbnailMode.SINGLE }));
    const err = await connectError(api.jobs.create(request({ outputs: many, metadata, thumbnails })));
    expect(err.code).toBe(Code.InvalidArgument);
    const rules = err.findDetails(ViolationsSchema)[0]!.violations.map((v) => v.ruleId).sort();
    expect(rules).toEqual(["map.max_pairs", "repeated.max_items", "repeated.max_items"]);
  });

  it("rejects an unknown preset, a progressive output with two variants and an unknown template variable", async () => {
    const err = await connectError(
      api.jobs.create(
        request({
          outputs: [
            { preset: "no_such_preset" },
            { type: OutputType.MP4, video: [{ codec: VideoCodec.H264 }, { codec: VideoCodec.H264 }] },
          ],
          outputPathTemplate: "{job_id}/{nope}",
        }),
      ),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.findDetails(ViolationsSchema)[0]!.violations.map((v) => v.ruleId).sort()).toEqual([
      "output.preset_not_found",
      "output.progressive_single_variant",
      "path_template.unknown_variable",
    ]);
  });

  it("applies a system preset referenced by slug", async () => {
    const { job } = await api.jobs.create(request({ outputs: [{ preset: "vp9_1080p_standard" }] }));
    const output = job!.outputs[0]!;
    expect(output.type).toBe(OutputType.WEBM);
    expect(output.presetId).toBe("pst_system_vp9_1080p_standard");
    expect(output.video[0]).toMatchObject({ codec: VideoCodec.VP9, resolution: Resolution.RESOLUTION_1080P });
    expect(output.path.endsWith(".webm")).toBe(true);
  });

  it("stores thumbnail specs with their resolved path prefix", async () => {
    const { job } = await api.jobs.create(
      request({
        thumbnails: [
          { mode: ThumbnailMode.SPRITE, intervalSeconds: 2, width: 160 },
          { mode: ThumbnailMode.TIMESTAMPS, timestamps: [0.5, 1.5], pathTemplate: "thumbs/{job_id}/{output_index}" },
        ],
      }),
    );
    const [sprite, timestamps] = job!.thumbnails;
    expect(sprite!.id).toMatch(/^thm_/);
    expect(sprite!.spec).toMatchObject({ mode: ThumbnailMode.SPRITE, intervalSeconds: 2, width: 160 });
    expect(sprite!.path).toBe(`${job!.id}/${sprite!.id}`);
    expect(timestamps!.path).toBe(`thumbs/${job!.id}/1`);
    expect((await api.jobs.get({ id: job!.id })).job!.thumbnails.map((t) => t.id)).toEqual([sprite!.id, timestamps!.id]);
  });

  it("refuses two outputs that would write the same path", async () => {
    const err = await connectError(
      api.jobs.create(request({ outputPathTemplate: "{job_id}/video", outputs: [request().outputs[0]!, request().outputs[0]!] })),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    // The job-level template is the one that made the paths collide.
    expect(violationsOf(err)).toEqual([
      { field: "output_path_template", rule: "output.path_collision", message: expect.stringContaining("for outputs[1], the same path as outputs[0]") },
    ]);
  });

  it("refuses templates that resolve to unusable or colliding paths, thumbnails included", async () => {
    const dotted = await connectError(
      api.jobs.create(request({ outputPathTemplate: "{job_id}/.{codec}.", thumbnails: [{ mode: ThumbnailMode.SINGLE }] })),
    );
    expect(violationsOf(dotted)).toEqual([
      { field: "output_path_template", rule: "path_template.unusable_path", message: expect.stringContaining("for thumbnails[0]") },
    ]);
    const clash = await connectError(
      api.jobs.create(request({ outputs: [{ ...mp4Output(), pathTemplate: "media/{job_id}" }], thumbnails: [{ mode: ThumbnailMode.SINGLE, pathTemplate: "media/{job_id}.mp4" }] })),
    );
    expect(violationsOf(clash).map((v) => `${v.field} ${v.rule}`)).toEqual(["thumbnails[0].path_template output.path_collision"]);
  });

  it("checks outputs built from a preset like inline ones", async () => {
    const err = await connectError(
      api.jobs.create(request({ outputs: [{ preset: "h264_1080p_standard", drm: { systems: ["widevine"], scheme: "cenc" }, segments: { durationSeconds: 4 } }] })),
    );
    expect(violationsOf(err).map((v) => `${v.field} ${v.rule}`).sort()).toEqual([
      "outputs[0].drm output.drm_streaming_only",
      "outputs[0].segments output.segments_streaming_only",
    ]);
  });

  it("refuses an oversized request without looking up every output's preset", async () => {
    const outputs = Array.from({ length: 2000 }, (_, i) => ({ preset: `nope_${i}` }));
    const err = await connectError(api.jobs.create(request({ outputs })));
    expect(violationsOf(err).map((v) => `${v.field} ${v.rule}`)).toEqual(["outputs repeated.max_items"]);
  });

  it("answers NOT_FOUND for an origin that does not exist", async () => {
    const err = await connectError(api.jobs.create(request({ outputOriginId: "ori_doesnotexist" })));
    expect(err.code).toBe(Code.NotFound);
  });

  it("honours idempotency keys: same request returns the original job, a different one is ALREADY_EXISTS", async () => {
    const first = await api.jobs.create(request({ idempotencyKey: "upload-42", metadata: { a: "1", b: "2" } }));
    const again = await api.jobs.create(request({ idempotencyKey: "upload-42", metadata: { b: "2", a: "1" } }));
    expect(again.job!.id).toBe(first.job!.id);
    // Spelling out a default is the same request.
    const explicit = await api.jobs.create(request({ idempotencyKey: "upload-42", metadata: { a: "1", b: "2" }, priority: Priority.STANDARD }));
    expect(explicit.job!.id).toBe(first.job!.id);
    const err = await connectError(api.jobs.create(request({ idempotencyKey: "upload-42", priority: Priority.PREMIUM })));
    expect(err.code).toBe(Code.AlreadyExists);
    const concurrent = await Promise.all(Array.from({ length: 5 }, () => api.jobs.create(request({ idempotencyKey: "race-1" }))));
    expect(new Set(concurrent.map((r) => r.job!.id)).size).toBe(1);
    const rows = await database.db.selectFrom("jobs").select("id").where("idempotency_key", "=", "race-1").execute();
    expect(rows).toHaveLength(1);
  });
});

describe("JobService.Get / List", () => {
  it("lists newest first with a status filter, opaque cursors and a total count", async () => {
    const created: string[] = [];
    for (let i = 0; i < 5; i++) created.push((await api.jobs.create(request({ metadata: { batch: "list" } }))).job!.id);
    await api.jobs.cancel({ id: created[0]! });

    const first = await api.jobs.list({ pagination: { limit: 2 } });
    expect(first.jobs.map((j) => j.id)).toEqual([created[4], created[3]]);
    expect(first.pagination!.nextCursor).not.toBe("");
    const second = await api.jobs.list({ pagination: { limit: 2, cursor: first.pagination!.nextCursor } });
    expect(second.jobs.map((j) => j.id)).toEqual([created[2], created[1]]);
    expect(second.pagination!.totalCount).toBe(first.pagination!.totalCount);

    const canceled = await api.jobs.list({ status: JobStatus.CANCELED });
    expect(canceled.jobs.map((j) => j.id)).toContain(created[0]);
    expect(canceled.jobs.every((j) => j.status === JobStatus.CANCELED)).toBe(true);
    expect(canceled.pagination!.totalCount).toBe(canceled.jobs.length);

    const all = await api.jobs.list({});
    expect(all.jobs.length).toBe(Math.min(20, all.pagination!.totalCount));

    const bad = await connectError(api.jobs.list({ pagination: { cursor: "not-a-cursor" } }));
    expect(bad.code).toBe(Code.InvalidArgument);
    const tooMany = await connectError(api.jobs.list({ pagination: { limit: 101 } }));
    expect(tooMany.code).toBe(Code.InvalidArgument);
  });

  it("gets a job and answers NOT_FOUND for an unknown id", async () => {
    const { job } = await api.jobs.create(request());
    expect((await api.jobs.get({ id: job!.id })).job!.id).toBe(job!.id);
    expect((await connectError(api.jobs.get({ id: "job_unknown" }))).code).toBe(Code.NotFound);
  });
});

describe("JobService.Cancel / Confirm", () => {
  it("cancels a non-terminal job once; a terminal job is FAILED_PRECONDITION", async () => {
    const { job } = await api.jobs.create(request());
    const canceled = await api.jobs.cancel({ id: job!.id });
    expect(canceled.job!.status).toBe(JobStatus.CANCELED);
    expect(canceled.job!.completedAt).toBeDefined();
    expect(canceled.job!.outputs[0]!.status).toBe(5 /* OUTPUT_STATUS_CANCELED */);
    const again = await connectError(api.jobs.cancel({ id: job!.id }));
    expect(again.code).toBe(Code.FailedPrecondition);
    expect(again.rawMessage).toContain("canceled");
  });

  it("confirms only from awaiting_confirmation, recording confirmed_at", async () => {
    const { job } = await api.jobs.create(request({ delayedStart: true }));
    expect((await connectError(api.jobs.confirm({ id: job!.id }))).code).toBe(Code.FailedPrecondition);

    // Stand in for the worker's probe stage, which parks delayed-start jobs here.
    await database.db.updateTable("jobs").set({ status: "awaiting_confirmation" }).where("id", "=", job!.id).execute();
    const confirmed = await api.jobs.confirm({ id: job!.id });
    expect(confirmed.job!.status).toBe(JobStatus.PROCESSING);
    expect(confirmed.job!.confirmedAt).toBeDefined();
    expect(confirmed.job!.startedAt).toBeUndefined(); // set by the worker when encoding begins
    const outbox = await database.db.selectFrom("outbox").select("topic").where("job_id", "=", job!.id).orderBy("id").execute();
    expect(outbox.map((o) => o.topic)).toEqual(["job.created", "job.confirmed"]);
    expect((await connectError(api.jobs.confirm({ id: job!.id }))).code).toBe(Code.FailedPrecondition);
  });
});

describe("JobService.Watch", () => {
  it("sends a snapshot, then completed with the canceled job, then closes", async () => {
    const { job } = await api.jobs.create(request());
    const events: Array<{ event: WatchEvent; status: JobStatus }> = [];
    const stream = api.jobs.watch({ id: job!.id });
    const collected = (async () => {
      for await (const message of stream) {
        events.push({ event: message.event, status: message.job!.status });
        expect(message.serverTime).toBeDefined();
        if (message.event === WatchEvent.SNAPSHOT) await api.jobs.cancel({ id: job!.id });
      }
    })();
    await collected; // the stream must end on its own after `completed`
    expect(events).toEqual([
      { event: WatchEvent.SNAPSHOT, status: JobStatus.PENDING },
      { event: WatchEvent.COMPLETED, status: JobStatus.CANCELED },
    ]);
  });

  it("reports progress (debounced) and status changes published on the event bus", async () => {
    const { job } = await api.jobs.create(request());
    const seen: Array<[WatchEvent, number, JobStatus]> = [];
    const publish = async (status: "probing" | "processing" | "completed", progress: number) => {
      await database.db.updateTable("jobs").set({ status, progress }).where("id", "=", job!.id).execute();
      await api.app.events.publish({ jobId: job!.id, organizationId: api.credentials.organization_id, kind: progress && status === "processing" ? "progress" : "status", status, progress });
    };
    for await (const message of api.jobs.watch({ id: job!.id })) {
      seen.push([message.event, message.job!.progress, message.job!.status]);
      if (message.event === WatchEvent.SNAPSHOT) {
        await publish("probing", 0);
      } else if (message.event === WatchEvent.STATUS_CHANGE && message.job!.status === JobStatus.PROBING) {
        await publish("processing", 0);
      } else if (message.event === WatchEvent.STATUS_CHANGE) {
        // A burst of progress updates: the debounce coalesces them.
        for (let p = 1; p <= 50; p++) await publish("processing", p);
        setTimeout(() => void publish("completed", 100), 500);
      }
    }
    expect(seen[0]).toEqual([WatchEvent.SNAPSHOT, 0, JobStatus.PENDING]);
    expect(seen[1]).toEqual([WatchEvent.STATUS_CHANGE, 0, JobStatus.PROBING]);
    expect(seen[2]).toEqual([WatchEvent.STATUS_CHANGE, 0, JobStatus.PROCESSING]);
    const progress = seen.filter(([e]) => e === WatchEvent.PROGRESS).map(([, p]) => p);
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.length).toBeLessThan(10); // 50 updates in a burst, at most one event per 200 ms
    expect(progress.at(-1)).toBe(50);
    expect(seen.at(-1)).toEqual([WatchEvent.COMPLETED, 100, JobStatus.COMPLETED]);
  });

  it("answers NOT_FOUND for an unknown job", async () => {
    const err = await connectError((async () => {
      for await (const _ of api.jobs.watch({ id: "job_nope" })) void _;
    })());
    expect(err.code).toBe(Code.NotFound);
  });
});
