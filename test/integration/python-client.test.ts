import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { startTestApi, type TestApi } from "../support/api-harness.js";

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3"; // Debian's python, which sees the python3-* packages
const PACKAGES = "protobuf-compiler python3-protobuf python3-grpcio";

/** Python with protobuf and grpcio, and protoc for buf's built-in python plugin. */
async function pythonToolchain(): Promise<string | undefined> {
  try {
    await run("protoc", ["--version"]);
    await run(PYTHON, ["-c", "import google.protobuf, grpc"]);
    return undefined;
  } catch {
    return `needs Debian packages: apt-get install -y ${PACKAGES} (.ci/run installs them)`;
  }
}

const missing = await pythonToolchain();
if (missing) console.warn(`python client test skipped: ${missing}`);

describe.skipIf(missing !== undefined)("a Python client generated from proto/", () => {
  let database: TestDatabase;
  let api: TestApi;
  let genDir: string;

  beforeAll(async () => {
    database = await createTestDatabase(inject("databaseUrl"));
    api = await startTestApi(database.url);
    genDir = mkdtempSync(join(tmpdir(), "rendition-pygen-"));
    // The committed template (docs/api.md), into genDir/gen-python; same workspace as
    // `npm run generate` (third_party/protovalidate printed by proto:deps).
    await run("node", ["--import", "tsx", "scripts/print-validate-proto.ts", "third_party/protovalidate"]);
    await run("node_modules/.bin/buf", ["generate", "--template", "buf.gen.python.yaml", "-o", genDir]);
  });
  afterAll(async () => {
    await api?.close();
    await database?.drop();
    if (genDir) rmSync(genDir, { recursive: true, force: true });
  });

  it("creates, watches and cancels over gRPC, gets over Connect JSON, and sees the same errors", async () => {
    const { stdout } = await run(PYTHON, [
      "test/support/python/client.py",
      join(genDir, "gen-python"),
      `127.0.0.1:${api.port}`,
      api.credentials.api_key,
      api.credentials.organization_id,
      api.credentials.local_origin_id,
    ]);
    const seen = JSON.parse(stdout);
    expect(seen.job_id).toMatch(/^job_/);
    expect(seen.created_status).toBe("JOB_STATUS_PENDING");
    expect(seen.metadata).toEqual({ caller: "python" });
    expect(seen.output_path).toMatch(new RegExp(`^${seen.job_id}/out_[0-9a-z]+\\.mp4$`));
    expect(seen.events).toEqual([
      ["WATCH_EVENT_SNAPSHOT", "JOB_STATUS_PENDING"],
      ["WATCH_EVENT_COMPLETED", "JOB_STATUS_CANCELED"],
    ]);
    expect(seen.invalid.code).toBe("INVALID_ARGUMENT");
    for (const field of ["outputs[0].video[0].codec", "outputs[0].video[0].width"]) expect(seen.invalid.details).toContain(field);
    expect(seen.unauthenticated).toBe("UNAUTHENTICATED");
    expect(seen.json_get).toEqual({ id: seen.job_id, status: "JOB_STATUS_CANCELED" });
  });
});
