/**
 * One contract, two implementations: the JetStream queue (against the real NATS server from the
 * global setup) and the in-memory queue of the embedded mode. Every test gets its own subject
 * prefix / stream, and deletes it afterwards.
 */
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

import type { NatsConnection } from "nats";
import { afterEach, describe, expect, inject, it } from "vitest";

import { createInProcessWorkQueue } from "../../services/queue/in-process-work-queue.js";
import { closeNats, connectNats } from "../../services/queue/nats-connection.js";
import { createNatsWorkQueue, natsWorkQueueNames } from "../../services/queue/nats-work-queue.js";
import type { Delivery, WorkMessage, WorkQueue, WorkQueueOptions } from "../../services/queue/work-queue.js";

const natsUrl = inject("natsUrl");

/** A queue under test and a way to get more handles on it (for NATS: other processes). */
interface Backend {
  /** Another handle on the same queue: for NATS a new connection, in process the same object. */
  open(): Promise<WorkQueue>;
  /** NATS only: drop the queue's connection without draining (a crashed worker). */
  crash?(queue: WorkQueue): Promise<void>;
  /** NATS only: how many messages the stream still stores. */
  storedMessages?(): Promise<number>;
  dispose(): Promise<void>;
}

type BackendFactory = (options: Partial<WorkQueueOptions>) => Promise<Backend>;

const natsBackend: BackendFactory = async (options) => {
  const prefix = `t${randomBytes(5).toString("hex")}`;
  const stream = natsWorkQueueNames(prefix).stream;
  const opened = new Map<WorkQueue, NatsConnection>();
  const admin = await connectNats(natsUrl, { name: `work-queue-test-admin-${prefix}` });
  return {
    async open() {
      const nc = await connectNats(natsUrl, { name: `work-queue-test-${prefix}` });
      const queue = await createNatsWorkQueue(nc, { prefix, ...options });
      opened.set(queue, nc);
      return queue;
    },
    async crash(queue) {
      await opened.get(queue)?.close();
    },
    async storedMessages() {
      const jsm = await admin.jetstreamManager();
      return (await jsm.streams.info(stream)).state.messages;
    },
    async dispose() {
      for (const [queue, nc] of opened) {
        await queue.close();
        await closeNats(nc);
      }
      opened.clear();
      const jsm = await admin.jetstreamManager();
      await jsm.streams.delete(stream).catch(() => undefined);
      await closeNats(admin);
    },
  };
};

const inProcessBackend: BackendFactory = async (options) => {
  const queue = createInProcessWorkQueue(options);
  return {
    async open() {
      return queue;
    },
    async dispose() {
      await queue.close();
    },
  };
};

let counter = 0;
function message(overrides: Partial<WorkMessage> = {}): WorkMessage {
  counter += 1;
  return {
    id: `wm_${randomBytes(6).toString("hex")}_${counter}`,
    jobId: `job_${randomBytes(6).toString("hex")}`,
    organizationId: "org_test",
    stage: "encode",
    priority: "standard",
    ...overrides,
  };
}

/** take() that gives up after `ms` (returns undefined then). */
function takeWithin(queue: WorkQueue, ms: number): Promise<Delivery | undefined> {
  return queue.take(AbortSignal.timeout(ms));
}

