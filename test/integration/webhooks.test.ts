/**
 * Webhooks end to end in one process: real jobs (ffmpeg) over PostgreSQL, a real HTTP receiver
 * on loopback (allowed by the harness's RENDITION_NETWORK_ALLOW), signatures checked with the
 * Standard Webhooks library as a receiver would.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { JobStatus, OutputType, Quality, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { WebhookDeliveryStatus, WebhookEndpointStatus, WebhookService } from "../../gen/rendition/v1/webhook_pb.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { localJobRequest, startTestApi, type TestApi } from "../support/api-harness.js";
import { generateClip } from "../support/media.js";
import { startWebhookReceiver, verifyWebhook, type WebhookReceiver } from "../support/webhook-receiver.js";

let database: TestDatabase;
let api: TestApi;
let receiver: WebhookReceiver;
let webhooks: Client<typeof WebhookService>;

const FAST = {
  RENDITION_WEBHOOK_POLL_MS: "100",
  RENDITION_WEBHOOK_RETRY_SCHEDULE_MS: "200,400,800",
  RENDITION_WEBHOOK_TIMEOUT_MS: "1500",
};

beforeAll(async () => {
  database = await createTestDatabase(inject("databaseUrl"));
  api = await startTestApi(database.url, FAST, { worker: true });
  webhooks = api.client(WebhookService);
  const storage = join(api.config.dataDir, "storage");
  mkdirSync(join(storage, "in"), { recursive: true });
  await generateClip(join(storage, "in/clip.mp4"), { durationS: 2, width: 320, height: 240, fps: 25, audio: true });
  writeFileSync(join(storage, "in/notes.txt"), "this is not a video\n".repeat(100));
}, 120_000);

afterAll(async () => {
  await api?.close();
  await database?.drop();
});

afterEach(async () => {
  await receiver?.close();
  // Endpoints of one test must not receive the next test's events.
  const { endpoints } = await webhooks.list({ pagination: { limit: 100 } });
  for (const e of endpoints) await webhooks.delete({ id: e.id });
});

function job(inputPath: string, webhookUrl = "") {
  return localJobRequest(api, {
    inputPath,
    webhookUrl,
    outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 144, quality: Quality.ECONOMY }] }],
  });
}

/** The job as plain JSON Get answers it. */
async function getJson(id: string): Promise<unknown> {
  const res = await fetch(`${api.baseUrl}/rendition.v1.JobService/Get`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${api.credentials.api_key}`, "x-organization-id": api.credentials.organization_id },
    body: JSON.stringify({ id }),
  });
  return ((await res.json()) as { job: unknown }).job;
}

const types = (r: WebhookReceiver) => r.received.map((x) => x.event.type);

describe("webhooks", () => {
  it("sends every event of a job to its webhook_url, in order, signed with the organization's secret, the payload being the job as Get shows it", async () => {
    receiver = await startWebhookReceiver();
    const { job: created } = await api.jobs.create(job("in/clip.mp4", receiver.url));
    await receiver.waitFor((r) => r.some((x) => x.event.type === "job.completed"), 60_000);

    const seen = types(receiver);
    expect(seen[0]).toBe("job.created");
    expect(seen.at(-1)).toBe("job.completed");
    const order = ["job.created", "job.probed", "output.completed", "job.completed"].map((t) => seen.indexOf(t));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    const milestones = receiver.received.filter((x) => x.event.type === "job.progress").map((x) => x.event.progress_milestone);
    expect(milestones).toEqual([...milestones].sort((a, b) => a! - b!));
    expect(new Set(milestones).size).toBe(milestones.length);

    const ids = new Set<string>();
    for (const r of receiver.received) {
      expect(verifyWebhook(api.credentials.webhook_secret, r)).toBeTruthy();
      expect(r.headers["webhook-id"]).toMatch(/^msg_/);
      ids.add(r.headers["webhook-id"]!);
      expect((r.event.data as { id: string }).id).toBe(created!.id);
    }
    expect(ids.size).toBe(receiver.received.length);
    expect(() => verifyWebhook(`whsec_${Buffer.alloc(32, 1).toString("base64")}`, receiver.received[0]!)).toThrow();

    const completed = receiver.received.at(-1)!;
    expect(completed.event.data).toEqual(await getJson(created!.id));
    expect((completed.event.data as { status: string }).status).toBe("JOB_STATUS_COMPLETED");
    const outputEvent = receiver.received.find((x) => x.event.type === "output.completed")!;
    expect(outputEvent.event.output_id).toBe(created!.outputs[0]!.id);

    const { deliveries } = await webhooks.listDeliveries({ jobId: created!.id, pagination: { limit: 100 } });
    expect(deliveries).toHaveLength(receiver.received.length);
    for (const d of deliveries) {
      expect(d.status).toBe(WebhookDeliveryStatus.DELIVERED);
      expect(d.endpointId).toBe("");
      expect(d.attempts).toHaveLength(1);
      expect(d.attempts[0]!.responseStatus).toBe(200);
      expect(d.attempts[0]!.responseSnippet).toBe("ok");
    }
  }, 90_000);

  it("sends an endpoint only the event types it asked for, with its own secret", async () => {
    receiver = await startWebhookReceiver();
    const { endpoint, secret } = await webhooks.create({ url: receiver.url, eventTypes: ["job.failed", "job.completed"] });
    expect(secret).toMatch(/^whsec_/);
    expect(endpoint!.secretPrefix).toBe(secret.slice(0, 12));
    const { job: failing } = await api.jobs.create(job("in/notes.txt"));
    await receiver.waitFor((r) => r.length >= 1, 60_000);
    expect(types(receiver)).toEqual(["job.failed"]);
    const data = receiver.received[0]!.event.data as { id: string; error_code: string };
    expect(data.id).toBe(failing!.id);
    expect(data.error_code).not.toBe("");
    expect(verifyWebhook(secret, receiver.received[0]!)).toBeTruthy();
    expect(() => verifyWebhook(api.credentials.webhook_secret, receiver.received[0]!)).toThrow();
  }, 90_000);

  it("retries a receiver that answers 500, and holds the job's later events back until the earlier one is delivered", async () => {
    receiver = await startWebhookReceiver();
    receiver.respond = (n) => (n === 1 ? 500 : 200);
    const { job: created } = await api.jobs.create(job("in/clip.mp4", receiver.url));
    await receiver.waitFor((r) => r.some((x) => x.event.type === "job.completed"), 60_000);
    const seen = types(receiver);
    // The first job.created failed, went again, and nothing else came in between.
    expect(seen.slice(0, 2)).toEqual(["job.created", "job.created"]);
    expect(receiver.received[0]!.headers["webhook-id"]).toBe(receiver.received[1]!.headers["webhook-id"]);
    expect(seen.filter((t) => t === "job.created")).toHaveLength(2);
    const { deliveries } = await webhooks.listDeliveries({ jobId: created!.id, pagination: { limit: 100 } });
    const first = deliveries.find((d) => d.eventType === "job.created")!;
    expect(first.status).toBe(WebhookDeliveryStatus.DELIVERED);
    expect(first.attempts.map((a) => a.responseStatus)).toEqual([500, 200]);
    expect(first.attempts[0]!.responseSnippet).toBe("answer 500");
  }, 90_000);

  it("gives up on an attempt that gets no answer within the timeout, and tries again", async () => {
    receiver = await startWebhookReceiver();
    receiver.respond = (n) => (n === 1 ? "hang" : 200);
    const { endpoint } = await webhooks.create({ url: receiver.url });
    const { delivery } = await webhooks.sendTest({ id: endpoint!.id });
    expect(delivery!.eventType).toBe("webhook.test");
    await receiver.waitFor((r) => r.length >= 2, 20_000);
    const { deliveries } = await webhooks.listDeliveries({ endpointId: endpoint!.id });
    await expect.poll(async () => (await webhooks.listDeliveries({ endpointId: endpoint!.id })).deliveries[0]!.status, { timeout: 10_000 }).toBe(WebhookDeliveryStatus.DELIVERED);
    const [done] = (await webhooks.listDeliveries({ endpointId: endpoint!.id })).deliveries;
    expect(deliveries[0]!.id).toBe(delivery!.id);
    expect(done!.attempts[0]!.responseStatus).toBe(0);
    expect(done!.attempts[0]!.error).toBe("no answer within 1500 ms");
    expect(done!.attempts[1]!.responseStatus).toBe(200);
  }, 60_000);

  it("disables an endpoint that answers 410, until its owner enables it again", async () => {
    receiver = await startWebhookReceiver();
    receiver.respond = () => 410;
    const { endpoint } = await webhooks.create({ url: receiver.url });
    await webhooks.sendTest({ id: endpoint!.id });
    await expect.poll(async () => (await webhooks.get({ id: endpoint!.id })).endpoint!.status, { timeout: 10_000 }).toBe(WebhookEndpointStatus.DISABLED);
    const { endpoint: disabled } = await webhooks.get({ id: endpoint!.id });
    expect(disabled!.disabledReason).toMatch(/410 Gone/);
    expect(receiver.received).toHaveLength(1);
    const [gone] = (await webhooks.listDeliveries({ endpointId: endpoint!.id })).deliveries;
    expect(gone!.status).toBe(WebhookDeliveryStatus.FAILED);
    // Nothing more goes to it: neither job events nor tests.
    await expect(webhooks.sendTest({ id: endpoint!.id })).rejects.toMatchObject({ code: Code.FailedPrecondition });
    const { job: created } = await api.jobs.create(job("in/notes.txt"));
    await expect.poll(async () => (await api.jobs.get({ id: created!.id })).job!.status, { timeout: 60_000 }).toBe(JobStatus.FAILED);
    const pendingForIt = await webhooks.listDeliveries({ endpointId: endpoint!.id, status: WebhookDeliveryStatus.PENDING });
    expect(pendingForIt.deliveries).toHaveLength(0);

    receiver.respond = () => 200;
    await webhooks.update({ id: endpoint!.id, enabled: true });
    const { delivery } = await webhooks.redeliver({ id: gone!.id });
    expect(delivery!.eventId).toBe(gone!.eventId);
    await receiver.waitFor((r) => r.length >= 2, 10_000);
    expect(receiver.received[1]!.headers["webhook-id"]).toBe(receiver.received[0]!.headers["webhook-id"]);
  }, 90_000);

  it("signs with both secrets during a rotation's grace period, and only the new one without", async () => {
    receiver = await startWebhookReceiver();
    const { endpoint, secret: first } = await webhooks.create({ url: receiver.url });
    const rotated = await webhooks.rotateSecret({ id: endpoint!.id, gracePeriodSeconds: 3600 });
    expect(rotated.secret).not.toBe(first);
    expect(rotated.endpoint!.previousSecretExpiresAt).toBeDefined();
    await webhooks.sendTest({ id: endpoint!.id });
    await receiver.waitFor((r) => r.length >= 1, 10_000);
    const signed = receiver.received[0]!;
    expect(signed.headers["webhook-signature"]!.split(" ")).toHaveLength(2);
    expect(verifyWebhook(first, signed)).toBeTruthy();
    expect(verifyWebhook(rotated.secret, signed)).toBeTruthy();

    const again = await webhooks.rotateSecret({ id: endpoint!.id, gracePeriodSeconds: 0 });
    await webhooks.sendTest({ id: endpoint!.id });
    await receiver.waitFor((r) => r.length >= 2, 10_000);
    const only = receiver.received[1]!;
    expect(only.headers["webhook-signature"]!.split(" ")).toHaveLength(1);
    expect(verifyWebhook(again.secret, only)).toBeTruthy();
    expect(() => verifyWebhook(rotated.secret, only)).toThrow();

    // The organization's secret (per-job URLs) rotates the same way, with no id.
    const org = await webhooks.rotateSecret({ gracePeriodSeconds: 0 });
    expect(org.endpoint).toBeUndefined();
    expect(org.secret).toMatch(/^whsec_/);
  }, 60_000);

  it("refuses addresses it would not deliver to, naming the field", async () => {
    const refusal = async (call: Promise<unknown>) => {
      const err = await call.then(() => undefined, (e: unknown) => ConnectError.from(e));
      expect(err?.code).toBe(Code.InvalidArgument);
      return err!.message;
    };
    expect(await refusal(webhooks.create({ url: "http://hooks.example.com/in" }))).toMatch(/url: plain http is allowed only to hosts/);
    expect(await refusal(webhooks.create({ url: "https://hooks.example.com/in", eventTypes: ["job.done"] }))).toMatch(/event_types\[0\]: unknown event type "job.done"/);
    expect(await refusal(webhooks.create({ url: "https://169.254.169.254/latest" }))).toMatch(/url: refused: 169.254.169.254 resolves to a private or reserved address/);
    expect(await refusal(api.jobs.create(job("in/clip.mp4", "http://hooks.example.com/in")))).toMatch(/webhook_url: plain http is allowed only/);
    expect(await refusal(api.jobs.create(job("in/clip.mp4", "https://10.1.2.3/in")))).toMatch(/webhook_url: refused: 10.1.2.3/);
    // https to a public name is accepted; loopback http to a listed address too (the harness lists 127.0.0.1).
    const { endpoint } = await webhooks.create({ url: "https://hooks.example.com/in", description: "later" });
    expect(endpoint!.status).toBe(WebhookEndpointStatus.ENABLED);
    await expect(webhooks.update({ id: endpoint!.id, url: "https://[::ffff:10.0.0.1]/x" })).rejects.toMatchObject({ code: Code.InvalidArgument });
    await expect(webhooks.get({ id: "whe_unknown" })).rejects.toMatchObject({ code: Code.NotFound });
  });
});

describe("webhook history", () => {
  it("forgets settled events after the retention period, never pending ones", async () => {
    receiver = await startWebhookReceiver();
    receiver.respond = () => 503;
    const { endpoint } = await webhooks.create({ url: receiver.url });
    const { delivery: pending } = await webhooks.sendTest({ id: endpoint!.id });
    await webhooks.update({ id: endpoint!.id, enabled: false }); // fails it: settled
    await webhooks.update({ id: endpoint!.id, enabled: true });
    const { delivery: stillPending } = await webhooks.sendTest({ id: endpoint!.id });
    const db = api.app.database.db;
    await db.updateTable("webhook_events").set({ created_at: new Date(Date.now() - 31 * 86400_000) }).where("id", "in", [pending!.eventId, stillPending!.eventId]).execute();
    expect(await api.app.webhookRepository.deleteSettledOlderThan(30)).toBe(1);
    const left = await db.selectFrom("webhook_events").select("id").where("id", "in", [pending!.eventId, stillPending!.eventId]).execute();
    expect(left.map((e) => e.id)).toEqual([stillPending!.eventId]);
    expect((await webhooks.listDeliveries({ endpointId: endpoint!.id })).deliveries.map((d) => d.id)).toEqual([stillPending!.id]);
  });
});

describe("an endpoint that moves", () => {
  it("sends its pending deliveries to its new URL, same webhook-id", async () => {
    const old = await startWebhookReceiver();
    old.respond = () => 503;
    receiver = await startWebhookReceiver();
    try {
      const { endpoint } = await webhooks.create({ url: old.url });
      await webhooks.sendTest({ id: endpoint!.id });
      await old.waitFor((r) => r.length >= 1, 10_000);
      await webhooks.update({ id: endpoint!.id, url: receiver.url });
      await receiver.waitFor((r) => r.length >= 1, 10_000);
      expect(receiver.received[0]!.headers["webhook-id"]).toBe(old.received[0]!.headers["webhook-id"]);
      await expect.poll(async () => (await webhooks.listDeliveries({ endpointId: endpoint!.id })).deliveries[0]!.status, { timeout: 10_000 }).toBe(WebhookDeliveryStatus.DELIVERED);
      const [moved] = (await webhooks.listDeliveries({ endpointId: endpoint!.id })).deliveries;
      expect(moved!.url).toBe(receiver.url);
      expect(moved!.attempts.map((a) => a.responseStatus)).toEqual([...moved!.attempts.slice(0, -1).map(() => 503), 200]);
    } finally {
      await old.close();
    }
  });
});

describe("a receiver answering binary", () => {
  it("is recorded (NUL bytes dropped from the snippet) and delivered once", async () => {
    receiver = await startWebhookReceiver();
    receiver.body = () => Buffer.from([0x6f, 0x00, 0x6b, 0xff, 0x00]);
    const { endpoint } = await webhooks.create({ url: receiver.url });
    await webhooks.sendTest({ id: endpoint!.id });
    await expect.poll(async () => (await webhooks.listDeliveries({ endpointId: endpoint!.id })).deliveries[0]!.status, { timeout: 10_000 }).toBe(WebhookDeliveryStatus.DELIVERED);
    const [delivery] = (await webhooks.listDeliveries({ endpointId: endpoint!.id })).deliveries;
    expect(delivery!.attempts).toHaveLength(1);
    expect(delivery!.attempts[0]!.responseSnippet).toBe("ok\uFFFD");
    expect(receiver.received).toHaveLength(1);
  });
});
