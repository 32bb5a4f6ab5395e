/**
 * The real-browser playback harness (test/support/players.ts) on streams made with plain ffmpeg
 * commands: a 6 s, 2-rendition H.264/AAC ladder with English and French audio, as HLS fMP4 and as
 * DASH, plus a WebVTT sidecar. hls.js plays the HLS, dash.js the DASH, Shaka both. Broken copies
 * (a missing segment, a corrupt segment) prove the harness reports failure.
 */
import { execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { request } from "node:http";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testMediaTools } from "../support/media.js";
import {
  languageBase,
  launchPlayerBrowser,
  playStream,
  serveDirectory,
  type PlayerBrowser,
  type PlayerName,
  type PlayResult,
  type StaticServer,
} from "../support/players.js";

const run = promisify(execFile);

const DURATION_S = 6;
const FPS = 25;
const FRAMES = DURATION_S * FPS;
/** Renditions as every player lists them: ascending bitrate. */
const SIZES = [
  { width: 160, height: 90 },
  { width: 320, height: 180 },
];
const CUES = [
  { start: 0.5, end: 1.5, text: "First cue" },
  { start: 2, end: 3.25, text: "Second cue" },
  { start: 4.1, end: 5.6, text: "Third cue" },
];
const VTT = `WEBVTT\n\n${CUES.map((c) => `${vttTime(c.start)} --> ${vttTime(c.end)}\n${c.text}\n`).join("\n")}`;

function vttTime(s: number): string {
  return `00:00:${s.toFixed(3).padStart(6, "0")}`;
}

let dir: string;
let server: StaticServer;
let browser: PlayerBrowser;

/** Inputs and encoding shared by the HLS and the DASH command: 2 video renditions, 2 audio languages. */
const ENCODE = [
  "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
  "-f", "lavfi", "-i", `testsrc2=size=320x180:rate=${FPS}:duration=${DURATION_S}`,
  "-f", "lavfi", "-i", `sine=frequency=440:sample_rate=48000:duration=${DURATION_S}`,
  "-f", "lavfi", "-i", `sine=frequency=660:sample_rate=48000:duration=${DURATION_S}`,
  "-filter_complex", "[0:v]split=2[hi][lo0];[lo0]scale=160:90[lo]",
  "-map", "[hi]", "-map", "[lo]", "-map", "1:a", "-map", "2:a",
  "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-b:v:0", "400k", "-b:v:1", "150k",
  "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-fps_mode", "passthrough",
  "-c:a", "aac", "-b:a", "64k", "-ac", "2",
  "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra",
];

