/**
 * One job: status and progress (live over Watch), Cancel / Confirm (with the estimate), the
 * timeline, input, every output with its error or its player, thumbnails and the sprite storyboard.
 */
import { JobStatus, OutputType } from "../../../gen/rendition/v1/common_pb.js";
import { OutputStatus, ThumbnailMode, type Job, type JobServiceGetDownloadUrlsResponse, type Output, type Thumbnail } from "../../../gen/rendition/v1/job_pb.js";
import { isAbort } from "../api.js";
import { field, h, replace, uid } from "../dom.js";
import {
  dateOf,
  formatBytes,
  formatDuration,
  formatTime,
  isTerminal,
  jobCost,
  outputStatusLabel,
  outputTypeLabel,
  parseStoryboard,
  playerFor,
  priorityLabel,
  storyboardImageUrl,
  timeline,
} from "../format.js";
import type { PageContext } from "../main.js";
import { attachPlayer, type AttachedPlayer, type PlayerKind } from "../player.js";
import { errorBox, facts, progressBar, statusBadge } from "../widgets.js";

export async function jobPage(ctx: PageContext, root: HTMLElement, id?: string): Promise<void> {
  const heading = ctx.title("Job");
  heading.append(" ", h("span", { class: "mono" }, id ?? ""));
  const live = h("div", { class: "live" });
  const actions = h("div", { class: "actions" });
  const notice = h("div", { role: "status", "aria-live": "polite", class: "status" });
  const media = h("section", { "aria-labelledby": "media-h" });
  root.append(actions, notice, live, media);

  let job = (await ctx.api.jobs.get({ id: id! }, { signal: ctx.signal })).job!;
  const players: AttachedPlayer[] = [];
  ctx.signal.addEventListener("abort", () => players.forEach((p) => p.destroy()));
  let mediaShown = false;

  let shownStatus: JobStatus | undefined;
  const update = (next: Job) => {
    job = next;
    // Only on a change of status: a progress event must not close an open "Yes, cancel" step.
    if (job.status !== shownStatus) renderActions();
    shownStatus = job.status;
    replace(live, jobState(job));
    if (isTerminal(job.status) && !mediaShown) {
      mediaShown = true;
      void renderMedia();
    }
  };

  const act = async (label: string, call: () => Promise<{ job?: Job }>) => {
    replace(notice, `${label}…`);
    try {
      const r = await call();
      if (r.job) update(r.job);
      replace(notice, `${label}: done.`);
      if (!isTerminal(job.status)) void watch();
    } catch (err) {
      if (!isAbort(err)) replace(notice, errorBox(err));
    }
  };

  const renderActions = () => {
    replace(actions);
    if (job.status === JobStatus.AWAITING_CONFIRMATION) {
      const currency = job.currency || "USD";
      actions.append(
        h(
          "div",
          { class: "estimate card", "aria-label": "Estimate" },
          h("p", null, "Probed and waiting for your confirmation. Estimated cost: ", h("strong", { "data-estimate": "" }, `${job.totalEstimatedCost || "0"} ${currency}`), job.test ? " (test key: free)" : "", "."),
          h("ul", null, job.outputs.map((o, i) => h("li", null, `Output ${i + 1} (${outputTypeLabel(o.type)}): ${o.estimatedCost || "—"} ${currency}`))),
          h("button", { type: "button", class: "primary", onclick: () => act("Confirming", () => ctx.api.jobs.confirm({ id: job.id })) }, "Confirm and start encoding"),
        ),
      );
    }
    if (!isTerminal(job.status)) {
      const really = h("button", { type: "button", class: "danger", hidden: true, onclick: () => act("Canceling", () => ctx.api.jobs.cancel({ id: job.id })) }, "Yes, cancel this job");
      const cancel = h("button", {
        type: "button",
        onclick: () => {
          really.hidden = false;
          cancel.setAttribute("aria-expanded", "true");
          really.focus();
        },
        "aria-expanded": "false",
      }, "Cancel job");
      actions.append(cancel, really);
    }
  };

  let watching = false;
  const watch = async () => {
    if (watching) return;
    watching = true;
    try {
      for await (const event of ctx.api.jobs.watch({ id: job.id }, { signal: ctx.signal })) if (event.job) update(event.job);
    } catch (err) {
      if (!isAbort(err) && !ctx.signal.aborted) replace(notice, "Live updates stopped: ", errorBox(err));
    } finally {
      watching = false;
    }
  };

  const renderMedia = async () => {
    const hasMedia = job.outputs.some((o) => o.status === OutputStatus.COMPLETED) || job.thumbnails.some((t) => t.status === OutputStatus.COMPLETED);
    if (!hasMedia) return;
    replace(media, h("h2", { id: "media-h" }, "Play and download"), h("p", { class: "hint" }, "Loading signed links…"));
    let links: JobServiceGetDownloadUrlsResponse;
    try {
      links = await ctx.api.jobs.getDownloadUrls({ id: job.id }, { signal: ctx.signal });
    } catch (err) {
      if (!isAbort(err)) replace(media, h("h2", { id: "media-h" }, "Play and download"), errorBox(err));
      return;
    }
    const expires = formatTime(links.expiresAt);
    const blocks: HTMLElement[] = [];
    const videos: HTMLVideoElement[] = [];
    job.outputs.forEach((output, i) => {
      const link = links.outputs.find((l) => l.outputId === output.id);
      if (!link?.available) return;
      blocks.push(outputMedia(output, i, link.outputUrl, link.manifestUrls, link.subtitleUrls, players, videos));
    });
    job.thumbnails.forEach((thumb, i) => {
      const link = links.thumbnails.find((l) => l.thumbnailId === thumb.id);
      if (!link?.available) return;
      blocks.push(thumbnailMedia(thumb, i, link.urls, link.storyboardUrl, videos));
    });
    replace(media, h("h2", { id: "media-h" }, "Play and download"), h("p", { class: "hint" }, `Signed links, valid until ${expires}.`), blocks);
  };

  update(job);
  if (!isTerminal(job.status)) await watch();
}

