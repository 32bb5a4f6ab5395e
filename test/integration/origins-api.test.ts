import { existsSync, mkdirSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { CreateBucketCommand, DeleteBucketCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

import {
  OriginPermission,
  OriginProvider,
  OriginService,
  OriginServiceCreateRequestSchema,
  OriginServiceCreateResponseSchema,
  OriginServiceGetResponseSchema,
  OriginServiceListResponseSchema,
  OriginStatus,
  type Origin,
} from "../../gen/rendition/v1/origin_pb.js";
import { CredentialCipher } from "../../services/origins/credential-cipher.js";
import { localJobRequest, startTestApi, type JobRequestInit, type TestApi } from "../support/api-harness.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { startS3Server, type S3TestServer } from "../support/s3-server.js";
import { connectError, violationsOf } from "../support/rpc.js";

type CreateOriginInit = Omit<MessageInitShape<typeof OriginServiceCreateRequestSchema>, "$typeName">;

let database: TestDatabase;
let api: TestApi;
let s3: S3TestServer;
let admin: S3Client;
let httpServer: http.Server;
/** How long the http origin test server takes to answer /slow. */
let slowResponseMs = 0;
let httpBase: string;
const httpSeen: Array<{ method?: string; url?: string; token?: string }> = [];

const BUCKET = "rendition-origins";
const HEADER_SECRET = "hdr-secret-8c1f0d";
/** The harness's RENDITION_ENCRYPTION_KEY (Buffer.alloc(32, 7) as base64). */
const HARNESS_KEY = Buffer.alloc(32, 7);

beforeAll(async () => {
  database = await createTestDatabase(inject("databaseUrl"));
  api = await startTestApi(database.url);
  s3 = await startS3Server();
  await s3.createBucket(BUCKET);
  admin = s3.admin;
  httpServer = http.createServer((req, res) => {
    const token = req.headers["x-api-token"] as string | undefined;
    httpSeen.push({ method: req.method, url: req.url, token });
    if (req.url === "/slow") {
      setTimeout(() => res.writeHead(200).end(), slowResponseMs);
      return;
    }
    if (req.url === "/media") return res.writeHead(200, { "content-type": "text/plain" }).end(req.method === "HEAD" ? undefined : "ok");
    if (req.url === "/to-metadata") return res.writeHead(302, { location: "http://169.254.169.254/latest/meta-data/iam/" }).end("moved");
    if (req.url === "/private") {
      if (token !== HEADER_SECRET) return res.writeHead(403).end();
      return res.writeHead(200).end();
    }
    res.writeHead(404).end("not found");
  });
  await new Promise<void>((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
  httpBase = `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`;
});

afterAll(async () => {
  admin?.destroy();
  await s3?.close();
  if (httpServer) {
    httpServer.closeAllConnections();
    await new Promise((resolve) => httpServer.close(resolve));
  }
  await api?.close();
  await database?.drop();
});

async function invalid(promise: Promise<unknown>) {
  const err = await connectError(promise);
  expect(err.code, err.rawMessage).toBe(Code.InvalidArgument);
  return { err, violations: violationsOf(err) };
}

function s3Origin(overrides: Partial<CreateOriginInit> = {}): CreateOriginInit {
  return {
    name: "s3 renders",
    permissions: [OriginPermission.READ, OriginPermission.WRITE],
    basePath: "renders",
    s3: { bucket: BUCKET, region: "us-east-1", endpoint: s3.endpoint },
    s3Credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    ...overrides,
  };
}

/** The bootstrap organization's own area `<root>/<organization id>` of the API's first allowed local root. */
function orgArea(): string {
  return join(api.config.localOriginRoots[0]!, api.credentials.organization_id);
}

/** A fresh directory in the bootstrap organization's area. */
function localDir(name: string): string {
  const dir = join(orgArea(), name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

async function createLocal(name: string, permissions = [OriginPermission.READ, OriginPermission.WRITE]): Promise<Origin> {
  const { origin } = await api.origins.create({ name, permissions, local: { rootDir: localDir(name.replace(/\W+/g, "-")) } });
  return origin!;
}

async function storedRow(id: string) {
  return database.db.selectFrom("origins").selectAll().where("id", "=", id).executeTakeFirstOrThrow();
}

async function keysIn(bucket: string): Promise<string[]> {
  const listed = await admin.send(new ListObjectsV2Command({ Bucket: bucket }));
  return (listed.Contents ?? []).map((o) => o.Key!);
}

function jobRequest(overrides: JobRequestInit = {}) {
  return localJobRequest(api, overrides);
}

describe("s3 origins against s3rver", () => {
  it("creates an ACTIVE origin after a real list + put + delete probe under base_path", async () => {
    const before = s3.requests.length;
    const started = Date.now();
    const { origin } = await api.origins.create(s3Origin({ basePath: "/renders/" }));
    expect(origin!.id).toMatch(/^ori_[0-9a-z]{26}$/);
    expect(origin).toMatchObject({
      name: "s3 renders",
      provider: OriginProvider.S3,
      permissions: [OriginPermission.READ, OriginPermission.WRITE],
      status: OriginStatus.ACTIVE,
      basePath: "renders",
      validationError: "",
      s3: { bucket: BUCKET, region: "us-east-1", endpoint: s3.endpoint, forcePathStyle: true },
    });
    expect(origin!.lastValidatedAt).toBeDefined();
    expect(timestampDate(origin!.lastValidatedAt!).getTime()).toBeGreaterThanOrEqual(started - 1000);
    expect(origin!.archivedAt).toBeUndefined();

    const probe = s3.requests.slice(before);
    const list = probe.find((r) => /^GET \/rendition-origins\/?\?/.test(r) && r.includes("list-type=2"));
    expect(list, probe.join("\n")).toBeDefined();
    expect(list).toContain("prefix=renders%2F");
    const put = probe.find((r) => /^PUT \/rendition-origins\/renders\/\.rendition-probe-[0-9a-f-]{36}(\?|$)/.test(r));
    expect(put, probe.join("\n")).toBeDefined();
    const key = /\/renders\/(\.rendition-probe-[0-9a-f-]{36})/.exec(put!)![1];
    expect(probe.some((r) => r.startsWith(`DELETE /${BUCKET}/renders/${key}`))).toBe(true);
    // The marker is gone again.
    expect(await keysIn(BUCKET)).toEqual([]);
  });

  it("never returns the secret and stores it encrypted (v1 token) only", async () => {
    const { origin } = await api.origins.create(s3Origin({ name: "encrypted at rest" }));
    const secret = s3.secretAccessKey; // "S3RVER"; the access key ID is the same string and is not returned either
    const created = toJsonString(OriginServiceCreateResponseSchema, { $typeName: "rendition.v1.OriginServiceCreateResponse", origin });
    expect(created).not.toContain(secret);
    const got = await api.origins.get({ id: origin!.id });
    expect(toJsonString(OriginServiceGetResponseSchema, got)).not.toContain(secret);
    const listed = await api.origins.list({ pagination: { limit: 100 } });
    expect(listed.origins.some((o) => o.id === origin!.id)).toBe(true);
    expect(toJsonString(OriginServiceListResponseSchema, listed)).not.toContain(secret);

    // The raw wire answer too, not only what the generated client kept of it.
    const raw = await fetch(`${api.baseUrl}/rendition.v1.OriginService/Get`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        authorization: `Bearer ${api.credentials.api_key}`,
        "x-organization-id": api.credentials.organization_id,
      },
      body: JSON.stringify({ id: origin!.id }),
    });
    expect(raw.status).toBe(200);
    const body = await raw.text();
    expect(body).toContain(origin!.id);
    expect(body).not.toContain(secret);
    expect(body).not.toMatch(/credential|secret/i);

    const row = await storedRow(origin!.id);
    expect(row.credentials).toMatch(/^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(row.credentials).not.toContain(secret);
    expect(JSON.stringify(row.location)).not.toContain(secret);
    // The token really holds the credentials, under the configured key.
    expect(new CredentialCipher(HARNESS_KEY).decrypt(row.credentials!)).toMatchObject({
      s3: { accessKeyId: s3.accessKeyId, secretAccessKey: secret },
    });
  });

  it("refuses a wrong secret key with a readable probe error on field s3, storing nothing", async () => {
    const { err, violations } = await invalid(
      api.origins.create(s3Origin({ name: "wrong secret", s3Credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: "not-the-secret-key" } })),
    );
    expect(violations).toEqual([
      {
        field: "s3",
        rule: "origin.probe_failed",
        message: "read probe failed: SignatureDoesNotMatch: the secret access key does not match the access key ID",
      },
    ]);
    expect(err.rawMessage).toBe("1 invalid field: s3: read probe failed: SignatureDoesNotMatch: the secret access key does not match the access key ID");
    expect(err.rawMessage).not.toContain("not-the-secret-key");
    const rows = await database.db.selectFrom("origins").select("id").where("name", "=", "wrong secret").execute();
    expect(rows).toEqual([]);

    // A write-only origin fails on its write probe.
    const writeOnly = await invalid(
      api.origins.create(
        s3Origin({ name: "wrong secret", permissions: [OriginPermission.WRITE], s3Credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: "nope" } }),
      ),
    );
    expect(writeOnly.violations).toHaveLength(1);
    expect(writeOnly.violations[0]).toMatchObject({ field: "s3", rule: "origin.probe_failed" });
    expect(writeOnly.violations[0]!.message).toMatch(/^write probe failed: SignatureDoesNotMatch/);
  });

  it("refuses an unknown access key, a bucket that does not exist and a missing or malformed bucket name", async () => {
    const unknownKey = await invalid(api.origins.create(s3Origin({ s3Credentials: { accessKeyId: "AKIANOBODY", secretAccessKey: "x" } })));
    expect(unknownKey.violations).toEqual([
      { field: "s3", rule: "origin.probe_failed", message: "read probe failed: InvalidAccessKeyId: the access key ID is not known to the storage provider" },
    ]);

    const noSuchBucket = await invalid(api.origins.create(s3Origin({ s3: { bucket: "no-such-bucket", endpoint: s3.endpoint } })));
    expect(noSuchBucket.violations).toEqual([
      { field: "s3", rule: "origin.probe_failed", message: 'read probe failed: NoSuchBucket: bucket "no-such-bucket" does not exist' },
    ]);

    const missing = await invalid(api.origins.create(s3Origin({ s3: { endpoint: s3.endpoint } })));
    expect(missing.violations.map((v) => v.field)).toEqual(expect.arrayContaining(["s3.bucket"]));
    expect(missing.violations.every((v) => v.field === "s3.bucket")).toBe(true);
    expect(missing.violations.map((v) => v.rule)).toContain("string.min_len");

    const malformed = await invalid(api.origins.create(s3Origin({ s3: { bucket: "Bad_Bucket", endpoint: s3.endpoint } })));
    expect(malformed.violations).toEqual([expect.objectContaining({ field: "s3.bucket", rule: "string.pattern" })]);
  });

  it("requires s3_credentials with s3", async () => {
    const { violations } = await invalid(api.origins.create(s3Origin({ s3Credentials: undefined })));
    expect(violations).toEqual([{ field: "s3_credentials", rule: "origin.s3_credentials_required", message: "is required for s3 origins" }]);
  });

  // OriginService.Create is in `deferredValidation`: the protovalidate violations reach OriginManager.create,
  // which answers them together with its cross-field checks (api-facts.md: error details carry *all*
  // field violations at once), instead of one round trip per kind of mistake.
  it("names schema and cross-field violations of one Create request together", async () => {
    const { err, violations } = await invalid(
      api.origins.create(s3Origin({ name: "schema and cross-field", s3: { bucket: "", endpoint: s3.endpoint }, s3Credentials: undefined, basePath: "a/../b" })),
    );
    expect(violations.map((v) => v.field)).toEqual(expect.arrayContaining(["s3.bucket", "s3_credentials"]));
    expect(violations.map((v) => [v.field, v.rule]).sort()).toEqual([
      ["base_path", "origin.base_path_relative"],
      ["s3.bucket", "string.min_len"],
      ["s3.bucket", "string.pattern"],
      ["s3_credentials", "origin.s3_credentials_required"],
    ]);
    expect(violations).toContainEqual({ field: "s3_credentials", rule: "origin.s3_credentials_required", message: "is required for s3 origins" });
    expect(err.rawMessage).toMatch(/^4 invalid fields: /);

    // The same for a local origin: a schema violation (name) and a cross-field one (http_headers).
    const local = await invalid(
      api.origins.create({ name: "", permissions: [OriginPermission.READ], local: { rootDir: localDir("schema-and-cross-field") }, httpHeaders: { "X-Api-Token": "x" } }),
    );
    expect(local.violations.map((v) => [v.field, v.rule]).sort()).toEqual([
      ["http_headers", "origin.provider_mismatch"],
      ["name", "string.min_len"],
    ]);
    // Nothing was stored (the probe never ran).
    const rows = await database.db.selectFrom("origins").select("id").where("name", "in", ["schema and cross-field", ""]).execute();
    expect(rows).toEqual([]);
  });

  it("names both violations of a request with no provider and no permissions", async () => {
    const { err, violations } = await invalid(api.origins.create({ name: "nothing" }));
    expect(violations).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ field: "", rule: "message.oneof", message: "one of s3, http, local must be set" }),
        expect.objectContaining({ field: "permissions", rule: "repeated.min_items" }),
      ]),
    );
    expect(violations).toHaveLength(2);
    expect(err.rawMessage).toMatch(/^2 invalid fields: /);
    expect(err.rawMessage).toContain("permissions");
  });

  it("refuses http_headers on an s3 origin and '..' in base_path", async () => {
    const { violations } = await invalid(api.origins.create(s3Origin({ basePath: "a/../b", httpHeaders: { "X-Api-Token": "x" } })));
    expect(violations.map((v) => [v.field, v.rule]).sort()).toEqual([
      ["base_path", "origin.base_path_relative"],
      ["http_headers", "origin.provider_mismatch"],
    ]);
  });

  it("updates: renames, refuses new wrong credentials (keeping the old ones), accepts new right ones", async () => {
    const { origin } = await api.origins.create(s3Origin({ name: "to update", basePath: "upd" }));
    const tokenBefore = (await storedRow(origin!.id)).credentials;

    const renamed = await api.origins.update({ id: origin!.id, name: "updated name", description: "renders for the web", pathTemplate: "{job_id}/{output_index}" });
    expect(renamed.origin).toMatchObject({ id: origin!.id, name: "updated name", description: "renders for the web", pathTemplate: "{job_id}/{output_index}", status: OriginStatus.ACTIVE });
    expect(timestampDate(renamed.origin!.updatedAt!).getTime()).toBeGreaterThanOrEqual(timestampDate(origin!.updatedAt!).getTime());
    expect((await storedRow(origin!.id)).credentials).toBe(tokenBefore);

    // Only the fields sent are changed.
    const described = await api.origins.update({ id: origin!.id, description: "" });
    expect(described.origin).toMatchObject({ name: "updated name", description: "", pathTemplate: "{job_id}/{output_index}" });

    const badTemplate = await invalid(api.origins.update({ id: origin!.id, pathTemplate: "{nope}" }));
    expect(badTemplate.violations).toEqual([expect.objectContaining({ field: "path_template", rule: "path_template.unknown_variable" })]);

    const refused = await invalid(api.origins.update({ id: origin!.id, s3Credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: "rotated-but-wrong" } }));
    expect(refused.violations).toEqual([
      {
        field: "s3_credentials",
        rule: "origin.probe_failed",
        message: "read probe failed: SignatureDoesNotMatch: the secret access key does not match the access key ID",
      },
    ]);
    expect((await storedRow(origin!.id)).credentials).toBe(tokenBefore);
    const stillWorks = await api.origins.validate({ id: origin!.id });
    expect(stillWorks).toMatchObject({ valid: true, error: "" });
    expect(stillWorks.origin!.status).toBe(OriginStatus.ACTIVE);

    const accepted = await api.origins.update({ id: origin!.id, s3Credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
    expect(accepted.origin).toMatchObject({ status: OriginStatus.ACTIVE, validationError: "", name: "updated name" });
    const tokenAfter = (await storedRow(origin!.id)).credentials;
    expect(tokenAfter).toMatch(/^v1\./);
    expect(tokenAfter).not.toBe(tokenBefore); // re-encrypted with a fresh IV
    expect((await api.origins.validate({ id: origin!.id })).valid).toBe(true);
  });

  it("refuses s3_credentials on a non-s3 origin and answers NOT_FOUND for an unknown id", async () => {
    const local = await createLocal("local for s3 creds");
    const { violations } = await invalid(api.origins.update({ id: local.id, s3Credentials: { accessKeyId: "a", secretAccessKey: "b" } }));
    expect(violations).toEqual([expect.objectContaining({ field: "s3_credentials", rule: "origin.provider_mismatch" })]);
    expect((await connectError(api.origins.update({ id: "ori_unknown", name: "x" }))).code).toBe(Code.NotFound);
    expect((await connectError(api.origins.get({ id: "ori_unknown" }))).code).toBe(Code.NotFound);
    expect((await connectError(api.origins.validate({ id: "ori_unknown" }))).code).toBe(Code.NotFound);
    expect((await connectError(api.origins.delete({ id: "ori_unknown" }))).code).toBe(Code.NotFound);
  });

  it("validates: valid while the bucket exists; FAILED with validation_error after it is deleted; ACTIVE again once it is back", async () => {
    const bucket = "rendition-validate";
    await s3.createBucket(bucket);
    const { origin } = await api.origins.create(s3Origin({ name: "validate me", s3: { bucket, endpoint: s3.endpoint } }));

    const ok = await api.origins.validate({ id: origin!.id });
    expect(ok).toMatchObject({ valid: true, error: "" });
    expect(ok.origin).toMatchObject({ status: OriginStatus.ACTIVE, validationError: "" });
    expect(timestampDate(ok.origin!.lastValidatedAt!).getTime()).toBeGreaterThanOrEqual(timestampDate(origin!.lastValidatedAt!).getTime());

    await admin.send(new DeleteBucketCommand({ Bucket: bucket }));
    const failed = await api.origins.validate({ id: origin!.id });
    expect(failed.valid).toBe(false);
    expect(failed.error).toBe(`read probe failed: NoSuchBucket: bucket "${bucket}" does not exist`);
    expect(failed.origin).toMatchObject({ status: OriginStatus.FAILED, validationError: failed.error });
    expect((await api.origins.get({ id: origin!.id })).origin).toMatchObject({ status: OriginStatus.FAILED, validationError: failed.error });
    const row = await storedRow(origin!.id);
    expect(row).toMatchObject({ status: "failed", validation_error: failed.error });

    await admin.send(new CreateBucketCommand({ Bucket: bucket }));
    const back = await api.origins.validate({ id: origin!.id });
    expect(back).toMatchObject({ valid: true, error: "" });
    expect(back.origin).toMatchObject({ status: OriginStatus.ACTIVE, validationError: "" });
  });

  it("validates FAILED when the storage server is gone", async () => {
    const other = await startS3Server();
    let closed = false;
    try {
      await other.createBucket("short-lived");
      const { origin } = await api.origins.create(
        s3Origin({
          name: "server goes away",
          s3: { bucket: "short-lived", endpoint: other.endpoint },
          s3Credentials: { accessKeyId: other.accessKeyId, secretAccessKey: other.secretAccessKey },
        }),
      );
      await other.close();
      closed = true;
      const result = await api.origins.validate({ id: origin!.id });
      expect(result.valid).toBe(false);
      expect(result.error).toMatch(/^read probe failed: cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED/);
      expect(result.origin).toMatchObject({ status: OriginStatus.FAILED, validationError: result.error });
    } finally {
      if (!closed) await other.close();
    }
  });
});

