/**
 * Create a job: from presets (PresetService) with an input that is uploaded (UploadService), in an
 * origin, or at a URL; or from a JSON editor holding the whole JobService.Create request.
 */
import { fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { Priority } from "../../../gen/rendition/v1/common_pb.js";
import { JobServiceCreateRequestSchema, ThumbnailMode, type JobServiceCreateRequest } from "../../../gen/rendition/v1/job_pb.js";
import { OriginPermission, OriginProvider, OriginStatus, type Origin } from "../../../gen/rendition/v1/origin_pb.js";
import type { Preset } from "../../../gen/rendition/v1/preset_pb.js";
import type { Api } from "../api.js";
import { apiBase, describeError } from "../api.js";
import { field, h, replace, uid } from "../dom.js";
import { parseMetadata } from "../format.js";
import type { PageContext } from "../main.js";
import { errorBox } from "../widgets.js";
import { create } from "@bufbuild/protobuf";

type InputMode = "upload" | "origin" | "url";

export async function createPage(ctx: PageContext, root: HTMLElement): Promise<void> {
  ctx.title("Create job");
  const [origins, presets] = await Promise.all([listAllOrigins(ctx.api, ctx.signal), listAllPresets(ctx.api, ctx.signal)]);
  const active = origins.filter((o) => o.status !== OriginStatus.ARCHIVED);
  const can = (o: Origin, p: OriginPermission) => o.permissions.includes(p);
  const readable = active.filter((o) => can(o, OriginPermission.READ));
  const writable = active.filter((o) => can(o, OriginPermission.WRITE));
  // Uploads go to s3 or local origins that can be written and read back (http origins are read-only).
  const uploadable = writable.filter((o) => can(o, OriginPermission.READ) && o.provider !== OriginProvider.HTTP);
  const originOption = (o: Origin) => h("option", { value: o.id }, `${o.name} (${OriginProvider[o.provider]?.toLowerCase()}, ${o.id})`);

  // --- Input -----------------------------------------------------------------------------------
  const modeName = uid("mode");
  const modes: Array<[InputMode, string]> = [
    ["upload", "Upload a file"],
    ["origin", "A file in an origin"],
    ["url", "A URL (https, s3, gs)"],
  ];
  const radios = modes.map(([value, label], i) => {
    const input = h("input", { type: "radio", name: modeName, value, id: uid("r"), checked: i === 0 });
    return { value, input, label: h("label", { for: input.id }, label) };
  });
  const file = h("input", { type: "file", name: "file", accept: "video/*,audio/*,.mkv,.mov,.mxf,.ts" });
  const uploadOrigin = h("select", { name: "upload_origin" }, uploadable.map(originOption));
  const inputOrigin = h("select", { name: "input_origin" }, readable.map(originOption));
  const inputPath = h("input", { name: "input_path", placeholder: "sample.mp4", spellcheck: "false" });
  const inputUrl = h("input", { name: "input_url", type: "url", placeholder: "https://…/video.mp4", spellcheck: "false" });
  const panels: Record<InputMode, HTMLElement> = {
    upload: h("div", { class: "panel" }, field("File", file), field("Upload into", uploadOrigin, uploadable.length ? undefined : "No s3 or local origin with read and write permission.")),
    origin: h("div", { class: "panel" }, field("Origin", inputOrigin), field("Path in the origin", inputPath)),
    url: h("div", { class: "panel" }, field("Input URL", inputUrl)),
  };
  const mode = () => (radios.find((r) => r.input.checked)?.value ?? "upload") as InputMode;
  const showPanel = () => Object.entries(panels).forEach(([k, p]) => (p.hidden = k !== mode()));
  radios.forEach((r) => r.input.addEventListener("change", showPanel));
  showPanel();

  // --- Outputs and options ---------------------------------------------------------------------
  const outputOrigin = h("select", { name: "output_origin" }, writable.map(originOption));
  const presetBoxes = presets.map((p) => {
    const box = h("input", { type: "checkbox", name: "preset", value: p.slug || p.id, id: uid("p") });
    return {
      preset: p,
      box,
      row: h(
        "li",
        null,
        box,
        h("label", { for: box.id }, h("strong", null, p.name), " ", h("code", null, p.slug), p.estimatedCostPerMinute ? ` · ${p.estimatedCostPerMinute} ${p.currency}/min` : ""),
        p.description ? h("p", { class: "hint" }, p.description) : null,
      ),
    };
  });
  const thumbnails = h(
    "select",
    { name: "thumbnails" },
    h("option", { value: "" }, "None"),
    h("option", { value: "single" }, "One poster frame"),
    h("option", { value: "sprite" }, "Sprite storyboard (one tile every 2 s)"),
  );
  const priority = h(
    "select",
    { name: "priority" },
    [Priority.ECONOMY, Priority.STANDARD, Priority.PREMIUM].map((p) => h("option", { value: String(p), selected: p === Priority.STANDARD }, Priority[p]!.toLowerCase())),
  );
  const delayed = h("input", { type: "checkbox", name: "delayed_start", id: uid("d") });
  const metadata = h("textarea", { name: "metadata", rows: 3, placeholder: "customer=acme\nepisode=12", spellcheck: "false" });
  const status = h("div", { role: "status", "aria-live": "polite", class: "status" });
  const uploadProgress = h("progress", { max: 100, value: 0, hidden: true, "aria-label": "Upload progress" });

  const form = h(
    "form",
    { class: "card", "aria-labelledby": "form-h", novalidate: true },
    h("h2", { id: "form-h" }, "From presets"),
    h("fieldset", null, h("legend", null, "Input"), h("div", { class: "radios" }, radios.map((r) => h("span", null, r.input, r.label))), Object.values(panels)),
    h("fieldset", null, h("legend", null, "Outputs"), field("Output origin", outputOrigin), h("ul", { class: "presets", "aria-label": "Presets" }, presetBoxes.map((p) => p.row))),
    h(
      "fieldset",
      null,
      h("legend", null, "Options"),
      field("Thumbnails", thumbnails),
      field("Priority", priority),
      h("div", { class: "check" }, delayed, h("label", { for: delayed.id }, "Wait for my confirmation after probing (shows the cost estimate first)")),
      field("Metadata", metadata, "key=value, one per line; the jobs list searches it."),
    ),
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Create job"), h("button", { type: "button", onclick: () => showJson() }, "Edit as JSON")),
    uploadProgress,
    status,
  );

  /** The request the form describes (without the input of an upload not yet made). */
  const requestFromForm = (input: { inputOriginId?: string; inputPath?: string; inputUrl?: string }): { request?: JobServiceCreateRequest; errors: string[] } => {
    const errors: string[] = [];
    const chosen = presetBoxes.filter((p) => p.box.checked).map((p) => p.box.value);
    if (!chosen.length) errors.push("outputs: choose at least one preset");
    if (!outputOrigin.value) errors.push("output_origin_id: no origin with write permission");
    const meta = parseMetadata(metadata.value);
    errors.push(...meta.errors);
    if (errors.length) return { errors };
    const thumbs =
      thumbnails.value === "sprite"
        ? [{ mode: ThumbnailMode.SPRITE, intervalSeconds: 2, width: 160 }]
        : thumbnails.value === "single"
          ? [{ mode: ThumbnailMode.SINGLE, timestamp: 0, width: 320 }]
          : [];
    const request = create(JobServiceCreateRequestSchema, {
      ...input,
      outputOriginId: outputOrigin.value,
      outputs: chosen.map((preset) => ({ preset })),
      thumbnails: thumbs,
      priority: Number(priority.value) as Priority,
      delayedStart: delayed.checked,
      metadata: meta.metadata,
    });
    return { request, errors };
  };

  const submit = async (request: JobServiceCreateRequest) => {
    replace(status, "Creating the job…");
    try {
      const { job } = await ctx.api.jobs.create(request, { signal: ctx.signal });
      ctx.navigate(`#/jobs/${encodeURIComponent(job!.id)}`);
    } catch (err) {
      replace(status, errorBox(err));
    }
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void (async () => {
      let input: { inputOriginId?: string; inputPath?: string; inputUrl?: string };
      const m = mode();
      if (m === "url") input = { inputUrl: inputUrl.value.trim() };
      else if (m === "origin") input = { inputOriginId: inputOrigin.value, inputPath: inputPath.value.trim() };
      else input = { inputOriginId: uploadOrigin.value, inputPath: "(set by the upload)" };
      const { request, errors } = requestFromForm(input);
      if (m === "upload" && !file.files?.length) errors.unshift("file: choose a file to upload");
      if (m === "upload" && !uploadOrigin.value) errors.unshift("upload origin: none can take uploads");
      if (errors.length || !request) {
        replace(status, h("div", { class: "error", role: "alert" }, errors.map((e) => h("p", null, e))));
        return;
      }
      if (m === "upload") {
        const origin = uploadable.find((o) => o.id === uploadOrigin.value)!;
        try {
          const uploaded = await upload(ctx.api, origin, file.files![0]!, uploadProgress, status, ctx.signal);
          request.inputOriginId = uploaded.inputOriginId;
          request.inputPath = uploaded.inputPath;
        } catch (err) {
          replace(status, h("div", { class: "error", role: "alert" }, h("p", null, "Upload failed: "), describeError(err).map((l) => h("p", null, l))));
          return;
        }
      }
      await submit(request);
    })();
  });

  // --- JSON editor -----------------------------------------------------------------------------
  const firstReadable = readable[0]?.id ?? "org_…";
  const example = {
    input_origin_id: firstReadable,
    input_path: "sample.mp4",
    output_origin_id: writable[0]?.id ?? "org_…",
    outputs: [{ type: "OUTPUT_TYPE_MP4", video: [{ codec: "VIDEO_CODEC_H264", resolution: "RESOLUTION_480P" }] }],
  };
  const editor = h("textarea", { name: "request_json", rows: 16, spellcheck: "false", class: "mono", value: JSON.stringify(example, null, 2) });
  const jsonStatus = h("div", { role: "status", "aria-live": "polite", class: "status" });
  const jsonForm = h(
    "form",
    { class: "card", "aria-labelledby": "json-h", id: "json-editor" },
    h("h2", { id: "json-h" }, "From a JSON request"),
    h("p", { class: "hint" }, "The body of JobService.Create in the API's JSON (docs/api.md): every field the API takes, checked here against the schema before it is sent."),
    field("Create request (JSON)", editor),
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Create job from JSON")),
    jsonStatus,
  );
  const showJson = () => {
    const m = mode();
    const input = m === "url" ? { inputUrl: inputUrl.value.trim() } : m === "origin" ? { inputOriginId: inputOrigin.value, inputPath: inputPath.value.trim() } : { inputOriginId: uploadOrigin.value, inputPath: "uploads/…" };
    const { request, errors } = requestFromForm(input);
    if (!request) {
      replace(status, h("div", { class: "error", role: "alert" }, errors.map((e) => h("p", null, e))));
      return;
    }
    editor.value = JSON.stringify(toJson(JobServiceCreateRequestSchema, request, { useProtoFieldName: true }), null, 2);
    editor.focus();
  };
  jsonForm.addEventListener("submit", (event) => {
    event.preventDefault();
    let request: JobServiceCreateRequest;
    try {
      request = fromJson(JobServiceCreateRequestSchema, JSON.parse(editor.value) as JsonValue);
    } catch (err) {
      replace(jsonStatus, h("div", { class: "error", role: "alert" }, h("p", null, `Not a valid request: ${(err as Error).message}`)));
      return;
    }
    replace(jsonStatus, "Creating the job…");
    ctx.api.jobs.create(request, { signal: ctx.signal }).then(
      ({ job }) => ctx.navigate(`#/jobs/${encodeURIComponent(job!.id)}`),
      (err: unknown) => replace(jsonStatus, errorBox(err)),
    );
  });

  root.append(form, jsonForm);
}

