/**
 * The Go client: code generated from proto/ with the committed buf.gen.go.yaml (protoc-gen-go +
 * protoc-gen-go-grpc) into a temp GOPATH, test/support/go/client built against it and the
 * Debian Go libraries (GOPATH mode, offline), and run against a live server (real PostgreSQL,
 * the in-process worker, real ffmpeg): Create → Watch → Get over gRPC (h2c, same port).
 */
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startTestApi, type TestApi } from "../support/api-harness.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { generateClip } from "../support/media.js";

const run = promisify(execFile);
const PACKAGES =
  "golang-go protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev";
/** Where Debian's golang-*-dev packages put their sources (a GOPATH entry). */
const DEBIAN_GOPATH = "/usr/share/gocode";
/** The generated code's import path prefix: go_package_prefix in buf.gen.go.yaml is <module>/gen-go. */
const MODULE = "example.com/yourapp";

/** GOPATH mode, no network: only the generated code and the Debian libraries. */
function goEnv(gopath: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GO111MODULE: "off",
    GOPATH: `${gopath}:${DEBIAN_GOPATH}`,
    GOFLAGS: "",
    GOPROXY: "off",
    CGO_ENABLED: "0",
    // Shared between runs (Go's cache is safe for concurrent builds): rebuilding grpc-go each run costs ~20 s of CPU.
    GOCACHE: join(tmpdir(), "rendition-go-build-cache"),
  };
}

/** go, both plugins, and grpc-go with the protobuf APIv2 runtime (golang/protobuf 1.3 cannot marshal APIv2 messages). */
async function goToolchain(): Promise<string | undefined> {
  try {
    await run("go", ["version"]);
    await run("protoc-gen-go", ["--version"]);
    await run("protoc-gen-go-grpc", ["--version"]);
    const env = goEnv(DEBIAN_GOPATH);
    await run("go", ["list", "google.golang.org/grpc", "google.golang.org/protobuf/reflect/protoreflect"], { env });
    const { stdout } = await run("go", ["list", "-f", "{{join .Imports \" \"}}", "github.com/golang/protobuf/proto"], { env });
    if (!stdout.includes("google.golang.org/protobuf/")) throw new Error("github.com/golang/protobuf is older than 1.4");
    return undefined;
  } catch {
    return `needs Debian packages: apt-get install -y ${PACKAGES} (.ci/run installs them)`;
  }
}

const missing = await goToolchain();
if (missing) console.warn(`go client test skipped: ${missing}`);

describe.skipIf(missing !== undefined)("a Go client generated from proto/ with buf.gen.go.yaml", () => {
  let database: TestDatabase;
  let api: TestApi;
  let work: string;
  let binary: string;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "rendition-gogen-"));
    const gopath = join(work, "gopath");
    const moduleDir = join(gopath, "src", MODULE);
    mkdirSync(moduleDir, { recursive: true });
    // Same workspace as `npm run generate` (third_party/protovalidate printed by proto:deps).
    await run("node", ["--import", "tsx", "scripts/print-validate-proto.ts", "third_party/protovalidate"]);
    await run("node_modules/.bin/buf", ["generate", "--template", "buf.gen.go.yaml", "-o", moduleDir]);
    cpSync("test/support/go/client", join(moduleDir, "client"), { recursive: true });
    binary = join(work, "client");
    await run("go", ["build", "-o", binary, "."], { cwd: join(moduleDir, "client"), env: goEnv(gopath) });

    database = await createTestDatabase(inject("databaseUrl"));
    api = await startTestApi(database.url, { RENDITION_TMP_DIR: join(work, "encode") }, { worker: true });
    await generateClip(join(api.config.dataDir, "storage/in/clip.mp4"), { durationS: 2, width: 320, height: 240, fps: 25, audio: true });
  }, 180_000);

  afterAll(async () => {
    await api?.close();
    await database?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("creates a job, watches it to completion and gets it, over gRPC", async () => {
    const { credentials } = api;
    const { stdout } = await run(binary, [
      `127.0.0.1:${api.port}`,
      credentials.api_key,
      credentials.organization_id,
      credentials.local_origin_id,
      "in/clip.mp4",
    ]);
    const seen = JSON.parse(stdout);
    expect(seen.job_id).toMatch(/^job_/);
    expect(seen.created_status).toBe("JOB_STATUS_PENDING");

    // The stream opens with the snapshot and ends with the one COMPLETED event, the job done.
    const events: Array<{ event: string; status: string; progress: number }> = seen.events;
    expect(events[0]!.event).toBe("WATCH_EVENT_SNAPSHOT");
    expect(events.at(-1)).toEqual({ event: "WATCH_EVENT_COMPLETED", status: "JOB_STATUS_COMPLETED", progress: 100 });
    expect(events.filter((e) => e.event === "WATCH_EVENT_COMPLETED")).toHaveLength(1);
    // How many progress and status events arrive in between depends on timing (a short encode can
    // end before the stream sees it start); which kinds may arrive does not.
    const kinds = ["WATCH_EVENT_SNAPSHOT", "WATCH_EVENT_PROGRESS", "WATCH_EVENT_STATUS_CHANGE", "WATCH_EVENT_HEARTBEAT", "WATCH_EVENT_COMPLETED"];
    for (const e of events) expect(kinds).toContain(e.event);
    expect(events.filter((e) => e.event === "WATCH_EVENT_SNAPSHOT")).toHaveLength(1);
    const progress = events.map((e) => e.progress);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));

    expect(seen.status).toBe("JOB_STATUS_COMPLETED");
    expect(seen.progress).toBe(100);
    expect(seen.metadata).toEqual({ caller: "go" });
    expect(seen.output_status).toBe("OUTPUT_STATUS_COMPLETED");
    expect(seen.output_path).toMatch(new RegExp(`^${seen.job_id}/out_[0-9a-z]+\\.mp4$`));
    expect(seen.output_url).toBe(`file://${join(api.config.dataDir, "storage", seen.output_path)}`);
    expect(Number(seen.output_bytes)).toBeGreaterThan(1000);

    // The same refusal a Connect caller gets, as a gRPC status.
    expect(seen.invalid.code).toBe("InvalidArgument");
    expect(seen.invalid.message).toBe("1 invalid field: id: must be at least 1 characters");

    // What Get answered over gRPC is what the server holds.
    const { job } = await api.jobs.get({ id: seen.job_id });
    expect(job?.outputs[0]?.fileSizeBytes).toBe(BigInt(seen.output_bytes));
  }, 120_000);
});
