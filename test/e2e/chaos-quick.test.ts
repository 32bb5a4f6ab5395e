/**
 * The smallest scenario of `npm run chaos` (bench/chaos/chaos.ts --quick: `kill -9` of worker
 * process groups while jobs run, on a private PostgreSQL and NATS it starts itself) as part of
 * the suite: the script must exit 0, and its table must show every job completed once, with
 * valid output, and nothing lost, stuck, doubled or crashed. docs/reliability.md has the full run.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
// Type only: erased, so importing it does not run the script.
import type { Result as ChaosResult } from "../../bench/chaos/chaos.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function runChaos(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile("node", ["--import", "tsx", "bench/chaos/chaos.ts", ...args], { cwd: ROOT, timeout: 240_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code: unknown = err ? (err as { code?: unknown }).code : 0;
      if (typeof code !== "number") return reject(err);
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

describe("npm run chaos -- --quick", () => {
  it("kills workers mid-encode and loses nothing, finishes nothing twice, leaves no bad output", { timeout: 300_000 }, async () => {
    const run = await runChaos(["--quick"]);
    const line = run.stdout.split("\n").find((l) => l.startsWith("chaos-json: "));
    expect(line, `no chaos-json line; stderr:\n${run.stderr.slice(-4000)}`).toBeDefined();
    const [result] = JSON.parse(line!.slice("chaos-json: ".length)) as ChaosResult[];
    expect(result).toMatchObject({
      scenario: "a",
      stuck: 0,
      lost: 0,
      duplicateJobs: 0,
      finishedTwice: 0,
      invalidOutput: 0,
      eventsMissing: 0,
      eventsDuplicate: 0,
      watchStale: 0,
      watchWrong: 0,
      hangs: 0,
      badOutageAnswers: 0,
      crashed: 0,
      failed: {},
      pass: true,
    });
    expect(result!.completed).toBe(result!.accepted);
    expect(result!.completed).toBeGreaterThan(0);
    expect(result!.recoveryS).not.toBeNull();
    expect(run.code, run.stdout.slice(-3000)).toBe(0);
  });
});