function jobState(job: Job): HTMLElement[] {
  const cost = jobCost(job);
  const input = job.inputUrl || (job.inputOrigin ? `${job.inputOrigin.name || job.inputOrigin.id} (${job.inputOrigin.id}): ${job.inputOrigin.path}` : "—");
  const meta = job.inputMetadata;
  const ex = job.execution;
  return [
    h(
      "section",
      { class: "card", "aria-labelledby": "summary-h" },
      h("h2", { id: "summary-h" }, "Status"),
      h("p", { class: "state", "data-status": JobStatus[job.status] }, statusBadge(job.status), " ", progressBar(job, "Job progress")),
      job.errorCode ? h("p", { class: "error" }, h("strong", null, job.errorCode), job.errorMessage ? `: ${job.errorMessage}` : "") : null,
      facts([
        ["Priority", priorityLabel(job.priority)],
        [cost.estimate ? "Estimated cost" : "Cost", cost.text],
        ["Estimate", job.totalActualCost && job.totalEstimatedCost ? `${job.totalEstimatedCost} ${job.currency}` : undefined],
        ["Test job", job.test ? "yes (created with a test key: free)" : undefined],
        ["Delayed start", job.delayedStart ? "yes" : undefined],
        ["Attempts", ex?.attempts ? String(ex.attempts) : undefined],
        ["Total time", ex?.totalDurationMs ? formatDuration(ex.totalDurationMs) : undefined],
        ["Updated", formatTime(job.updatedAt)],
      ]),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "timeline-h" },
      h("h2", { id: "timeline-h" }, "Timeline"),
      h(
        "ol",
        { class: "timeline" },
        timeline(job).map((step) =>
          h(
            "li",
            { class: step.state, "data-step": step.label.toLowerCase() },
            h("span", { class: "step" }, step.label),
            h("time", { datetime: step.at?.toISOString() }, step.at ? formatTime(step.at) : step.state === "current" ? "in progress" : step.state === "skipped" ? "skipped" : "—"),
            step.detail ? h("span", { class: "hint" }, step.detail) : null,
          ),
        ),
      ),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "input-h" },
      h("h2", { id: "input-h" }, "Input"),
      facts([
        ["Source", input],
        ["Output origin", job.outputOrigin ? `${job.outputOrigin.name || job.outputOrigin.id}${job.outputOrigin.path ? `: ${job.outputOrigin.path}` : ""}` : undefined],
        ["Duration", meta?.durationMs ? formatDuration(meta.durationMs) : undefined],
        ["Picture", meta?.width ? `${meta.width}×${meta.height} ${meta.codec}${meta.framerate ? ` @ ${meta.framerate.toFixed(2)} fps` : ""}` : undefined],
        ["Bitrate", meta?.bitrateKbps ? `${meta.bitrateKbps} kb/s` : undefined],
        ["Size", meta?.fileSizeBytes ? formatBytes(meta.fileSizeBytes) : undefined],
        ["Container", meta?.container],
        ["Audio", meta?.audioStreams.length ? meta.audioStreams.map((a) => `${a.codec} ${a.channels} ch${a.language ? ` (${a.language})` : ""}`).join(", ") : undefined],
        ["Subtitles", meta?.subtitleStreams.length ? meta.subtitleStreams.map((s) => `${s.codec}${s.language ? ` (${s.language})` : ""}`).join(", ") : undefined],
        ["Metadata", Object.keys(job.metadata).length ? Object.entries(job.metadata).map(([k, v]) => `${k}=${v}`).join(", ") : undefined],
        ["Webhook", job.webhookUrl],
        ["Idempotency key", job.idempotencyKey],
        ["Probed", dateOf(job.probedAt) ? formatTime(job.probedAt) : undefined],
      ]),
    ),
    h(
      "section",
      { "aria-labelledby": "outputs-h" },
      h("h2", { id: "outputs-h" }, `Outputs (${job.outputs.length})`),
      h("div", { class: "grid" }, job.outputs.map((o, i) => outputCard(o, i, job.currency))),
      job.thumbnails.length ? h("h2", null, `Thumbnails (${job.thumbnails.length})`) : null,
      h("div", { class: "grid" }, job.thumbnails.map((t, i) => thumbnailCard(t, i))),
    ),
  ];
}