describe("OriginService.Delete (archive)", () => {
  it("stays archived when a Validate that started before the Delete finishes after it", async () => {
    const { origin } = await api.origins.create({ name: "slow", permissions: [OriginPermission.READ], http: { baseUrl: `${httpBase}/slow` } });
    slowResponseMs = 800;
    try {
      const validating = connectError(api.origins.validate({ id: origin!.id }));
      await new Promise((resolve) => setTimeout(resolve, 200)); // the probe is now waiting on /slow
      await api.origins.delete({ id: origin!.id });
      const err = await validating;
      expect(err.code).toBe(Code.FailedPrecondition);
      expect(err.rawMessage).toContain("archived during validation");
    } finally {
      slowResponseMs = 0;
    }
    const { origin: after } = await api.origins.get({ id: origin!.id });
    expect(after).toMatchObject({ status: OriginStatus.ARCHIVED });
    expect(after!.archivedAt).toBeDefined();
  });


  it("archives; List hides archived origins unless include_archived; archived origins cannot be used, updated or validated", async () => {
    const origin = await createLocal("to archive");
    const { origin: archived } = await api.origins.delete({ id: origin.id });
    expect(archived).toMatchObject({ id: origin.id, status: OriginStatus.ARCHIVED });
    expect(archived!.archivedAt).toBeDefined();
    // Deleting again is a no-op that answers the archived origin.
    const again = await api.origins.delete({ id: origin.id });
    expect(again.origin).toMatchObject({ status: OriginStatus.ARCHIVED, archivedAt: archived!.archivedAt });
    // Still readable by id, so old jobs can show where they went.
    expect((await api.origins.get({ id: origin.id })).origin!.status).toBe(OriginStatus.ARCHIVED);

    const visible = await api.origins.list({ pagination: { limit: 100 } });
    expect(visible.origins.map((o) => o.id)).not.toContain(origin.id);
    expect(visible.origins.every((o) => o.status !== OriginStatus.ARCHIVED)).toBe(true);
    const all = await api.origins.list({ pagination: { limit: 100 }, includeArchived: true });
    expect(all.origins.map((o) => o.id)).toContain(origin.id);
    expect(all.pagination!.totalCount).toBeGreaterThan(visible.pagination!.totalCount);

    const asOutput = await invalid(api.jobs.create(jobRequest({ outputOriginId: origin.id })));
    expect(asOutput.violations).toEqual([{ field: "output_origin_id", rule: "origin.archived", message: `origin ${origin.id} is archived` }]);
    const asInput = await invalid(api.jobs.create(jobRequest({ inputOriginId: origin.id })));
    expect(asInput.violations).toEqual([expect.objectContaining({ field: "input_origin_id", rule: "origin.archived" })]);

    expect((await connectError(api.origins.update({ id: origin.id, name: "revived" }))).code).toBe(Code.FailedPrecondition);
    expect((await connectError(api.origins.validate({ id: origin.id }))).code).toBe(Code.FailedPrecondition);
  });

  it("keeps a job created before the archive readable with its origin snapshot", async () => {
    const origin = await createLocal("archive after job");
    const { job } = await api.jobs.create(jobRequest({ outputOriginId: origin.id }));
    await api.origins.delete({ id: origin.id });
    const { job: reread } = await api.jobs.get({ id: job!.id });
    expect(reread!.outputOrigin).toMatchObject({ id: origin.id, name: "archive after job" });
  });
});