/**
 * Puts a file into an origin: CreateUploadUrl, then the PUT (or an S3 multipart upload's parts),
 * then CompleteUpload for s3 (a local upload completes with its PUT). XMLHttpRequest, not fetch,
 * because only it reports upload progress.
 */
async function upload(api: Api, origin: Origin, file: File, bar: HTMLProgressElement, status: HTMLElement, signal: AbortSignal): Promise<{ inputOriginId: string; inputPath: string }> {
  replace(status, `Uploading ${file.name}…`);
  bar.hidden = false;
  bar.value = 0;
  const ticket = await api.uploads.createUploadUrl(
    { originId: origin.id, filename: file.name, sizeBytes: BigInt(file.size), contentType: file.type || "" },
    { signal },
  );
  const sent: number[] = [];
  const progress = () => (bar.value = Math.round((100 * sent.reduce((a, b) => a + b, 0)) / Math.max(1, file.size)));
  if (ticket.multipart) {
    const parts: Array<{ partNumber: number; etag: string }> = [];
    let offset = 0;
    for (const part of ticket.parts) {
      const size = Number(part.sizeBytes);
      const i = sent.push(0) - 1;
      const answer = await put(part.url, {}, file.slice(offset, offset + size), (n) => ((sent[i] = n), progress()), signal);
      offset += size;
      // The bucket's CORS rules must expose ETag for this to be readable.
      const etag = answer.getResponseHeader("etag");
      if (!etag) throw new Error("the storage did not expose the part's ETag header (its CORS rules must list ETag in ExposeHeaders)");
      parts.push({ partNumber: part.partNumber, etag });
    }
    await api.uploads.completeUpload({ uploadId: ticket.uploadId, parts }, { signal });
  } else {
    sent.push(0);
    await put(sameServer(ticket.url), ticket.headers, file, (n) => ((sent[0] = n), progress()), signal);
    if (origin.provider === OriginProvider.S3) await api.uploads.completeUpload({ uploadId: ticket.uploadId, parts: [] }, { signal });
  }
  bar.value = 100;
  replace(status, `Uploaded ${file.name} to ${origin.name}: ${ticket.inputPath}.`);
  return { inputOriginId: ticket.inputOriginId, inputPath: ticket.inputPath };
}

