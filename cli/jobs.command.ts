import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { JobStatusSchema } from "../gen/rendition/v1/common_pb.js";
import { OriginProvider } from "../gen/rendition/v1/origin_pb.js";
import type { Job } from "../gen/rendition/v1/job_pb.js";
import { enumLabel, parseEnumFlag } from "./client.js";
import { integer, nextPageHint, pagination, type Context, type PageFlags } from "./context.js";
import { summary, watchJobs } from "./job-watch.js";
import { printJson, printTable } from "./output.js";

export const when = (t: Timestamp | undefined) => (t ? timestampDate(t).toISOString().replace(/\.\d+Z$/, "Z") : "");

function inputOf(job: Job): string {
  if (job.inputUrl) return job.inputUrl;
  const origin = job.inputOrigin;
  return origin ? `${origin.id}:${origin.path}` : "";
}

/** The human view of one job (`jobs get`, and after cancel/confirm). */
export function describeJob(job: Job): string[] {
  const lines = [`${job.id}  ${enumLabel(JobStatusSchema, job.status)}  ${job.progress}%${job.test ? "  (test)" : ""}`];
  lines.push(`  input:    ${inputOf(job)}`);
  if (job.outputOrigin) lines.push(`  output:   ${job.outputOrigin.id}${job.outputOrigin.provider === OriginProvider.LOCAL ? " (local)" : ""}`);
  if (job.inputMetadata && job.inputMetadata.durationMs > 0n) {
    const m = job.inputMetadata;
    lines.push(`  source:   ${m.width}x${m.height} ${m.codec} ${m.framerate.toFixed(2)} fps ${(Number(m.durationMs) / 1000).toFixed(1)} s`);
  }
  const times = [["created", job.createdAt], ["probed", job.probedAt], ["started", job.startedAt], ["completed", job.completedAt]] as const;
  lines.push(`  times:    ${times.filter(([, t]) => t).map(([name, t]) => `${name} ${when(t)}`).join(", ")}`);
  if (job.totalEstimatedCost) lines.push(`  cost:     estimated ${job.totalEstimatedCost} ${job.currency}${job.totalActualCost ? `, actual ${job.totalActualCost} ${job.currency}` : ""}`);
  return [...lines, ...summary(job).slice(1), ...(job.errorCode ? [`  error:    ${job.errorCode}: ${job.errorMessage}`] : [])];
}

export function registerJobs(program: Command, run: (command: Command, action: (ctx: Context) => Promise<void>) => Promise<void>): void {
  const jobs = program.command("jobs").description("list, inspect, cancel, confirm and watch jobs");

  jobs
    .command("list")
    .description("jobs of the organization, newest first")
    .option("--status <status>", "only jobs in this status (pending, probing, awaiting_confirmation, processing, completed, failed, canceled, partial)")
    .option("--limit <n>", "page size (default 20, at most 100)", integer("--limit", 1, 100))
    .option("--cursor <cursor>", "the next page, from a previous list")
    .action((options: PageFlags & { status?: string }, command: Command) =>
      run(command, async (ctx) => {
        const status = options.status ? parseEnumFlag(JobStatusSchema, "--status", options.status) : 0;
        const res = await ctx.clients().jobs.list({ status, pagination: pagination(options) });
        if (ctx.json) return printJson(ctx.io, res);
        const rows = res.jobs.map((job) => [job.id, enumLabel(JobStatusSchema, job.status), `${job.progress}%`, when(job.createdAt), inputOf(job)]);
        printTable(ctx.io, ["ID", "STATUS", "PROGRESS", "CREATED", "INPUT"], rows, "jobs");
        nextPageHint(ctx, res.pagination?.nextCursor, res.pagination?.totalCount);
      }),
    );

  jobs
    .command("get")
    .description("one job: status, progress, times, costs, outputs")
    .argument("<id>", "job id (job_...)")
    .action((id: string, _options: unknown, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().jobs.get({ id });
        if (ctx.json) return printJson(ctx.io, res);
        for (const line of describeJob(res.job!)) ctx.io.out(line);
      }),
    );

  jobs
    .command("cancel")
    .description("cancel a job that has not finished (finished outputs are kept)")
    .argument("<id>", "job id")
    .action((id: string, _options: unknown, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().jobs.cancel({ id });
        if (ctx.json) return printJson(ctx.io, res);
        ctx.io.out(`${id} ${enumLabel(JobStatusSchema, res.job!.status)}`);
      }),
    );

  jobs
    .command("confirm")
    .description("start encoding a job that awaits confirmation (created with --delayed-start)")
    .argument("<id>", "job id")
    .action((id: string, _options: unknown, command: Command) =>
      run(command, async (ctx) => {
        const res = await ctx.clients().jobs.confirm({ id });
        if (ctx.json) return printJson(ctx.io, res);
        ctx.io.out(`${id} ${enumLabel(JobStatusSchema, res.job!.status)} (estimated ${res.job!.totalEstimatedCost} ${res.job!.currency})`);
      }),
    );

  jobs
    .command("watch")
    .description("live progress of jobs until they finish: a bar per job on a terminal, plain lines otherwise, NDJSON with --json; exits 3 when one does not complete")
    .argument("<ids...>", "job ids")
    .action((ids: string[], _options: unknown, command: Command) =>
      run(command, async (ctx) => {
        await watchJobs(ctx.clients(), ids, ctx.io, { json: ctx.json });
      }),
    );
}