async function makeHls(out: string): Promise<void> {
  const { ffmpegPath } = await testMediaTools();
  await mkdir(out, { recursive: true });
  await run(ffmpegPath, [
    ...ENCODE,
    "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod", "-hls_segment_type", "fmp4", "-hls_flags", "independent_segments",
    "-var_stream_map", "v:0,agroup:aud v:1,agroup:aud a:0,agroup:aud,language:eng,default:yes a:1,agroup:aud,language:fra",
    "-master_pl_name", "master.m3u8", "-hls_fmp4_init_filename", "init.mp4",
    "-hls_segment_filename", path.join(out, "%v/seg_%03d.m4s"), path.join(out, "%v/index.m3u8"),
  ], { timeout: 60_000 });
  // The sidecar subtitles: a one-segment WebVTT playlist and a master that names it.
  await mkdir(path.join(out, "subs"));
  await writeFile(path.join(out, "subs/eng.vtt"), VTT);
  await writeFile(
    path.join(out, "subs/eng.m3u8"),
    `#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:${DURATION_S}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:${DURATION_S}.000,\neng.vtt\n#EXT-X-ENDLIST\n`,
  );
  const master = await readFile(path.join(out, "master.m3u8"), "utf8");
  const subtitles = '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="eng",DEFAULT=NO,AUTOSELECT=YES,URI="subs/eng.m3u8"\n';
  await writeFile(
    path.join(out, "master-subs.m3u8"),
    master.replace("#EXT-X-STREAM-INF", subtitles + "#EXT-X-STREAM-INF").replaceAll(/(#EXT-X-STREAM-INF:.*)$/gm, '$1,SUBTITLES="subs"'),
  );
}

async function makeDash(out: string): Promise<void> {
  const { ffmpegPath } = await testMediaTools();
  await mkdir(out, { recursive: true }); // the dash muxer does not create it
  await run(ffmpegPath, [
    ...ENCODE,
    "-f", "dash", "-seg_duration", "2", "-use_template", "1", "-use_timeline", "1", "-dash_segment_type", "mp4",
    "-adaptation_sets", "id=0,streams=v id=1,streams=2 id=2,streams=3",
    "-init_seg_name", "init_$RepresentationID$.m4s", "-media_seg_name", "seg_$RepresentationID$_$Number%03d$.m4s",
    path.join(out, "manifest.mpd"),
  ], { timeout: 60_000 });
  // The dash muxer refuses WebVTT: a sidecar in its own text AdaptationSet.
  await writeFile(path.join(out, "eng.vtt"), VTT);
  const mpd = await readFile(path.join(out, "manifest.mpd"), "utf8");
  const text =
    '<AdaptationSet id="3" contentType="text" mimeType="text/vtt" lang="eng">' +
    '<Representation id="sub_eng" bandwidth="256"><BaseURL>eng.vtt</BaseURL></Representation></AdaptationSet>\n';
  await writeFile(path.join(out, "manifest-subs.mpd"), mpd.replace("</Period>", text + "</Period>"));
}

/** An HLS media playlist of the 320x180 video whose 2nd segment is missing (404) or garbage. */
async function makeBrokenHls(hls: string): Promise<void> {
  const playlist = await readFile(path.join(hls, "0/index.m3u8"), "utf8");
  await writeFile(path.join(hls, "0/missing.m3u8"), playlist.replace("seg_001.m4s", "seg_404.m4s"));
  await writeFile(path.join(hls, "0/garbage.m4s"), Buffer.alloc(4000, 0x5a));
  await writeFile(path.join(hls, "0/corrupt.m3u8"), playlist.replace("seg_001.m4s", "garbage.m4s"));
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "rendition-players-"));
  await Promise.all([makeHls(path.join(dir, "hls")), makeDash(path.join(dir, "dash"))]);
  await makeBrokenHls(path.join(dir, "hls"));
  // A DASH copy whose 2nd video segments are gone.
  await cp(path.join(dir, "dash"), path.join(dir, "dash-missing"), { recursive: true });
  await Promise.all(["seg_0_002.m4s", "seg_1_002.m4s"].map((f) => rm(path.join(dir, "dash-missing", f))));
  [server, browser] = await Promise.all([serveDirectory(dir), launchPlayerBrowser()]);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A GET with the path sent as written ("../" included, which fetch would resolve away). */
function rawGet(pathAndQuery: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(server.url);
    const req = request({ hostname, port, path: pathAndQuery, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("serveDirectory", () => {
  it("serves streaming files with their content types, CORS and byte ranges", async () => {
    const types: Record<string, RegExp> = {
      "/hls/master.m3u8": /^application\/vnd\.apple\.mpegurl/,
      "/dash/manifest.mpd": /^application\/dash\+xml/,
      "/hls/0/seg_000.m4s": /^video\/mp4/,
      "/hls/0/init_0.mp4": /^video\/mp4/,
      "/hls/subs/eng.vtt": /^text\/vtt/,
      "/__players/hls.js/hls.min.js": /^text\/javascript/,
      "/__players/dashjs/dash.all.min.js": /^text\/javascript/,
      "/__players/shaka-player/shaka-player.compiled.js": /^text\/javascript/,
      "/__players/page.html": /^text\/html/,
    };
    for (const [file, type] of Object.entries(types)) {
      const res = await rawGet(file);
      expect(res.status, file).toBe(200);
      expect(res.headers["content-type"], file).toMatch(type);
      expect(res.headers["access-control-allow-origin"], file).toBe("*");
    }

    const whole = await readFile(path.join(dir, "hls/0/seg_000.m4s"));
    const part = await rawGet("/hls/0/seg_000.m4s", { Range: "bytes=10-19" });
    expect(part.status).toBe(206);
    expect(part.headers["content-range"]).toBe(`bytes 10-19/${whole.length}`);
    expect(part.body).toEqual(whole.subarray(10, 20));
    const tail = await rawGet("/hls/0/seg_000.m4s", { Range: "bytes=-5" });
    expect([tail.status, tail.body]).toEqual([206, whole.subarray(-5)]);
    expect((await rawGet("/hls/0/seg_000.m4s", { Range: `bytes=${whole.length}-` })).status).toBe(416);
  });

  it("answers 404 for missing files and for paths outside the root", async () => {
    const outside = `${dir}-outside.txt`;
    await writeFile(outside, "secret");
    await symlink(outside, path.join(dir, "link.txt"));
    try {
      const name = path.basename(outside);
      for (const p of ["/nope.m3u8", "/hls", `/../${name}`, `/%2e%2e/${name}`, `/hls/..%2f..%2f${name}`, "/link.txt", "/__players/../../package.json", "/__players/hls.js/../package.json", "/%00"]) {
        const res = await rawGet(p);
        expect(res.status, p).toBe(404);
        expect(res.body.toString(), p).not.toContain("secret");
      }
    } finally {
      await rm(outside, { force: true });
      await rm(path.join(dir, "link.txt"), { force: true });
    }
  });
});

const within = (actual: number, expected: number, tolerance: number) => Math.abs(actual - expected) <= tolerance;

/** Everything a clean playback of the test ladder must show. */
function expectCleanPlayback(result: PlayResult): void {
  expect(result.errors).toEqual([]);
  expect(result.ended).toBe(true);
  expect(within(result.duration, DURATION_S, 0.1), `duration ${result.duration}`).toBe(true);
  expect(within(result.maxCurrentTime, result.duration, 0.5), `maxCurrentTime ${result.maxCurrentTime} of ${result.duration}`).toBe(true);
  expect(result.renditions.map(({ width, height }) => ({ width, height }))).toEqual(SIZES);
  for (const r of result.renditions) {
    expect(r.codecs).toMatch(/^avc1\.[0-9a-f]{6}$/i);
    expect(r.bitrate).toBeGreaterThan(0);
  }
  expect(result.renditions[0]!.bitrate).toBeLessThan(result.renditions[1]!.bitrate);
  // Every frame was decoded (dropped frames are counted in the total: 4x rate on 2 busy cores).
  expect(result.frames.total).toBeGreaterThanOrEqual(FRAMES * 0.95);
  expect(result.audioTracks.map((t) => languageBase(t.language)).sort()).toEqual(["en", "fr"]);
}

const CASES: Array<{ player: PlayerName; format: "hls" | "dash" }> = [
  { player: "hls.js", format: "hls" },
  { player: "dash.js", format: "dash" },
  { player: "shaka", format: "hls" },
  { player: "shaka", format: "dash" },
];

describe.each(CASES)("$player playing $format", ({ player, format }) => {
  const manifest = (subtitles: boolean) =>
    `${server.url}/${format}/${format === "hls" ? (subtitles ? "master-subs.m3u8" : "master.m3u8") : subtitles ? "manifest-subs.mpd" : "manifest.mpd"}`;

  function expectCues(result: PlayResult): void {
    expect(result.cues.map((c) => c.text)).toEqual(CUES.map((c) => c.text));
    result.cues.forEach((cue, i) => {
      expect(within(cue.start, CUES[i]!.start, 0.2), `cue ${i} starts at ${cue.start}`).toBe(true);
      expect(within(cue.end, CUES[i]!.end, 0.2), `cue ${i} ends at ${cue.end}`).toBe(true);
    });
  }

  it("plays ffmpeg's own manifest to the end with ABR and English audio", { timeout: 60_000 }, async () => {
    const result = await playStream(browser, { player, manifestUrl: manifest(false) });
    expectCleanPlayback(result);
    expect(result.playedRenditions.length).toBeGreaterThan(0);
    expect(result.videoSizes.length).toBeGreaterThan(0);
    expect(languageBase(result.activeAudioLanguage)).toBe("en");
    expect(result.cues).toEqual([]);
  });

  it("shows the sidecar WebVTT cues with ABR", { timeout: 60_000 }, async () => {
    const result = await playStream(browser, { player, manifestUrl: manifest(true), subtitleLanguage: "eng" });
    expectCleanPlayback(result);
    expectCues(result);
  });

  it.each([
    { rendition: 0, size: "160x90", audioLanguage: "fra" },
    { rendition: 1, size: "320x180", audioLanguage: "eng" },
  ])("plays only the $size rendition when forced, with $audioLanguage audio and English cues", { timeout: 60_000 }, async ({ rendition, audioLanguage }) => {
    const result = await playStream(browser, { player, manifestUrl: manifest(true), rendition, audioLanguage, subtitleLanguage: "eng" });
    expectCleanPlayback(result);
    expect(result.playedRenditions).toEqual([rendition]);
    expect(result.videoSizes).toEqual([SIZES[rendition]]);
    expect(languageBase(result.activeAudioLanguage)).toBe(languageBase(audioLanguage));
    expectCues(result);
  });
});

describe("broken streams fail", () => {
  /** Not a clean playback: an error is reported, and the stream did not play through in full. */
  function expectFailure(result: PlayResult, error: RegExp): void {
    expect(result.errors.join("\n")).toMatch(error);
    expect(result.ended && result.frames.total >= FRAMES * 0.95).toBe(false);
  }

  it.each<{ player: PlayerName; file: string }>([
    { player: "hls.js", file: "hls/0/missing.m3u8" },
    { player: "shaka", file: "hls/0/missing.m3u8" },
    { player: "dash.js", file: "dash-missing/manifest.mpd" },
  ])("$player reports the missing segment of $file", { timeout: 60_000 }, async ({ player, file }) => {
    const result = await playStream(browser, { player, manifestUrl: `${server.url}/${file}`, stallTimeoutMs: 4000 });
    expectFailure(result, /404/);
  });

  // hls.js reports the segment and jumps over it; Shaka says nothing and ends the media after the
  // 1st segment (Chromium waits for the rest of a 1.5 GB box): the harness sees the shorter duration.
  it.each<{ player: PlayerName; error: RegExp }>([
    { player: "hls.js", error: /fragParsingError .*garbage\.m4s[^]*harness: playback jumped from/ },
    { player: "shaka", error: /harness: the media is 2\.\d+ s long, but 6\.\d+ s were announced/ },
  ])("$player reports a corrupt segment", { timeout: 60_000 }, async ({ player, error }) => {
    const result = await playStream(browser, { player, manifestUrl: `${server.url}/hls/0/corrupt.m3u8`, stallTimeoutMs: 4000 });
    expectFailure(result, error);
  });

  it("reports a forced rendition or a language the stream does not have", { timeout: 60_000 }, async () => {
    const result = await playStream(browser, { player: "hls.js", manifestUrl: `${server.url}/hls/master.m3u8`, rendition: 5 });
    expect(result.errors).toEqual([expect.stringMatching(/^harness: no rendition 5/)]);
    expect(result.ended).toBe(false);
    const audio = await playStream(browser, { player: "dash.js", manifestUrl: `${server.url}/dash/manifest.mpd`, audioLanguage: "deu" });
    expect(audio.errors).toEqual([expect.stringMatching(/^harness: no audio track "deu"/)]);
  });
});