/**
 * Rendition's own upload URLs (/uploads/<token>) start with RENDITION_PUBLIC_URL, which may name
 * the server differently from the address this page was opened at (localhost vs 127.0.0.1): that
 * would be a cross-origin PUT the route does not answer preflights for. The dashboard is served by
 * the same server, so its own base reaches the same route.
 */
function sameServer(url: string): string {
  const u = new URL(url);
  const at = u.pathname.lastIndexOf("/uploads/");
  if (u.origin === location.origin || at < 0) return url;
  return `${apiBase()}${u.pathname.slice(at)}${u.search}`;
}

function put(url: string, headers: Record<string, string>, body: Blob, onProgress: (bytes: number) => void, signal: AbortSignal): Promise<XMLHttpRequest> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(body.size);
        resolve(xhr);
      } else reject(new Error(`PUT answered HTTP ${xhr.status}: ${xhr.responseText.slice(0, 300)}`));
    };
    xhr.onerror = () => reject(new Error("the PUT failed (network error, or the storage refused this page's origin)"));
    signal.addEventListener("abort", () => xhr.abort());
    xhr.send(body);
  });
}

export async function listAllOrigins(api: Api, signal: AbortSignal): Promise<Origin[]> {
  const all: Origin[] = [];
  let cursor = "";
  do {
    const r = await api.origins.list({ pagination: { limit: 100, cursor } }, { signal });
    all.push(...r.origins);
    cursor = r.pagination?.nextCursor ?? "";
  } while (cursor && all.length < 1000);
  return all;
}

export async function listAllPresets(api: Api, signal: AbortSignal): Promise<Preset[]> {
  const all: Preset[] = [];
  let cursor = "";
  do {
    const r = await api.presets.list({ pagination: { limit: 100, cursor } }, { signal });
    all.push(...r.presets);
    cursor = r.pagination?.nextCursor ?? "";
  } while (cursor && all.length < 1000);
  return all;
}
