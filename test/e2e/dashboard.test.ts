/**
 * The web dashboard end to end, as a new user meets it: `npm start` on a fresh data directory
 * (the dashboard built the way `npm start` builds it), headless Chromium on http://HOST:PORT/,
 * sign-in with the banner's key and organization, a file uploaded and encoded from a preset with
 * the progress bar watched to 100 %, the output played, its sprite storyboard used to seek; a
 * JSON-editor job confirmed after its estimate and played in hls.js and dash.js; a failed output's error
 * code; Cancel; search, status filter and pagination; origins, presets and queue pages. Every page
 * is screenshotted into test-results/dashboard/ and checked with axe-core (no serious or critical
 * violations).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildWeb } from "../../scripts/build-web.js";
import { generateClip } from "../support/media.js";
import { launchPlayerBrowser, type PlayerBrowser } from "../support/players.js";
import { killAllChildren, REPO_ROOT, spawnRendition, type RenditionProcess } from "../support/process.js";

const ARTEFACTS = join(REPO_ROOT, "test-results", "dashboard");
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

let dataDir: string;
let server: RenditionProcess;
let baseUrl: string;
let browser: PlayerBrowser;
let page: Page;
let credentials: { api_key: string; organization_id: string; local_origin_id: string };
let clip: string;

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: Array<{ target: unknown[] }>;
}

/** axe-core in the page (WCAG 2 A/AA and best practices): the serious and critical findings. */
async function axeFindings(): Promise<string[]> {
  // Through the DevTools protocol, which the page's Content-Security-Policy (script-src 'self') does not govern.
  await page.evaluate(`${AXE_SOURCE}\n;void 0`);
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(ctx: Document, o: unknown): Promise<{ violations: AxeViolation[] }> } }).axe;
    const result = await axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] } });
    return result.violations;
  });
  return violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => JSON.stringify(n.target)).join(", ")})`);
}

/** A full-page screenshot into the artefacts, then the accessibility check of the same state. */
async function snapshot(name: string): Promise<void> {
  await page.screenshot({ path: join(ARTEFACTS, `${name}.png`), fullPage: true });
  expect(await axeFindings(), `axe on ${name}`).toEqual([]);
}

async function rpc<T>(method: string, body: unknown): Promise<T> {
  const response = await fetch(`${baseUrl}/rendition.v1.${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${credentials.api_key}`, "x-organization-id": credentials.organization_id },
    body: JSON.stringify(body),
  });
  const json = (await response.json()) as T;
  if (!response.ok) throw new Error(`${method}: ${JSON.stringify(json)}`);
  return json;
}

/** The id in the page's #/jobs/<id> route, once the page has gone there. */
async function openedJobId(): Promise<string> {
  await page.waitForURL(/#\/jobs\/job_/, { timeout: 30_000 });
  return decodeURIComponent(new URL(page.url()).hash.replace("#/jobs/", ""));
}

/** Every value the detail page's job progress bar showed, from now on (the bar is re-rendered on each Watch event). */
async function recordDetailProgress(): Promise<void> {
  await page.evaluate(() => {
    const seen: number[] = [];
    (window as unknown as { progressSeen: number[] }).progressSeen = seen;
    const read = () => {
      const bar = document.querySelector<HTMLProgressElement>("p.state progress");
      if (bar && seen.at(-1) !== bar.value) seen.push(bar.value);
    };
    new MutationObserver(read).observe(document.body, { subtree: true, childList: true, attributes: true });
    read();
  });
}

/** Waits until the video element plays: currentTime advances past `seconds`. */
async function waitForPlayback(selector: string, seconds: number): Promise<{ currentTime: number; engine: string }> {
  await page.waitForSelector(selector, { timeout: 30_000 });
  // Pressing play again while it is paused, as a viewer would: a play() made before hls.js or
  // dash.js attached its source is refused, and one refusal must not fail the test.
  await page.waitForFunction(
    ({ s, t }) => {
      const video = document.querySelector<HTMLVideoElement>(s);
      if (!video) return false;
      if (video.paused) void video.play().catch(() => undefined);
      return video.currentTime > t;
    },
    { s: selector, t: seconds },
    { timeout: 60_000, polling: 500 },
  );
  return page.evaluate((s) => {
    const v = document.querySelector<HTMLVideoElement>(s)!;
    return { currentTime: v.currentTime, engine: v.dataset.engine ?? "" };
  }, selector);
}

beforeAll(async () => {
  mkdirSync(ARTEFACTS, { recursive: true });
  // What `npm start` runs before the server: build web/dist unless it is current.
  await buildWeb({ ifStale: true });
  dataDir = mkdtempSync(join(tmpdir(), "rendition-dashboard-"));
  clip = await generateClip(join(dataDir, "my clip.mp4"), { durationS: 6, width: 320, height: 240, fps: 25, audio: true });
  server = spawnRendition([], { RENDITION_DATA_DIR: join(dataDir, "data"), PORT: "0", HOST: "127.0.0.1" });
  ({ baseUrl } = await server.listening(300_000));
  await server.waitFor(/api_key:\s+rnd_/, 120_000);
  credentials = JSON.parse(readFileSync(join(dataDir, "data", "credentials.json"), "utf8")) as typeof credentials;
  browser = await launchPlayerBrowser();
  page = await browser.context.newPage();
  await page.setViewportSize({ width: 1280, height: 900 });
}, 600_000);

afterAll(async () => {
  await browser?.close();
  await killAllChildren();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe.sequential("web dashboard", () => {
  const pageErrors: string[] = [];
  let uploadedJob: string;
  let hlsJob: string;

  it("serves the page at / with its own assets, beside the API", async () => {
    page.on("pageerror", (err) => pageErrors.push(err.message));
    const response = await page.goto(`${baseUrl}/`);
    expect(response?.status()).toBe(200);
    expect(response?.headers()["content-security-policy"]).toContain("script-src 'self'");
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    // The RPC paths and health routes are still the API's.
    expect((await fetch(`${baseUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${baseUrl}/rendition.v1.JobService/List`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).status).toBe(401);
    await snapshot("01-sign-in");
  });

  it("refuses a wrong key and signs in with the banner's key and organization", async () => {
    await page.getByLabel("API key").fill("rnd_live_wrong");
    await page.getByLabel("Organization id").fill(credentials.organization_id);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText(/unauthenticated/).waitFor();
    await page.getByLabel("API key").fill(credentials.api_key);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Jobs" }).waitFor();
    await page.getByText("No jobs yet.").waitFor();
    const stored = await page.evaluate(() => sessionStorage.getItem("rendition.session"));
    expect(JSON.parse(stored!)).toEqual({ apiKey: credentials.api_key, organizationId: credentials.organization_id });
  });

  it("uploads a file, creates a job from a preset and shows its progress reaching 100 %", async () => {
    await page.getByRole("link", { name: "Create job" }).first().click();
    await page.getByRole("heading", { name: "Create job" }).waitFor();
    await snapshot("02-create");
    await page.getByLabel("File", { exact: true }).setInputFiles(clip);
    await page.getByLabel(/H\.264 480p economy/).check();
    await page.getByLabel("Thumbnails", { exact: true }).selectOption("sprite");
    await page.getByLabel("Metadata", { exact: true }).fill("suite=dashboard\nkind=progressive");
    await page.getByRole("button", { name: "Create job", exact: true }).click();
    uploadedJob = await openedJobId();
    await recordDetailProgress();
    await page.locator('p.state[data-status="COMPLETED"]').waitFor({ timeout: 180_000 });
    const seen = await page.evaluate(() => (window as unknown as { progressSeen: number[] }).progressSeen);
    expect(seen.at(-1)).toBe(100);
    expect(seen.some((v) => v < 100), `progress values seen: ${seen.join(", ")}`).toBe(true);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);

    // The job read the uploaded file, under the origin's uploads/ folder.
    const { job } = await rpc<{ job: { input_origin: { id: string; path: string }; metadata: Record<string, string> } }>("JobService/Get", { id: uploadedJob });
    expect(job.input_origin.id).toBe(credentials.local_origin_id);
    expect(job.input_origin.path).toMatch(/^uploads\/upl_[^/]+\/my_clip\.mp4$/);
    expect(job.metadata).toEqual({ suite: "dashboard", kind: "progressive" });
  }, 240_000);

  it("shows the timeline, plays the output and seeks with the sprite storyboard", async () => {
    const steps = await page.locator("ol.timeline li").evaluateAll((items) =>
      items.map((li) => ({ step: li.getAttribute("data-step"), state: li.className, at: li.querySelector("time")?.getAttribute("datetime") ?? null })),
    );
    expect(steps.map((s) => s.step)).toEqual(["created", "probed", "started", "completed"]);
    for (const s of steps) {
      expect(s.state).toBe("done");
      expect(s.at).toMatch(/^\d{4}-\d\d-\d\dT/);
    }
    const times = steps.map((s) => Date.parse(s.at!));
    expect([...times].sort((a, b) => a - b)).toEqual(times);

    const played = await waitForPlayback("video[data-output-id]", 0.5);
    expect(played.engine).toBe("native <video>");
    const tiles = page.locator(".storyboard .tile");
    await tiles.first().waitFor({ timeout: 30_000 });
    expect(await tiles.count()).toBe(3); // 6 s at one tile every 2 s
    const sprite = page.locator(".thumbs img").first();
    await expect.poll(() => sprite.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0)).toBe(true);
    await page.locator('.storyboard .tile[data-start="4"]').click();
    const at = await page.evaluate(() => document.querySelector<HTMLVideoElement>("video[data-output-id]")!.currentTime);
    expect(at).toBeGreaterThanOrEqual(4);
    await page.evaluate(() => document.querySelector<HTMLVideoElement>("video[data-output-id]")!.pause());
    await snapshot("03-job-completed");
  }, 120_000);

  it("creates a job from the JSON editor, shows its estimate, confirms it, and plays it in hls.js and dash.js", async () => {
    const { job } = await rpc<{ job: { input_origin: { path: string } } }>("JobService/Get", { id: uploadedJob });
    await page.goto(`${baseUrl}/#/create`);
    const request = {
      input_origin_id: credentials.local_origin_id,
      input_path: job.input_origin.path,
      output_origin_id: credentials.local_origin_id,
      delayed_start: true,
      metadata: { suite: "dashboard", kind: "hls" },
      outputs: [{ type: "OUTPUT_TYPE_ADAPTIVE", video: [{ codec: "VIDEO_CODEC_H264", height: 240 }, { codec: "VIDEO_CODEC_H264", height: 144 }], segments: { duration_seconds: 2 } }],
    };
    await page.getByLabel("Create request (JSON)").fill("{ not json");
    await page.getByRole("button", { name: "Create job from JSON" }).click();
    await page.getByText(/Not a valid request/).waitFor();
    await page.getByLabel("Create request (JSON)").fill(JSON.stringify(request, null, 2));
    await page.getByRole("button", { name: "Create job from JSON" }).click();
    hlsJob = await openedJobId();
    const estimate = page.locator("[data-estimate]");
    await estimate.waitFor({ timeout: 60_000 });
    expect(await estimate.textContent()).toMatch(/^\d+(\.\d+)? [A-Z]{3}$/);
    await snapshot("04-job-awaiting-confirmation");
    await page.getByRole("button", { name: "Confirm and start encoding" }).click();

    // The list watches it to the end.
    await page.getByRole("link", { name: "Jobs", exact: true }).click();
    const row = page.locator(`tr[data-job-id="${hlsJob}"]`);
    await row.waitFor();
    await page.locator(`tr[data-job-id="${hlsJob}"][data-status="COMPLETED"]`).waitFor({ timeout: 180_000 });
    expect(await row.locator("progress").evaluate((p: HTMLProgressElement) => p.value)).toBe(100);
    expect(await row.locator("td.num").textContent()).toMatch(/^\d+(\.\d+)? [A-Z]{3}$/);
    await snapshot("05-jobs");

    await row.getByRole("link", { name: hlsJob }).click();
    const played = await waitForPlayback("video[data-output-id]", 1);
    expect(played.engine).toMatch(/^hls\.js 1\./);
    // The adaptive output's MPD over the same segments, in dash.js.
    await page.getByLabel("Play as").selectOption({ label: "DASH (dash.js)" });
    await page.waitForSelector('video[data-engine^="dash.js"]', { timeout: 30_000 });
    const dash = await waitForPlayback('video[data-engine^="dash.js"]', 1);
    expect(dash.engine).toMatch(/^dash\.js 5\./);
    await page.evaluate(() => document.querySelector<HTMLVideoElement>("video[data-output-id]")!.pause());
  }, 300_000);

  it("shows a failed output's error code and message", async () => {
    const { job } = await rpc<{ job: { id: string; input_origin: { path: string } } }>("JobService/Get", { id: uploadedJob });
    const { job: partial } = await rpc<{ job: { id: string } }>("JobService/Create", {
      input_origin_id: credentials.local_origin_id,
      input_path: job.input_origin.path,
      output_origin_id: credentials.local_origin_id,
      outputs: [
        { type: "OUTPUT_TYPE_MP4", video: [{ codec: "VIDEO_CODEC_H264", height: 240 }] },
        { type: "OUTPUT_TYPE_HLS", video: [{ codec: "VIDEO_CODEC_H264", height: 240 }], drm: { systems: ["widevine"], scheme: "cenc" } },
      ],
    });
    await page.goto(`${baseUrl}/#/jobs/${partial.id}`);
    await page.locator('p.state[data-status="PARTIAL"]').waitFor({ timeout: 180_000 });
    const failed = page.locator("article.output.failed");
    expect(await failed.count()).toBe(1);
    expect(await failed.locator("[data-error-code]").getAttribute("data-error-code")).toBe("FEATURE_UNSUPPORTED");
    expect(await failed.locator(".error").textContent()).toMatch(/^FEATURE_UNSUPPORTED: .*drm/i);
    await snapshot("06-job-partial");
  }, 240_000);

  it("cancels a job waiting for confirmation", async () => {
    const { job } = await rpc<{ job: { input_origin: { path: string } } }>("JobService/Get", { id: uploadedJob });
    const { job: waiting } = await rpc<{ job: { id: string } }>("JobService/Create", {
      input_origin_id: credentials.local_origin_id,
      input_path: job.input_origin.path,
      output_origin_id: credentials.local_origin_id,
      delayed_start: true,
      outputs: [{ preset: "h264_480p_economy" }],
    });
    await page.goto(`${baseUrl}/#/jobs/${waiting.id}`);
    await page.locator("[data-estimate]").waitFor({ timeout: 60_000 });
    const really = page.getByRole("button", { name: "Yes, cancel this job" });
    expect(await really.isVisible()).toBe(false);
    await page.getByRole("button", { name: "Cancel job" }).click();
    await really.click();
    await page.locator('p.state[data-status="CANCELED"]').waitFor({ timeout: 30_000 });
    const { job: after } = await rpc<{ job: { status: string } }>("JobService/Get", { id: waiting.id });
    expect(after.status).toBe("JOB_STATUS_CANCELED");
  }, 120_000);

  it("filters by status, searches by id and metadata, and pages through List's cursors", async () => {
    await page.goto(`${baseUrl}/#/jobs`);
    await page.getByText(/^Jobs 1–4 of 4$/).waitFor();
    await page.getByLabel("Status", { exact: true }).selectOption({ label: "Completed" });
    await page.getByText(/^Jobs 1–2 of 2 \(Completed\)$/).waitFor();
    const completed = await page.locator("tbody tr").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-job-id")));
    expect(completed).toEqual([hlsJob, uploadedJob]);
    await page.getByLabel("Status", { exact: true }).selectOption({ label: "Failed" });
    await page.getByText("No jobs with status Failed.").waitFor();

    await page.getByLabel("Status", { exact: true }).selectOption({ label: "All statuses" });
    await page.getByLabel("Search by id or metadata").fill("kind=hls");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.getByText(/1 job match “kind=hls”/).waitFor();
    expect(await page.locator("tbody tr").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-job-id")))).toEqual([hlsJob]);
    await page.getByLabel("Search by id or metadata").fill(uploadedJob);
    await page.getByRole("button", { name: "Apply" }).click();
    await page.getByText(`Job ${uploadedJob}`, { exact: true }).waitFor();
    expect(await page.locator("tbody tr").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-job-id")))).toEqual([uploadedJob]);

    // Pagination: more jobs than a page (20), created straight over the API, all waiting for confirmation.
    const { job } = await rpc<{ job: { input_origin: { path: string } } }>("JobService/Get", { id: uploadedJob });
    for (let i = 0; i < 17; i++) {
      await rpc("JobService/Create", {
        input_origin_id: credentials.local_origin_id,
        input_path: job.input_origin.path,
        output_origin_id: credentials.local_origin_id,
        delayed_start: true,
        metadata: { batch: String(i) },
        outputs: [{ preset: "h264_480p_economy" }],
      });
    }
    await page.goto(`${baseUrl}/#/jobs`);
    await page.getByText(/^Jobs 1–20 of 21$/).waitFor();
    const first = await page.locator("tbody tr").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-job-id")));
    await page.getByRole("link", { name: "Older →" }).click();
    await page.getByText(/^Jobs 21–21 of 21$/).waitFor();
    const second = await page.locator("tbody tr").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-job-id")));
    expect(second).toEqual([uploadedJob]);
    expect(first).not.toContain(uploadedJob);
    await page.getByRole("link", { name: "← Newer" }).click();
    await page.getByText(/^Jobs 1–20 of 21$/).waitFor();
    expect(await page.locator("tbody tr").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-job-id")))).toEqual(first);
  }, 180_000);

  it("shows the queue, origins and presets pages", async () => {
    // The 17 jobs of the pagination test are probed by now, or soon.
    await expect
      .poll(async () => (await rpc<{ pagination: { total_count: number } }>("JobService/List", { status: "JOB_STATUS_AWAITING_CONFIRMATION", pagination: { limit: 1 } })).pagination.total_count, { timeout: 120_000, interval: 500 })
      .toBe(17);
    await page.getByRole("link", { name: "Queue" }).click();
    await page.getByRole("heading", { name: "Unfinished jobs by priority" }).waitFor();
    expect(await page.locator('.counts li[data-status="COMPLETED"] .count').textContent()).toBe("2");
    expect(await page.locator('.counts li[data-status="AWAITING_CONFIRMATION"] .count').textContent()).toBe("17");
    expect(await page.locator('tr[data-status="AWAITING_CONFIRMATION"] td').allTextContents()).toEqual(["0", "17", "0", "17"]);
    await snapshot("07-queue");

    await page.getByRole("link", { name: "Origins" }).click();
    const origin = page.locator(`tr[data-origin-id="${credentials.local_origin_id}"]`);
    await origin.waitFor();
    await origin.getByRole("button", { name: /Validate/ }).click();
    await origin.getByText("Valid", { exact: true }).waitFor();
    await snapshot("08-origins");

    await page.getByRole("link", { name: "Presets" }).click();
    await page.locator('tr[data-preset="hls_ladder_standard"]').waitFor();
    await snapshot("09-presets");

    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem("rendition.session"))).toBeNull();
    expect(pageErrors).toEqual([]);
  }, 120_000);
});
