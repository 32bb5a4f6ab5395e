import { describe, expect, it } from "vitest";
import { watchJob, type WatchEventName } from "../../services/jobs/job.watch.js";
import type { JobRecord, JobStatusName } from "../../services/jobs/job.types.js";
import { InProcessEventBus } from "../../services/queue/event-bus.js";

/** A job held in memory; `load` returns a copy, as the database would. */
function fakeJob(status: JobStatusName = "pending") {
  const job = { id: "job_1", organizationId: "org_1", status, progress: 0 } as JobRecord;
  return { job, load: async () => ({ ...job }) };
}

async function collect(stream: AsyncGenerator<{ event: WatchEventName; job: JobRecord }>, onEvent?: (e: WatchEventName) => void | Promise<void>) {
  const seen: Array<[WatchEventName, JobStatusName, number]> = [];
  for await (const { event, job } of stream) {
    seen.push([event, job.status, job.progress]);
    await onEvent?.(event);
  }
  return seen;
}

const options = (signal = new AbortController().signal) => ({ heartbeatMs: 60_000, pollMs: 1_000, progressDebounceMs: 200, signal });

describe("watchJob", () => {
  it("ends at once for a terminal job: snapshot then completed", async () => {
    const bus = new InProcessEventBus();
    const { load } = fakeJob("completed");
    expect(await collect(watchJob(bus, load, "job_1", options()))).toEqual([
      ["snapshot", "completed", 0],
      ["completed", "completed", 0],
    ]);
  });

  it("does not lose a transition that happens while the snapshot is read", async () => {
    const bus = new InProcessEventBus();
    const { job } = fakeJob();
    let first = true;
    // The job moves on between subscribe and the snapshot's read: the event must still arrive.
    const load = async () => {
      const snapshot = { ...job };
      if (first) {
        first = false;
        job.status = "canceled";
        await bus.publish({ jobId: "job_1", organizationId: "org_1", kind: "status", status: "canceled", progress: 0 });
      }
      return snapshot;
    };
    expect(await collect(watchJob(bus, load, "job_1", options()))).toEqual([
      ["snapshot", "pending", 0],
      ["completed", "canceled", 0],
    ]);
  });

  it("coalesces progress bursts to one event per debounce window and always delivers the latest", async () => {
    const bus = new InProcessEventBus();
    const { job, load } = fakeJob("processing");
    const started = Date.now();
    const seen = await collect(watchJob(bus, load, "job_1", options()), async (event) => {
      if (event !== "snapshot") return;
      // The producer runs on its own while the stream is consumed.
      void (async () => {
        for (let p = 1; p <= 100; p++) {
          job.progress = p;
          await bus.publish({ jobId: "job_1", organizationId: "org_1", kind: "progress", status: "processing", progress: p });
          if (p % 10 === 0) await new Promise((r) => setTimeout(r, 50)); // 100 updates over ~500 ms
        }
        await new Promise((r) => setTimeout(r, 400));
        job.status = "completed";
        await bus.publish({ jobId: "job_1", organizationId: "org_1", kind: "status", status: "completed", progress: 100 });
      })();
    });
    const progress = seen.filter(([e]) => e === "progress");
    const elapsed = Date.now() - started;
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.length).toBeLessThanOrEqual(Math.ceil(elapsed / 200) + 1);
    expect(progress.at(-1)![2]).toBe(100);
    expect(seen.at(-1)).toEqual(["completed", "completed", 100]);
  });

  it("sends heartbeats while nothing happens and ends cleanly when aborted", async () => {
    const bus = new InProcessEventBus();
    const { load } = fakeJob("processing");
    const abort = new AbortController();
    const seen = await collect(watchJob(bus, load, "job_1", { heartbeatMs: 50, pollMs: 1_000, progressDebounceMs: 200, signal: abort.signal }), (event) => {
      if (event === "heartbeat" && !abort.signal.aborted) setTimeout(() => abort.abort(), 120);
    });
    const heartbeats = seen.filter(([e]) => e === "heartbeat").length;
    expect(seen[0]![0]).toBe("snapshot");
    expect(heartbeats).toBeGreaterThanOrEqual(2);
    expect(seen.every(([e]) => e === "snapshot" || e === "heartbeat")).toBe(true);
  });

  it("unsubscribes when the consumer stops early", async () => {
    const bus = new InProcessEventBus();
    const { load } = fakeJob("processing");
    for await (const { event } of watchJob(bus, load, "job_1", options())) {
      expect(event).toBe("snapshot");
      break;
    }
    // @ts-expect-error reading the private emitter: no listener may be left behind
    expect(bus.emitter.listenerCount("job_1")).toBe(0);
  });

  it("never reports progress going backwards when a heartbeat re-reads a row that lags the events", async () => {
    const bus = new InProcessEventBus();
    const { job, load } = fakeJob("processing");
    const abort = new AbortController();
    const seen = await collect(watchJob(bus, load, "job_1", { heartbeatMs: 100, pollMs: 1_000, progressDebounceMs: 0, signal: abort.signal }), async (event) => {
      if (event === "snapshot") await bus.publish({ jobId: "job_1", organizationId: "org_1", kind: "progress", status: "processing", progress: 50 });
      // The row still says 0 (workers persist progress only now and then): a few heartbeat reads, then the end.
      if (event === "progress") setTimeout(() => Object.assign(job, { status: "completed", progress: 100 }), 450);
    });
    expect(seen[1]).toEqual(["progress", "processing", 50]);
    const progress = seen.slice(1, -1).map(([, , p]) => p);
    expect(progress.every((p) => p === 50)).toBe(true);
    expect(seen.at(-1)).toEqual(["completed", "completed", 100]);
    abort.abort();
  });

  describe("converges on the database when the bus does not deliver", () => {
    /** A bus that accepts subscriptions but drops every event, like core NATS during an outage. */
    class SilentBus extends InProcessEventBus {
      live = true;
      subscribeError: Error | undefined;
      override async publish(): Promise<void> {}
      override isLive(): boolean {
        return this.live;
      }
      override async subscribe(jobId: string, handler: Parameters<InProcessEventBus["subscribe"]>[1]) {
        if (this.subscribeError) throw this.subscribeError;
        return super.subscribe(jobId, handler);
      }
    }
    const finishLater = (job: JobRecord, ms: number) => setTimeout(() => Object.assign(job, { status: "completed", progress: 100 }), ms);

    it("polls while the bus is down and ends with completed", async () => {
      const bus = new SilentBus();
      bus.live = false;
      const { job, load } = fakeJob("processing");
      finishLater(job, 150);
      const seen = await collect(watchJob(bus, load, "job_1", { ...options(), pollMs: 50 }));
      expect(seen).toEqual([
        ["snapshot", "processing", 0],
        ["completed", "completed", 100],
      ]);
    });

    it("starts from the snapshot when subscribing fails (NATS DISCONNECT) and still ends", async () => {
      const bus = new SilentBus();
      bus.subscribeError = new Error("DISCONNECT");
      const { job, load } = fakeJob("processing");
      finishLater(job, 150);
      const seen = await collect(watchJob(bus, load, "job_1", { ...options(), pollMs: 50 }));
      expect(seen.at(0)).toEqual(["snapshot", "processing", 0]);
      expect(seen.at(-1)).toEqual(["completed", "completed", 100]);
    });

    it("re-reads at the heartbeat when a live bus lost the event", async () => {
      const bus = new SilentBus();
      const { job, load } = fakeJob("processing");
      finishLater(job, 100);
      // pollMs is long: only the heartbeat's read can find the change.
      const seen = await collect(watchJob(bus, load, "job_1", { ...options(), heartbeatMs: 200, pollMs: 60_000 }));
      expect(seen.at(-1)).toEqual(["completed", "completed", 100]);
    });

    it("keeps the stream through failed reads and reports the state once reads work again", async () => {
      const bus = new SilentBus();
      bus.live = false;
      const { job } = fakeJob("processing");
      let reads = 0;
      const load = async () => {
        reads++;
        if (reads >= 2 && reads <= 4) throw new Error("connect ECONNREFUSED 127.0.0.1:5432");
        return { ...job };
      };
      finishLater(job, 100);
      const seen = await collect(watchJob(bus, load, "job_1", { ...options(), pollMs: 40 }));
      expect(reads).toBeGreaterThanOrEqual(5);
      expect(seen.at(-1)).toEqual(["completed", "completed", 100]);
    });
  });
});
