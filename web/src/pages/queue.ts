/**
 * The queue: how many jobs sit in each status, the unfinished ones by priority, the oldest waiting
 * job, and what runs now. Built from JobService.List alone (total_count per status, then the
 * unfinished jobs page by page), so it shows the caller's organization only.
 */
import { JobStatus, Priority } from "../../../gen/rendition/v1/common_pb.js";
import type { Job } from "../../../gen/rendition/v1/job_pb.js";
import { h } from "../dom.js";
import { dateOf, formatDuration, JOB_STATUSES, priorityLabel, statusLabel } from "../format.js";
import type { PageContext } from "../main.js";
import { progressBar, statusBadge } from "../widgets.js";

const UNFINISHED = [JobStatus.PENDING, JobStatus.PROBING, JobStatus.AWAITING_CONFIRMATION, JobStatus.PROCESSING];
const PRIORITIES = [Priority.PREMIUM, Priority.STANDARD, Priority.ECONOMY];
/** Unfinished jobs read per status for the priority breakdown (100 a page). */
const MAX_PAGES = 5;

export async function queuePage(ctx: PageContext, root: HTMLElement): Promise<void> {
  ctx.title("Queue");
  const totals = await Promise.all(
    JOB_STATUSES.map((status) => ctx.api.jobs.list({ status, pagination: { limit: 1 } }, { signal: ctx.signal }).then((r) => r.pagination?.totalCount ?? r.jobs.length)),
  );
  const unfinished = new Map<JobStatus, { jobs: Job[]; complete: boolean }>();
  for (const status of UNFINISHED) {
    const jobs: Job[] = [];
    let cursor = "";
    let pages = 0;
    do {
      const r = await ctx.api.jobs.list({ status, pagination: { limit: 100, cursor } }, { signal: ctx.signal });
      jobs.push(...r.jobs);
      cursor = r.pagination?.nextCursor ?? "";
    } while (cursor && ++pages < MAX_PAGES);
    unfinished.set(status, { jobs, complete: !cursor });
  }
  const effective = (p: Priority) => (p === Priority.UNSPECIFIED ? Priority.STANDARD : p);
  const now = Date.now();
  const pending = unfinished.get(JobStatus.PENDING)!.jobs;
  const oldest = pending.reduce<Job | undefined>((a, j) => (!a || (dateOf(j.createdAt)?.getTime() ?? now) < (dateOf(a.createdAt)?.getTime() ?? now) ? j : a), undefined);
  const running = unfinished.get(JobStatus.PROCESSING)!.jobs;
  const partial = [...unfinished.values()].some((u) => !u.complete);

  root.append(
    h(
      "section",
      { class: "card", "aria-labelledby": "by-status" },
      h("h2", { id: "by-status" }, "Jobs by status"),
      h(
        "ul",
        { class: "counts" },
        JOB_STATUSES.map((s, i) =>
          h("li", { "data-status": JobStatus[s] }, h("a", { href: `#/jobs?status=${s}` }, statusBadge(s), " ", h("strong", { class: "count" }, String(totals[i]!)))),
        ),
      ),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "by-priority" },
      h("h2", { id: "by-priority" }, "Unfinished jobs by priority"),
      h(
        "table",
        null,
        h("caption", { class: "visually-hidden" }, "Unfinished jobs: status by priority"),
        h("thead", null, h("tr", null, h("th", { scope: "col" }, "Status"), PRIORITIES.map((p) => h("th", { scope: "col" }, priorityLabel(p))), h("th", { scope: "col" }, "All"))),
        h(
          "tbody",
          null,
          UNFINISHED.map((s) => {
            const { jobs } = unfinished.get(s)!;
            return h(
              "tr",
              { "data-status": JobStatus[s] },
              h("th", { scope: "row" }, statusLabel(s)),
              PRIORITIES.map((p) => h("td", { class: "num" }, String(jobs.filter((j) => effective(j.priority) === p).length))),
              h("td", { class: "num" }, String(jobs.length)),
            );
          }),
        ),
      ),
      partial ? h("p", { class: "hint" }, `Counted from the newest ${MAX_PAGES * 100} jobs of each status.`) : null,
      h("p", null, oldest ? ["Oldest pending job: ", h("a", { href: `#/jobs/${oldest.id}`, class: "mono" }, oldest.id), `, waiting ${formatDuration(now - (dateOf(oldest.createdAt)?.getTime() ?? now))}.`] : "No job is pending."),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "running" },
      h("h2", { id: "running" }, `Running now (${running.length})`),
      running.length
        ? h("ul", { class: "running" }, running.slice(0, 20).map((j) => h("li", null, h("a", { href: `#/jobs/${j.id}`, class: "mono" }, j.id), " ", statusBadge(j.status), " ", progressBar(j))))
        : h("p", null, "No job is encoding."),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "workers" },
      h("h2", { id: "workers" }, "Workers"),
      h(
        "p",
        null,
        "Workers seen recently are not shown: no RPC exposes them. The database knows them (each job's and each chunk task's lease holder and expiry, ",
        h("code", null, "jobs.lease_owner"),
        " and ",
        h("code", null, "job_tasks.lease_owner"),
        "), but they are operator data across organizations, not part of the per-organization API this page uses; ",
        h("code", null, "/metrics"),
        " is where an operator watches the fleet.",
      ),
    ),
  );
}
