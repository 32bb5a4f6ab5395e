/**
 * Plays an output in a <video>: progressive files natively, HLS with hls.js (or the browser's own
 * HLS where it has one, as Safari does), DASH with dash.js. The libraries load on first use, so the
 * jobs list never downloads them.
 */
export type PlayerKind = "hls" | "dash" | "video";

export interface AttachedPlayer {
  /** Which library plays it: "hls.js 1.7.4", "dash.js 5.2.1", "native". */
  engine: string;
  destroy(): void;
}

export async function attachPlayer(video: HTMLVideoElement, kind: PlayerKind, url: string, onError: (message: string) => void): Promise<AttachedPlayer> {
  if (kind === "hls") {
    const { default: Hls } = await import("hls.js");
    if (Hls.isSupported()) {
      const hls = new Hls();
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (data.fatal) onError(`hls.js: ${data.type} ${data.details}`);
      });
      hls.loadSource(url);
      hls.attachMedia(video);
      return { engine: `hls.js ${Hls.version}`, destroy: () => hls.destroy() };
    }
    if (!video.canPlayType("application/vnd.apple.mpegurl")) onError("this browser plays neither HLS nor Media Source Extensions");
  }
  if (kind === "dash") {
    const dashjs = await import("dashjs");
    const player = dashjs.MediaPlayer().create();
    player.on(dashjs.MediaPlayer.events.ERROR, (event: { error?: { message?: string } }) => onError(`dash.js: ${event.error?.message ?? "error"}`));
    player.initialize(video, url, false);
    return { engine: `dash.js ${player.getVersion()}`, destroy: () => player.destroy() };
  }
  video.addEventListener("error", () => onError(`video element: ${video.error?.message || `MediaError ${video.error?.code}`}`), { once: true });
  video.src = url;
  return {
    engine: "native <video>",
    destroy: () => {
      video.removeAttribute("src");
      video.load();
    },
  };
}
