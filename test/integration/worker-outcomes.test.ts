/**
 * EncoderWorker.handle's choices, one row per situation: what it does with the delivery (ack,
 * nak with which delay, term, working) and what it leaves on the job row. In-memory PGlite, the
 * in-process event bus, fake deliveries and a fake MediaTools whose probe / run do what the row
 * needs (no ffmpeg, no queue: handle() is called directly).
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OutputType, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import type { JobRunRepository } from "../../services/jobs/job-run.repository.js";
import type { JobRecord, JobStatusName } from "../../services/jobs/job.types.js";
import type { JobEvent } from "../../services/queue/event-bus.js";
import { createInProcessWorkQueue } from "../../services/queue/in-process-work-queue.js";
import type { Delivery } from "../../services/queue/work-queue.js";
import { EncoderWorker, type EncoderSettings } from "../../workers/encoder/worker.js";
import { MediaError } from "../../workers/ffmpeg/types.js";
import { createEncoderFixture, FakeMediaTools, untilAborted, type EncoderFixture } from "../support/encoder-fixture.js";

let fx: EncoderFixture;
const queue = createInProcessWorkQueue();

beforeAll(async () => {
  fx = await createEncoderFixture();
  mkdirSync(join(fx.scratch, "worker-tmp"), { recursive: true });
});
afterAll(async () => {
  await queue.close();
  await fx?.close();
});

type Outcome = { kind: "ack" } | { kind: "nak"; delayMs: number | undefined } | { kind: "term" };

interface FakeDelivery extends Delivery {
  outcomes: Outcome[];
  workingCalls: number;
}

function fakeDelivery(job: { id: string; organizationId: string }, deliveryCount = 1): FakeDelivery {
  const delivery: FakeDelivery = {
    message: { id: `msg-${job.id}-${deliveryCount}`, jobId: job.id, organizationId: job.organizationId, stage: "probe", priority: "standard" },
    deliveryCount,
    outcomes: [],
    workingCalls: 0,
    working: () => void delivery.workingCalls++,
    ack: async () => void delivery.outcomes.push({ kind: "ack" }),
    nak: (delayMs?: number) => void delivery.outcomes.push({ kind: "nak", delayMs }),
    term: () => void delivery.outcomes.push({ kind: "term" }),
  };
  return delivery;
}

const SETTINGS: EncoderSettings = { concurrency: 1, leaseMs: 3000, maxAttempts: 3, maxDeliver: 6, tmpDir: "" };

function newWorker(tools: FakeMediaTools, settings: Partial<EncoderSettings> = {}, runs = fx.runs): EncoderWorker {
  return new EncoderWorker({ ...fx.deps(tools, { runs }), queue, runs }, { ...SETTINGS, tmpDir: join(fx.scratch, "worker-tmp"), ...settings });
}

const get = async (jobId: string): Promise<JobRecord> => (await fx.jobRepository.get(fx.organizationId, jobId))!;
const setRow = (jobId: string, patch: Record<string, unknown>) => fx.handle.db.updateTable("jobs").set(patch).where("id", "=", jobId).execute();
const H264 = (height: number) => ({ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height }] });

interface Ctx {
  tools: FakeMediaTools;
  worker: EncoderWorker;
  jobId: string;
  /** Events published from handle() on. */
  events: JobEvent[];
  delivery: FakeDelivery;
}

interface Row {
  name: string;
  settings?: Partial<EncoderSettings>;
  /** The repository the worker sees, when not the real one. */
  runs?: () => JobRunRepository;
  deliveryCount?: number;
  /** Sets the job (and the fake tools) up; returns the job id the delivery names. */
  arrange(ctx: Omit<Ctx, "jobId" | "events" | "delivery">): Promise<string>;
  outcome: "ack" | "term" | { nak: number | [min: number, max: number] };
  check?(ctx: Ctx): Promise<void>;
}

/** A worker-side transient failure: not media, not permanent. */
const blip = () => new Error("connection reset by the origin");

