/** The dashboard's RPC clients (Connect over fetch, JSON) and the signed-in session. */
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { JobService } from "../../gen/rendition/v1/job_pb.js";
import { OriginService } from "../../gen/rendition/v1/origin_pb.js";
import { PresetService } from "../../gen/rendition/v1/preset_pb.js";
import { UploadService } from "../../gen/rendition/v1/upload_pb.js";

export interface Session {
  apiKey: string;
  organizationId: string;
}

/** sessionStorage: the key lives as long as the tab, never in a cookie the browser sends by itself. */
const SESSION_KEY = "rendition.session";

export function loadSession(): Session | undefined {
  try {
    const raw = sessionStorage.getItem(SESSION_KEY);
    const parsed = raw ? (JSON.parse(raw) as Partial<Session>) : undefined;
    return parsed?.apiKey && parsed.organizationId ? { apiKey: parsed.apiKey, organizationId: parsed.organizationId } : undefined;
  } catch {
    return undefined;
  }
}

export function saveSession(session: Session): void {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

export function clearSession(): void {
  sessionStorage.removeItem(SESSION_KEY);
}

/** The API's base URL: the folder the dashboard was loaded from (the API serves it at its root). */
export function apiBase(): string {
  return new URL(".", location.href).href.replace(/\/$/, "");
}

export interface Api {
  jobs: Client<typeof JobService>;
  origins: Client<typeof OriginService>;
  presets: Client<typeof PresetService>;
  uploads: Client<typeof UploadService>;
}

export function createApi(session: Session, onUnauthenticated: () => void): Api {
  const auth: Interceptor = (next) => async (req) => {
    req.header.set("authorization", `Bearer ${session.apiKey}`);
    req.header.set("x-organization-id", session.organizationId);
    try {
      return await next(req);
    } catch (err) {
      if (ConnectError.from(err).code === Code.Unauthenticated) onUnauthenticated();
      throw err;
    }
  };
  const transport = createConnectTransport({ baseUrl: apiBase(), interceptors: [auth] });
  return {
    jobs: createClient(JobService, transport),
    origins: createClient(OriginService, transport),
    presets: createClient(PresetService, transport),
    uploads: createClient(UploadService, transport),
  };
}

/** An RPC error as lines to show: "invalid_argument: …" and one line per field violation. */
export function describeError(err: unknown): string[] {
  if (err instanceof DOMException && err.name === "AbortError") return [];
  const e = ConnectError.from(err);
  const code = Code[e.code]?.replace(/[A-Z]/g, (c, i: number) => (i ? "_" : "") + c.toLowerCase()) ?? "unknown";
  const lines = [`${code}: ${e.rawMessage}`];
  for (const details of e.findDetails(ViolationsSchema)) {
    for (const v of details.violations) {
      const path = (v.field?.elements ?? []).map((el) => el.fieldName + (el.subscript.case === "index" ? `[${el.subscript.value}]` : "")).join(".");
      lines.push(`${path || "request"}: ${v.message}`);
    }
  }
  return lines;
}

export function isAbort(err: unknown): boolean {
  return (err instanceof DOMException && err.name === "AbortError") || ConnectError.from(err).code === Code.Canceled;
}
