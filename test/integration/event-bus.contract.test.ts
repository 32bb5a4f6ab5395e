/**
 * JobEventBus contract for the in-process bus and the NATS bus (real server from the global setup,
 * a unique subject prefix per test). Core NATS keeps no state, so there is nothing to delete.
 */
import { randomBytes } from "node:crypto";

import type { NatsConnection } from "nats";
import { afterEach, describe, expect, inject, it } from "vitest";

import { InProcessEventBus, type JobEvent, type JobEventBus } from "../../services/queue/event-bus.js";
import { closeNats, connectNats } from "../../services/queue/nats-connection.js";
import { NatsEventBus } from "../../services/queue/nats-event-bus.js";

const natsUrl = inject("natsUrl");

interface Buses {
  /** Another bus on the same fan-out: for NATS a bus on its own connection (another process). */
  open(): Promise<JobEventBus>;
  /** A second bus sharing `bus`'s connection (NATS); in process the same bus. */
  sibling(bus: JobEventBus): JobEventBus;
  dispose(): Promise<void>;
}

type BusesFactory = () => Promise<Buses>;

const natsBuses: BusesFactory = async () => {
  const prefix = `t${randomBytes(5).toString("hex")}`;
  const opened: Array<[JobEventBus, NatsConnection]> = [];
  return {
    async open() {
      const nc = await connectNats(natsUrl, { name: `event-bus-test-${prefix}` });
      const bus = new NatsEventBus(nc, { prefix });
      opened.push([bus, nc]);
      return bus;
    },
    sibling(bus) {
      const nc = opened.find(([candidate]) => candidate === bus)![1];
      const sibling = new NatsEventBus(nc, { prefix });
      opened.push([sibling, nc]);
      return sibling;
    },
    async dispose() {
      for (const [bus, nc] of opened.splice(0)) {
        await bus.close();
        await closeNats(nc);
      }
    },
  };
};

const inProcessBuses: BusesFactory = async () => {
  const bus = new InProcessEventBus();
  return {
    async open() {
      return bus;
    },
    sibling: () => bus,
    async dispose() {
      await bus.close();
    },
  };
};

function jobId(): string {
  return `job_${randomBytes(8).toString("hex")}`;
}

function event(id: string, progress = 0): JobEvent {
  return { jobId: id, organizationId: "org_test", kind: "progress", status: "processing", progress };
}

