import { describe, expect, it } from "vitest";
import { Webhook } from "standardwebhooks";
import { crossedMilestones, eventBody } from "../../services/webhooks/events.js";
import { nextDelayMs, outcomeOf, RETRY_SCHEDULE_MS } from "../../services/webhooks/dispatcher.js";
import { newWebhookSecret, signedHeaders } from "../../services/webhooks/signing.js";
import { webhookUrlViolation } from "../../services/webhooks/webhook-url.js";
import { createNetworkGuard } from "../../services/net/network-guard.js";

describe("retry schedule", () => {
  it("makes 15 attempts over about 72 hours", () => {
    expect(RETRY_SCHEDULE_MS.length + 1).toBe(15);
    const hours = RETRY_SCHEDULE_MS.reduce((a, b) => a + b, 0) / 3600_000;
    expect(hours).toBeGreaterThan(70);
    expect(hours).toBeLessThan(74);
    expect([...RETRY_SCHEDULE_MS]).toEqual([...RETRY_SCHEDULE_MS].sort((a, b) => a - b));
  });

  it("jitters each wait by at most 20 % and stops after the last", () => {
    expect(nextDelayMs(1, [1000], () => 0)).toBe(800);
    expect(nextDelayMs(1, [1000], () => 1)).toBe(1200);
    expect(nextDelayMs(2, [1000], () => 0.5)).toBeUndefined();
  });

  it("maps answers to outcomes: 2xx delivered, 410 gone, anything else retried until the schedule ends", () => {
    expect(outcomeOf(200, 1, [1000])).toEqual({ result: "delivered" });
    expect(outcomeOf(204, 9, [])).toEqual({ result: "delivered" });
    expect(outcomeOf(410, 1, [1000])).toEqual({ result: "gone" });
    for (const status of [0, 301, 400, 404, 500, 503]) {
      const o = outcomeOf(status, 1, [1000], 0);
      expect(o.result).toBe("retry");
      if (o.result === "retry") expect(o.nextAttemptAt.getTime()).toBeGreaterThanOrEqual(800);
      expect(outcomeOf(status, 2, [1000]).result).toBe("failed");
    }
  });
});

describe("progress milestones", () => {
  it("names each milestone a move crosses, once", () => {
    expect(crossedMilestones(0, 4)).toEqual([]);
    expect(crossedMilestones(0, 5)).toEqual([5]);
    expect(crossedMilestones(4, 30)).toEqual([5, 10, 25]);
    expect(crossedMilestones(25, 49)).toEqual([]);
    expect(crossedMilestones(89, 100)).toEqual([90]);
    expect(crossedMilestones(60, 40)).toEqual([]);
  });
});

describe("signatures", () => {
  it("signs with every secret, each verifiable alone by the Standard Webhooks library", () => {
    const a = newWebhookSecret();
    const b = newWebhookSecret();
    expect(a).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const body = eventBody("job.completed", new Date(), { id: "job_1" });
    const headers = signedHeaders("msg_1", new Date(), body, [a, b]);
    expect(headers["webhook-signature"]).toMatch(/^v1,\S+ v1,\S+$/);
    expect(new Webhook(a).verify(body, headers)).toMatchObject({ type: "job.completed", data: { id: "job_1" } });
    expect(new Webhook(b).verify(body, headers)).toBeTruthy();
    expect(() => new Webhook(newWebhookSecret()).verify(body, headers)).toThrow();
    expect(() => new Webhook(a).verify(body.replace("job_1", "job_2"), headers)).toThrow();
  });
});

describe("webhook address rules", () => {
  const guard = createNetworkGuard({ allow: ["127.0.0.1/32", "receiver.internal"] });
  const strict = createNetworkGuard({ allow: [] });
  const rule = (url: string, g = guard) => webhookUrlViolation(url, "url", g)?.rule;

  it("takes https to public hosts, and http only to listed ones", () => {
    expect(rule("https://hooks.example.com/x")).toBeUndefined();
    expect(rule("http://hooks.example.com/x")).toBe("webhook_url.http_not_allowed");
    expect(rule("http://127.0.0.1:9000/x")).toBeUndefined();
    expect(rule("http://localhost:9000/x")).toBeUndefined();
    expect(rule("http://receiver.internal/x")).toBeUndefined();
    expect(rule("http://localhost:9000/x", strict)).toBe("webhook_url.http_not_allowed");
  });

  it("refuses the hosts it can see are internal, unless listed", () => {
    for (const url of ["https://127.0.0.1/x", "https://localhost/x", "https://10.0.0.1/x", "https://169.254.169.254/", "https://[::1]/", "https://[fd00::1]/"]) {
      expect(rule(url, strict)).toBe("webhook_url.forbidden_host");
    }
    expect(rule("https://127.0.0.1/x")).toBeUndefined();
    expect(rule("https://user:pw@hooks.example.com/")).toBe("webhook_url.credentials");
    expect(rule("ftp://hooks.example.com/")).toBe("webhook_url.scheme");
  });
});
