/**
 * The README's webhook snippet, word for word, against a real `npm start` started as the README
 * says (RENDITION_NETWORK_ALLOW=127.0.0.1): `npm run webhook:listen` verifies every delivery of
 * the job with the webhook_secret of credentials.json and prints it. Only the ports differ.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { killAllChildren, spawnRendition, type RenditionProcess } from "../support/process.js";
import { freePort } from "../support/services.js";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
let dataDir: string;
let server: RenditionProcess;
let baseUrl: string;
let listener: ChildProcess | undefined;

function readmeBlock(marker: string): string {
  const readme = readFileSync(join(REPO, "README.md"), "utf8");
  const block = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes(marker));
  if (!block) throw new Error(`README.md has no sh block with ${marker}`);
  return block.replaceAll("http://localhost:8080", baseUrl);
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "rendition-readme-webhook-"));
  expect(readFileSync(join(REPO, "README.md"), "utf8")).toContain("`RENDITION_NETWORK_ALLOW=127.0.0.1 npm start`");
  server = spawnRendition([], { RENDITION_DATA_DIR: join(dataDir, "data"), PORT: "0", HOST: "127.0.0.1", RENDITION_NETWORK_ALLOW: "127.0.0.1" });
  ({ baseUrl } = await server.listening(90_000));
  await server.waitFor(/-d '\{.*\}'\n/, 30_000);
}, 150_000);

afterAll(async () => {
  if (listener?.pid) {
    try {
      process.kill(-listener.pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
  server?.child.kill("SIGTERM");
  await server?.exited(15_000).catch(() => {});
  await killAllChildren();
  rmSync(dataDir, { recursive: true, force: true });
});

describe("the README's webhook snippet", () => {
  it("delivers the job's events to `npm run webhook:listen`, which verifies each signature", async () => {
    const port = String(await freePort());
    const credentials = readmeBlock("KEY=$(node -p").split("\n").filter((l) => l.includes("=$(node -p")).join("\n");
    const block = readmeBlock("npm run webhook:listen &").replaceAll("127.0.0.1:4000", `127.0.0.1:${port}`);
    const [listen, ...rest] = block.split("\n");
    expect(listen).toBe("npm run webhook:listen &");

    // Run from the checkout as the README does; the server's data directory is not ./data here, so
    // the receiver is told where it is (as it would be told for any RENDITION_DATA_DIR).
    let printed = "";
    listener = spawn("bash", ["-c", `exec npm run webhook:listen -- --port ${port}`], {
      cwd: REPO,
      env: { ...process.env, RENDITION_DATA_DIR: join(dataDir, "data") },
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group: npm does not pass SIGTERM on to the node process it starts.
      detached: true,
    });
    listener.stdout!.setEncoding("utf8").on("data", (s: string) => (printed += s));
    listener.stderr!.setEncoding("utf8").on("data", (s: string) => (printed += s));
    listener.on("exit", (code, signal) => (printed += `\n(receiver exited: ${code ?? signal})`));
    const until = async (pattern: RegExp, timeoutMs: number) => {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(printed)) {
        if (Date.now() > deadline) throw new Error(`listener did not print ${pattern}; printed:\n${printed}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };
    await until(/listening for webhooks/, 90_000);

    const created = await new Promise<string>((resolve, reject) =>
      execFile("bash", ["-euc", `${credentials}\n${rest.join("\n")}`], { cwd: dataDir, timeout: 60_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout))),
    );
    const jobId = (JSON.parse(created) as { job: { id: string } }).job.id;
    await until(new RegExp(`verified msg_\\w+ job\\.completed ${jobId} JOB_STATUS_COMPLETED 100%`), 120_000);
    const lines = printed.split("\n").filter((l) => l.includes(jobId));
    expect(lines[0]).toMatch(new RegExp(`^verified msg_\\w+ job\\.created ${jobId} JOB_STATUS_PENDING 0%$`));
    expect(lines.some((l) => l.includes("output.completed"))).toBe(true);
    expect(printed).not.toContain("REFUSED");
  }, 200_000);
});