describe("http origins", () => {
  it("are read-only: a write permission is refused on field permissions", async () => {
    const { violations } = await invalid(
      api.origins.create({ name: "cdn", permissions: [OriginPermission.READ, OriginPermission.WRITE], http: { baseUrl: `${httpBase}/media` } }),
    );
    expect(violations).toEqual([
      { field: "permissions", rule: "origin.http_read_only", message: "http origins are read-only: use ORIGIN_PERMISSION_READ only" },
    ]);
  });

  it("pass a real read probe against a local HTTP server", async () => {
    const before = httpSeen.length;
    const { origin } = await api.origins.create({ name: "cdn", permissions: [OriginPermission.READ], http: { baseUrl: `${httpBase}/media` } });
    expect(origin).toMatchObject({
      provider: OriginProvider.HTTP,
      permissions: [OriginPermission.READ],
      status: OriginStatus.ACTIVE,
      http: { baseUrl: `${httpBase}/media`, headerNames: [] },
    });
    expect(httpSeen.slice(before)).toEqual([{ method: "HEAD", url: "/media", token: undefined }]);
    await expect(storedRow(origin!.id)).resolves.toMatchObject({ credentials: null });
  });

  it("send custom headers, return only their names and store the values encrypted", async () => {
    const noHeader = await invalid(api.origins.create({ name: "private", permissions: [OriginPermission.READ], http: { baseUrl: `${httpBase}/private` } }));
    expect(noHeader.violations).toEqual([
      { field: "http", rule: "origin.probe_failed", message: `read probe failed: HTTP 403 Forbidden from ${httpBase}/private` },
    ]);

    const { origin } = await api.origins.create({
      name: "private",
      permissions: [OriginPermission.READ],
      http: { baseUrl: `${httpBase}/private` },
      httpHeaders: { "X-Api-Token": HEADER_SECRET },
    });
    expect(origin).toMatchObject({ status: OriginStatus.ACTIVE, http: { baseUrl: `${httpBase}/private`, headerNames: ["X-Api-Token"] } });
    expect(httpSeen.at(-1)).toEqual({ method: "HEAD", url: "/private", token: HEADER_SECRET });
    expect(toJsonString(OriginServiceCreateResponseSchema, { $typeName: "rendition.v1.OriginServiceCreateResponse", origin })).not.toContain(HEADER_SECRET);
    const row = await storedRow(origin!.id);
    expect(row.credentials).toMatch(/^v1\./);
    expect(JSON.stringify(row)).not.toContain(HEADER_SECRET);
    expect(new CredentialCipher(HARNESS_KEY).decrypt(row.credentials!)).toEqual({ httpHeaders: { "X-Api-Token": HEADER_SECRET } });
    // Validate re-sends the stored header.
    expect((await api.origins.validate({ id: origin!.id })).valid).toBe(true);
    expect(httpSeen.at(-1)).toEqual({ method: "HEAD", url: "/private", token: HEADER_SECRET });
  });

  it("fail the probe on a 404 base URL", async () => {
    const { err, violations } = await invalid(api.origins.create({ name: "gone", permissions: [OriginPermission.READ], http: { baseUrl: `${httpBase}/missing` } }));
    expect(violations).toEqual([
      { field: "http", rule: "origin.probe_failed", message: `read probe failed: HTTP 404 Not Found from ${httpBase}/missing` },
    ]);
    expect(err.rawMessage).toContain("HTTP 404");
  });

  it("refuses a base URL that is not http(s)", async () => {
    const { violations } = await invalid(api.origins.create({ name: "ftp", permissions: [OriginPermission.READ], http: { baseUrl: "ftp://example.com/x" } }));
    expect(violations).toEqual([expect.objectContaining({ field: "http.base_url", rule: "string.pattern" })]);
  });
});