function variantText(o: Output): string {
  return o.video
    .map((v) => (v.width && v.height ? `${v.width}×${v.height}` : v.height ? `${v.height}p` : v.width ? `${v.width} wide` : (VideoResolutionName(v.resolution) ?? "source")))
    .join(", ");
}

function VideoResolutionName(r: number): string | undefined {
  return ({ 1: "480p", 2: "720p", 3: "1080p", 4: "1440p", 5: "2160p", 6: "4320p" } as Record<number, string>)[r];
}

function outputCard(o: Output, i: number, currency: string): HTMLElement {
  const failed = o.status === OutputStatus.FAILED;
  return h(
    "article",
    { class: `card output ${failed ? "failed" : ""}`, "data-output-id": o.id, "aria-label": `Output ${i + 1}` },
    h("h3", null, `${i + 1}. ${outputTypeLabel(o.type)}`, " ", h("span", { class: `badge ${OutputStatus[o.status]?.toLowerCase()}` }, outputStatusLabel(o.status))),
    failed ? h("p", { class: "error", "data-error-code": o.errorCode }, h("strong", null, o.errorCode || "FAILED"), o.errorMessage ? `: ${o.errorMessage}` : "") : null,
    facts([
      ["Progress", `${o.progress} %`],
      ["Video", o.video.length ? variantText(o) : undefined],
      ["Preset", o.presetId],
      ["Path", o.path],
      ["Size", o.fileSizeBytes ? formatBytes(o.fileSizeBytes) : undefined],
      ["Duration", o.durationMs ? formatDuration(o.durationMs) : undefined],
      ["Estimated cost", o.estimatedCost ? `${o.estimatedCost} ${currency}` : undefined],
      ["Actual cost", o.actualCost ? `${o.actualCost} ${currency}` : undefined],
      ["Written to", o.outputUrl],
    ]),
  );
}

function thumbnailCard(t: Thumbnail, i: number): HTMLElement {
  return h(
    "article",
    { class: "card", "aria-label": `Thumbnail set ${i + 1}` },
    h("h3", null, `${i + 1}. ${ThumbnailMode[t.spec?.mode ?? 0]?.toLowerCase() ?? "thumbnails"}`, " ", h("span", { class: "badge" }, outputStatusLabel(t.status))),
    t.errorMessage ? h("p", { class: "error" }, t.errorMessage) : null,
    facts([
      ["Images", t.urls.length ? String(t.urls.length) : undefined],
      ["Path", t.path],
      ["Storyboard", t.storyboardUrl],
    ]),
  );
}

