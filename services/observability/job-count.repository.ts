import type { Kysely } from "kysely";
import type { Database } from "../db/schema.js";
import type { JobCount } from "./metrics.js";

/** The numbers behind rendition_jobs: one grouped count over every organization's jobs. */
export class JobCountRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async countByStatusAndPriority(): Promise<JobCount[]> {
    const rows = await this.db
      .selectFrom("jobs")
      .select(["status", "priority", (eb) => eb.fn.countAll<string>().as("n")])
      .groupBy(["status", "priority"])
      .execute();
    return rows.map((r) => ({ status: r.status, priority: r.priority, count: Number(r.n) }));
  }
}