/** take() that must succeed within a generous limit. */
async function takeOne(queue: WorkQueue, ms = 10_000): Promise<Delivery> {
  const delivery = await takeWithin(queue, ms);
  expect(delivery, "a delivery").toBeDefined();
  return delivery!;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

const backends: Array<[string, BackendFactory]> = [
  ["nats", natsBackend],
  ["in-process", inProcessBackend],
];

describe.each(backends)("WorkQueue contract: %s", (name, makeBackend) => {
  const created: Backend[] = [];
  afterEach(async () => {
    await Promise.all(created.splice(0).map((backend) => backend.dispose()));
  });

  async function setUp(options: Partial<WorkQueueOptions> = {}): Promise<{ backend: Backend; queue: WorkQueue }> {
    const backend = await makeBackend(options);
    created.push(backend);
    return { backend, queue: await backend.open() };
  }

  it("publish → take round trip; an acked message is gone", async () => {
    const { queue } = await setUp();
    const sent = message({ stage: "probe", priority: "premium" });
    await queue.publish(sent);

    const delivery = await takeOne(queue);
    expect(delivery.message).toEqual(sent);
    expect(delivery.deliveryCount).toBe(1);
    await delivery.ack();

    expect(await takeWithin(queue, 500)).toBeUndefined();
  });

  it("carries chunk and assemble messages naming their task, in priority order like the rest", async () => {
    const { queue } = await setUp();
    const chunk = message({ stage: "chunk", priority: "economy", taskId: "tsk_01m80000000000000000000001" });
    const assemble = message({ stage: "assemble", priority: "premium", taskId: "tsk_01m80000000000000000000002" });
    await queue.publish(chunk);
    await queue.publish(assemble);
    const first = await takeOne(queue);
    expect(first.message).toEqual(assemble);
    await first.ack();
    const second = await takeOne(queue);
    expect(second.message).toEqual(chunk);
    await second.ack();
    await expect(queue.publish(message({ stage: "transcode" as never }))).rejects.toThrow(/unknown work stage/);
  });

  it("drops a re-published id, also after the first one was acked", async () => {
    const { queue } = await setUp();
    const sent = message();
    await queue.publish(sent);
    await queue.publish({ ...sent });

    const delivery = await takeOne(queue);
    expect(delivery.message.id).toBe(sent.id);
    await delivery.ack();
    await queue.publish({ ...sent });

    expect(await takeWithin(queue, 500)).toBeUndefined();
  });

  it("hands out premium before standard before economy", async () => {
    const { queue } = await setUp();
    const economy = message({ priority: "economy" });
    const standard = message({ priority: "standard", stage: "probe" });
    const premium = message({ priority: "premium" });
    for (const sent of [economy, standard, premium]) await queue.publish(sent);

    const taken: string[] = [];
    for (let i = 0; i < 3; i++) {
      const delivery = await takeOne(queue);
      taken.push(delivery.message.id);
      await delivery.ack();
    }
    expect(taken).toEqual([premium.id, standard.id, economy.id]);
  });

  it("a waiting take() receives a message published later", async () => {
    const { queue } = await setUp();
    const waiting = takeWithin(queue, 10_000);
    await sleep(200); // the taker is idle now
    const sent = message();
    await queue.publish(sent);

    const delivery = await waiting;
    expect(delivery?.message).toEqual(sent);
    await delivery?.ack();
  });

  it("take() returns undefined when its signal aborts, and the aborted taker takes nothing", async () => {
    const { queue } = await setUp();
    expect(await queue.take(AbortSignal.abort())).toBeUndefined();

    const controller = new AbortController();
    const waiting = queue.take(controller.signal);
    await sleep(100);
    controller.abort();
    expect(await waiting).toBeUndefined();

    const sent = message();
    await queue.publish(sent);
    const delivery = await takeOne(queue);
    expect(delivery.message.id).toBe(sent.id);
    expect(delivery.deliveryCount).toBe(1);
    await delivery.ack();
  });

  it("nak(delay) delivers the message again, with deliveryCount 2", async () => {
    const { queue } = await setUp();
    const sent = message();
    await queue.publish(sent);

    const first = await takeOne(queue);
    first.nak(300);
    const second = await takeOne(queue);
    expect(second.message).toEqual(sent);
    expect(second.deliveryCount).toBe(2);
    await second.ack();
  });

  it("redelivers a delivery left un-acked past ackWaitMs", async () => {
    const { queue } = await setUp({ ackWaitMs: 1_000 });
    const sent = message();
    await queue.publish(sent);

    const first = await takeOne(queue);
    expect(first.deliveryCount).toBe(1);
    const second = await takeOne(queue); // ~1 s later
    expect(second.message.id).toBe(sent.id);
    expect(second.deliveryCount).toBe(2);
    await second.ack();
  });

  it("working() postpones the redelivery", async () => {
    const { queue } = await setUp({ ackWaitMs: 1_000 });
    await queue.publish(message());

    const first = await takeOne(queue);
    const heartbeat = setInterval(() => first.working(), 250);
    try {
      expect(await takeWithin(queue, 2_500)).toBeUndefined();
    } finally {
      clearInterval(heartbeat);
    }
    const second = await takeOne(queue); // once the heartbeat stops
    expect(second.message.id).toBe(first.message.id);
    expect(second.deliveryCount).toBe(2);
    await second.ack();
  });

  it("term() ends a message for good", async () => {
    const { queue } = await setUp({ ackWaitMs: 1_000 });
    await queue.publish(message());

    (await takeOne(queue)).term();
    expect(await takeWithin(queue, 2_500)).toBeUndefined();
  });

  it("gives up after maxDeliver deliveries (nak, then ack timeout)", async () => {
    const { backend, queue } = await setUp({ ackWaitMs: 1_000, maxDeliver: 2 });
    const sent = message({ priority: "premium" });
    await queue.publish(sent);

    const first = await takeOne(queue);
    first.nak();
    const second = await takeOne(queue);
    expect(second.deliveryCount).toBe(2);
    // not acked: its ack deadline passes, and no third delivery comes
    expect(await takeWithin(queue, 3_000)).toBeUndefined();

    // other work still flows
    const next = message({ priority: "premium" });
    await queue.publish(next);
    const delivery = await takeOne(queue);
    expect(delivery.message.id).toBe(next.id);
    await delivery.ack();

    if (backend.storedMessages) {
      // NATS: the exhausted message is deleted from the WorkQueue stream (MAX_DELIVERIES advisory)
      await expect.poll(() => backend.storedMessages!(), { timeout: 5_000, interval: 100 }).toBe(0);
    }
  });

  it("two concurrent takers never get the same message", async () => {
    const { backend, queue } = await setUp();
    const other = await backend.open();
    const total = 20;
    const received: string[] = [];
    const done = new AbortController();

    const worker = async (taker: WorkQueue) => {
      while (!done.signal.aborted) {
        const delivery = await taker.take(done.signal);
        if (!delivery) return;
        received.push(delivery.message.id);
        await delivery.ack();
        if (received.length >= total) done.abort();
      }
    };
    const workers = Promise.all([worker(queue), worker(other), worker(queue), worker(other)]);
    await sleep(100); // all four idle and waiting
    const sent = Array.from({ length: total }, (_, i) =>
      message({ priority: (["premium", "standard", "economy"] as const)[i % 3] }),
    );
    await Promise.all(sent.map((m) => queue.publish(m)));
    const timeout = setTimeout(() => done.abort(), 20_000);
    await workers;
    clearTimeout(timeout);

    expect(new Set(received).size).toBe(received.length);
    expect([...received].sort()).toEqual(sent.map((m) => m.id).sort());
  });

  it.runIf(name === "nats")("keeps messages across a crash: new connection, same stream", async () => {
    const { backend, queue } = await setUp({ ackWaitMs: 1_000 });
    const inFlight = message({ priority: "premium" });
    const queued = message({ priority: "standard" });
    await queue.publish(inFlight);
    await queue.publish(queued);
    const taken = await takeOne(queue);
    expect(taken.message.id).toBe(inFlight.id);
    await backend.crash!(queue); // dies holding `inFlight`, never acks

    const reopened = await backend.open();
    const first = await takeOne(reopened);
    expect(first.message.id).toBe(queued.id);
    expect(first.deliveryCount).toBe(1);
    await first.ack();
    const redelivered = await takeOne(reopened); // after ackWaitMs
    expect(redelivered.message.id).toBe(inFlight.id);
    expect(redelivered.deliveryCount).toBe(2);
    await redelivered.ack();
  });

  it("reports the idle publish → take latency (printed, not asserted)", async () => {
    const { queue } = await setUp();
    const samples: number[] = [];
    for (let i = 0; i < 20; i++) {
      const waiting = takeWithin(queue, 10_000);
      await sleep(50); // idle taker
      const start = performance.now();
      await queue.publish(message());
      const delivery = await waiting;
      samples.push(performance.now() - start);
      await delivery?.ack();
    }
    console.info(
      `[${name}] idle publish→take latency over 20: median ${median(samples).toFixed(2)} ms, ` +
        `max ${Math.max(...samples).toFixed(2)} ms`,
    );
    expect(samples).toHaveLength(20);
  });
});

describe("NATS work queue set-up", () => {
  it("several processes starting at once (with different settings) share one stream and its consumers", async () => {
    const prefix = `t${randomBytes(5).toString("hex")}`;
    const names = natsWorkQueueNames(prefix);
    const connections = await Promise.all(
      [0, 1, 2, 3].map(() => connectNats(natsUrl, { name: `work-queue-test-race-${prefix}` })),
    );
    try {
      const queues = await Promise.all(
        connections.map((nc, i) => createNatsWorkQueue(nc, { prefix, ackWaitMs: i === 3 ? 20_000 : 10_000, maxDeliver: 5 })),
      );
      // and once more, as a restarted process would
      queues.push(await createNatsWorkQueue(connections[0]!, { prefix, ackWaitMs: 15_000, maxDeliver: 4 }));

      const jsm = await connections[0]!.jetstreamManager();
      const stream = await jsm.streams.info(names.stream);
      expect(stream.config.retention).toBe("workqueue");
      expect(stream.config.subjects.sort()).toEqual(Object.values(names.filters).sort());
      for (const consumer of Object.values(names.consumers)) {
        const info = await jsm.consumers.info(names.stream, consumer);
        expect(info.config.ack_wait).toBe(15_000_000_000); // the last start wins
        expect(info.config.max_deliver).toBe(4);
      }

      const sent = message({ priority: "economy" });
      await queues[1]!.publish(sent);
      const delivery = await takeOne(queues[2]!);
      expect(delivery.message).toEqual(sent);
      await delivery.ack();
      await Promise.all(queues.map((queue) => queue.close()));
      await jsm.streams.delete(names.stream);
    } finally {
      await Promise.all(connections.map((nc) => closeNats(nc)));
    }
  });

  it("rejects a prefix that is not a subject", () => {
    expect(() => natsWorkQueueNames("a b")).toThrow(/invalid NATS subject prefix/);
    expect(natsWorkQueueNames("acme.prod").stream).toBe("ACME_PROD_JOBS");
  });

  it("connectNats fails fast and readably when nothing listens", async () => {
    await expect(connectNats("nats://user:secret@127.0.0.1:1", { name: "unreachable" })).rejects.toThrow(
      /^cannot reach NATS at nats:\/\/user:\*\*\*@127\.0\.0\.1:1: /,
    );
  });
});
