/**
 * The `rendition` CLI (bin/rendition.js) as a user runs it, against a real embedded `npm start`
 * (services/main.ts, PGlite, in-process queue and encoder, real ffmpeg): credentials from the
 * server's credentials.json with no flags, `--json` for every command group, submit of a local
 * generated file (uploaded through UploadService) watched to COMPLETED, a failing job's exit code,
 * invalid arguments and missing credentials; then the live progress bars in a real pseudo-terminal
 * (tmux), read back with `tmux capture-pane`.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ffprobeJson, generateClip } from "../support/media.js";
import { killAllChildren, spawnRendition, type RenditionProcess } from "../support/process.js";
import { freePort } from "../support/services.js";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const BIN = join(REPO, "bin", "rendition.js");

let root: string;
let dataDir: string;
let server: RenditionProcess;
let baseUrl: string;
let clip: string;
let organizationId: string;

/** The test process's environment without any RENDITION_* setting (they must come from where the test says). */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(RENDITION_|PORT$|HOST$)/.test(k)));
  return { ...base, ...extra };
}

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `rendition ARGS` in `cwd` (default: the directory whose ./data the server writes, as a
 * user in the clone after `npm start`). Only RENDITION_URL is set: the port is not 8080 here.
 */
function cli(args: string[], options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: options.cwd ?? root, env: cleanEnv({ RENDITION_URL: baseUrl, ...options.env }), timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== "number") return reject(new Error(`rendition ${args.join(" ")}: ${err.message}\n${stderr}`));
        resolve({ code: err ? (err.code as unknown as number) : 0, stdout, stderr });
      },
    );
  });
}

/** `--json` output: one JSON object per line. */
function jsonLines(stdout: string): any[] {
  return stdout
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l));
}

async function ok(args: string[], options?: Parameters<typeof cli>[1]): Promise<CliResult> {
  const result = await cli(args, options);
  expect(result.code, `rendition ${args.join(" ")}\n--- stdout ---\n${result.stdout}\n--- stderr ---\n${result.stderr}`).toBe(0);
  return result;
}

async function okJson(args: string[]): Promise<any> {
  const lines = jsonLines((await ok(["--json", ...args])).stdout);
  expect(lines).toHaveLength(1);
  return lines[0];
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "rendition-cli-"));
  dataDir = join(root, "data");
  // As `npm start` in the clone: embedded database and encoder, credentials in ./data. Loopback
  // allowed, so webhook endpoints may point at the CLI's local receiver.
  server = spawnRendition([], { RENDITION_DATA_DIR: dataDir, PORT: "0", HOST: "127.0.0.1", RENDITION_NETWORK_ALLOW: "127.0.0.1" });
  ({ baseUrl } = await server.listening(120_000));
  await server.waitFor(/-d '\{.*\}'\n/, 60_000);
  organizationId = (JSON.parse(readFileSync(join(dataDir, "credentials.json"), "utf8")) as { organization_id: string }).organization_id;
  clip = await generateClip(join(root, "my clip.mp4"), { durationS: 4, width: 320, height: 240, fps: 25, audio: true });
}, 240_000);

