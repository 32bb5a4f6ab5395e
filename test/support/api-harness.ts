import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { createApiServer, type ApiServer } from "../../services/api/server.js";
import { checkDatabase, createApp, type App } from "../../services/app.js";
import { bootstrapIfEmpty, type Credentials } from "../../services/bootstrap.js";
import { loadConfig, type Config } from "../../services/config.js";
import { openMessaging, startRelay, startWebhookDispatcher, startWorker } from "../../services/runtime.js";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { OutputType, Resolution, VideoCodec } from "../../gen/rendition/v1/common_pb.js";
import { JobService, JobServiceCreateRequestSchema, type JobServiceCreateRequest } from "../../gen/rendition/v1/job_pb.js";
import { OriginService } from "../../gen/rendition/v1/origin_pb.js";
import { PresetService } from "../../gen/rendition/v1/preset_pb.js";

export interface TestApi {
  app: App;
  config: Config;
  server: ApiServer;
  baseUrl: string;
  port: number;
  /** The bootstrap organization, key and local origin. */
  credentials: Credentials;
  /** Connect (HTTP/1.1, JSON) client authenticated as `auth` (default: the bootstrap credentials). */
  client<S extends DescService>(service: S, auth?: { apiKey: string; organizationId: string }, transport?: Transport): Client<S>;
  jobs: Client<typeof JobService>;
  origins: Client<typeof OriginService>;
  presets: Client<typeof PresetService>;
  close(): Promise<void>;
}

export function authHeaders(auth: { apiKey: string; organizationId: string }): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${auth.apiKey}`);
    req.header.set("x-organization-id", auth.organizationId);
    return next(req);
  };
}

/**
 * The real API on a real HTTP server (port 0) over `databaseUrl` (PostgreSQL) or, when
 * undefined, an in-memory PGlite; data directory and local storage in a temp dir.
 * The test storage servers (s3rver, HTTP) listen on loopback, so RENDITION_NETWORK_ALLOW allows
 * it by default; tests of the SSRF guard pass `RENDITION_NETWORK_ALLOW: ""`.
 */
export async function startTestApi(
  databaseUrl: string | undefined,
  env: Record<string, string> = {},
  options: {
    worker?: boolean;
    /** The queue and event bus (NATS when NATS_URL is set) without a worker; implied by `worker`. */
    messaging?: boolean;
    log?: (msg: string, err?: unknown) => void;
  } = {},
): Promise<TestApi> {
  const dataDir = mkdtempSync(join(tmpdir(), "rendition-test-"));
  mkdirSync(join(dataDir, "storage"), { recursive: true });
  const config = loadConfig({
    RENDITION_DATA_DIR: dataDir,
    RENDITION_ALLOW_LOCAL_ORIGINS: "true",
    RENDITION_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString("base64"),
    RENDITION_SHUTDOWN_TIMEOUT_MS: "2000",
    RENDITION_NETWORK_ALLOW: "127.0.0.1/32,::1/128",
    // Tests fire calls far faster than any client should: only the tests of the limit turn it on.
    RENDITION_RATE_LIMIT_RPS: "0",
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    ...env,
  });
  const log = options.log ?? (() => {});
  // With a worker: the whole pipeline in this process (relay, queue, encoder), as `npm start` runs it.
  const messaging = options.worker || options.messaging ? await openMessaging(config, "test", log) : undefined;
  const app = await createApp(config, log, messaging?.events);
  const credentials = (await bootstrapIfEmpty(app, config))!;
  const relay = messaging && (await startRelay(app, messaging, config, log));
  const worker = messaging && options.worker ? (await startWorker(app, messaging, config, log)).worker : undefined;
  const dispatcher = startWebhookDispatcher(app, config, log, relay);
  const server = createApiServer({
    ...app,
    keys: app.auth,
    watch: { heartbeatMs: config.watchHeartbeatMs, pollMs: config.watchPollMs, progressDebounceMs: 200 },
    checkDatabase: () => checkDatabase(app.database),
    log: (msg, err) => console.error(msg, err),
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    rateLimit: config.limits,
  });
  const port = await server.listen(0, "127.0.0.1");
  const baseUrl = `http://127.0.0.1:${port}`;
  const defaultAuth = { apiKey: credentials.api_key, organizationId: credentials.organization_id };
  const client = <S extends DescService>(service: S, auth = defaultAuth, transport?: Transport) =>
    createClient(service, transport ?? createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false, interceptors: [authHeaders(auth)] }));
  return {
    app,
    config,
    server,
    baseUrl,
    port,
    credentials,
    client,
    jobs: client(JobService),
    origins: client(OriginService),
    presets: client(PresetService),
    async close() {
      await server.close();
      await worker?.stop();
      await relay?.stop();
      await dispatcher.stop();
      await messaging?.close();
      await app.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export type JobRequestInit = Partial<Omit<MessageInitShape<typeof JobServiceCreateRequestSchema>, "$typeName">>;

/** A valid Create request on the bootstrap local origin (in and out): one 720p H.264 mp4, plus `overrides`. */
export function localJobRequest(api: Pick<TestApi, "credentials">, overrides: JobRequestInit = {}): JobServiceCreateRequest {
  return create(JobServiceCreateRequestSchema, {
    inputOriginId: api.credentials.local_origin_id,
    inputPath: "uploads/in.mp4",
    outputOriginId: api.credentials.local_origin_id,
    outputs: [{ type: OutputType.MP4, video: [{ codec: VideoCodec.H264, resolution: Resolution.RESOLUTION_720P }] }],
    ...overrides,
  });
}
