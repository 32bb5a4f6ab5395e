/**
 * The baseline of `npm run bench:api` (bench/api.ts starts it as a child process): a bare
 * connect-node server for JobService with the API's JSON options and request size limit, whose
 * Get and Create answer, at once, the job the real API answered for Get (read once at start from
 * the file named by argv[2], as JSON). No auth, no validation, no database: what is left is
 * HTTP/1.1, Connect's routing and JSON (request parsing, the same response serialised).
 */
import http from "node:http";
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { fromJson } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { JobService, JobServiceGetResponseSchema } from "../gen/rendition/v1/job_pb.js";
import { API_JSON } from "../services/common/api-json.js";

// The same as services/api/server.ts.
const jsonOptions = API_JSON;
const { job } = fromJson(JobServiceGetResponseSchema, JSON.parse(readFileSync(process.argv[2]!, "utf8")), jsonOptions);

const handler = connectNodeAdapter({
  routes: (router) => router.service(JobService, { get: () => ({ job }), create: () => ({ job }) }),
  jsonOptions,
  readMaxBytes: 1024 * 1024,
});
const server = http.createServer({ keepAliveTimeout: 65_000, headersTimeout: 66_000 }, handler);
server.listen(0, "127.0.0.1", () => console.log(`bare connect-node server listening on 127.0.0.1:${(server.address() as AddressInfo).port}`));
process.on("SIGTERM", () => process.exit(0));
