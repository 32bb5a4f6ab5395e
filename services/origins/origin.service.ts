import { mkdir, realpath } from "node:fs/promises";
import { isAbsolute, join, relative, resolve } from "node:path";
import { addViolations, echo, FailedPreconditionError, InvalidArgumentError, NotFoundError, type FieldViolation } from "../common/errors.js";
import { newId } from "../common/ids.js";
import { paginate, type PageRequest } from "../common/pagination.js";
import { checkPathTemplate } from "../jobs/path-template.js";
import { OriginProbeError, type OriginConfig, type OriginPermissions } from "../storage/storage-driver.js";
import type { CredentialCipher } from "./credential-cipher.js";
import type { OriginRepository } from "./origin.repository.js";
import type {
  CreateOriginInput,
  OriginLocation,
  OriginRecord,
  OriginSecrets,
  Permission,
  UpdateOriginInput,
} from "./origin.types.js";

/** The violation requireAllForJob reports for an origin id this organization does not have. */
export const ORIGIN_NOT_FOUND = "origin.not_found";

/** Runs a real probe against storage; injected so the domain stays free of SDKs. */
export type ProbeOrigin = (config: OriginConfig, basePath: string, permissions: OriginPermissions) => Promise<void>;

export interface OriginPolicy {
  allowLocalOrigins: boolean;
  /**
   * Local origins created through the API must live under `<root>/<organization id>` for one of
   * these roots, so no organization can reach another's files. (The first-start origin of the
   * default organization is the root itself.)
   */
  localOriginRoots: string[];
}

export class OriginManager {
  constructor(
    private readonly repo: OriginRepository,
    private readonly cipher: CredentialCipher,
    private readonly probe: ProbeOrigin,
    private readonly policy: OriginPolicy,
  ) {}

  /** The same manager over another repository, e.g. one bound to a transaction. */
  withRepository(repo: OriginRepository): OriginManager {
    return new OriginManager(repo, this.cipher, this.probe, this.policy);
  }

  /**
   * Creates an origin after a real probe. `knownViolations` are what the validation interceptor
   * found in the request; they are reported together with these checks in one answer.
   */
  async create(
    organizationId: string,
    input: CreateOriginInput,
    options: { trusted?: boolean; knownViolations?: FieldViolation[] } = {},
  ): Promise<OriginRecord> {
    const violations = addViolations([...(options.knownViolations ?? [])], this.checkCreate(input, options.trusted ?? false));
    let localDir: string | undefined;
    if (input.local && violations.length === 0) {
      const checked = options.trusted ? { dir: resolve(input.local.rootDir) } : await this.checkLocalDir(organizationId, input.local.rootDir);
      if ("field" in checked) violations.push(checked);
      else localDir = checked.dir;
    }
    if (violations.length || !(input.s3 || input.http || localDir)) {
      throw new InvalidArgumentError(violations.length ? violations : [{ field: "", rule: "message.oneof", message: "one of s3, http, local must be set" }]);
    }

    const location: OriginLocation = {};
    const secrets: OriginSecrets = {};
    let provider: OriginRecord["provider"];
    if (input.s3) {
      provider = "s3";
      location.s3 = {
        bucket: input.s3.bucket,
        region: input.s3.region || "us-east-1",
        endpoint: input.s3.endpoint,
        // Self-hosted S3-compatible services rarely support virtual-host buckets.
        forcePathStyle: input.s3.forcePathStyle || Boolean(input.s3.endpoint),
      };
      secrets.s3 = input.s3Credentials;
    } else if (input.http) {
      provider = "http";
      location.http = { baseUrl: input.http.baseUrl, headerNames: Object.keys(input.httpHeaders).sort() };
      if (Object.keys(input.httpHeaders).length) secrets.httpHeaders = input.httpHeaders;
    } else {
      provider = "local";
      location.local = { rootDir: localDir! };
    }

    const now = new Date();
    const record: OriginRecord = {
      id: newId("ori"),
      organizationId,
      name: input.name,
      description: input.description,
      provider,
      canRead: input.permissions.includes("read"),
      canWrite: input.permissions.includes("write"),
      status: "active",
      basePath: normalizeBasePath(input.basePath),
      pathTemplate: input.pathTemplate,
      location,
      credentials: Object.keys(secrets).length ? this.cipher.encrypt(secrets) : null,
      lastValidatedAt: now,
      validationError: "",
      archivedAt: null,
      createdAt: now,
      updatedAt: now,
    };
    const probeError = await this.runProbe(record);
    if (probeError) {
      throw new InvalidArgumentError([{ field: provider, rule: "origin.probe_failed", message: probeError }]);
    }
    await this.repo.insert(record);
    return record;
  }

