import http from "node:http";
import type http2 from "node:http2";
import type net from "node:net";
import { scrape } from "./metrics.js";

type Response = http.ServerResponse | http2.Http2ServerResponse;

/** Answers GET /metrics with the Prometheus text exposition of this process's registry. */
export async function serveMetrics(res: Response, log: (msg: string, err?: unknown) => void): Promise<void> {
  try {
    const { contentType, body } = await scrape();
    res.writeHead(200, { "content-type": contentType, "cache-control": "no-store" });
    res.end(body);
  } catch (err) {
    log("metrics: scrape failed", err);
    res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
    res.end("metrics unavailable\n");
  }
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * A worker-only process's own /metrics (RENDITION_METRICS_PORT), plus /healthz for a liveness
 * probe; everything else is 404.
 */
export function startMetricsServer(port: number, host: string, log: (msg: string, err?: unknown) => void): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (req.method === "GET" && path === "/metrics") return void serveMetrics(res, log);
    if (req.method === "GET" && path === "/healthz") {
      res.writeHead(200, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ status: "ok" }));
    }
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
    res.end("not found: this port serves GET /metrics and GET /healthz\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve({
        port: (server.address() as net.AddressInfo).port,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      });
    });
  });
}
