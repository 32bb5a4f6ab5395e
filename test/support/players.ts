/**
 * Real-browser playback of HLS and DASH outputs: a static file server, headless Chromium (Debian's
 * /usr/bin/chromium through playwright-core) and a page that plays a manifest with hls.js, dash.js
 * or Shaka Player and reports what it saw.
 *
 *   const server = await serveDirectory(dir);
 *   const browser = await launchPlayerBrowser();
 *   const result = await playStream(browser, { player: "hls.js", manifestUrl: `${server.url}/master.m3u8` });
 *   expect(result).toMatchObject({ ended: true, errors: [] });
 *   await browser.close(); await server.close();
 *
 * The page (./player-page.html) and the players' own dist builds are served by serveDirectory under
 * /__players/. By default the page is opened on the manifest's origin, so the manifest must be
 * served by serveDirectory too; with `pageUrl` (a serveDirectory server's URL) the manifest may
 * live anywhere else, e.g. on an S3 server, which must then answer CORS for the page's origin:
 *
 *   const pages = await serveDirectory(emptyDir);
 *   await playStream(browser, { player: "hls.js", pageUrl: pages.url, manifestUrl: "http://127.0.0.1:9000/bucket/out/master.m3u8" });
 *
 * One page per playStream call; calls on one browser should run one after the other
 * (a muted video in a background tab may be throttled by Chromium).
 */
import { createReadStream, existsSync } from "node:fs";
import { mkdtemp, realpath, rm, stat } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type BrowserContext } from "playwright-core";

// ---------------------------------------------------------------------------------------------
// Static server
// ---------------------------------------------------------------------------------------------

export interface StaticServer {
  /** http://127.0.0.1:PORT (no trailing slash). */
  url: string;
  /** Every request so far, in arrival order (path without the query, and the status answered). */
  readonly requests: ReadonlyArray<{ method: string; path: string; status: number; range?: string }>;
  close(): Promise<void>;
}

/** URL prefix under which every server also serves the player page and libraries. */
export const PLAYERS_PREFIX = "/__players/";
const PAGE_FILE = fileURLToPath(new URL("./player-page.html", import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  ".m3u8": "application/vnd.apple.mpegurl",
  ".mpd": "application/dash+xml",
  ".m4s": "video/mp4",
  ".mp4": "video/mp4",
  ".m4v": "video/mp4",
  ".m4a": "audio/mp4",
  ".cmfv": "video/mp4",
  ".cmfa": "audio/mp4",
  ".ts": "video/mp2t",
  ".aac": "audio/aac",
  ".webm": "video/webm",
  ".vtt": "text/vtt; charset=utf-8",
  ".ttml": "application/ttml+xml",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".map": "application/json",
  ".json": "application/json",
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".xml": "application/xml",
  ".txt": "text/plain; charset=utf-8",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".png": "image/png",
  ".webp": "image/webp",
  ".gif": "image/gif",
  ".svg": "image/svg+xml",
  ".avif": "image/avif",
};

export function contentTypeFor(file: string): string {
  return CONTENT_TYPES[path.extname(file).toLowerCase()] ?? "application/octet-stream";
}

/** Directory of a package's browser build (the folder of the file it resolves to). */
function distDir(pkg: string): string {
  return path.dirname(createRequire(import.meta.url).resolve(pkg));
}

/** /__players/<key>/<file> → that package's dist folder. */
const PLAYER_DIRS: Record<string, () => string> = {
  "hls.js": () => distDir("hls.js"), // dist/hls.js
  dashjs: () => distDir("dashjs"), // dist/modern/umd/dash.all.min.js
  "shaka-player": () => distDir("shaka-player"), // dist/shaka-player.compiled.js
};

/** Maps a URL path onto a file below `root`, or undefined when it would leave it. */
async function resolveInside(root: string, urlPath: string): Promise<string | undefined> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  if (decoded.includes("\0")) return undefined;
  const file = path.resolve(root, "." + path.posix.normalize("/" + decoded));
  if (file !== root && !file.startsWith(root + path.sep)) return undefined;
  // Symbolic links must not lead outside either.
  try {
    const real = await realpath(file);
    if (real !== root && !real.startsWith(root + path.sep)) return undefined;
    return real;
  } catch {
    return file; // missing: the caller answers 404
  }
}

/** Parses a single `bytes=` range; undefined = serve everything, null = unsatisfiable. */
function parseRange(header: string, size: number): { start: number; end: number } | undefined | null {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return undefined; // multiple or malformed ranges: send the whole file
  let start: number;
  let end: number;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0) return null;
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) return null;
  return { start, end };
}