describe("SSRF guard on origin probes", () => {
  // The main `api` runs with the harness default RENDITION_NETWORK_ALLOW (loopback); these two
  // run with nothing allowed and with exactly 127.0.0.1/32.
  let strictDb: TestDatabase;
  let strict: TestApi;
  let narrowDb: TestDatabase;
  let narrow: TestApi;
  const refused = (host: string) => `refused: ${host} resolves to a private or reserved address; allow it with RENDITION_NETWORK_ALLOW`;

  beforeAll(async () => {
    [strictDb, narrowDb] = await Promise.all([createTestDatabase(inject("databaseUrl")), createTestDatabase(inject("databaseUrl"))]);
    [strict, narrow] = await Promise.all([
      startTestApi(strictDb.url, { RENDITION_NETWORK_ALLOW: "" }),
      startTestApi(narrowDb.url, { RENDITION_NETWORK_ALLOW: "127.0.0.1/32" }),
    ]);
  });

  afterAll(async () => {
    await Promise.all([strict?.close(), narrow?.close()]);
    await Promise.all([strictDb?.drop(), narrowDb?.drop()]);
  });

  it("refuses an http origin on 127.0.0.1 by default, saying so plainly and contacting nothing", async () => {
    expect(strict.config.networkAllow).toEqual([]);
    const before = httpSeen.length;
    const { err, violations } = await invalid(strict.origins.create({ name: "loopback cdn", permissions: [OriginPermission.READ], http: { baseUrl: `${httpBase}/media` } }));
    expect(violations).toEqual([{ field: "http", rule: "origin.probe_failed", message: refused("127.0.0.1") }]);
    expect(err.rawMessage).toBe(`1 invalid field: http: ${refused("127.0.0.1")}`);
    // By name too, and the metadata address.
    const byName = await invalid(
      strict.origins.create({ name: "loopback cdn", permissions: [OriginPermission.READ], http: { baseUrl: httpBase.replace("127.0.0.1", "localhost") } }),
    );
    expect(byName.violations[0]!.message).toMatch(/^refused: localhost resolves to a private or reserved address; allow it with RENDITION_NETWORK_ALLOW$/);
    const metadata = await invalid(
      strict.origins.create({ name: "metadata", permissions: [OriginPermission.READ], http: { baseUrl: "http://169.254.169.254/latest/meta-data" } }),
    );
    expect(metadata.violations).toEqual([{ field: "http", rule: "origin.probe_failed", message: refused("169.254.169.254") }]);
    expect(httpSeen.length).toBe(before);
    expect((await strict.origins.list({})).origins.map((o) => o.id)).toEqual([strict.credentials.local_origin_id]);
  });

  it("accepts the same http origin when the API runs with RENDITION_NETWORK_ALLOW=127.0.0.1/32", async () => {
    expect(narrow.config.networkAllow).toEqual(["127.0.0.1/32"]);
    const before = httpSeen.length;
    const { origin } = await narrow.origins.create({ name: "loopback cdn", permissions: [OriginPermission.READ], http: { baseUrl: `${httpBase}/media` } });
    expect(origin).toMatchObject({ status: OriginStatus.ACTIVE, validationError: "" });
    expect(httpSeen.slice(before)).toEqual([{ method: "HEAD", url: "/media", token: undefined }]);
    expect(await narrow.origins.validate({ id: origin!.id })).toMatchObject({ valid: true, error: "" });
  });

  it("refuses an s3 origin whose endpoint is on loopback by default; accepts it when allowed", async () => {
    const before = s3.requests.length;
    const { violations } = await invalid(strict.origins.create(s3Origin({ name: "loopback s3" })));
    expect(violations).toEqual([{ field: "s3", rule: "origin.probe_failed", message: refused("127.0.0.1") }]);
    const writeOnly = await invalid(strict.origins.create(s3Origin({ name: "loopback s3", permissions: [OriginPermission.WRITE] })));
    expect(writeOnly.violations).toEqual([{ field: "s3", rule: "origin.probe_failed", message: refused("127.0.0.1") }]);
    expect(s3.requests.length).toBe(before);

    const { origin } = await narrow.origins.create(s3Origin({ name: "loopback s3" }));
    expect(origin).toMatchObject({ status: OriginStatus.ACTIVE, s3: { endpoint: s3.endpoint } });
    expect(s3.requests.length).toBeGreaterThan(before);
  });

  it("refuses an http probe that is redirected to the metadata address", async () => {
    const before = httpSeen.length;
    const { violations } = await invalid(api.origins.create({ name: "redirects", permissions: [OriginPermission.READ], http: { baseUrl: `${httpBase}/to-metadata` } }));
    expect(violations).toEqual([
      {
        field: "http",
        rule: "origin.probe_failed",
        message:
          "refused: a redirect to 169.254.169.254, which resolves to a private or reserved address; allow it with RENDITION_NETWORK_ALLOW",
      },
    ]);
    expect(httpSeen.slice(before)).toEqual([{ method: "HEAD", url: "/to-metadata", token: undefined }]);
    expect(await database.db.selectFrom("origins").select("id").where("name", "=", "redirects").execute()).toEqual([]);
  });
});