  async get(organizationId: string, id: string): Promise<OriginRecord> {
    const origin = await this.repo.get(organizationId, id);
    if (!origin) throw new NotFoundError(`origin ${echo(id)} not found`);
    return origin;
  }

  async list(organizationId: string, page: PageRequest, includeArchived: boolean) {
    const { rows, total } = await this.repo.list(organizationId, page, includeArchived);
    return { ...paginate(rows, page.limit), total };
  }

  async update(organizationId: string, id: string, input: UpdateOriginInput): Promise<OriginRecord> {
    const origin = await this.get(organizationId, id);
    if (origin.status === "archived") throw new FailedPreconditionError(`origin ${id} is archived`);
    const violations = input.pathTemplate ? checkPathTemplate(input.pathTemplate, "path_template") : [];
    if (input.s3Credentials && origin.provider !== "s3") {
      violations.push({ field: "s3_credentials", rule: "origin.provider_mismatch", message: `is only for s3 origins, this one is ${origin.provider}` });
    }
    if (violations.length) throw new InvalidArgumentError(violations);

    let credentials: string | undefined;
    if (input.s3Credentials) {
      const secrets: OriginSecrets = { ...this.secretsOf(origin), s3: input.s3Credentials };
      credentials = this.cipher.encrypt(secrets);
      const probeError = await this.runProbe({ ...origin, credentials });
      if (probeError) throw new InvalidArgumentError([{ field: "s3_credentials", rule: "origin.probe_failed", message: probeError }]);
    }
    const updated = await this.repo.update(
      organizationId,
      id,
      {
        name: input.name,
        description: input.description,
        pathTemplate: input.pathTemplate,
        credentials,
        ...(credentials ? { status: "active", lastValidatedAt: new Date(), validationError: "" } : {}),
      },
      { unlessArchived: true },
    );
    if (!updated) throw new FailedPreconditionError(`origin ${id} was archived during the update`);
    return updated;
  }

  /** Archives: jobs already created keep their snapshot of the origin, new jobs cannot use it. */
  async archive(organizationId: string, id: string): Promise<OriginRecord> {
    const origin = await this.get(organizationId, id);
    if (origin.status === "archived") return origin;
    return (await this.repo.update(organizationId, id, { status: "archived", archivedAt: new Date() }))!;
  }

  async validate(organizationId: string, id: string): Promise<{ origin: OriginRecord; error: string }> {
    const origin = await this.get(organizationId, id);
    if (origin.status === "archived") throw new FailedPreconditionError(`origin ${id} is archived`);
    const error = await this.runProbe(origin);
    const updated = await this.repo.update(
      organizationId,
      id,
      { status: error ? "failed" : "active", lastValidatedAt: new Date(), validationError: error ?? "" },
      { unlessArchived: true },
    );
    if (!updated) throw new FailedPreconditionError(`origin ${id} was archived during validation`);
    return { origin: updated, error: error ?? "" };
  }

  /**
   * The origin a job will use, checked for the permission it needs. Another organization's origin
   * is NOT_FOUND; a usable-looking origin without the permission is a field violation.
   */
  async requireForJob(organizationId: string, id: string, need: Permission, field: string): Promise<OriginRecord | FieldViolation> {
    const [result] = await this.requireAllForJob(organizationId, [{ id, need, field }]);
    if ("rule" in result! && result.rule === ORIGIN_NOT_FOUND) throw new NotFoundError(result.message);
    return result!;
  }

  /**
   * requireForJob for each use, in order, reading each distinct origin once: a job that reads
   * and writes the same origin costs one lookup. An unknown origin is an `origin.not_found`
   * violation here, so the caller can report it with the request's other violations.
   */
  async requireAllForJob(organizationId: string, uses: Array<{ id: string; need: Permission; field: string }>): Promise<Array<OriginRecord | FieldViolation>> {
    const read = new Map<string, OriginRecord>();
    const results: Array<OriginRecord | FieldViolation> = [];
    for (const { id, need, field } of uses) {
      let origin = read.get(id);
      if (!origin) {
        origin = await this.repo.get(organizationId, id);
        if (!origin) {
          results.push({ field, rule: ORIGIN_NOT_FOUND, message: `origin ${echo(id)} not found` });
          continue;
        }
        read.set(id, origin);
      }
      results.push(this.checkForJob(origin, need, field));
    }
    return results;
  }

  private checkForJob(origin: OriginRecord, need: Permission, field: string): OriginRecord | FieldViolation {
    const id = origin.id;
    if (origin.status === "archived") return { field, rule: "origin.archived", message: `origin ${id} is archived` };
    const allowed = need === "read" ? origin.canRead : origin.canWrite;
    if (!allowed) return { field, rule: `origin.${need}_permission`, message: `origin ${id} has no ${need} permission` };
    return origin;
  }