/**
 * Serves `root` over http on 127.0.0.1 (random port): content types for streaming files, CORS *,
 * single Range requests (206/416), HEAD, 404 for missing files and for paths leaving `root`, no
 * caching. Under /__players/ it serves the player page and the hls.js, dashjs and shaka-player
 * dist folders from node_modules.
 */
export async function serveDirectory(root: string): Promise<StaticServer> {
  const realRoot = await realpath(path.resolve(root));
  const requests: Array<{ method: string; path: string; status: number; range?: string }> = [];

  async function locate(urlPath: string): Promise<string | undefined> {
    if (!urlPath.startsWith(PLAYERS_PREFIX)) return resolveInside(realRoot, urlPath);
    const rest = urlPath.slice(PLAYERS_PREFIX.length);
    if (rest === "page.html") return PAGE_FILE;
    const slash = rest.indexOf("/");
    const dir = slash > 0 ? PLAYER_DIRS[rest.slice(0, slash)] : undefined;
    return dir ? resolveInside(await realpath(dir()), rest.slice(slash)) : undefined;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<number> {
    res.setHeader("Access-Control-Allow-Origin", "*");
    res.setHeader("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS");
    res.setHeader("Access-Control-Allow-Headers", "Range, Content-Type");
    res.setHeader("Access-Control-Expose-Headers", "Content-Length, Content-Range, Accept-Ranges");
    res.setHeader("Cache-Control", "no-store");
    if (req.method === "OPTIONS") {
      res.writeHead(204).end();
      return 204;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { Allow: "GET, HEAD, OPTIONS" }).end();
      return 405;
    }
    const urlPath = new URL(req.url ?? "/", "http://localhost").pathname;
    const file = await locate(urlPath);
    const info = file ? await stat(file).catch(() => undefined) : undefined;
    if (!file || !info?.isFile()) {
      res.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" }).end("not found\n");
      return 404;
    }
    const size = info.size;
    const range = req.headers.range ? parseRange(req.headers.range, size) : undefined;
    const headers: Record<string, string | number> = {
      "Content-Type": contentTypeFor(file),
      "Accept-Ranges": "bytes",
      "Last-Modified": info.mtime.toUTCString(),
    };
    if (range === null) {
      res.writeHead(416, { ...headers, "Content-Range": `bytes */${size}` }).end();
      return 416;
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? size - 1;
    const status = range ? 206 : 200;
    if (range) headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
    headers["Content-Length"] = Math.max(0, end - start + 1);
    res.writeHead(status, headers);
    if (req.method === "HEAD" || size === 0) {
      res.end();
      return status;
    }
    await new Promise<void>((resolve) => {
      const stream = createReadStream(file, { start, end });
      stream.on("error", () => res.destroy());
      res.on("close", resolve);
      stream.pipe(res);
    });
    return status;
  }

  const server = createServer((req, res) => {
    const entry = { method: req.method ?? "?", path: new URL(req.url ?? "/", "http://localhost").pathname, status: 0, ...(req.headers.range ? { range: req.headers.range } : {}) };
    requests.push(entry);
    handle(req, res).then(
      (status) => (entry.status = status),
      (err: unknown) => {
        entry.status = 500;
        if (!res.headersSent) res.writeHead(500, { "Content-Type": "text/plain" }).end(String(err));
        else res.destroy();
      },
    );
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// Browser
// ---------------------------------------------------------------------------------------------

export type PlayerName = "hls.js" | "dash.js" | "shaka";

export interface PlayerBrowser {
  /** The persistent Chromium context every playStream page is opened in. */
  readonly context: BrowserContext;
  close(): Promise<void>;
}

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** From /work/shared/STREAMING.md: without the background-networking flags Chromium stalls on a closed network. */
const CHROMIUM_ARGS = [
  // --headless comes from `headless: true`.
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--autoplay-policy=no-user-gesture-required",
  "--disable-background-media-suspend",
  "--disable-renderer-backgrounding",
  "--disable-background-timer-throttling",
];

/** Headless Debian Chromium (H.264/AAC, VP9/Opus, AV1 through MSE; no HEVC) with a fresh profile. */
export async function launchPlayerBrowser(): Promise<PlayerBrowser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`Chromium not found at ${CHROMIUM_PATH}: the player tests need it (apt-get install -y chromium, or set CHROMIUM_PATH)`);
  }
  const userDataDir = await mkdtemp(path.join(os.tmpdir(), "rendition-chromium-"));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 640, height: 360 },
      timeout: 60_000,
    });
  } catch (err) {
    await rm(userDataDir, { recursive: true, force: true });
    throw err;
  }
  return {
    context,
    async close() {
      try {
        await context.close();
      } finally {
        await rm(userDataDir, { recursive: true, force: true, maxRetries: 3 });
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Playback
// ---------------------------------------------------------------------------------------------

export interface PlayOptions {
  player: PlayerName;
  /**
   * Absolute URL of the master playlist / MPD. Without `pageUrl` it must be served by serveDirectory
   * (the page opens on its origin); with it, any server that answers CORS for pageUrl's origin.
   */
  manifestUrl: string;
  /**
   * URL of the serveDirectory server the page (and the player libraries) are loaded from; default:
   * the manifest's own origin. Set it to play a manifest from another server (an S3 bucket).
   */
  pageUrl?: string;
  /**
   * Force this video rendition (index into `renditions`, i.e. ascending bitrate, see PlayResult) for
   * the whole playback, ABR off; undefined = the player's ABR.
   */
  rendition?: number;
  /** Select the audio track with this language (as the manifest writes it; "eng" also matches "en"). */
  audioLanguage?: string;
  /** Select the text track with this language, show it, and collect its cues. */
  subtitleLanguage?: string;
  /**
   * Playback rate (default 4; 1 for dash.js with a subtitle language). Every segment is still fetched and every frame decoded; at 4x
   * Chromium skips painting ~40 % of 25 fps frames, which frames.dropped counts.
   */
  playbackRate?: number;
  /** Overall time limit for one playback (default 60 s); on expiry the result has ended: false. */
  timeoutMs?: number;
  /**
   * Give up when currentTime has not advanced for this long while not ended (default 15 s, capped
   * at timeoutMs). Player retries of a failing request are shorter than that.
   */
  stallTimeoutMs?: number;
}

export interface Rendition {
  width: number;
  height: number;
  /** bps as the player states it: HLS BANDWIDTH (video + audio), DASH @bandwidth (video only). */
  bitrate: number;
  /** The video codec string, e.g. "avc1.64001f". */
  codecs: string;
}

// ISO 639-2 (B and T) to 639-1 for common languages; player-page.html holds the same table.
const ISO639_1: Record<string, string> = { eng: "en", fra: "fr", fre: "fr", deu: "de", ger: "de", spa: "es", ita: "it", por: "pt", nld: "nl",
  dut: "nl", jpn: "ja", zho: "zh", chi: "zh", kor: "ko", rus: "ru", ara: "ar", hin: "hi", swe: "sv", pol: "pl", tur: "tr" };

/** "eng", "en", "en-US" → "en": the form to compare languages reported by different players in. */
export function languageBase(language: string | undefined | null): string {
  const primary = String(language ?? "").toLowerCase().split(/[-_]/)[0]!;
  return ISO639_1[primary] ?? primary;
}

export interface PlayResult {
  /** Media duration as the <video> element reports it at the end (NaN if it never loaded). */
  duration: number;
  /** Highest currentTime seen. */
  maxCurrentTime: number;
  /** The 'ended' event fired. */
  ended: boolean;
  /**
   * Everything that went wrong, as strings: player errors (fatal or not: "hls.js …", "dash.js …",
   * "shaka …"), "video element: MediaError …", "page: …" (uncaught exceptions), "network: HTTP 404
   * GET url" (any failed request, whatever the player made of it), and the harness's own findings,
   * "harness: …": playback jumped over more than 0.5 s of media, the duration shrank after it was
   * announced (a player that meets undecodable data may just end the stream there), no progress
   * for stallTimeoutMs, timeout, a requested rendition or language the player does not list.
   * A clean playback has none.
   */
  errors: string[];
  /** Notices that are not errors: hls.js's non-fatal buffer-stall reports (a busy machine stalls too). */
  warnings: string[];
  /**
   * Video renditions the player parsed, ascending by bitrate (then height, width). That is
   * hls.js's `levels` and dash.js's `getRepresentationsByType("video")` order; Shaka's variants
   * (one per video × audio pair) are reduced to distinct videos and sorted the same way.
   */
  renditions: Rendition[];
  /**
   * Indexes into `renditions` of what was played, in order, consecutive duplicates removed: hls.js
   * FRAG_CHANGED (fragment under the playhead), dash.js the representation at 'playing' then
   * QUALITY_CHANGE_RENDERED, Shaka its switch history (variant choices, so a switch decided just
   * before the end may be listed without being shown). videoSizes is the cross-check.
   */
  playedRenditions: number[];
  /** Every picture size the <video> element had (videoWidth × videoHeight), in order. */
  videoSizes: Array<{ width: number; height: number }>;
  /**
   * Audio tracks the player exposes, languages as the player reports them: hls.js and Shaka (its
   * originalLanguage) give the manifest's value ("eng"), dash.js normalizes to BCP 47 ("en").
   * Compare with languageBase().
   */
  audioTracks: Array<{ language: string; name: string }>;
  activeAudioLanguage?: string;
  /** Cues of the selected text track (seconds), sorted by start. Empty without subtitleLanguage. */
  cues: Array<{ start: number; end: number; text: string }>;
  /** From video.getVideoPlaybackQuality(); total counts dropped frames too (≈ duration × fps when all was decoded). */
  frames: { total: number; dropped: number };
  /** Player library version, e.g. "1.7.4". */
  playerVersion: string;
  /**
   * Every HTTP response the page received, in order: the page and player library, then manifests
   * and segments (absolute URLs, query included), to check where a player fetched its media from.
   * (Not blob: or data: URLs, such as the one hls.js starts its worker from.)
   */
  requests: Array<{ method: string; url: string; status: number }>;
}

/**
 * Opens a page on the manifest's origin (or options.pageUrl), loads the player, plays the manifest
 * to the end (or until a fatal error, a stall or the timeout), and returns what it observed. Closes
 * the page. The page's HTTP cache is off: every playback fetches everything from the server (one
 * that sends Last-Modified without Cache-Control, as S3 does, could otherwise be skipped).
 */
export async function playStream(browser: PlayerBrowser, options: PlayOptions): Promise<PlayResult> {
  const result = await playOnce(browser, options);
  // dash.js 5.2 now and then shows no cue at all for a whole playback on a loaded machine (its
  // text-track selection racing start-up; the same stream shows every cue in Shaka and hls.js,
  // and in dash.js when run alone). One more playback decides: a stream without cues fails both.
  if (options.player === "dash.js" && options.subtitleLanguage && result.cues.length === 0) return playOnce(browser, options);
  return result;
}

async function playOnce(browser: PlayerBrowser, options: PlayOptions): Promise<PlayResult> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const pageOptions = {
    player: options.player,
    manifestUrl: options.manifestUrl,
    rendition: options.rendition ?? null,
    audioLanguage: options.audioLanguage ?? null,
    subtitleLanguage: options.subtitleLanguage ?? null,
    // dash.js adds a sidecar's cues to the text track in a window around the playhead; at 4x it
    // missed the last cue of a 10 s clip (at 1x it never did): text checks in dash.js play at 1x.
    playbackRate: options.playbackRate ?? (options.player === "dash.js" && options.subtitleLanguage ? 1 : 4),
    timeoutMs,
    stallTimeoutMs: Math.min(options.stallTimeoutMs ?? 15_000, timeoutMs),
  };
  const page = await browser.context.newPage();
  const cdp = await browser.context.newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
  // What the page itself sees go wrong, whatever the player makes of it (dash.js skips a missing
  // segment silently, hls.js jumps over a corrupt one).
  const pageErrors: string[] = [];
  const requests: PlayResult["requests"] = [];
  page.on("pageerror", (err) => pageErrors.push(`page: ${err.message}`));
  page.on("response", (response) => {
    if (/^https?:/.test(response.url())) requests.push({ method: response.request().method(), url: response.url(), status: response.status() });
    if (response.status() >= 400) pageErrors.push(`network: HTTP ${response.status()} ${response.request().method()} ${response.url()}`);
  });
  page.on("requestfailed", (request) => {
    const reason = request.failure()?.errorText ?? "failed";
    if (!reason.includes("ERR_ABORTED")) pageErrors.push(`network: ${reason} ${request.method()} ${request.url()}`);
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await page.goto(new URL(`${PLAYERS_PREFIX}page.html`, options.pageUrl ?? options.manifestUrl).href, { timeout: 30_000 });
    const guard = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`playStream: the page did not answer within ${timeoutMs + 20_000} ms`)), timeoutMs + 20_000);
    });
    const result = await Promise.race([
      page.evaluate((o) => (window as unknown as { runPlayer(o: unknown): Promise<PlayResult> }).runPlayer(o), pageOptions),
      guard,
    ]);
    result.errors.push(...pageErrors.splice(0));
    return { ...result, requests };
  } finally {
    clearTimeout(timer);
    await page.close().catch(() => undefined);
  }
}