describe("local origins", () => {
  const outsideMessage = () => `must be inside this organization's directory: ${orgArea()}`;

  it("work inside the organization's own area <root>/<organization id>, the area itself included", async () => {
    const dir = localDir("inside");
    const { origin } = await api.origins.create({ name: "inside", permissions: [OriginPermission.READ, OriginPermission.WRITE], local: { rootDir: dir }, basePath: "out" });
    expect(origin).toMatchObject({ provider: OriginProvider.LOCAL, status: OriginStatus.ACTIVE, local: { rootDir: realpathSync(dir) }, basePath: "out" });
    expect((await storedRow(origin!.id)).credentials).toBeNull();
    // The area itself is inside too.
    const area = await api.origins.create({ name: "area", permissions: [OriginPermission.READ], local: { rootDir: orgArea() } });
    expect(area.origin).toMatchObject({ status: OriginStatus.ACTIVE, local: { rootDir: realpathSync(orgArea()) } });
  });

  it("refuse directories outside the organization's area: the bootstrap root itself, other areas, '..', siblings", async () => {
    const root = api.config.localOriginRoots[0]!;
    const area = orgArea();
    mkdirSync(`${area}-sibling`, { recursive: true });
    mkdirSync(join(root, "org_someoneelse"), { recursive: true });
    const outside = [
      "/etc",
      root, // the bootstrap origin's directory: only the server's own first-start origin may use it
      join(root, "org_someoneelse"), // another organization's area
      `${area}/..`,
      `${area}/inside/../..`,
      `${root}/../..`,
      `${root}-sibling`,
      `${area}-sibling`, // a prefix of the area's name is not inside it
    ];
    for (const rootDir of outside) {
      const { violations } = await invalid(api.origins.create({ name: "outside", permissions: [OriginPermission.READ], local: { rootDir } }));
      expect(violations, rootDir).toEqual([{ field: "local.root_dir", rule: "origin.local_root_outside", message: outsideMessage() }]);
    }
    const relative = await invalid(api.origins.create({ name: "outside", permissions: [OriginPermission.READ], local: { rootDir: "relative/dir" } }));
    expect(relative.violations).toEqual([{ field: "local.root_dir", rule: "origin.local_root_absolute", message: "must be an absolute path" }]);
    expect(await database.db.selectFrom("origins").select("id").where("name", "=", "outside").execute()).toEqual([]);
  });

  it("refuse a symbolic link in the area that points outside it; store the real path of one that stays inside", async () => {
    const area = orgArea();
    mkdirSync(area, { recursive: true });
    const escapes: Array<[string, string]> = [
      [join(area, "link-to-tmp"), tmpdir()],
      [join(area, "link-to-root"), api.config.localOriginRoots[0]!],
    ];
    for (const [link, target] of escapes) {
      symlinkSync(target, link, "dir");
      const { violations } = await invalid(api.origins.create({ name: "escape", permissions: [OriginPermission.READ], local: { rootDir: link } }));
      expect(violations, link).toEqual([
        { field: "local.root_dir", rule: "origin.local_root_outside", message: `resolves (through a symbolic link) to ${realpathSync(target)}, outside ${area}` },
      ]);
    }
    expect(await database.db.selectFrom("origins").select("id").where("name", "=", "escape").execute()).toEqual([]);

    // A link (relative, inside the area) to a directory inside the area is accepted; the origin keeps the real path.
    const real = localDir("real-target");
    const link = join(area, "link-inside");
    symlinkSync("real-target", link, "dir");
    const { origin } = await api.origins.create({ name: "through a link", permissions: [OriginPermission.READ, OriginPermission.WRITE], local: { rootDir: link } });
    expect(origin).toMatchObject({ status: OriginStatus.ACTIVE, local: { rootDir: realpathSync(real) } });
    expect(origin!.local!.rootDir).not.toBe(link);
    expect((await storedRow(origin!.id)).location).toEqual({ local: { rootDir: realpathSync(real) } });
    expect((await api.origins.get({ id: origin!.id })).origin!.local!.rootDir).toBe(realpathSync(real));

    // '..' and '.' segments are resolved too.
    const dotted = await api.origins.create({ name: "dotted", permissions: [OriginPermission.READ], local: { rootDir: `${real}/../real-target/.` } });
    expect(dotted.origin!.local!.rootDir).toBe(realpathSync(real));
  });

  it("refuse a directory that does not exist (without creating it) on field local.root_dir", async () => {
    const rootDir = join(orgArea(), "does-not-exist");
    const { violations } = await invalid(api.origins.create({ name: "missing dir", permissions: [OriginPermission.READ], local: { rootDir } }));
    expect(violations).toEqual([{ field: "local.root_dir", rule: "origin.local_root_missing", message: `${rootDir} does not exist` }]);
    expect(existsSync(rootDir)).toBe(false);
  });

  it("fail the probe when the path is a file, not a directory", async () => {
    const rootDir = join(localDir("holds-a-file"), "file.txt");
    writeFileSync(rootDir, "not a directory");
    const { violations } = await invalid(api.origins.create({ name: "file", permissions: [OriginPermission.READ], local: { rootDir } }));
    expect(violations).toEqual([
      { field: "local", rule: "origin.probe_failed", message: `root directory ${realpathSync(rootDir)} does not exist or is not a directory` },
    ]);
  });

  it("create the organization's area on first use, but never the requested directory", async () => {
    const org = await api.app.auth.createOrganization("Fresh area");
    const key = await api.app.auth.createApiKey(org.id, "fresh");
    const fresh = api.client(OriginService, { apiKey: key.key, organizationId: org.id });
    const area = join(api.config.localOriginRoots[0]!, org.id);
    expect(existsSync(area)).toBe(false);

    const missing = await invalid(fresh.create({ name: "fresh", permissions: [OriginPermission.READ], local: { rootDir: join(area, "sub") } }));
    expect(missing.violations).toEqual([{ field: "local.root_dir", rule: "origin.local_root_missing", message: `${join(area, "sub")} does not exist` }]);
    expect(existsSync(area)).toBe(true);
    expect(existsSync(join(area, "sub"))).toBe(false);

    const { origin } = await fresh.create({ name: "fresh", permissions: [OriginPermission.READ, OriginPermission.WRITE], local: { rootDir: area } });
    expect(origin).toMatchObject({ status: OriginStatus.ACTIVE, local: { rootDir: realpathSync(area) } });
  });

  it("are refused on field local when RENDITION_ALLOW_LOCAL_ORIGINS=false", async () => {
    const otherDb = await createTestDatabase(inject("databaseUrl"));
    const locked = await startTestApi(otherDb.url, { RENDITION_ALLOW_LOCAL_ORIGINS: "false" });
    try {
      expect(locked.config.allowLocalOrigins).toBe(false);
      // Inside the organization's own area, so the only reason to refuse is the setting.
      const rootDir = join(locked.config.localOriginRoots[0]!, locked.credentials.organization_id, "x");
      mkdirSync(rootDir, { recursive: true });
      const { violations } = await invalid(locked.origins.create({ name: "local", permissions: [OriginPermission.READ], local: { rootDir } }));
      expect(violations).toEqual([
        { field: "local", rule: "origin.local_disabled", message: "local origins are disabled on this server (RENDITION_ALLOW_LOCAL_ORIGINS)" },
      ]);
      expect((await locked.origins.list({})).origins.map((o) => o.id)).toEqual([locked.credentials.local_origin_id]);
      // The bootstrap origin (created by the server itself) is still there and usable.
      expect((await locked.origins.get({ id: locked.credentials.local_origin_id })).origin!.status).toBe(OriginStatus.ACTIVE);
    } finally {
      await locked.close();
      await otherDb.drop();
    }
  });
});