  /** Driver configuration with decrypted secrets, for storage access. */
  configOf(origin: OriginRecord): OriginConfig {
    const secrets = this.secretsOf(origin);
    switch (origin.provider) {
      case "s3": {
        const s3 = origin.location.s3!;
        return {
          provider: "s3",
          s3: { ...s3, endpoint: s3.endpoint || undefined, accessKeyId: secrets.s3?.accessKeyId ?? "", secretAccessKey: secrets.s3?.secretAccessKey ?? "" },
        };
      }
      case "http":
        return { provider: "http", http: { baseUrl: origin.location.http!.baseUrl, headers: secrets.httpHeaders } };
      case "local":
        return { provider: "local", local: { rootDir: origin.location.local!.rootDir } };
    }
  }

  private secretsOf(origin: OriginRecord): OriginSecrets {
    if (!origin.credentials) return {};
    try {
      return this.cipher.decrypt(origin.credentials) as OriginSecrets;
    } catch (err) {
      throw new FailedPreconditionError(
        `the credentials of origin ${origin.id} cannot be decrypted with this server's key: every API and worker process must share RENDITION_ENCRYPTION_KEY`,
        { cause: err },
      );
    }
  }

  /** The probe's readable failure, or undefined when the origin works. */
  private async runProbe(origin: OriginRecord): Promise<string | undefined> {
    try {
      await this.probe(this.configOf(origin), origin.basePath, { read: origin.canRead, write: origin.canWrite });
      return undefined;
    } catch (err) {
      if (err instanceof OriginProbeError) return err.message;
      throw err;
    }
  }

  /**
   * A local directory is allowed when, symlinks resolved, it lies inside this organization's own
   * area `<root>/<organization id>` of an allowed root. The area is created on first use.
   */
  private async checkLocalDir(organizationId: string, rootDir: string): Promise<{ dir: string } | FieldViolation> {
    const field = "local.root_dir";
    const areas = this.policy.localOriginRoots.map((root) => join(resolve(root), organizationId));
    const area = areas.find((a) => isInside(a, resolve(rootDir)));
    if (!area) {
      return { field, rule: "origin.local_root_outside", message: `must be inside this organization's directory: ${areas.join(" or ")}` };
    }
    await mkdir(area, { recursive: true });
    const dir = await realpath(resolve(rootDir)).catch(() => undefined);
    if (!dir) return { field, rule: "origin.local_root_missing", message: `${rootDir} does not exist` };
    if (!isInside(await realpath(area), dir)) {
      return { field, rule: "origin.local_root_outside", message: `resolves (through a symbolic link) to ${dir}, outside ${area}` };
    }
    return { dir };
  }

  /** `trusted`: the server's own first-start origin, exempt from the rules for callers' local origins. */
  private checkCreate(input: CreateOriginInput, trusted: boolean): FieldViolation[] {
    const violations: FieldViolation[] = [];
    if (input.pathTemplate) violations.push(...checkPathTemplate(input.pathTemplate, "path_template"));
    if (input.basePath.split("/").includes("..")) {
      violations.push({ field: "base_path", rule: "origin.base_path_relative", message: "must not contain '..' segments" });
    }
    if (input.s3 && !input.s3Credentials) {
      violations.push({ field: "s3_credentials", rule: "origin.s3_credentials_required", message: "is required for s3 origins" });
    }
    if (input.http && input.permissions.includes("write")) {
      violations.push({ field: "permissions", rule: "origin.http_read_only", message: "http origins are read-only: use ORIGIN_PERMISSION_READ only" });
    }
    if (!input.http && Object.keys(input.httpHeaders).length) {
      violations.push({ field: "http_headers", rule: "origin.provider_mismatch", message: "is only for http origins" });
    }
    if (input.local && !trusted && !this.policy.allowLocalOrigins) {
      violations.push({ field: "local", rule: "origin.local_disabled", message: "local origins are disabled on this server (RENDITION_ALLOW_LOCAL_ORIGINS)" });
    } else if (input.local && !isAbsolute(input.local.rootDir)) {
      violations.push({ field: "local.root_dir", rule: "origin.local_root_absolute", message: "must be an absolute path" });
    }
    return violations;
  }
}

function isInside(root: string, dir: string): boolean {
  if (!isAbsolute(dir)) return false;
  const rel = relative(resolve(root), resolve(dir));
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

function normalizeBasePath(path: string): string {
  return path.split("/").filter(Boolean).join("/");
}