afterAll(async () => {
  server?.child.kill("SIGTERM");
  await server?.exited(15_000).catch(() => {});
  await killAllChildren();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe("rendition CLI: credentials and errors", () => {
  it("without flags, environment or credentials file it says where it looked and exits 2", async () => {
    const empty = mkdtempSync(join(tmpdir(), "rendition-cli-empty-"));
    try {
      const result = await cli(["jobs", "list"], { cwd: empty, env: { RENDITION_DATA_DIR: join(empty, "data") } });
      expect(result.code).toBe(2);
      expect(result.stdout).toBe("");
      expect(result.stderr).toMatch(/^error: missing_credentials: no API key: pass --api-key, set RENDITION_API_KEY, or start the server once with `npm start`/);
      expect(result.stderr).toContain(join(empty, "data", "credentials.json"));

      const json = await cli(["--json", "jobs", "list"], { cwd: empty, env: { RENDITION_DATA_DIR: join(empty, "data") } });
      expect(json.code).toBe(2);
      expect(JSON.parse(json.stderr).error).toMatchObject({ code: "missing_credentials" });
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  }, 180_000);

  it("flags win over the credentials file: a wrong key is unauthenticated (exit 1); env and flags work without any file", async () => {
    const bad = await cli(["jobs", "list", "--api-key", "rnd_live_wrong", "--org", organizationId]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^error: unauthenticated: /);

    const key = (await okJson(["keys", "create", "--name", "from-env"])).secret as string;
    const elsewhere = mkdtempSync(join(tmpdir(), "rendition-cli-env-"));
    const noFile = { RENDITION_DATA_DIR: join(elsewhere, "none") };
    try {
      const viaEnv = await cli(["--json", "keys", "list"], { cwd: elsewhere, env: { ...noFile, RENDITION_API_KEY: key, RENDITION_ORG: organizationId } });
      expect(viaEnv.code, viaEnv.stderr).toBe(0);
      expect(JSON.parse(viaEnv.stdout).api_keys.find((k: { current: boolean }) => k.current).name).toBe("from-env");
      // Flags over the environment: RENDITION_URL points nowhere, --url at the server.
      const viaFlags = await cli(["keys", "list", "--api-key", key, "--org", organizationId, "--url", baseUrl, "--json"], { cwd: elsewhere, env: { ...noFile, RENDITION_URL: "http://127.0.0.1:1" } });
      expect(viaFlags.code, viaFlags.stderr).toBe(0);
      const down = await cli(["keys", "list", "--api-key", key, "--org", organizationId], { cwd: elsewhere, env: { ...noFile, RENDITION_URL: "http://127.0.0.1:1" } });
      expect(down.code).toBe(1);
      expect(down.stderr).toMatch(/^error: unavailable: .*ECONNREFUSED/);
      const noOrg = await cli(["keys", "list"], { cwd: elsewhere, env: { ...noFile, RENDITION_API_KEY: key } });
      expect(noOrg.code).toBe(2);
      expect(noOrg.stderr).toMatch(/^error: missing_credentials: no organization/);
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  }, 180_000);

  it("names every field violation of a refused job, one per line (exit 1), and refuses unknown flag values before calling (exit 2)", async () => {
    const result = await cli(["submit", "--path", "sample.mp4", "--width", "50", "--webhook-url", "ftp://hooks.example.com"]);
    expect(result.code).toBe(1);
    const lines = result.stderr.trim().split("\n");
    expect(lines[0]).toBe("error: invalid_argument: 2 invalid fields");
    expect(lines.slice(1).sort()).toEqual([
      expect.stringMatching(/^ {2}outputs\[0\]\.video\[0\]\.width: must be greater than or equal to 128 .*\[int32\.gte_lte\]$/),
      expect.stringMatching(/^ {2}webhook_url: does not match regex pattern .*\[string\.pattern\]$/),
    ]);

    const json = await cli(["--json", "submit", "--path", "sample.mp4", "--width", "50"]);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stderr).error).toMatchObject({ code: "invalid_argument", violations: [{ field: "outputs[0].video[0].width", rule: "int32.gte_lte" }] });

    const unknown = await cli(["submit", "--path", "sample.mp4", "--type", "mp5"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^error: invalid_argument: --type: unknown value "mp5"; expected one of mp4, webm, mkv, mov, hls, dash, adaptive/);

    const usage = await cli(["jobs", "frobnicate"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("error: unknown command 'frobnicate'");

    const missing = await cli(["jobs", "get", "job_doesnotexist"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^error: not_found: /);
  }, 180_000);
});

describe("rendition CLI: --json for every command group", () => {
  it("presets: list, create, get, delete", async () => {
    const list = await okJson(["presets", "list", "--limit", "100"]);
    expect(list.presets.map((p: { slug: string }) => p.slug)).toContain("h264_720p_economy");
    const created = await okJson(["presets", "create", "--slug", "cli_ladder", "--name", "CLI ladder", "--container", "mp4", "--delivery", "hls", "--resolution", "720p,480p", "--quality", "economy"]);
    expect(created.preset).toMatchObject({ slug: "cli_ladder", system_preset: false, spec: { container: "CONTAINER_MP4", delivery_format: "DELIVERY_FORMAT_HLS", quality: "QUALITY_ECONOMY" } });
    expect(created.preset.spec.video.map((v: { resolution: string }) => v.resolution)).toEqual(["RESOLUTION_720P", "RESOLUTION_480P"]);
    const fromJson = await okJson(["presets", "create", "--slug", "cli_vp9", "--name", "VP9", "--spec", JSON.stringify({ container: "webm", video: [{ codec: "vp9", resolution: "480p" }] })]);
    expect(fromJson.preset.spec).toMatchObject({ container: "CONTAINER_WEBM", video: [{ codec: "VIDEO_CODEC_VP9", resolution: "RESOLUTION_480P" }] });
    expect((await okJson(["presets", "get", "cli_ladder"])).preset.id).toBe(created.preset.id);
    expect(await okJson(["presets", "delete", "cli_vp9"])).toEqual({});
    expect((await cli(["presets", "get", "cli_vp9"])).code).toBe(1);
    const human = await ok(["presets", "list", "--exclude-system"]);
    expect(human.stdout).toMatch(/^SLUG +ID +NAME/);
    expect(human.stdout).toContain("cli_ladder");
  }, 180_000);

  it("origins: list, create (local), get, delete", async () => {
    const list = await okJson(["origins", "list"]);
    expect(list.origins).toHaveLength(1);
    expect(list.origins[0]).toMatchObject({ provider: "ORIGIN_PROVIDER_LOCAL", permissions: ["ORIGIN_PERMISSION_READ", "ORIGIN_PERMISSION_WRITE"] });
    const rootDir = join(dataDir, "local-origins", organizationId, "cli");
    mkdirSync(rootDir, { recursive: true });
    const created = await okJson(["origins", "create", "--name", "CLI out", "--local", rootDir, "--permissions", "write"]);
    expect(created.origin).toMatchObject({ name: "CLI out", provider: "ORIGIN_PROVIDER_LOCAL", permissions: ["ORIGIN_PERMISSION_WRITE"], local: { root_dir: rootDir } });
    expect((await okJson(["origins", "get", created.origin.id])).origin.name).toBe("CLI out");
    expect((await okJson(["origins", "delete", created.origin.id])).origin.status).toBe("ORIGIN_STATUS_ARCHIVED");
    const neither = await cli(["origins", "create", "--name", "x"]);
    expect(neither.code).toBe(2);
    expect(neither.stderr).toMatch(/^error: invalid_argument: say where the origin is/);
  }, 180_000);

  it("keys: create, list, roll, revoke", async () => {
    const created = await okJson(["keys", "create", "--name", "cli-test", "--test"]);
    expect(created.secret).toMatch(/^rnd_test_/);
    expect(created.api_key).toMatchObject({ name: "cli-test", test: true, active: true });
    const rolled = await okJson(["keys", "roll", created.api_key.id, "--grace", "60"]);
    expect(rolled.secret).toMatch(/^rnd_test_/);
    expect(rolled.previous.id).toBe(created.api_key.id);
    expect(rolled.previous.expires_at).toBeTruthy();
    const revoked = await okJson(["keys", "revoke", rolled.api_key.id]);
    expect(revoked.api_key).toMatchObject({ id: rolled.api_key.id, active: false });
    const list = await okJson(["keys", "list", "--limit", "100"]);
    expect(list.api_keys.find((k: { id: string }) => k.id === rolled.api_key.id).active).toBe(false);
    // A human create prints only the secret on stdout, so it can be captured.
    const human = await ok(["keys", "create", "--name", "plain"]);
    expect(human.stdout.trim()).toMatch(/^rnd_live_\S+$/);
  }, 180_000);

  it("webhooks: create, list, test to `webhooks listen`, which verifies the signature, then delete", async () => {
    const created = await okJson(["webhooks", "create", "http://127.0.0.1:9/placeholder", "--events", "job.completed"]);
    expect(created.endpoint).toMatchObject({ url: "http://127.0.0.1:9/placeholder", event_types: ["job.completed"] });
    expect((await okJson(["webhooks", "delete", created.endpoint.id]))).toEqual({});

    // An endpoint at a free port, then the receiver there with the endpoint's secret.
    const port = await freePort();
    const endpoint = await okJson(["webhooks", "create", `http://127.0.0.1:${port}/hooks`, "--description", "cli listen"]);
    const secret = endpoint.secret as string;
    expect(secret).toMatch(/^whsec_/);
    const listener = await startListener(["--json", "webhooks", "listen", "--port", String(port), "--secret", secret]);
    try {
      await listener.waitFor(new RegExp(`listening for webhooks on http://localhost:${port}/`));
      const list = await okJson(["webhooks", "list"]);
      expect(list.endpoints.map((e: { id: string }) => e.id)).toContain(endpoint.endpoint.id);
      const test = await okJson(["webhooks", "test", endpoint.endpoint.id]);
      expect(test.delivery).toMatchObject({ event_type: "webhook.test", endpoint_id: endpoint.endpoint.id });
      await listener.waitFor(/"type":"webhook\.test"/);
      const event = jsonLines(listener.stdout()).find((l) => l.type === "webhook.test");
      expect(event).toMatchObject({ verified: true, type: "webhook.test" });
      expect(event.webhook_id).toMatch(/^msg_/);
    } finally {
      listener.stop();
    }
    expect(await okJson(["webhooks", "delete", endpoint.endpoint.id])).toEqual({});
  }, 180_000);
});

/** A long-running `rendition` (webhooks listen), stopped by the test. */
async function startListener(args: string[]) {
  const child: ChildProcess = spawn(process.execPath, [BIN, ...args], { cwd: root, env: cleanEnv({ RENDITION_URL: baseUrl }), stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let output = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => ((stdout += s), (output += s)));
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (output += s));
  return {
    stdout: () => stdout,
    async waitFor(pattern: RegExp, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = output.match(pattern);
        if (match) return { match };
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`listener did not print ${pattern}:\n${output}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
    },
  };
}

describe("rendition CLI: jobs", () => {
  let completedJob: string;

  it("submit FILE --watch --json uploads the file, streams NDJSON to COMPLETED and exits 0; the output plays in ffprobe", async () => {
    const result = await ok(["--json", "submit", clip, "--resolution", "480p", "--metadata", "source=cli", "--watch"], { timeoutMs: 240_000 });
    const lines = jsonLines(result.stdout);
    const [created, ...events] = lines;
    expect(created.job.status).toBe("JOB_STATUS_PENDING");
    expect(created.job.input_origin.path).toMatch(/^uploads\/upl_\w+\/my_clip\.mp4$/);
    expect(created.job.metadata).toEqual({ source: "cli" });
    completedJob = created.job.id;
    expect(events[0].event).toBe("WATCH_EVENT_SNAPSHOT");
    expect(events.every((e) => e.job.id === completedJob && "rate" in e && "server_time" in e)).toBe(true);
    const last = events.at(-1);
    expect(last).toMatchObject({ event: "WATCH_EVENT_COMPLETED", job: { status: "JOB_STATUS_COMPLETED", progress: 100 } });
    const progress = events.map((e) => e.job.progress as number);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    const file = fileURLToPath(last.job.outputs[0].output_url);
    const probe = await ffprobeJson(file);
    expect(probe.streams.find((s: { codec_type: string }) => s.codec_type === "video")).toMatchObject({ codec_name: "h264", height: 480 });
  }, 300_000);

  it("jobs list, get and watch of a finished job in --json and plain text", async () => {
    const list = await okJson(["jobs", "list", "--status", "completed", "--limit", "5"]);
    expect(list.jobs.map((j: { id: string }) => j.id)).toContain(completedJob);
    expect(list.jobs.every((j: { status: string }) => j.status === "JOB_STATUS_COMPLETED")).toBe(true);
    expect((await okJson(["jobs", "get", completedJob])).job).toMatchObject({ id: completedJob, status: "JOB_STATUS_COMPLETED" });
    const watched = jsonLines((await ok(["--json", "jobs", "watch", completedJob])).stdout);
    expect(watched.map((l) => l.event)).toEqual(["WATCH_EVENT_SNAPSHOT", "WATCH_EVENT_COMPLETED"]);
    // Not a terminal: plain lines, the last ones naming the output file.
    const plain = await ok(["jobs", "watch", completedJob]);
    expect(plain.stdout).toMatch(new RegExp(`^${completedJob} completed 100%$`, "m"));
    expect(plain.stdout).toMatch(/^ {2}out_\w+ completed file:\/\/\S+\.mp4$/m);
    expect(plain.stdout).not.toContain("\u2588");
    const get = await ok(["jobs", "get", completedJob]);
    expect(get.stdout).toMatch(new RegExp(`^${completedJob} {2}completed {2}100%`));
  }, 180_000);

  it("a job that fails exits 3 with its error code, in plain text and in --json", async () => {
    const result = await cli(["submit", "--path", "no-such-input.mp4", "--watch"], { timeoutMs: 180_000 });
    expect(result.code, result.stderr).toBe(3);
    expect(result.stdout).toMatch(/^job_\w+ failed: INPUT_NOT_FOUND: /m);
    expect(result.stderr).toMatch(/^error: job_not_completed: job_\w+ ended failed \(INPUT_NOT_FOUND\)$/m);

    const json = await cli(["--json", "submit", "--path", "no-such-input.mp4", "--watch"], { timeoutMs: 180_000 });
    expect(json.code).toBe(3);
    expect(jsonLines(json.stdout).at(-1).job).toMatchObject({ status: "JOB_STATUS_FAILED", error_code: "INPUT_NOT_FOUND" });
    expect(JSON.parse(json.stderr.trim().split("\n").at(-1)!).error.code).toBe("job_not_completed");
  }, 240_000);

  it("--confirm --yes waits for the estimate, confirms and watches; --delayed-start then jobs cancel; confirm of a canceled job is failed_precondition", async () => {
    const result = await ok(["--json", "submit", "--path", "sample.mp4", "--resolution", "480p", "--confirm", "--yes", "--watch"], { timeoutMs: 240_000 });
    const lines = jsonLines(result.stdout);
    expect(lines[0].job.delayed_start).toBe(true);
    expect(lines[1].job).toMatchObject({ status: "JOB_STATUS_AWAITING_CONFIRMATION" });
    expect(lines[1].job.total_estimated_cost).not.toBe("");
    expect(lines[2].job.status).toBe("JOB_STATUS_PROCESSING");
    expect(lines.at(-1).job.status).toBe("JOB_STATUS_COMPLETED");

    const id = (await ok(["submit", "--path", "sample.mp4", "--delayed-start"])).stdout.trim();
    expect(id).toMatch(/^job_\w+$/);
    const canceled = await okJson(["jobs", "cancel", id]);
    expect(canceled.job.status).toBe("JOB_STATUS_CANCELED");
    const confirm = await cli(["jobs", "confirm", id]);
    expect(confirm.code).toBe(1);
    expect(confirm.stderr).toMatch(/^error: failed_precondition: /);
  }, 300_000);

  it("npx rendition runs the bin from a subdirectory of the clone", async () => {
    const result = await new Promise<CliResult>((resolve) =>
      execFile("npx", ["rendition", "--json", "presets", "get", "h264_480p_economy"], { cwd: join(REPO, "docs"), env: cleanEnv({ RENDITION_URL: baseUrl, RENDITION_DATA_DIR: dataDir }), timeout: 120_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? Number(err.code) : 0, stdout, stderr }),
      ),
    );
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout).preset.slug).toBe("h264_480p_economy");
  }, 150_000);
});

describe("rendition CLI in a terminal (tmux)", () => {
  it("runs the README's first CLI command: the upload and a live progress bar drawn in place, which reaches 100 %", async () => {
    const tmux = (args: string[]) =>
      new Promise<string>((resolve, reject) =>
        execFile("tmux", ["-L", socket, ...args], { timeout: 20_000 }, (err, stdout, stderr) =>
          err
            ? reject(new Error((err as NodeJS.ErrnoException).code === "ENOENT" ? "tmux not found: the CLI's terminal test needs it (apt-get install -y tmux)" : `tmux ${args.join(" ")}: ${err.message}\n${stderr}`))
            : resolve(stdout),
        ),
      );
    const socket = `rendition-cli-test-${process.pid}`;
    // The README's first command, as typed in the clone after `npm start` (here: the directory
    // whose ./data the server writes; `npx rendition` is this clone's bin).
    const readme = readFileSync(join(REPO, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("## CLI"));
    const typed = section.match(/```sh\n(npx rendition submit [^\n#]*?)\s*(#[^\n]*)?\n/)![1]!;
    expect(typed).toBe("npx rendition submit data/storage/sample.mp4 --resolution 480p --watch");
    const workDir = root;
    const env = Object.entries({ RENDITION_URL: baseUrl })
      .map(([k, v]) => `${k}='${v}'`)
      .join(" ");
    const command = `cd '${workDir}' && env -u RENDITION_DATA_DIR -u RENDITION_API_KEY -u RENDITION_ORG ${env} ${typed.replace("npx rendition", `'${process.execPath}' '${BIN}'`)}; echo "EXIT=$?"; sleep 300`;
    await tmux(["new-session", "-d", "-s", "cli", "-x", "120", "-y", "30", command]);
    try {
      const screens: string[] = [];
      const deadline = Date.now() + 240_000;
      let screen = "";
      while (!/EXIT=\d+/.test(screen)) {
        if (Date.now() > deadline) throw new Error(`no exit within 240 s; the pane shows:\n${screen}`);
        await new Promise((resolve) => setTimeout(resolve, 150));
        screen = await tmux(["capture-pane", "-p", "-J", "-t", "cli"]);
        screens.push(screen);
      }
      expect(screen, screen).toContain("EXIT=0");
      const barLine = /^ (job_\w+) (\w+) +\|([\u2588\u2591]{30})\| +(\d+)% \| +(\S+) \| +(\S+ fps) \| ETA (\S+)/m;
      const final = screen.match(barLine);
      expect(final, screen).not.toBeNull();
      expect(final![2]).toBe("completed");
      expect(final![3]).toBe("\u2588".repeat(30));
      expect(final![4]).toBe("100");
      // Redrawn in place: one bar line for the job on the final screen, and earlier screens showed it short of 100 %.
      expect(screen.split("\n").filter((l) => l.startsWith(` ${final![1]} `))).toHaveLength(1);
      const percents = screens.map((s) => s.match(barLine)?.[4]).filter((p): p is string => p !== undefined);
      expect(percents.some((p) => Number(p) < 100), screens.at(0)).toBe(true);
      expect(screen).toMatch(/^ upload \|\u2588{30}\| 100% \| (\d+)\/\1 bytes$/m);
      expect(screen).toMatch(/^ {2}out_\w+ completed file:\/\//m);
      expect(screen).toMatch(/^uploaded data\/storage\/sample\.mp4 \(\d+ bytes\) as uploads\/upl_\w+\/sample\.mp4$/m);
    } finally {
      await tmux(["kill-server"]).catch(() => {});
    }
  }, 300_000);
});