describe("origins in jobs", () => {
  it("refuses an origin without the needed permission: read-only as output, write-only as input", async () => {
    const { origin: readOnly } = await api.origins.create({ name: "read only", permissions: [OriginPermission.READ], http: { baseUrl: `${httpBase}/media` } });
    const writeOnly = await createLocal("write only", [OriginPermission.WRITE]);
    expect(writeOnly.permissions).toEqual([OriginPermission.WRITE]);

    const asOutput = await invalid(api.jobs.create(jobRequest({ outputOriginId: readOnly!.id })));
    expect(asOutput.violations).toEqual([
      { field: "output_origin_id", rule: "origin.write_permission", message: `origin ${readOnly!.id} has no write permission` },
    ]);

    const both = await invalid(api.jobs.create(jobRequest({ inputOriginId: writeOnly.id, outputOriginId: readOnly!.id })));
    expect(both.violations.map((v) => [v.field, v.rule]).sort()).toEqual([
      ["input_origin_id", "origin.read_permission"],
      ["output_origin_id", "origin.write_permission"],
    ]);

    // The right way round works.
    const { job } = await api.jobs.create(jobRequest({ inputOriginId: readOnly!.id, inputPath: "clip.mp4", outputOriginId: writeOnly.id }));
    expect(job!.inputOrigin).toMatchObject({ id: readOnly!.id, provider: OriginProvider.HTTP, path: "clip.mp4" });
    expect(job!.outputOrigin).toMatchObject({ id: writeOnly.id, provider: OriginProvider.LOCAL });
  });

  it("uses an s3 origin's path_template and snapshots its bucket", async () => {
    const { origin } = await api.origins.create(s3Origin({ name: "s3 out", pathTemplate: "web/{job_id}/{resolution}" }));
    const { job } = await api.jobs.create(jobRequest({ outputOriginId: origin!.id }));
    expect(job!.outputOrigin).toMatchObject({ id: origin!.id, provider: OriginProvider.S3, bucket: BUCKET });
    expect(job!.outputs[0]!.path).toBe(`web/${job!.id}/720p.mp4`);
  });
});

