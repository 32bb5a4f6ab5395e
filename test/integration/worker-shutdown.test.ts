/**
 * EncoderWorker.stop(graceMs): work still running may finish within the grace period; what
 * runs past it is stopped and handed back (lease released with the attempt refunded, nak(0)).
 * In-memory PGlite, a fake MediaTools and a queue that hands out one fake delivery; the slots
 * run for real (start / stop). The processes end to end: test/e2e/worker-shutdown.test.ts.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Delivery, WorkQueue } from "../../services/queue/work-queue.js";
import { EncoderWorker } from "../../workers/encoder/worker.js";
import { createEncoderFixture, FakeMediaTools, untilAborted, type EncoderFixture } from "../support/encoder-fixture.js";

let fx: EncoderFixture;

beforeAll(async () => {
  fx = await createEncoderFixture();
  mkdirSync(join(fx.scratch, "worker-tmp"), { recursive: true });
});
afterAll(async () => {
  await fx?.close();
});

type Outcome = "ack" | "term" | { nak: number | undefined };

/** A queue whose first take() is a delivery for `job`; later ones wait for the stop. */
function oneMessageQueue(job: { id: string; organizationId: string }): { queue: WorkQueue; outcomes: Outcome[] } {
  const outcomes: Outcome[] = [];
  const delivery: Delivery = {
    message: { id: `msg-${job.id}`, jobId: job.id, organizationId: job.organizationId, stage: "probe", priority: "standard" },
    deliveryCount: 1,
    working: () => {},
    ack: async () => void outcomes.push("ack"),
    nak: (delayMs?: number) => void outcomes.push({ nak: delayMs }),
    term: () => void outcomes.push("term"),
  };
  let given = false;
  const queue: WorkQueue = {
    publish: async () => {},
    async take(signal) {
      if (!given) {
        given = true;
        return delivery;
      }
      await new Promise((resolve) => (signal.aborted ? resolve(undefined) : signal.addEventListener("abort", resolve, { once: true })));
      return undefined;
    },
    close: async () => {},
  };
  return { queue, outcomes };
}

function startWorker(tools: FakeMediaTools, queue: WorkQueue): EncoderWorker {
  return new EncoderWorker({ ...fx.deps(tools), queue, runs: fx.runs }, { concurrency: 1, leaseMs: 60_000, maxAttempts: 3, maxDeliver: 6, tmpDir: join(fx.scratch, "worker-tmp") });
}

describe("EncoderWorker.stop", () => {
  it("lets a job that ends within the grace period finish, and acks it", async () => {
    const job = await fx.createJob();
    const { queue, outcomes } = oneMessageQueue(job);
    const tools = new FakeMediaTools();
    let encoding!: () => void;
    const started = new Promise<void>((resolve) => (encoding = resolve));
    let finishEncode!: () => void;
    const gate = new Promise<void>((resolve) => (finishEncode = resolve));
    tools.onRun = async (call) => {
      encoding();
      await Promise.race([gate, untilAborted(call.options?.signal)]);
      await tools.writeOutputs(call);
    };
    const worker = startWorker(tools, queue);
    await worker.start();
    await started;
    const stopped = worker.stop(60_000);
    // The encode goes on after the stop began, and ends well inside the grace period.
    setTimeout(finishEncode, 50);
    await stopped;
    expect(outcomes).toEqual(["ack"]);
    expect(await fx.row(job.id)).toMatchObject({ status: "completed", lease_owner: "", claims: 1, last_error: "" });
  });

  it("hands back a job still running when the grace period ends: ffmpeg stopped, lease released, attempt refunded, nak(0)", async () => {
    const job = await fx.createJob();
    const { queue, outcomes } = oneMessageQueue(job);
    const tools = new FakeMediaTools();
    let encoding!: () => void;
    const started = new Promise<void>((resolve) => (encoding = resolve));
    let aborted: unknown;
    tools.onRun = async (call) => {
      encoding();
      await untilAborted(call.options?.signal).catch((reason: unknown) => {
        aborted = reason;
        throw reason;
      });
    };
    const worker = startWorker(tools, queue);
    await worker.start();
    await started;
    await worker.stop(100);
    expect(String(aborted)).toContain("worker shutting down");
    expect(outcomes).toEqual([{ nak: 0 }]);
    expect(await fx.row(job.id)).toMatchObject({
      status: "processing",
      lease_owner: "",
      lease_expires_at: null,
      claims: 0,
      last_error: "the worker running it shut down",
      error_code: "",
    });
    const after = (await fx.jobRepository.get(fx.organizationId, job.id))!;
    expect(after.outputs.map((o) => o.status)).toEqual(["processing"]);
  });

  it("an idle worker stops at once, without waiting out the grace period", async () => {
    let takes = 0;
    const idle: WorkQueue = {
      publish: async () => {},
      async take(signal) {
        takes++;
        await new Promise((resolve) => (signal.aborted ? resolve(undefined) : signal.addEventListener("abort", resolve, { once: true })));
        return undefined;
      },
      close: async () => {},
    };
    const worker = startWorker(new FakeMediaTools(), idle);
    await worker.start();
    // Ten minutes of grace, but nothing runs: the vitest timeout (30 s) would catch a wait.
    await worker.stop(600_000);
    expect(takes).toBe(1);
  });
});
