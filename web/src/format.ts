/** Pure helpers of the dashboard (no DOM): labels, times, costs, search, timeline, storyboards. */
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { JobStatus, OutputType, Priority } from "../../gen/rendition/v1/common_pb.js";
import { OutputStatus, type Job } from "../../gen/rendition/v1/job_pb.js";

/** "JOB_STATUS_AWAITING_CONFIRMATION" style enum names as words: "Awaiting confirmation". */
function words(name: string | undefined): string {
  if (!name) return "Unknown";
  const lower = name.toLowerCase().replaceAll("_", " ");
  return lower.charAt(0).toUpperCase() + lower.slice(1);
}

export const statusLabel = (s: JobStatus): string => words(JobStatus[s]);
export const outputStatusLabel = (s: OutputStatus): string => words(OutputStatus[s]);
export const priorityLabel = (p: Priority): string => (p === Priority.UNSPECIFIED ? "Standard" : words(Priority[p]));
export const outputTypeLabel = (t: OutputType): string => {
  const name = OutputType[t];
  return name === "ADAPTIVE" ? "Adaptive (HLS + DASH)" : (name ?? "Unknown");
};

/** Statuses the list filter offers, in lifecycle order. */
export const JOB_STATUSES: JobStatus[] = [
  JobStatus.PENDING,
  JobStatus.PROBING,
  JobStatus.AWAITING_CONFIRMATION,
  JobStatus.PROCESSING,
  JobStatus.COMPLETED,
  JobStatus.PARTIAL,
  JobStatus.FAILED,
  JobStatus.CANCELED,
];

const TERMINAL = new Set([JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.PARTIAL]);
export const isTerminal = (s: JobStatus): boolean => TERMINAL.has(s);
/** The status names' CSS class: "pending", "awaiting-confirmation", … */
export const statusClass = (s: JobStatus): string => (JobStatus[s] ?? "unspecified").toLowerCase().replaceAll("_", "-");

export function dateOf(ts: Timestamp | undefined): Date | undefined {
  if (!ts || (ts.seconds === 0n && ts.nanos === 0)) return undefined;
  return timestampDate(ts);
}

/** 2026-12-01 16:14:08 (UTC: the server's clock and the logs agree with it). */
export function formatTime(ts: Timestamp | Date | undefined): string {
  const date = ts instanceof Date ? ts : dateOf(ts);
  return date ? date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "—";
}

