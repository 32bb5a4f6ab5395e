import { existsSync } from "node:fs";
import { createInterface } from "node:readline/promises";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { Command } from "commander";
import { JobStatus, JobStatusSchema, OutputTypeSchema, PrioritySchema, QualitySchema, ResolutionSchema, VideoCodecSchema } from "../gen/rendition/v1/common_pb.js";
import { JobServiceCreateRequestSchema, OutputSpecSchema, type Job, type OutputSpec } from "../gen/rendition/v1/job_pb.js";
import type { Clients } from "./client.js";
import { enumLabel, parseEnumFlag } from "./client.js";
import { CliUsageError } from "./credentials.js";
import { collect, integer, keyValues, messageFromJsonFlag, type Context } from "./context.js";
import { TERMINAL, watchJobs } from "./job-watch.js";
import { messageJson, printJson } from "./output.js";
import { uploadFile } from "./upload.js";

export interface SubmitFlags {
  origin?: string;
  path?: string;
  outputOrigin?: string;
  preset: string[];
  output: string[];
  type?: string;
  codec?: string;
  resolution: string[];
  quality?: string;
  width?: number;
  height?: number;
  bitrate?: number;
  framerate?: number;
  priority?: string;
  metadata: string[];
  webhookUrl?: string;
  idempotencyKey?: string;
  pathTemplate?: string;
  delayedStart?: boolean;
  confirm?: boolean;
  yes?: boolean;
  watch?: boolean;
}

/** A direct input the API reads itself (JobServiceCreateRequest.input_url: s3, gs, https). */
const INPUT_URL = /^[a-z][a-z0-9+.-]*:\/\//i;

type OutputInit = MessageInitShape<typeof OutputSpecSchema>;

/**
 * The outputs the flags ask for: one per --preset, one per --output JSON, and one from the inline
 * flags (--type/--codec/--resolution/...: one video variant per resolution). Nothing given: an
 * H.264 mp4 at the source's size.
 */
export async function outputsFromFlags(flags: SubmitFlags): Promise<OutputSpec[]> {
  const outputs: OutputSpec[] = flags.preset.map((preset) => create(OutputSpecSchema, { preset }));
  for (const [i, json] of flags.output.entries()) outputs.push(await messageFromJsonFlag(OutputSpecSchema, `--output #${i + 1}`, json));
  const inline = flags.type !== undefined || flags.codec !== undefined || flags.resolution.length > 0 || flags.quality !== undefined || [flags.width, flags.height, flags.bitrate, flags.framerate].some((v) => v !== undefined);
  if (inline || outputs.length === 0) {
    const resolutions = flags.resolution.flatMap((r) => r.split(",")).filter(Boolean);
    const variant = (resolution?: string) => ({
      codec: parseEnumFlag(VideoCodecSchema, "--codec", flags.codec ?? "h264"),
      resolution: resolution ? parseEnumFlag(ResolutionSchema, "--resolution", resolution) : 0,
      quality: flags.quality ? parseEnumFlag(QualitySchema, "--quality", flags.quality) : 0,
      width: flags.width ?? 0,
      height: flags.height ?? 0,
      bitrate: flags.bitrate ?? 0,
      framerate: flags.framerate ?? 0,
    });
    const spec: OutputInit = {
      type: parseEnumFlag(OutputTypeSchema, "--type", flags.type ?? "mp4"),
      video: resolutions.length ? resolutions.map(variant) : [variant()],
    };
    outputs.push(create(OutputSpecSchema, spec));
  }
  return outputs;
}

/** Waits (Watch) until a delayed-start job has its estimate, or ended on the way. */
async function untilAwaitingConfirmation(clients: Clients, id: string): Promise<Job> {
  for await (const event of clients.jobs.watch({ id })) {
    const job = event.job!;
    if (job.status === JobStatus.AWAITING_CONFIRMATION || TERMINAL.has(job.status)) return job;
  }
  throw new CliUsageError("unavailable", `the watch of ${id} ended before the job had its estimate`);
}