/** Collects a subscription's events; `next(n)` waits until n have arrived. */
function collector() {
  const events: JobEvent[] = [];
  let waiters: Array<() => void> = [];
  return {
    events,
    handler: (received: JobEvent) => {
      events.push(received);
      const current = waiters;
      waiters = [];
      for (const wake of current) wake();
    },
    async waitFor(count: number, ms = 5_000): Promise<JobEvent[]> {
      const deadline = Date.now() + ms;
      while (events.length < count) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`expected ${count} events, got ${events.length}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      return events;
    },
  };
}

const factories: Array<[string, BusesFactory]> = [
  ["nats", natsBuses],
  ["in-process", inProcessBuses],
];

describe.each(factories)("JobEventBus contract: %s", (name, makeBuses) => {
  const created: Buses[] = [];
  afterEach(async () => {
    await Promise.all(created.splice(0).map((buses) => buses.dispose()));
  });

  async function setUp(): Promise<Buses> {
    const buses = await makeBuses();
    created.push(buses);
    return buses;
  }

  it("a subscriber gets the events of its job only, in order", async () => {
    const bus = await (await setUp()).open();
    const mine = jobId();
    const other = jobId();
    const seen = collector();
    const otherSeen = collector();
    await bus.subscribe(mine, seen.handler);
    await bus.subscribe(other, otherSeen.handler);

    await bus.publish(event(mine, 0.1));
    await bus.publish(event(other, 0.5));
    await bus.publish(event(mine, 0.2));

    expect(await seen.waitFor(2)).toEqual([event(mine, 0.1), event(mine, 0.2)]);
    expect(await otherSeen.waitFor(1)).toEqual([event(other, 0.5)]);
    expect(seen.events).toHaveLength(2);
  });

  it("many subscribers of one job all get its events", async () => {
    const bus = await (await setUp()).open();
    const id = jobId();
    const watchers = [collector(), collector(), collector()];
    for (const watcher of watchers) await bus.subscribe(id, watcher.handler);

    await bus.publish(event(id, 1));
    for (const watcher of watchers) expect(await watcher.waitFor(1)).toEqual([event(id, 1)]);
  });

  it("unsubscribe stops the events", async () => {
    const bus = await (await setUp()).open();
    const id = jobId();
    const marker = jobId();
    const seen = collector();
    const markerSeen = collector();
    const unsubscribe = await bus.subscribe(id, seen.handler);
    await bus.subscribe(marker, markerSeen.handler);

    await bus.publish(event(id, 0.1));
    await seen.waitFor(1);
    unsubscribe();
    unsubscribe(); // twice is harmless
    await bus.publish(event(id, 0.2));
    await bus.publish(event(marker, 1)); // sent after, so received after the one we must not see
    await markerSeen.waitFor(1);
    expect(seen.events).toEqual([event(id, 0.1)]);
  });

  it("one watcher of a job unsubscribing leaves the others subscribed, and a new watcher after the last left gets events again", async () => {
    const bus = await (await setUp()).open();
    const id = jobId();
    const staying = collector();
    const leaving = collector();
    const stayingOff = await bus.subscribe(id, staying.handler);
    const leave = await bus.subscribe(id, leaving.handler);
    leave();
    await bus.publish(event(id, 1));
    expect(await staying.waitFor(1)).toEqual([event(id, 1)]);

    const stay = await bus.subscribe(id, leaving.handler); // the same function again: its own subscription
    await bus.publish(event(id, 2));
    expect(await staying.waitFor(2)).toEqual([event(id, 1), event(id, 2)]);
    expect(await leaving.waitFor(1)).toEqual([event(id, 2)]);
    stay();
    stayingOff();

    // Nobody watches the job now; a new watcher gets its events, the ones that left do not.
    const after = collector();
    await bus.subscribe(id, after.handler);
    await bus.publish(event(id, 3));
    expect(await after.waitFor(1)).toEqual([event(id, 3)]);
    expect(staying.events).toHaveLength(2);
    expect(leaving.events).toHaveLength(1);
  });

  it("close() ends every subscription", async () => {
    const buses = await setUp();
    const bus = await buses.open();
    const publisher = await buses.open();
    const id = jobId();
    const seen = collector();
    const seenToo = collector();
    await bus.subscribe(id, seen.handler);
    await bus.subscribe(jobId(), seenToo.handler);
    await bus.close();

    // A watcher on the closed bus's connection (subscribed after the close) gets the event:
    // anything for the closed subscriptions would have arrived before it.
    const marker = collector();
    await buses.sibling(bus).subscribe(id, marker.handler);
    await publisher.publish(event(id, 0.3));
    await marker.waitFor(1);
    expect(seen.events).toEqual([]);
    expect(seenToo.events).toEqual([]);
  });

  it.runIf(name === "nats")("two buses on two connections (API replica, worker) see each other's events", async () => {
    const buses = await setUp();
    const api = await buses.open();
    const worker = await buses.open();
    const id = jobId();
    const apiSeen = collector();
    const workerSeen = collector();
    await api.subscribe(id, apiSeen.handler);
    await worker.subscribe(id, workerSeen.handler);

    await worker.publish(event(id, 0.4));
    await apiSeen.waitFor(1);
    await workerSeen.waitFor(1);
    await api.publish(event(id, 0.6));

    expect(await apiSeen.waitFor(2)).toEqual([event(id, 0.4), event(id, 0.6)]);
    expect(await workerSeen.waitFor(2)).toEqual([event(id, 0.4), event(id, 0.6)]);
  });

  it.runIf(name === "nats")("buses with different prefixes do not hear each other", async () => {
    const first = await (await setUp()).open();
    const second = await (await setUp()).open();
    const id = jobId();
    const seen = collector();
    const marker = collector();
    await first.subscribe(id, seen.handler);
    await second.subscribe(id, marker.handler);

    await second.publish(event(id, 0.5));
    await marker.waitFor(1);
    expect(seen.events).toEqual([]);
  });
});
