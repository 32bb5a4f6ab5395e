import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import type { AddressInfo } from "node:net";
import net from "node:net";
import path from "node:path";

import { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { BlockedDestinationError, createNetworkGuard } from "../../services/net/network-guard.js";
import { S3Driver } from "../../services/storage/s3.driver.js";
import { ObjectTooLargeError, OriginProbeError, type S3Config, createStorageDriver } from "../../services/storage/storage-driver.js";
import { type S3TestServer, startS3Server } from "../support/s3-server.js";

const BUCKET = "rendition-test";
/** s3rver listens on loopback, which the default guard refuses. */
const loopback = createNetworkGuard({ allow: ["127.0.0.1/32", "::1/128"] });

describe("S3Driver against s3rver", () => {
  let s3: S3TestServer;
  let dir: string;
  const drivers: S3Driver[] = [];

  function driverWith(overrides: Partial<S3Config> = {}, options: ConstructorParameters<typeof S3Driver>[1] = { guard: loopback }): S3Driver {
    const driver = new S3Driver(
      {
        bucket: BUCKET,
        region: "us-east-1",
        endpoint: s3.endpoint,
        accessKeyId: s3.accessKeyId,
        secretAccessKey: s3.secretAccessKey,
        ...overrides,
      },
      options,
    );
    drivers.push(driver);
    return driver;
  }

  async function listKeys(prefix: string): Promise<string[]> {
    const client = new S3Client({
      endpoint: s3.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
    try {
      const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
      return (listed.Contents ?? []).map((object) => object.Key!);
    } finally {
      client.destroy();
    }
  }

  beforeAll(async () => {
    s3 = await startS3Server();
    await s3.createBucket(BUCKET);
    dir = await mkdtemp(path.join(tmpdir(), "rendition-s3-driver-"));
  });

  afterAll(async () => {
    for (const driver of drivers) driver.destroy();
    await s3?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("passes a read and write probe and removes its marker", async () => {
    await driverWith().probe("/probe-base/", { read: true, write: true });
    expect(await listKeys("probe-base/")).toEqual([]);
  });

  it("fails with a clear message when the secret key is wrong", async () => {
    const driver = driverWith({ secretAccessKey: "not-the-secret" });
    await expect(driver.probe("x", { read: true, write: false })).rejects.toThrow(
      "read probe failed: SignatureDoesNotMatch: the secret access key does not match the access key ID",
    );
    await expect(driver.probe("x", { read: false, write: true })).rejects.toThrow(
      /^write probe failed: SignatureDoesNotMatch/,
    );
  });

  it("fails with a clear message when the access key ID is unknown", async () => {
    const driver = driverWith({ accessKeyId: "AKIANOBODY" });
    await expect(driver.probe("", { read: true, write: false })).rejects.toThrow(
      "read probe failed: InvalidAccessKeyId: the access key ID is not known to the storage provider",
    );
  });

  it("fails with a clear message when the bucket does not exist", async () => {
    const driver = driverWith({ bucket: "no-such-bucket" });
    const probe = driver.probe("", { read: true, write: true });
    await expect(probe).rejects.toThrow(OriginProbeError);
    await expect(probe).rejects.toThrow('read probe failed: NoSuchBucket: bucket "no-such-bucket" does not exist');
    await expect(driver.probe("", { read: false, write: true })).rejects.toThrow(/^write probe failed: NoSuchBucket/);
  });

  it("fails fast when nothing listens at the endpoint", async () => {
    const started = Date.now();
    const driver = driverWith({ endpoint: "http://127.0.0.1:1" });
    await expect(driver.probe("", { read: true, write: false })).rejects.toThrow(
      /^read probe failed: cannot reach http:\/\/127\.0\.0\.1:1 \(ECONNREFUSED/,
    );
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it.each([
    ["the probe deadline", { probeTimeoutMs: 400 }],
    ["the socket idle timeout", { socketTimeoutMs: 300 }],
  ])("gives up on an endpoint that accepts connections but never answers (%s)", async (_, options) => {
    const silent = net.createServer(() => {}); // holds every socket open, says nothing
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const endpoint = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const driver = new S3Driver(
      { bucket: BUCKET, region: "us-east-1", endpoint, accessKeyId: "a", secretAccessKey: "b" },
      { ...options, guard: loopback },
    );
    const started = Date.now();
    try {
      await expect(driver.probe("", { read: true, write: false })).rejects.toThrow(
        `read probe failed: no answer from ${endpoint} in time`,
      );
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      driver.destroy();
      silent.close();
    }
  });

  it("round-trips a small file with a content type", async () => {
    const content = randomBytes(64 * 1024);
    const src = path.join(dir, "small.bin");
    await writeFile(src, content);
    const driver = driverWith();

    const uploaded = await driver.upload(src, "/out/job_1/small file.mp4", { contentType: "video/mp4" });
    expect(uploaded).toEqual({ bytes: content.length, url: `s3://${BUCKET}/out/job_1/small file.mp4` });

    const dest = path.join(dir, "small.out");
    expect(await driver.download("out/job_1/small file.mp4", dest)).toEqual({ bytes: content.length });
    expect((await readFile(dest)).equals(content)).toBe(true);
  });

  it("uploads a file above the part size as a multipart upload and downloads it intact", async () => {
    const content = randomBytes(12 * 1024 * 1024 + 123); // 3 parts of 5 MiB max
    const src = path.join(dir, "large.bin");
    await writeFile(src, content);
    const driver = driverWith();

    const uploaded = await driver.upload(src, "out/job_2/large.bin", { contentType: "application/octet-stream" });
    expect(uploaded.bytes).toBe(content.length);

    // s3rver gives multipart objects a plain MD5 ETag (S3 appends "-<parts>"), so check the requests.
    const requests = s3.requests.filter((request) => request.includes("/out/job_2/large.bin"));
    expect(requests.filter((request) => /^POST .*\?uploads/.test(request))).toHaveLength(1);
    expect(requests.filter((request) => /^PUT .*partNumber=/.test(request))).toHaveLength(3);
    expect(requests.filter((request) => /^POST .*uploadId=/.test(request))).toHaveLength(1);

    const dest = path.join(dir, "large.out");
    expect(await driver.download("out/job_2/large.bin", dest)).toEqual({ bytes: content.length });
    expect((await readFile(dest)).equals(content)).toBe(true);
  });

  it("refuses a download larger than maxBytes", async () => {
    const src = path.join(dir, "limit.bin");
    await writeFile(src, randomBytes(10_000));
    const driver = driverWith();
    await driver.upload(src, "limit.bin");
    await expect(driver.download("limit.bin", path.join(dir, "limit.out"), { maxBytes: 9_999 })).rejects.toThrow(
      ObjectTooLargeError,
    );
  });

  it("gives s3:// URLs without a leading slash in the key", () => {
    expect(driverWith().urlFor("/a//b/c.mp4")).toBe(`s3://${BUCKET}/a/b/c.mp4`);
  });

  describe("SSRF guard", () => {
    const refusal = "refused: 127.0.0.1 resolves to a private or reserved address; allow it with RENDITION_NETWORK_ALLOW";

    it("refuses a loopback endpoint by default, for read and write probes, without sending it anything", async () => {
      const before = s3.requests.length;
      const viaFactory = createStorageDriver({
        provider: "s3",
        s3: { bucket: BUCKET, region: "us-east-1", endpoint: s3.endpoint, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      });
      try {
        const read = viaFactory.probe("", { read: true, write: false });
        await expect(read).rejects.toThrow(OriginProbeError);
        await expect(read).rejects.toThrow(refusal);
      } finally {
        viaFactory.destroy?.();
      }
      const driver = driverWith({}, {});
      await expect(driver.probe("", { read: false, write: true })).rejects.toThrow(refusal);
      // A host name that resolves to loopback is refused the same way.
      const byName = driverWith({ endpoint: s3.endpoint.replace("127.0.0.1", "localhost") }, {});
      await expect(byName.probe("", { read: true, write: false })).rejects.toThrow(
        /^refused: localhost resolves to a private or reserved address; allow it with RENDITION_NETWORK_ALLOW$/,
      );
      expect(s3.requests.length).toBe(before);
    });

    it("also guards transfers, uploads with Expect: 100-continue included", async () => {
      // A 3 MiB file is one PutObject (below lib-storage's 5 MiB part size) whose body is over
      // 2 MiB, so the SDK sends "Expect: 100-continue", for which @smithy/node-http-handler would
      // build a fresh, unguarded Agent were the driver's Agents not instances of its own.
      const size = 3 * 1024 * 1024;
      const src = path.join(dir, "guarded.bin");
      await writeFile(src, randomBytes(size));
      const before = s3.requests.length;
      for (const endpoint of [s3.endpoint, s3.endpoint.replace("127.0.0.1", "localhost")]) {
        const driver = driverWith({ endpoint }, {});
        await expect(driver.upload(src, "guarded/large.bin")).rejects.toThrow(BlockedDestinationError);
        await expect(driver.download("limit.bin", path.join(dir, "guarded.out"))).rejects.toThrow(BlockedDestinationError);
      }
      expect(s3.requests.length).toBe(before);
      // The same upload with loopback allowed goes through.
      await expect(driverWith().upload(src, "guarded/large.bin")).resolves.toMatchObject({ bytes: size });
      expect(s3.requests.slice(before)).toEqual([expect.stringMatching(/^PUT \/rendition-test\/guarded\/large\.bin/)]);
    });

    it("refuses the metadata address as an endpoint", async () => {
      const driver = driverWith({ endpoint: "http://169.254.169.254" }, {});
      await expect(driver.probe("", { read: true, write: false })).rejects.toThrow(
        "refused: 169.254.169.254 resolves to a private or reserved address; allow it with RENDITION_NETWORK_ALLOW",
      );
    });
  });
});
