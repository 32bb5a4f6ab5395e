import type { Kysely } from "kysely";
import type { Database } from "../db/schema.js";
import type { WorkQueue } from "../queue/work-queue.js";
import { JobCountRepository } from "./job-count.repository.js";
import { collectProcessMetrics, observeJobCounts, observeQueue } from "./metrics.js";

/**
 * What an API process adds to its /metrics: the jobs table's counts and the queue's numbers
 * (both cluster-wide, so only API processes export them), beside the process metrics.
 */
export function observeApiProcess(db: Kysely<Database>, queue: WorkQueue, options: { jobCountCacheMs?: number } = {}): void {
  collectProcessMetrics();
  const counts = new JobCountRepository(db);
  observeJobCounts(() => counts.countByStatusAndPriority(), options.jobCountCacheMs);
  if (queue.stats) observeQueue(() => queue.stats!());
}
