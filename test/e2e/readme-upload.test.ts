/**
 * The README's "upload your own file" snippet, word for word, against a real `npm start` on a
 * fresh data directory (only the port differs): CreateUploadUrl, `curl -T`, Create from the
 * answer, then GetDownloadUrls and a `curl -o` of the signed link, which ffprobe reads.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ffprobeJson } from "../support/media.js";
import { killAllChildren, spawnRendition, type RenditionProcess } from "../support/process.js";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
let dataDir: string;
let server: RenditionProcess;
let baseUrl: string;

function readmeBlock(marker: string): string {
  const readme = readFileSync(join(REPO, "README.md"), "utf8");
  const block = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes(marker));
  if (!block) throw new Error(`README.md has no sh block with ${marker}`);
  return block.replaceAll("http://localhost:8080", baseUrl);
}

function sh(script: string, cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("bash", ["-euc", script], { cwd, timeout: 60_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
  });
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "rendition-readme-upload-"));
  server = spawnRendition([], { RENDITION_DATA_DIR: join(dataDir, "data"), PORT: "0", HOST: "127.0.0.1" });
  ({ baseUrl } = await server.listening(90_000));
  await server.waitFor(/-d '\{.*\}'\n/, 30_000);
}, 150_000);

afterAll(async () => {
  server?.child.kill("SIGTERM");
  await server?.exited(15_000).catch(() => {});
  killAllChildren();
  rmSync(dataDir, { recursive: true, force: true });
});

describe("the README's upload snippet", () => {
  it("uploads with curl -T, encodes the upload, and downloads the result through the signed link", async () => {
    const credentials = readmeBlock("KEY=$(node -p").split("\n").filter((l) => l.includes("=$(node -p")).join("\n");
    const upload = readmeBlock("UploadService/CreateUploadUrl");
    const out = await sh(`${credentials}\n${upload}`, dataDir);
    const lines = out.trim().split("\n");
    const put = JSON.parse(lines[0]!) as { input_path: string; size_bytes: string };
    expect(put.input_path).toMatch(/^uploads\/upl_\w+\/my-video\.mp4$/);
    const sample = readFileSync(join(dataDir, "data", "storage", "sample.mp4"));
    expect(readFileSync(join(dataDir, "data", "storage", put.input_path)).equals(sample)).toBe(true);
    const job = lines.at(-1)!;
    expect(job).toMatch(/^job_\w+$/);

    const auth = JSON.parse(readFileSync(join(dataDir, "data", "credentials.json"), "utf8")) as { api_key: string; organization_id: string };
    const deadline = Date.now() + 120_000;
    for (;;) {
      const response = await fetch(`${baseUrl}/rendition.v1.JobService/Get`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${auth.api_key}`, "x-organization-id": auth.organization_id },
        body: JSON.stringify({ id: job }),
      });
      const { job: state } = (await response.json()) as { job: { status: string; error_message: string } };
      if (/COMPLETED|FAILED|PARTIAL|CANCELED/.test(state.status)) {
        expect(state.status, state.error_message).toBe("JOB_STATUS_COMPLETED");
        break;
      }
      if (Date.now() > deadline) throw new Error(`job still ${state.status}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }

    await sh(`${credentials}\nJOB=${job}\n${readmeBlock("GetDownloadUrls")}`, dataDir);
    const file = join(dataDir, "my-video-480p.mp4");
    expect(existsSync(file)).toBe(true);
    const probe = await ffprobeJson(file);
    expect(probe.streams.find((s: { codec_type: string }) => s.codec_type === "video")).toMatchObject({ codec_name: "h264", height: 480 });
  });
});
