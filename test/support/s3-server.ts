import { createHash, createHmac } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import S3rver from "s3rver";

export interface S3TestServer {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** "METHOD /path?query" of every request so far, to assert which S3 operations ran. */
  requests: string[];
  createBucket(name: string): Promise<void>;
  /** An SDK client for the test's own reads and writes (the server's account, path-style). */
  admin: S3Client;
  close(): Promise<void>;
}

// s3rver's built-in account (lib/models/account.js).
const ACCESS_KEY_ID = "S3RVER";
const SECRET_ACCESS_KEY = "S3RVER";

/**
 * A real S3-compatible server (s3rver) on 127.0.0.1, a random port and its own temp directory.
 *
 * s3rver 3.7.1 checks that the access key ID exists but never verifies SigV4 signatures
 * ("Signature version 4 calculation is unimplemented" in lib/middleware/authentication.js;
 * its `allowMismatchedSignatures` option only concerns SigV2, which AWS SDK v3 never uses).
 * So a wrong secret key would pass. The request listener below verifies SigV4 header
 * signatures first and answers SignatureDoesNotMatch as S3 does; everything else is s3rver.
 */
export async function startS3Server(): Promise<S3TestServer> {
  const directory = await mkdtemp(path.join(tmpdir(), "rendition-s3rver-"));
  const s3rver = new S3rver({ directory, silent: true });
  const handleS3 = s3rver.callback() as http.RequestListener;
  const secrets = new Map([[ACCESS_KEY_ID, SECRET_ACCESS_KEY]]);

  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    if (hasValidSignatureOrNone(req, secrets)) {
      // s3rver 3.7.1 has no AbortMultipartUpload (DELETE ?uploadId= answers MethodNotAllowed):
      // answer it as S3 does, 204 No Content. The request is in `requests` for assertions.
      if (req.method === "DELETE" && /[?&]uploadId=/.test(req.url ?? "")) return void res.writeHead(204).end();
      return handleS3(req, res);
    }
    const body =
      '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SignatureDoesNotMatch</Code>' +
      "<Message>The request signature we calculated does not match the signature you provided. " +
      "Check your key and signing method.</Message></Error>";
    res.writeHead(403, { "content-type": "application/xml" }).end(req.method === "HEAD" ? undefined : body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject).listen(0, "127.0.0.1", resolve);
  });
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const admin = new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET_ACCESS_KEY },
  });

  return {
    endpoint,
    accessKeyId: ACCESS_KEY_ID,
    secretAccessKey: SECRET_ACCESS_KEY,
    requests,
    admin,
    async createBucket(name) {
      await admin.send(new CreateBucketCommand({ Bucket: name }));
    },
    async close() {
      admin.destroy();
      server.closeAllConnections(); // keep-alive sockets of the SDK clients would hold close() open
      await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
      s3rver.logger.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

/**
 * Checks an `Authorization: AWS4-HMAC-SHA256 ...` header the way S3 does (canonical request →
 * string to sign → HMAC chain). Unknown access keys and other auth styles are left to s3rver.
 * The payload hash is taken from x-amz-content-sha256 as signed, not recomputed from the body.
 */
function hasValidSignatureOrNone(req: http.IncomingMessage, secrets: Map<string, string>): boolean {
  const match = /^AWS4-HMAC-SHA256 Credential=([^,]+),\s*SignedHeaders=([^,]+),\s*Signature=([0-9a-f]+)$/.exec(
    req.headers.authorization ?? "",
  );
  if (!match) return true;
  const [, credential, signedHeaders, signature] = match as unknown as [string, string, string, string];
  const [accessKeyId, date, region, service] = credential.split("/") as [string, string, string, string];
  const secret = secrets.get(accessKeyId);
  if (secret === undefined) return true; // s3rver answers InvalidAccessKeyId itself

  const url = req.url ?? "/";
  const queryStart = url.indexOf("?");
  // S3 signs the path exactly as sent (no second round of URI encoding, unlike other services).
  const canonicalPath = queryStart === -1 ? url : url.slice(0, queryStart);
  const canonicalQuery = (queryStart === -1 ? "" : url.slice(queryStart + 1))
    .split("&")
    .filter(Boolean)
    .map((pair) => {
      const eq = pair.includes("=") ? pair.indexOf("=") : pair.length;
      const decode = (part: string) => rfc3986(decodeURIComponent(part));
      return [decode(pair.slice(0, eq)), decode(pair.slice(eq + 1))] as const;
    })
    .sort(([ka, va], [kb, vb]) => (ka === kb ? (va < vb ? -1 : 1) : ka < kb ? -1 : 1))
    .map(([key, value]) => `${key}=${value}`)
    .join("&");
  const headerNames = signedHeaders.split(";");
  const canonicalHeaders = headerNames
    .map((name) => `${name}:${String(req.headers[name] ?? "").trim().replace(/\s+/g, " ")}\n`)
    .join("");
  const canonicalRequest = [
    req.method,
    canonicalPath,
    canonicalQuery,
    canonicalHeaders,
    signedHeaders,
    req.headers["x-amz-content-sha256"] ?? "UNSIGNED-PAYLOAD",
  ].join("\n");

  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = [
    "AWS4-HMAC-SHA256",
    req.headers["x-amz-date"],
    scope,
    createHash("sha256").update(canonicalRequest).digest("hex"),
  ].join("\n");
  const hmac = (key: string | Buffer, data: string) => createHmac("sha256", key).update(data).digest();
  const signingKey = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), "aws4_request");
  return createHmac("sha256", signingKey).update(stringToSign).digest("hex") === signature;
}

/** encodeURIComponent plus the characters SigV4 also requires escaped. */
function rfc3986(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
