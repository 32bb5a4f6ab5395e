/**
 * Webhook delivery when things break, with the real processes: an `api` process (the
 * dispatcher) and a `worker` on PostgreSQL + NATS. The receiver is down while the jobs run, then
 * hangs on its first request while the API is killed with SIGKILL in the middle of that attempt;
 * a new API process must deliver every event of every job at least once, in order per job.
 */
import { mkdirSync, mkdtempSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createClient, type Client } from "@connectrpc/connect";
import { JobStatus, OutputType, Quality, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobService, type Job } from "../../gen/rendition/v1/job_pb.js";
import { WebhookDeliveryStatus, WebhookService } from "../../gen/rendition/v1/webhook_pb.js";
import { createEmptyDatabase } from "../support/database.js";
import { bootstrapTransport } from "../support/e2e.js";
import { generateClip } from "../support/media.js";
import { killAllChildren, spawnRendition, type RenditionProcess } from "../support/process.js";
import { freePort } from "../support/services.js";
import { startWebhookReceiver, verifyWebhook, type WebhookReceiver } from "../support/webhook-receiver.js";

let db: { url: string; drop(): Promise<void> };
let dataDir: string;
let env: Record<string, string>;
let credentials: { api_key: string; organization_id: string; local_origin_id: string; webhook_secret: string };
let receiver: WebhookReceiver | undefined;

async function startApi(): Promise<{ proc: RenditionProcess; jobs: Client<typeof JobService>; webhooks: Client<typeof WebhookService> }> {
  const proc = spawnRendition(["api"], { ...env, PORT: "0", HOST: "127.0.0.1" });
  const { baseUrl } = await proc.listening(60_000);
  const connection = bootstrapTransport(dataDir, baseUrl);
  credentials = connection.credentials;
  const transport = connection.transport;
  return { proc, jobs: createClient(JobService, transport), webhooks: createClient(WebhookService, transport) };
}

beforeAll(async () => {
  db = await createEmptyDatabase(inject("databaseUrl"));
  dataDir = mkdtempSync(join(tmpdir(), "rendition-webhook-chaos-"));
  env = {
    DATABASE_URL: db.url,
    NATS_URL: inject("natsUrl"),
    RENDITION_NATS_PREFIX: `whc_${randomBytes(4).toString("hex")}`,
    RENDITION_ENCRYPTION_KEY: Buffer.alloc(32, 5).toString("base64"),
    RENDITION_NETWORK_ALLOW: "127.0.0.1/32",
    // API and worker share this directory: the first-start local origin lives in it.
    RENDITION_DATA_DIR: dataDir,
    RENDITION_TMP_DIR: join(dataDir, "tmp"),
    RENDITION_WEBHOOK_POLL_MS: "100",
    RENDITION_WEBHOOK_TIMEOUT_MS: "1000",
    // Many quick retries: the receiver is down for a while and every event must survive it.
    RENDITION_WEBHOOK_RETRY_SCHEDULE_MS: Array(40).fill("250").join(","),
  };
  mkdirSync(join(dataDir, "storage", "in"), { recursive: true });
  await generateClip(join(dataDir, "storage", "in", "clip.mp4"), { durationS: 2, width: 320, height: 240, fps: 25, audio: true });
}, 120_000);

afterAll(async () => {
  await receiver?.close();
  await killAllChildren();
  await db?.drop();
});

describe("webhook delivery under failure", () => {
  it("delivers every event of every job at least once and in order per job, across a receiver outage and an API killed mid-attempt", async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/hooks`;
    const first = await startApi();
    spawnRendition(["worker"], env);

    // 1. The receiver is down while three jobs (one failing) run to the end.
    const inputs = ["in/clip.mp4", "in/clip.mp4", "in/missing.mp4"];
    const created: Job[] = [];
    for (const inputPath of inputs) {
      const { job } = await first.jobs.create({
        inputOriginId: credentials.local_origin_id,
        inputPath,
        outputOriginId: credentials.local_origin_id,
        webhookUrl: url,
        outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, height: 144, quality: Quality.ECONOMY }] }],
      });
      created.push(job!);
    }
    await expect
      .poll(async () => (await Promise.all(created.map(async (j) => (await first.jobs.get({ id: j.id })).job!.status))).every((s) => s === JobStatus.COMPLETED || s === JobStatus.FAILED), { timeout: 90_000, interval: 200 })
      .toBe(true);
    const refused = await first.webhooks.listDeliveries({ jobId: created[0]!.id });
    expect(refused.deliveries.some((d) => d.attempts.some((a) => a.responseStatus === 0 && a.error !== ""))).toBe(true);

    // 2. The receiver comes back but holds its first request; the API dies during that attempt.
    receiver = await startWebhookReceiver(port);
    receiver.respond = (n) => (n === 1 ? "hang" : 200);
    await receiver.waitFor((r) => r.length >= 1, 30_000);
    const held = receiver.received[0]!;
    first.proc.child.kill("SIGKILL");
    await first.proc.exited(10_000);

    // 3. Another API process finishes the work.
    const second = await startApi();
    for (const job of created) {
      await receiver.waitFor((r) => r.some((x) => x.event.data.id === job.id && /^job\.(completed|failed)$/.test(x.event.type)), 60_000);
    }

    expect(receiver.received.filter((r) => r.headers["webhook-id"] === held.headers["webhook-id"]).length).toBeGreaterThanOrEqual(2);
    for (const job of created) {
      const { deliveries } = await second.webhooks.listDeliveries({ jobId: job.id, pagination: { limit: 100 } });
      const written = [...deliveries].reverse(); // oldest first
      expect(written.every((d) => d.status === WebhookDeliveryStatus.DELIVERED)).toBe(true);
      const arrivals = receiver.received.filter((r) => r.event.data.id === job.id);
      for (const r of arrivals) expect(verifyWebhook(credentials.webhook_secret, r)).toBeTruthy();
      // First arrival of each webhook-id, in arrival order = the order the events were written.
      const firstSeen = [...new Map(arrivals.map((r) => [r.headers["webhook-id"], r.event.type])).entries()];
      expect(firstSeen.map(([id]) => id)).toEqual(written.map((d) => d.eventId));
      expect(firstSeen[0]![1]).toBe("job.created");
      expect(firstSeen.at(-1)![1]).toMatch(/^job\.(completed|failed)$/);
    }
    const interrupted = await second.webhooks.listDeliveries({ pagination: { limit: 100 } });
    const heldDelivery = interrupted.deliveries.find((d) => d.eventId === held.headers["webhook-id"])!;
    expect(heldDelivery.attempts.map((a) => a.error)).toContain("interrupted: the dispatcher stopped before an answer was recorded");
    expect(heldDelivery.attempts.at(-1)!.responseStatus).toBe(200);
  }, 240_000);
});
