/** Small pieces several pages share. */
import type { Job } from "../../gen/rendition/v1/job_pb.js";
import { describeError } from "./api.js";
import { h } from "./dom.js";
import { statusClass, statusLabel } from "./format.js";
import type { JobStatus } from "../../gen/rendition/v1/common_pb.js";

export function statusBadge(status: JobStatus): HTMLSpanElement {
  return h("span", { class: `badge ${statusClass(status)}` }, statusLabel(status));
}

/** A labelled <progress> with its number beside it (the bar alone says nothing to a screen reader). */
export function progressBar(job: Pick<Job, "id" | "progress" | "status">, label = `Progress of ${job.id}`): HTMLSpanElement {
  return h(
    "span",
    { class: "progress" },
    h("progress", { max: 100, value: job.progress, "aria-label": label, "data-job-progress": job.id }, `${job.progress} %`),
    h("span", { class: "pct", "aria-hidden": "true" }, `${job.progress} %`),
  );
}

export function errorBox(err: unknown): HTMLDivElement {
  return h("div", { class: "error", role: "alert" }, describeError(err).map((line) => h("p", null, line)));
}

/** A definition list from label/value pairs, skipping empty values. */
export function facts(pairs: Array<[string, string | Node | undefined | null | false]>): HTMLDListElement {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(([, v]) => v !== undefined && v !== null && v !== false && v !== "").map(([k, v]) => [h("dt", null, k), h("dd", null, v as string | Node)]),
  );
}
