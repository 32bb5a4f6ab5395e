/** Jobs: status filter, search by id or metadata, List's cursor pagination, live progress over Watch. */
import type { Job } from "../../../gen/rendition/v1/job_pb.js";
import { JobStatus } from "../../../gen/rendition/v1/common_pb.js";
import { isAbort } from "../api.js";
import { field, h, replace } from "../dom.js";
import { formatTime, isTerminal, JOB_STATUSES, jobCost, looksLikeJobId, matchesSearch, outputTypeLabel, priorityLabel, statusLabel } from "../format.js";
import type { PageContext } from "../main.js";
import { errorBox, progressBar, statusBadge } from "../widgets.js";

const PAGE_SIZE = 20;
/** Browsers allow 6 HTTP/1.1 connections per host and each Watch holds one: leave room for the rest. */
const MAX_WATCHES = 4;
/** A metadata search reads at most this many pages of 100 (List has no server-side search). */
const SEARCH_PAGES = 10;

export async function jobsPage(ctx: PageContext, root: HTMLElement): Promise<void> {
  ctx.title("Jobs");
  const status = Number(ctx.params.get("status") ?? 0) as JobStatus;
  const query = ctx.params.get("q") ?? "";
  const cursor = ctx.params.get("cursor") ?? "";
  // The cursors of the newer pages, newest first ("~" stands for the first page, which has none).
  const previous = (ctx.params.get("prev") ?? "").split(",").filter(Boolean).map((c) => (c === "~" ? "" : c));

  const statusSelect = h(
    "select",
    { name: "status" },
    h("option", { value: "0" }, "All statuses"),
    JOB_STATUSES.map((s) => h("option", { value: String(s), selected: s === status }, statusLabel(s))),
  );
  const search = h("input", { name: "q", type: "search", value: query, placeholder: "job_… or key=value", spellcheck: "false" });
  const filters = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter jobs" },
    field("Status", statusSelect),
    field("Search by id or metadata", search),
    h("button", { type: "submit" }, "Apply"),
    h("a", { href: "#/create", class: "button primary" }, "Create job"),
  );
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    if (statusSelect.value !== "0") params.set("status", statusSelect.value);
    if (search.value.trim()) params.set("q", search.value.trim());
    ctx.navigate(`#/jobs?${params}`);
  });
  // Changing the status applies at once (keyboard users still tab on to Apply for the search).
  statusSelect.addEventListener("change", () => filters.requestSubmit());

  const summary = h("p", { class: "summary", role: "status", "aria-live": "polite" }, "Loading…");
  const body = h("tbody");
  const table = h(
    "table",
    { class: "jobs" },
    h("caption", { class: "visually-hidden" }, "Jobs, newest first"),
    h(
      "thead",
      null,
      h("tr", null, ["Job", "Status", "Progress", "Input", "Outputs", "Priority", "Cost", "Created"].map((c) => h("th", { scope: "col" }, c))),
    ),
    body,
  );
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  root.append(filters, summary, h("div", { class: "table-wrap" }, table), pager);

  let jobs: Job[];
  let nextCursor = "";
  try {
    if (query && looksLikeJobId(query)) {
      const found = await ctx.api.jobs.get({ id: query.trim() }, { signal: ctx.signal }).then(
        (r) => r.job,
        () => undefined,
      );
      jobs = found && (!status || found.status === status) ? [found] : [];
      replace(summary, jobs.length ? `Job ${query.trim()}` : `No job ${query.trim()}${status ? ` with status ${statusLabel(status)}` : ""}.`);
    } else if (query) {
      jobs = [];
      let scanned = 0;
      let pageCursor = "";
      for (let page = 0; page < SEARCH_PAGES; page++) {
        const r = await ctx.api.jobs.list({ status, pagination: { limit: 100, cursor: pageCursor } }, { signal: ctx.signal });
        scanned += r.jobs.length;
        jobs.push(...r.jobs.filter((j) => matchesSearch(j, query)));
        pageCursor = r.pagination?.nextCursor ?? "";
        if (!pageCursor) break;
      }
      replace(summary, `${jobs.length} job${jobs.length === 1 ? "" : "s"} match “${query}” among the newest ${scanned}${pageCursor ? " (older jobs were not searched)" : ""}.`);
    } else {
      const r = await ctx.api.jobs.list({ status, pagination: { limit: PAGE_SIZE, cursor } }, { signal: ctx.signal });
      jobs = r.jobs;
      nextCursor = r.pagination?.nextCursor ?? "";
      const total = r.pagination?.totalCount ?? jobs.length;
      const first = previous.length * PAGE_SIZE + 1;
      replace(summary, total ? `Jobs ${first}–${first + jobs.length - 1} of ${total}${status ? ` (${statusLabel(status)})` : ""}` : status ? `No jobs with status ${statusLabel(status)}.` : "No jobs yet.");
    }
  } catch (err) {
    if (isAbort(err)) return;
    replace(summary, "");
    root.append(errorBox(err));
    return;
  }

  const rows = new Map<string, HTMLTableRowElement>();
  for (const job of jobs) {
    const row = jobRow(job);
    rows.set(job.id, row);
    body.append(row);
  }
  if (!jobs.length) body.append(h("tr", null, h("td", { colspan: 8, class: "empty" }, query ? "Nothing matches." : h("span", null, "No jobs. ", h("a", { href: "#/create" }, "Create one")))));

  if (!query) {
    const base = new URLSearchParams();
    if (status) base.set("status", String(status));
    const link = (label: string, c: string, prev: string[], rel: string) => {
      const p = new URLSearchParams(base);
      if (c) p.set("cursor", c);
      if (prev.length) p.set("prev", prev.map((c) => c || "~").join(","));
      return h("a", { href: `#/jobs?${p}`, class: "button", rel }, label);
    };
    if (previous.length) pager.append(link("← Newer", previous.at(-1)!, previous.slice(0, -1), "prev"));
    if (nextCursor) pager.append(link("Older →", nextCursor, [...previous, cursor], "next"));
  }

  // Live progress: Watch each unfinished job (a few at a time), replacing its row on every event.
  // Jobs that move on their own first: one awaiting confirmation changes only when someone acts.
  const urgency = (s: JobStatus) => (s === JobStatus.PROCESSING ? 0 : s === JobStatus.AWAITING_CONFIRMATION ? 2 : 1);
  const waiting = jobs
    .filter((j) => !isTerminal(j.status))
    .sort((a, b) => urgency(a.status) - urgency(b.status))
    .map((j) => j.id);
  const watchNext = async (): Promise<void> => {
    const id = waiting.shift();
    if (!id) return;
    try {
      for await (const event of ctx.api.jobs.watch({ id }, { signal: ctx.signal })) {
        if (!event.job) continue;
        const row = jobRow(event.job);
        rows.get(id)?.replaceWith(row);
        rows.set(id, row);
      }
    } catch (err) {
      if (isAbort(err) || ctx.signal.aborted) return;
      rows.get(id)?.querySelector("td.status")?.append(h("span", { class: "hint" }, " (live updates stopped)"));
    }
    if (!ctx.signal.aborted) await watchNext();
  };
  for (let i = 0; i < MAX_WATCHES; i++) void watchNext();
}

function jobRow(job: Job): HTMLTableRowElement {
  const input = job.inputUrl || (job.inputOrigin ? `${job.inputOrigin.name || job.inputOrigin.id}: ${job.inputOrigin.path}` : "");
  const cost = jobCost(job);
  const outputs = job.outputs.map((o) => outputTypeLabel(o.type)).join(", ");
  return h(
    "tr",
    { "data-job-id": job.id, "data-status": JobStatus[job.status] },
    h("th", { scope: "row" }, h("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, class: "mono" }, job.id), job.test ? h("span", { class: "tag" }, "test") : null),
    h("td", { class: "status" }, statusBadge(job.status)),
    h("td", null, progressBar(job)),
    h("td", { class: "ellipsis", title: input }, input),
    h("td", null, outputs),
    h("td", null, priorityLabel(job.priority)),
    h("td", { class: cost.estimate ? "num estimate" : "num", title: cost.estimate ? "Estimate: the actual cost is known once outputs complete" : undefined }, cost.text),
    h("td", { class: "nowrap" }, formatTime(job.createdAt)),
  );
}