function outputMedia(
  output: Output,
  index: number,
  url: string,
  manifests: string[],
  subtitles: string[],
  players: AttachedPlayer[],
  videos: HTMLVideoElement[],
): HTMLElement {
  const video = h("video", { controls: true, muted: true, playsinline: true, preload: "metadata", "data-output-id": output.id, "aria-label": `Player for output ${index + 1}` });
  video.muted = true;
  videos.push(video);
  const status = h("p", { class: "hint", role: "status" });
  // An adaptive output has both a master playlist and an MPD over the same segments: either player.
  const choices: Array<{ kind: PlayerKind; url: string; label: string }> = [];
  const mpd = manifests.find((m) => new URL(m).pathname.endsWith(".mpd"));
  const m3u8 = manifests.find((m) => new URL(m).pathname.endsWith(".m3u8"));
  if (output.type === OutputType.ADAPTIVE) {
    if (m3u8) choices.push({ kind: "hls", url: m3u8, label: "HLS (hls.js)" });
    if (mpd) choices.push({ kind: "dash", url: mpd, label: "DASH (dash.js)" });
  }
  if (!choices.length) choices.push({ kind: playerFor(output.type, url), url, label: "" });
  let attached: AttachedPlayer | undefined;
  const play = async (choice: (typeof choices)[number]) => {
    attached?.destroy();
    replace(status, "Loading the player…");
    attached = await attachPlayer(video, choice.kind, choice.url, (message) => replace(status, h("span", { class: "error" }, message)));
    players.push(attached);
    video.dataset.engine = attached.engine;
    replace(status, `Playing with ${attached.engine}.`);
  };
  let picker: HTMLElement | null = null;
  if (choices.length > 1) {
    const select = h("select", null, choices.map((c, i) => h("option", { value: String(i) }, c.label)));
    select.addEventListener("change", () => void play(choices[Number(select.value)]!));
    picker = field("Play as", select);
  }
  void play(choices[0]!);
  const files = [url, ...manifests.filter((m) => m !== url), ...subtitles];
  return h(
    "article",
    { class: "card media", "aria-label": `Output ${index + 1} media` },
    h("h3", null, `Output ${index + 1}: ${outputTypeLabel(output.type)}`),
    picker,
    video,
    status,
    h("details", null, h("summary", null, `Signed links (${files.length})`), h("ul", { class: "links" }, files.map((f) => h("li", null, h("a", { href: f, rel: "noreferrer", target: "_blank" }, new URL(f).pathname.split("/").pop() || f))))),
  );
}

function thumbnailMedia(thumb: Thumbnail, index: number, urls: string[], storyboardUrl: string, videos: HTMLVideoElement[]): HTMLElement {
  const mode = thumb.spec?.mode;
  const title = `Thumbnails ${index + 1}`;
  const images = h(
    "div",
    { class: "thumbs" },
    urls.map((u, i) => h("a", { href: u, target: "_blank", rel: "noreferrer" }, h("img", { src: u, alt: `${title}: image ${i + 1} of ${urls.length}`, loading: "lazy" }))),
  );
  const board = h("div", { class: "storyboard", role: "group", "aria-label": "Storyboard" });
  if (mode === ThumbnailMode.SPRITE && storyboardUrl) {
    void fetch(storyboardUrl)
      .then((r) => {
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        return r.text();
      })
      .then((vtt) => {
        const cues = parseStoryboard(vtt);
        const listId = uid("sb");
        replace(
          board,
          h("p", { class: "hint", id: listId }, `Storyboard: ${cues.length} tiles from the sprite. Choose one to seek the first player there.`),
          cues.map((cue) => {
            const tile = h("button", {
              type: "button",
              class: "tile",
              "aria-label": `Seek to ${formatDuration(cue.start * 1000)}`,
              "aria-describedby": listId,
              "data-start": String(cue.start),
              onclick: () => {
                const v = videos[0];
                if (v) v.currentTime = cue.start;
              },
            });
            tile.style.width = `${cue.w}px`;
            tile.style.height = `${cue.h}px`;
            tile.style.backgroundImage = `url("${storyboardImageUrl(cue.image, storyboardUrl, urls)}")`;
            tile.style.backgroundPosition = `-${cue.x}px -${cue.y}px`;
            return tile;
          }),
        );
      })
      .catch((err: unknown) => replace(board, h("p", { class: "error" }, `Storyboard: ${String(err)}`)));
  }
  return h("article", { class: "card media", "aria-label": title }, h("h3", null, title), images, board);
}