describe("organization scoping", () => {
  it("hides another organization's origins", async () => {
    const org = await api.app.auth.createOrganization("Other org");
    const key = await api.app.auth.createApiKey(org.id, "other");
    const other = api.client(OriginService, { apiKey: key.key, organizationId: org.id });
    const mine = await createLocal("mine only");
    expect((await connectError(other.get({ id: mine.id }))).code).toBe(Code.NotFound);
    expect((await connectError(other.update({ id: mine.id, name: "stolen" }))).code).toBe(Code.NotFound);
    expect((await connectError(other.delete({ id: mine.id }))).code).toBe(Code.NotFound);
    expect((await other.list({})).origins).toEqual([]);
    expect((await api.origins.get({ id: mine.id })).origin!.name).toBe("mine only");
  });
});

describe("OriginService.List pagination", () => {
  it("pages newest first with limit and cursor; total_count matches the stored origins", async () => {
    for (let i = 0; i < 5; i++) await createLocal(`page ${i}`);
    const expected = await database.db
      .selectFrom("origins")
      .select("id")
      .where("organization_id", "=", api.credentials.organization_id)
      .where("status", "!=", "archived")
      .orderBy("id", "desc")
      .execute();
    expect(expected.length).toBeGreaterThanOrEqual(6);

    const seen: string[] = [];
    let cursor = "";
    let pages = 0;
    do {
      const page = await api.origins.list({ pagination: { limit: 2, cursor } });
      expect(page.origins.length).toBeLessThanOrEqual(2);
      expect(page.pagination!.totalCount).toBe(expected.length);
      seen.push(...page.origins.map((o) => o.id));
      cursor = page.pagination!.nextCursor;
      pages++;
      expect(pages).toBeLessThan(100);
    } while (cursor);
    expect(seen).toEqual(expected.map((r) => r.id));
    expect(pages).toBe(Math.ceil(expected.length / 2));

    const firstPage = await api.origins.list({ pagination: { limit: 2 } });
    expect(firstPage.origins).toHaveLength(2);
    expect(firstPage.pagination!.nextCursor).not.toBe("");

    expect((await connectError(api.origins.list({ pagination: { cursor: "garbage" } }))).code).toBe(Code.InvalidArgument);
    expect((await connectError(api.origins.list({ pagination: { limit: 101 } }))).code).toBe(Code.InvalidArgument);
    // Default page size is 20.
    expect((await api.origins.list({})).origins.length).toBe(Math.min(20, expected.length));
  });
});
