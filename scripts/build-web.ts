/**
 * Builds the web dashboard (web/ → web/dist) with Vite, and with --if-stale only when web/dist is
 * missing or was built from other sources: `npm start` runs it first, so `npm ci && npm start`
 * serves the dashboard with no extra command, and a restart costs one hash of the sources
 * (~50 ms) rather than a build. The hash covers web/ (but dist), gen/ (the bundle carries the
 * generated clients) and package-lock.json (library versions), and is kept in web/dist/.source-hash.
 *
 * Without Vite (an install with --omit=dev) --if-stale warns and exits 0: the API still starts,
 * and `/` says how to build the dashboard.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const WEB_DIST = path.join(ROOT, "web", "dist");
const HASH_FILE = path.join(WEB_DIST, ".source-hash");

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) return full === WEB_DIST || e.name === "node_modules" ? [] : files(full);
      return e.isFile() ? [full] : [];
    })
    .sort();
}

/** A hash of everything the bundle is built from. */
export function sourceHash(): string {
  const hash = createHash("sha256");
  for (const file of [...files(path.join(ROOT, "web")), ...files(path.join(ROOT, "gen")), path.join(ROOT, "package-lock.json")]) {
    if (!existsSync(file)) continue;
    hash.update(path.relative(ROOT, file)).update("\0").update(readFileSync(file)).update("\0");
  }
  return hash.digest("hex");
}

/** Whether web/dist was built from the current sources. */
export function webBuildIsCurrent(): boolean {
  try {
    return existsSync(path.join(WEB_DIST, "index.html")) && statSync(HASH_FILE).isFile() && readFileSync(HASH_FILE, "utf8").trim() === sourceHash();
  } catch {
    return false;
  }
}

/** Builds web/dist (always, or with `ifStale` only when it is not current). Returns whether it built. */
export async function buildWeb(options: { ifStale?: boolean } = {}): Promise<boolean> {
  if (options.ifStale && webBuildIsCurrent()) return false;
  const hash = sourceHash();
  const { build } = await import("vite");
  await build({ configFile: path.join(ROOT, "web", "vite.config.ts"), logLevel: "warn" });
  writeFileSync(HASH_FILE, `${hash}\n`);
  return true;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const ifStale = process.argv.includes("--if-stale");
  const started = Date.now();
  buildWeb({ ifStale }).then(
    (built) => {
      if (built) console.error(`web dashboard built into web/dist in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    },
    (err: unknown) => {
      const missing = (err as NodeJS.ErrnoException).code === "ERR_MODULE_NOT_FOUND";
      if (ifStale) {
        // The API matters more than its dashboard: start anyway.
        console.error(missing ? "warning: vite is not installed (npm ci without --omit=dev), so the web dashboard was not built" : "warning: the web dashboard failed to build:", missing ? "" : err);
        return;
      }
      console.error(err);
      process.exitCode = 1;
    },
  );
}