async function ask(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

export async function submit(ctx: Context, source: string | undefined, flags: SubmitFlags): Promise<void> {
  const clients = ctx.clients();
  const origin = flags.origin ?? clients.credentials.localOriginId;
  const request = create(JobServiceCreateRequestSchema, {
    outputs: await outputsFromFlags(flags),
    priority: flags.priority ? parseEnumFlag(PrioritySchema, "--priority", flags.priority) : 0,
    metadata: keyValues("--metadata", flags.metadata),
    webhookUrl: flags.webhookUrl ?? "",
    idempotencyKey: flags.idempotencyKey ?? "",
    outputPathTemplate: flags.pathTemplate ?? "",
    delayedStart: Boolean(flags.delayedStart || flags.confirm),
  });
  const needOrigin = (why: string) => {
    if (!origin) throw new CliUsageError("invalid_argument", `--origin: required ${why} (no local origin in the credentials file to default to)`);
    return origin;
  };

  if (source && INPUT_URL.test(source)) {
    if (flags.path) throw new CliUsageError("invalid_argument", "--path: a URL input is read directly; --path names a file in --origin or where an upload goes");
    request.inputUrl = source;
  } else if (source) {
    if (!existsSync(source)) throw new CliUsageError("invalid_argument", `${source}: no such file (a URL input starts with https://, s3:// or gs://)`);
    const uploaded = await uploadFile(clients, ctx.io, source, { originId: needOrigin("to upload a file to"), path: flags.path, json: ctx.json });
    request.inputOriginId = uploaded.inputOriginId;
    request.inputPath = uploaded.inputPath;
  } else if (flags.path) {
    request.inputOriginId = needOrigin("with --path");
    request.inputPath = flags.path;
  } else {
    throw new CliUsageError("invalid_argument", "say what to transcode: a local FILE (uploaded first), a URL, or --path P for a file already in --origin");
  }
  request.outputOriginId = flags.outputOrigin ?? needOrigin("for the outputs (or pass --output-origin)");

  const created = await clients.jobs.create(request);
  let job = created.job!;
  if (ctx.json) printJson(ctx.io, created);
  else ctx.io.err(`created ${job.id} (${enumLabel(JobStatusSchema, job.status)})`);

  if (flags.confirm) {
    job = await untilAwaitingConfirmation(clients, job.id);
    if (job.status === JobStatus.AWAITING_CONFIRMATION) {
      const estimate = `${job.id}: estimated cost ${job.totalEstimatedCost} ${job.currency} for ${(Number(job.inputMetadata?.durationMs ?? 0n) / 1000).toFixed(1)} s of input, ${job.outputs.length} output(s)`;
      if (ctx.json) printJson(ctx.io, { job: messageJson(job) });
      else ctx.io.err(estimate);
      const go = flags.yes || (!ctx.json && ctx.io.interactive && (await ask("Start encoding? [y/N] ")));
      if (!go) {
        if (!ctx.json) ctx.io.err(`left awaiting confirmation: \`rendition jobs confirm ${job.id}\` starts it, \`rendition jobs cancel ${job.id}\` drops it`);
        return;
      }
      const confirmed = await clients.jobs.confirm({ id: job.id });
      if (ctx.json) printJson(ctx.io, confirmed);
      else ctx.io.err(`confirmed ${job.id}`);
    }
  }

  if (flags.watch) await watchJobs(clients, [job.id], ctx.io, { json: ctx.json });
  else if (!ctx.json) ctx.io.out(job.id);
}

export function registerSubmit(program: Command, run: (command: Command, action: (ctx: Context) => Promise<void>) => Promise<void>): void {
  program
    .command("submit")
    .description(
      "create a job from a local FILE (uploaded first through UploadService), a URL (https, s3, gs) or --path P in --origin; prints the job id (the Create response with --json)",
    )
    .argument("[source]", "a local file or a URL")
    .option("--origin <id>", "origin to upload to and read from (default: the first start's local origin)")
    .option("--path <path>", "with FILE: where the upload goes in the origin; without: a file already in the origin")
    .option("--output-origin <id>", "origin the outputs are written to (default: --origin)")
    .option("--preset <slug>", "an output from a preset (id or slug; repeatable: one output each)", collect, [])
    .option("--output <json>", "an output as OutputSpec JSON, or @file (repeatable)", collect, [])
    .option("--type <type>", "inline output type: mp4, webm, mkv, mov, hls, dash, adaptive (default mp4)")
    .option("--codec <codec>", "video codec: h264, h265, vp9, av1 (default h264)")
    .option("--resolution <res>", "480p, 720p, 1080p, 1440p, 2160p, 4320p; a comma list (or repeated) makes a ladder, one variant each", collect, [])
    .option("--quality <tier>", "economy, standard, premium")
    .option("--width <px>", "custom width", integer("--width", 1))
    .option("--height <px>", "custom height", integer("--height", 1))
    .option("--bitrate <kbps>", "target video bitrate", integer("--bitrate", 1))
    .option("--framerate <fps>", "target frame rate", integer("--framerate", 1))
    .option("--priority <priority>", "economy, standard, premium")
    .option("--metadata <key=value>", "job metadata (repeatable)", collect, [])
    .option("--webhook-url <url>", "receives this job's events, signed with the organization's webhook secret")
    .option("--idempotency-key <key>", "the same key and request returns the original job")
    .option("--path-template <template>", "output path template ({job_id}, {output_id}, {format}, ...)")
    .option("--delayed-start", "pause after probing with the cost estimate (start it with `jobs confirm`)")
    .option("--confirm", "delayed start, show the estimate, then ask before encoding (--yes: without asking)")
    .option("-y, --yes", "with --confirm: confirm without asking")
    .option("-w, --watch", "follow the job to the end with a progress bar (exit 3 when it does not complete)")
    .action((source: string | undefined, flags: SubmitFlags, command: Command) => run(command, (ctx) => submit(ctx, source, flags)));
}
