/**
 * The API through outages of its own PostgreSQL and NATS servers (private ones the test starts,
 * so stopping them never touches the machine's shared services):
 * - while PostgreSQL is down, calls answer `unavailable` (retryable, HTTP 503), never `internal`,
 *   and never hang; they work again once it is back;
 * - while NATS is down, an open Watch still reaches the job's final state (the event published
 *   for it is lost) and a Watch opened meanwhile starts from the database; Cancel, whose event
 *   cannot be announced, still succeeds.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { JobStatus } from "../../gen/rendition/v1/common_pb.js";
import { WatchEvent, type JobServiceWatchResponse } from "../../gen/rendition/v1/job_pb.js";
import { localJobRequest, startTestApi, type TestApi } from "../support/api-harness.js";
import { startPrivateNats, startPrivatePostgres } from "../support/services.js";

/** A call that does not answer within this long counts as hung. */
const CALL_TIMEOUT_MS = 15_000;

async function codeOf(call: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await call;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

/** Retries `call` until it succeeds (a recovering server), up to `ms`. */
async function eventually<T>(call: () => Promise<T>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await call();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

describe("a PostgreSQL outage", () => {
  let postgres: Awaited<ReturnType<typeof startPrivatePostgres>>;
  let api: TestApi;
  beforeAll(async () => {
    postgres = await startPrivatePostgres();
    api = await startTestApi(postgres.url);
  }, 120_000);
  afterAll(async () => {
    await api?.close();
    await postgres?.stop();
  });

  it("answers unavailable (503) while the database is down, and recovers", { timeout: 120_000 }, async () => {
    const created = (await api.jobs.create(localJobRequest(api))).job!;
    await postgres.halt();
    const signal = () => AbortSignal.timeout(CALL_TIMEOUT_MS);
    const codes = {
      get: await codeOf(api.jobs.get({ id: created.id }, { signal: signal() })),
      list: await codeOf(api.jobs.list({}, { signal: signal() })),
      create: await codeOf(api.jobs.create(localJobRequest(api), { signal: signal() })),
      cancel: await codeOf(api.jobs.cancel({ id: created.id }, { signal: signal() })),
    };
    expect(codes).toEqual({ get: Code.Unavailable, list: Code.Unavailable, create: Code.Unavailable, cancel: Code.Unavailable });

    // Plain HTTP callers see 503 with the Connect error body.
    const res = await fetch(`${api.baseUrl}/rendition.v1.JobService/Get`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        authorization: `Bearer ${api.credentials.api_key}`,
        "x-organization-id": api.credentials.organization_id,
      },
      body: JSON.stringify({ id: created.id }),
      signal: signal(),
    });
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ code: "unavailable" });
    expect((await fetch(`${api.baseUrl}/readyz`, { signal: signal() })).status).toBe(503);

    await postgres.resume();
    const job = await eventually(() => api.jobs.get({ id: created.id }));
    expect(job.job!.id).toBe(created.id);
    expect((await fetch(`${api.baseUrl}/readyz`)).status).toBe(200);
  });
});

describe("a NATS outage", () => {
  let nats: Awaited<ReturnType<typeof startPrivateNats>>;
  let api: TestApi;
  beforeAll(async () => {
    nats = await startPrivateNats();
    // No worker: the test ends jobs itself (Cancel). A long heartbeat: only polling can help.
    api = await startTestApi(undefined, { NATS_URL: nats.url, RENDITION_WATCH_HEARTBEAT_MS: "600000", RENDITION_WATCH_POLL_MS: "200" }, { messaging: true });
  }, 120_000);
  afterAll(async () => {
    await api?.close();
    await nats?.stop();
  });

  /** Collects a Watch stream's events in the background. */
  function watch(id: string) {
    const seen: JobServiceWatchResponse[] = [];
    const abort = new AbortController();
    const done = (async () => {
      for await (const message of api.jobs.watch({ id }, { signal: abort.signal })) seen.push(message);
    })();
    const until = async (predicate: (m: JobServiceWatchResponse) => boolean, ms = 20_000) => {
      const deadline = Date.now() + ms;
      while (!seen.some(predicate)) {
        if (Date.now() > deadline) throw new Error(`watch of ${id}: no such event within ${ms} ms; saw ${seen.map((m) => WatchEvent[m.event]).join(", ")}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    return { seen, done, until, abort: () => abort.abort() };
  }

  it("an open Watch reaches the final state of a job ended while NATS is down", { timeout: 90_000 }, async () => {
    const job = (await api.jobs.create(localJobRequest(api))).job!;
    const stream = watch(job.id);
    await stream.until((m) => m.event === WatchEvent.SNAPSHOT);
    await nats.halt();
    try {
      // The cancel's announcement goes nowhere; the call must still succeed.
      const canceled = await api.jobs.cancel({ id: job.id }, { signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
      expect(canceled.job!.status).toBe(JobStatus.CANCELED);
      await stream.until((m) => m.event === WatchEvent.COMPLETED);
      await stream.done;
      expect(stream.seen.at(-1)!.job!.status).toBe(JobStatus.CANCELED);

      // Opened during the outage: a finished job answers at once from the database...
      const finished = watch(job.id);
      await finished.done;
      expect(finished.seen.map((m) => m.event)).toEqual([WatchEvent.SNAPSHOT, WatchEvent.COMPLETED]);

      // ...and an unfinished one follows the database until it ends.
      const other = (await api.jobs.create(localJobRequest(api))).job!;
      const live = watch(other.id);
      await live.until((m) => m.event === WatchEvent.SNAPSHOT);
      await api.jobs.cancel({ id: other.id });
      await live.done;
      expect(live.seen.at(-1)!.event).toBe(WatchEvent.COMPLETED);
      expect(live.seen.at(-1)!.job!.status).toBe(JobStatus.CANCELED);
    } finally {
      await nats.resume();
    }
  });

  it("after NATS is back, a Watch follows the bus again", { timeout: 60_000 }, async () => {
    await eventually(async () => {
      if (!api.app.events.isLive()) throw new Error("event bus not reconnected yet");
    });
    const job = (await api.jobs.create(localJobRequest(api))).job!;
    const stream = watch(job.id);
    await stream.until((m) => m.event === WatchEvent.SNAPSHOT);
    await api.jobs.cancel({ id: job.id });
    await stream.done;
    expect(stream.seen.map((m) => m.event)).toEqual([WatchEvent.SNAPSHOT, WatchEvent.COMPLETED]);
  });
});