const rows: Row[] = [
  ...(["completed", "failed", "canceled", "partial"] as JobStatusName[]).map(
    (status): Row => ({
      name: `job ${status} (terminal) → ack, nothing claimed`,
      async arrange() {
        const job = await fx.createJob();
        await setRow(job.id, { status });
        return job.id;
      },
      outcome: "ack",
      async check({ jobId, tools }) {
        expect(await fx.row(jobId)).toMatchObject({ status, claims: 0, lease_owner: "" });
        expect(tools.probes).toEqual([]);
      },
    }),
  ),
  {
    name: "job gone → ack",
    arrange: async () => "job_01m80000000000000000000000",
    outcome: "ack",
  },
  {
    name: "awaiting_confirmation → ack (Confirm sends its own message)",
    async arrange() {
      const job = await fx.createJob({ delayedStart: true });
      await setRow(job.id, { status: "awaiting_confirmation" });
      return job.id;
    },
    outcome: "ack",
    async check({ jobId, tools }) {
      expect(await fx.row(jobId)).toMatchObject({ status: "awaiting_confirmation", claims: 0 });
      expect(tools.probes).toEqual([]);
    },
  },
  {
    name: "lease held and renewed recently (more than half a lease left) → ack: a live worker has its own message",
    async arrange() {
      const job = await fx.createJob();
      await fx.claim(job.id, "other-worker", 60_000);
      return job.id;
    },
    outcome: "ack",
    async check({ jobId, tools }) {
      expect(await fx.row(jobId)).toMatchObject({ lease_owner: "other-worker", claims: 1, status: "pending" });
      expect(tools.probes).toEqual([]);
    },
  },
  {
    name: "lease about to lapse (less than half a lease left) → nak(remaining + 500), the job left to its holder",
    settings: { leaseMs: 60_000 },
    async arrange() {
      const job = await fx.createJob();
      await fx.claim(job.id, "other-worker", 20_000);
      return job.id;
    },
    outcome: { nak: [10_000, 20_500] },
    async check({ jobId }) {
      expect(await fx.row(jobId)).toMatchObject({ lease_owner: "other-worker", claims: 1 });
    },
  },
  {
    name: "another worker claims between the look and the claim → nak(1000)",
    // The look sees a free job; the claim that follows finds it taken.
    runs: () =>
      new Proxy(fx.runs, {
        get(target, prop, receiver) {
          if (prop !== "leaseState") return Reflect.get(target, prop, receiver);
          return async (organizationId: string, jobId: string) => {
            const state = await target.leaseState(organizationId, jobId);
            await fx.claim(jobId, "faster-worker", 60_000);
            return state;
          };
        },
      }),
    arrange: async () => (await fx.createJob()).id,
    outcome: { nak: 1000 },
    async check({ jobId, tools }) {
      expect(await fx.row(jobId)).toMatchObject({ lease_owner: "faster-worker", claims: 1 });
      expect(tools.probes).toEqual([]);
    },
  },
  {
    name: "claims >= maxAttempts (the last holder died) → RETRIES_EXHAUSTED naming the last error + term",
    async arrange() {
      const job = await fx.createJob();
      await setRow(job.id, { claims: 3, last_error: "upload of x failed: socket hang up" });
      return job.id;
    },
    outcome: "term",
    async check({ jobId, tools, events }) {
      const job = await get(jobId);
      expect(job).toMatchObject({ status: "failed", errorCode: "RETRIES_EXHAUSTED", errorMessage: "gave up after 3 attempts; last error: upload of x failed: socket hang up" });
      expect(job.outputs.map((o) => [o.status, o.errorCode])).toEqual([["failed", "RETRIES_EXHAUSTED"]]);
      expect(tools.probes).toEqual([]);
      expect(events).toEqual([{ jobId, organizationId: fx.organizationId, kind: "status", status: "failed", progress: 0 }]);
      expect(await fx.row(jobId)).toMatchObject({ lease_owner: "", lease_expires_at: null });
    },
  },
  {
    name: "claims >= maxAttempts without a recorded error → RETRIES_EXHAUSTED saying the worker stopped + term",
    async arrange() {
      const job = await fx.createJob();
      await setRow(job.id, { status: "processing", claims: 5 });
      return job.id;
    },
    outcome: "term",
    async check({ jobId }) {
      expect(await get(jobId)).toMatchObject({ status: "failed", errorCode: "RETRIES_EXHAUSTED", errorMessage: "gave up after 5 attempts; last error: the worker running it stopped" });
    },
  },
  {
    name: "PermanentFailure (ffprobe cannot read the input) → term, the job failed with INPUT_UNREADABLE",
    async arrange({ tools }) {
      tools.onProbe = () => {
        throw new MediaError("INPUT_UNREADABLE", "the input is not a media file ffprobe can read");
      };
      return (await fx.createJob()).id;
    },
    outcome: "term",
    async check({ jobId, tools, events }) {
      const job = await get(jobId);
      expect(job).toMatchObject({ status: "failed", errorCode: "INPUT_UNREADABLE", errorMessage: "the input is not a media file ffprobe can read", actualCostMinor: null });
      expect(job.outputs.map((o) => [o.status, o.errorCode])).toEqual([["failed", "INPUT_UNREADABLE"]]);
      expect(tools.runs).toEqual([]);
      expect(events.filter((e) => e.kind === "status").map((e) => e.status)).toEqual(["probing", "failed"]);
      expect(await fx.row(jobId)).toMatchObject({ lease_owner: "", lease_expires_at: null, claims: 1 });
    },
  },
  {
    name: "PermanentFailure (the input is not in the origin) → term, the job failed with INPUT_NOT_FOUND",
    arrange: async () => (await fx.createJob({ inputPath: "nothing-here.mp4" })).id,
    outcome: "term",
    async check({ jobId, tools }) {
      expect(await get(jobId)).toMatchObject({ status: "failed", errorCode: "INPUT_NOT_FOUND" });
      expect(tools.probes).toEqual([]);
    },
  },
  {
    name: "transient error → lease released, nak(backoff 2 s), claimable again by anyone",
    async arrange({ tools }) {
      tools.onProbe = () => {
        throw blip();
      };
      return (await fx.createJob()).id;
    },
    outcome: { nak: 2000 },
    async check({ jobId }) {
      expect(await fx.row(jobId)).toMatchObject({ status: "probing", lease_owner: "", lease_expires_at: null, claims: 1, last_error: "connection reset by the origin" });
      const state = (await fx.runs.leaseState(fx.organizationId, jobId))!;
      expect(state.leaseRemainingMs).toBeLessThanOrEqual(0);
      expect((await get(jobId)).execution).toMatchObject({ attempts: 1 }); // saved before the worker decided
      expect(await fx.runs.claim(fx.organizationId, jobId, "next-worker", 1000, ["pending", "probing", "processing"])).toBeDefined();
    },
  },
  {
    name: "transient error on the 3rd delivery → nak(8 s)",
    deliveryCount: 3,
    settings: { maxAttempts: 10 },
    async arrange({ tools }) {
      tools.onProbe = () => {
        throw blip();
      };
      return (await fx.createJob()).id;
    },
    outcome: { nak: 8000 },
  },
  {
    name: "transient error on the 6th delivery → nak capped at 60 s (not 64)",
    deliveryCount: 6,
    settings: { maxAttempts: 10, maxDeliver: 10 },
    async arrange({ tools }) {
      tools.onProbe = () => {
        throw blip();
      };
      return (await fx.createJob()).id;
    },
    outcome: { nak: 60_000 },
  },
  {
    name: "transient error on the last delivery (maxDeliver) → RETRIES_EXHAUSTED naming it + term",
    deliveryCount: 6,
    async arrange({ tools }) {
      tools.onProbe = () => {
        throw blip();
      };
      return (await fx.createJob()).id;
    },
    outcome: "term",
    async check({ jobId }) {
      expect(await get(jobId)).toMatchObject({ status: "failed", errorCode: "RETRIES_EXHAUSTED", errorMessage: "gave up after 1 attempt; last error: connection reset by the origin" });
      expect(await fx.row(jobId)).toMatchObject({ lease_owner: "", lease_expires_at: null });
    },
  },
  {
    name: "transient error on the last allowed attempt (claims reach maxAttempts) → RETRIES_EXHAUSTED + term",
    async arrange({ tools }) {
      tools.onRun = () => {
        throw new Error("ffmpeg was killed by SIGKILL");
      };
      const job = await fx.createJob();
      await setRow(job.id, { claims: 2 });
      return job.id;
    },
    outcome: "term",
    async check({ jobId }) {
      expect(await get(jobId)).toMatchObject({ status: "failed", errorCode: "RETRIES_EXHAUSTED", errorMessage: "gave up after 3 attempts; last error: ffmpeg was killed by SIGKILL" });
    },
  },
  {
    name: "retries exhausted after an earlier attempt delivered an output → partial: the delivered one kept and charged, not redone",
    deliveryCount: 6,
    async arrange({ tools }) {
      tools.onRun = () => {
        throw new Error("ffmpeg was killed by SIGKILL");
      };
      const job = await fx.createJob({ outputs: [H264(360), H264(240)] });
      await setRow(job.id, { status: "processing", started_at: new Date(), claims: 1 });
      await fx.handle.db
        .updateTable("job_outputs")
        .set({ status: "completed", output_url: "file:///delivered.mp4", actual_cost_minor: 7, progress: 100 })
        .where("id", "=", job.outputs[0]!.id)
        .execute();
      return job.id;
    },
    outcome: "term",
    async check({ jobId, tools }) {
      const job = await get(jobId);
      expect(tools.runs.map((r) => r.files.length)).toEqual([1]); // only the unfinished output was encoded
      expect(tools.runs[0]!.files[0]).toContain(job.outputs[1]!.id);
      expect(job).toMatchObject({ status: "partial", errorCode: "RETRIES_EXHAUSTED" });
      expect(Number(job.actualCostMinor)).toBe(7);
      expect(job.outputs.map((o) => [o.status, o.errorCode])).toEqual([
        ["completed", ""],
        ["failed", "RETRIES_EXHAUSTED"],
      ]);
    },
  },
  {
    name: "shutdown mid-run → lease released with the claim refunded + nak(0)",
    async arrange({ tools, worker }) {
      tools.onRun = async (call) => {
        void worker.stop();
        await untilAborted(call.options?.signal);
      };
      return (await fx.createJob()).id;
    },
    outcome: { nak: 0 },
    async check({ jobId, tools }) {
      expect(tools.runs).toHaveLength(1);
      expect(await fx.row(jobId)).toMatchObject({ status: "processing", lease_owner: "", lease_expires_at: null, claims: 0, last_error: "the worker running it shut down" });
      expect((await get(jobId)).outputs[0]!.status).toBe("processing");
    },
  },
  {
    name: "canceled mid-run (the worker hears the event and kills ffmpeg) → ack: LeaseLostError",
    async arrange({ tools }) {
      tools.onRun = async (call) => {
        await fx.jobs.cancel(fx.organizationId, tools.jobId!);
        await untilAborted(call.options?.signal);
      };
      return (tools.jobId = (await fx.createJob()).id);
    },
    outcome: "ack",
    async check({ jobId }) {
      const job = await get(jobId);
      expect(job).toMatchObject({ status: "canceled", errorCode: "" });
      expect(job.outputs[0]).toMatchObject({ status: "canceled", outputUrl: "" });
    },
  },
  {
    name: "lease taken over by another worker mid-run (the renewal is refused) → ack: LeaseLostError; working() was called",
    settings: { leaseMs: 1500 }, // heartbeat every 500 ms
    async arrange({ tools }) {
      tools.onRun = async (call) => {
        await setRow(tools.jobId!, { lease_expires_at: sql<Date>`now() - interval '1 second'` });
        await fx.claim(tools.jobId!, "usurper", 60_000);
        await untilAborted(call.options?.signal); // the next heartbeat finds the lease gone
      };
      return (tools.jobId = (await fx.createJob()).id);
    },
    outcome: "ack",
    async check({ jobId, delivery }) {
      expect(delivery.workingCalls).toBeGreaterThanOrEqual(1);
      expect(await fx.row(jobId)).toMatchObject({ status: "processing", lease_owner: "usurper", claims: 2 });
    },
  },
  {
    name: "a write refused because the lease is gone (the cancel was not heard) → ack: LeaseLostError",
    async arrange({ tools }) {
      tools.onRun = async (call) => {
        await fx.quietJobs.cancel(fx.organizationId, tools.jobId!); // committed, but the event is lost
        await tools.writeOutputs(call);
      };
      return (tools.jobId = (await fx.createJob()).id);
    },
    outcome: "ack",
    async check({ jobId, events }) {
      const job = await get(jobId);
      expect(job).toMatchObject({ status: "canceled", errorCode: "" });
      expect(job.outputs[0]).toMatchObject({ status: "canceled", outputUrl: "" });
      expect(events.map((e) => e.status)).not.toContain("canceled");
    },
  },
  {
    name: "a run that gets through → ack, the job completed; working() extends the delivery while ffmpeg runs",
    settings: { leaseMs: 1500 }, // heartbeat every 500 ms
    async arrange({ tools }) {
      tools.onRun = async (call) => {
        await new Promise((resolve) => setTimeout(resolve, 700)); // past one heartbeat
        await tools.writeOutputs(call);
      };
      return (await fx.createJob()).id;
    },
    outcome: "ack",
    async check({ jobId, delivery }) {
      expect(delivery.workingCalls).toBeGreaterThanOrEqual(1);
      expect(await get(jobId)).toMatchObject({ status: "completed" });
      expect(await fx.row(jobId)).toMatchObject({ lease_owner: "", lease_expires_at: null, claims: 1 });
    },
  },
];