export function formatDuration(ms: number | bigint): string {
  const n = Number(ms);
  if (!Number.isFinite(n) || n < 0) return "—";
  if (n < 1000) return `${Math.round(n)} ms`;
  const s = n / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

export function formatBytes(bytes: number | bigint): string {
  let n = Number(bytes);
  if (!n) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/** The job's cost as the list shows it: the actual cost once known, else the estimate. */
export function jobCost(job: Pick<Job, "totalActualCost" | "totalEstimatedCost" | "currency" | "test">): { text: string; estimate: boolean } {
  const currency = job.currency || "USD";
  if (job.totalActualCost) return { text: `${job.totalActualCost} ${currency}`, estimate: false };
  if (job.totalEstimatedCost) return { text: `≈ ${job.totalEstimatedCost} ${currency}`, estimate: true };
  return { text: "—", estimate: false };
}

/**
 * The list's search: `key=value` matches jobs whose metadata[key] contains value; anything else
 * matches a job whose id, input, or any metadata key or value contains it (case-insensitive).
 */
export function matchesSearch(job: Pick<Job, "id" | "metadata" | "inputUrl" | "inputOrigin">, query: string): boolean {
  const q = query.trim().toLowerCase();
  if (!q) return true;
  const eq = q.indexOf("=");
  const entries = Object.entries(job.metadata).map(([k, v]) => [k.toLowerCase(), v.toLowerCase()] as const);
  if (eq > 0) {
    const key = q.slice(0, eq).trim();
    const value = q.slice(eq + 1).trim();
    return entries.some(([k, v]) => k === key && v.includes(value));
  }
  const haystack = [job.id, job.inputUrl, job.inputOrigin?.path ?? "", ...entries.flat()].map((s) => s.toLowerCase());
  return haystack.some((s) => s.includes(q));
}

/** A job id as the API writes them (job_ + time-sortable suffix): searched with Get, not by scanning. */
export const looksLikeJobId = (query: string): boolean => /^job_[A-Za-z0-9]+$/.test(query.trim());

export interface TimelineStep {
  label: string;
  at?: Date;
  /** What happened in between: "queued 1.2 s", "probe 300 ms". */
  detail?: string;
  state: "done" | "current" | "pending" | "failed" | "skipped";
}

/** created → probed → (confirmed) → started → completed, from the job's timestamps and execution. */
export function timeline(job: Job): TimelineStep[] {
  const ex = job.execution;
  const created = dateOf(job.createdAt);
  const probed = dateOf(job.probedAt);
  const confirmed = dateOf(job.confirmedAt);
  const started = dateOf(job.startedAt);
  const completed = dateOf(job.completedAt);
  const terminal = isTerminal(job.status);
  const failedLike = job.status === JobStatus.FAILED || job.status === JobStatus.CANCELED;
  const steps: TimelineStep[] = [];
  steps.push({ label: "Created", at: created, state: created ? "done" : "pending" });
  const state = (at: Date | undefined, active: boolean): TimelineStep["state"] =>
    at ? "done" : active ? "current" : terminal ? "skipped" : "pending";
  steps.push({
    label: "Probed",
    at: probed,
    detail: probed && ex && ex.probeDurationMs ? `probe ${formatDuration(ex.probeDurationMs)}` : undefined,
    state: state(probed, job.status === JobStatus.PROBING || job.status === JobStatus.PENDING),
  });
  if (job.delayedStart) {
    steps.push({ label: "Confirmed", at: confirmed, state: state(confirmed, job.status === JobStatus.AWAITING_CONFIRMATION) });
  }
  steps.push({
    label: "Started",
    at: started,
    detail: started && ex && ex.queueDurationMs ? `queued ${formatDuration(ex.queueDurationMs)}` : undefined,
    state: state(started, false),
  });
  const endLabel = terminal ? statusLabel(job.status) : "Completed";
  const encode = ex && ex.encodeDurationMs ? `encode ${formatDuration(ex.encodeDurationMs)}` : "";
  const upload = ex && ex.uploadDurationMs ? `upload ${formatDuration(ex.uploadDurationMs)}` : "";
  steps.push({
    label: endLabel,
    at: completed,
    detail: (completed && [encode, upload].filter(Boolean).join(", ")) || undefined,
    state: completed ? (failedLike ? "failed" : "done") : job.status === JobStatus.PROCESSING ? "current" : "pending",
  });
  return steps;
}

export interface StoryboardCue {
  start: number;
  end: number;
  /** The image as the VTT names it (relative to the VTT). */
  image: string;
  x: number;
  y: number;
  w: number;
  h: number;
}

function vttSeconds(t: string): number {
  const parts = t.trim().split(":").map(Number);
  return parts.reduce((acc, p) => acc * 60 + p, 0);
}

/** A sprite storyboard (WebVTT cues whose text is `sprite.jpg#xywh=x,y,w,h`). Other cues are skipped. */
export function parseStoryboard(vtt: string): StoryboardCue[] {
  const cues: StoryboardCue[] = [];
  for (const block of vtt.replace(/\r\n?/g, "\n").split(/\n{2,}/)) {
    const lines = block.split("\n");
    const timing = lines.findIndex((l) => l.includes("-->"));
    if (timing < 0) continue;
    const [from, to] = lines[timing]!.split("-->");
    const text = lines.slice(timing + 1).join("").trim();
    const m = /^(.+)#xywh=(\d+),(\d+),(\d+),(\d+)$/.exec(text);
    if (!m || !from || !to) continue;
    cues.push({ start: vttSeconds(from), end: vttSeconds(to.trim().split(/\s+/)[0]!), image: m[1]!, x: +m[2]!, y: +m[3]!, w: +m[4]!, h: +m[5]! });
  }
  return cues;
}

/**
 * The signed URL of a storyboard's image: the signed thumbnail URL whose file name matches (S3
 * presigned URLs cannot be derived from the VTT's), else resolved against the storyboard URL
 * (Rendition's own /files/ tokens sign a whole folder).
 */
export function storyboardImageUrl(image: string, storyboardUrl: string, signedUrls: string[]): string {
  const name = image.split("/").pop()!;
  const signed = signedUrls.find((u) => new URL(u).pathname.split("/").pop() === encodeURIComponent(name));
  return signed ?? new URL(image, storyboardUrl).href;
}

/** `key=value` lines into metadata; blank lines skipped; every malformed line reported by number. */
export function parseMetadata(text: string): { metadata: Record<string, string>; errors: string[] } {
  const metadata: Record<string, string> = {};
  const errors: string[] = [];
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    const eq = line.indexOf("=");
    if (eq <= 0) errors.push(`metadata line ${i + 1}: write key=value`);
    else metadata[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  });
  return { metadata, errors };
}

/** Which player an output needs, from its type and the signed URL of its file / master manifest. */
export function playerFor(type: OutputType, url: string): "hls" | "dash" | "video" {
  const path = new URL(url).pathname.toLowerCase();
  if (path.endsWith(".m3u8")) return "hls";
  if (path.endsWith(".mpd")) return "dash";
  if (type === OutputType.HLS) return "hls";
  if (type === OutputType.DASH) return "dash";
  return "video";
}