describe("EncoderWorker.handle: ack / nak / term", () => {
  it.each(rows)("$name", async (row) => {
    const tools = new FakeMediaTools();
    const worker = newWorker(tools, row.settings, row.runs?.());
    const jobId = await row.arrange({ tools, worker });
    const events: JobEvent[] = [];
    const unsubscribe = await fx.events.subscribe(jobId, (event) => events.push(event));
    const delivery = fakeDelivery({ id: jobId, organizationId: fx.organizationId }, row.deliveryCount);
    try {
      await worker.handle(delivery);
    } finally {
      unsubscribe();
    }

    // Exactly one of ack / nak / term settles a delivery.
    expect(delivery.outcomes).toHaveLength(1);
    const [outcome] = delivery.outcomes;
    if (row.outcome === "ack" || row.outcome === "term") {
      expect(outcome).toEqual({ kind: row.outcome });
    } else if (typeof row.outcome.nak === "number") {
      expect(outcome).toEqual({ kind: "nak", delayMs: row.outcome.nak });
    } else {
      const [min, max] = row.outcome.nak;
      expect(outcome!.kind).toBe("nak");
      const delay = (outcome as { delayMs: number }).delayMs;
      expect(delay).toBeGreaterThanOrEqual(min);
      expect(delay).toBeLessThanOrEqual(max);
    }
    await row.check?.({ tools, worker, jobId, events, delivery });
  });

  it("backs off 2, 4 s over transient failures with the job claimable each time; the next delivery completes it", async () => {
    const tools = new FakeMediaTools();
    const worker = newWorker(tools, { maxAttempts: 10 });
    const job = await fx.createJob();
    let failures = 2;
    tools.onProbe = (file) => {
      if (failures-- > 0) throw blip();
      return file.endsWith("input") ? tools.info : { ...tools.info, durationMs: tools.outputDurationMs };
    };
    const outcomes: Outcome[] = [];
    for (const count of [1, 2, 3]) {
      const delivery = fakeDelivery(job, count);
      await worker.handle(delivery);
      outcomes.push(...delivery.outcomes);
    }
    expect(outcomes).toEqual([{ kind: "nak", delayMs: 2000 }, { kind: "nak", delayMs: 4000 }, { kind: "ack" }]);
    const done = await get(job.id);
    expect(done.status).toBe("completed");
    expect(done.execution).toMatchObject({ attempts: 3 });
    expect(await fx.row(job.id)).toMatchObject({ claims: 3, last_error: "connection reset by the origin" });
  });
});
