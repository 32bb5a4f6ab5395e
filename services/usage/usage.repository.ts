import { fromJson } from "@bufbuild/protobuf";
import { sql, type Kysely } from "kysely";
import { VideoVariantSchema } from "../../gen/rendition/v1/common_pb.js";
import type { Database } from "../db/schema.js";
import { ASSUMED_SOURCE, variantPricing } from "../pricing/estimate.js";
import { CURRENCY, type PriorityName } from "../pricing/pricing.js";
import type { QualityName, TerminalStatusName, UsageLineRecord, UsageTotals } from "./usage.types.js";

const TERMINAL: readonly TerminalStatusName[] = ["completed", "partial", "failed", "canceled"];
const QUALITY: Record<string, QualityName> = { QUALITY_ECONOMY: "economy", QUALITY_STANDARD: "standard", QUALITY_PREMIUM: "premium" };

/** PostgreSQL answers count/sum of bigint as strings (numeric), PGlite sometimes as numbers: one reading for both. */
const num = (value: unknown): number => (value === null || value === undefined ? 0 : Number(value));

export function emptyTotals(): UsageTotals {
  return { jobs: { completed: 0, partial: 0, failed: 0, canceled: 0 }, outputsCompleted: 0, durationMs: 0, lines: [], actualCostMinor: 0, currency: CURRENCY };
}

interface LineRow {
  test: boolean;
  priority: string;
  codec: string | null;
  resolution: string | null;
  quality: string | null;
  width: string | null;
  height: string | null;
  source_width: string | null;
  source_height: string | null;
  renditions: unknown;
  duration_ms: unknown;
}

/**
 * Usage of the jobs that finished (completed_at) in [start, end), from three GROUP BY queries:
 * jobs by status (with their actual costs), delivered outputs, and delivered renditions by what
 * decides their pricing line. The last groups raw spec fields; mapping a group to its line
 * (custom sizes to the nearest tier, against the input's size) is the pricing code's, in TypeScript.
 */
export class UsageRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async usage(organizationId: string, start: Date, end: Date): Promise<{ live: UsageTotals; test: UsageTotals }> {
    const totals = { live: emptyTotals(), test: emptyTotals() };
    const of = (test: boolean) => (test ? totals.test : totals.live);
    const finished = this.db
      .selectFrom("jobs as j")
      .where("j.organization_id", "=", organizationId)
      .where("j.completed_at", ">=", start)
      .where("j.completed_at", "<", end)
      .where("j.status", "in", [...TERMINAL]);

    const byStatus = await finished
      .select((eb) => ["j.test", "j.status", eb.fn.countAll<string>().as("n"), eb.fn.sum<string | null>("j.actual_cost_minor").as("cost")])
      .groupBy(["j.test", "j.status"])
      .execute();
    for (const row of byStatus) {
      const t = of(row.test);
      t.jobs[row.status as TerminalStatusName] += num(row.n);
      t.actualCostMinor += num(row.cost);
    }

    const outputs = await finished
      .innerJoin("job_outputs as o", "o.job_id", "j.id")
      .where("o.status", "=", "completed")
      .select((eb) => ["j.test", eb.fn.countAll<string>().as("n"), eb.fn.sum<string | null>("o.duration_ms").as("ms")])
      .groupBy("j.test")
      .execute();
    for (const row of outputs) {
      of(row.test).outputsCompleted += num(row.n);
      of(row.test).durationMs += num(row.ms);
    }

    const { rows } = await sql<LineRow>`
      SELECT j.test, j.priority,
             v.value->>'codec' AS codec, v.value->>'resolution' AS resolution, v.value->>'quality' AS quality,
             v.value->>'width' AS width, v.value->>'height' AS height,
             j.input_metadata->>'width' AS source_width, j.input_metadata->>'height' AS source_height,
             count(*) AS renditions, sum(o.duration_ms) AS duration_ms
        FROM jobs j
        JOIN job_outputs o ON o.job_id = j.id
        CROSS JOIN LATERAL jsonb_array_elements(o.spec->'video') AS v(value)
       WHERE j.organization_id = ${organizationId}
         AND j.completed_at >= ${start} AND j.completed_at < ${end}
         AND j.status IN (${sql.join([...TERMINAL])})
         AND o.status = 'completed'
       GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9`.execute(this.db);
    const lines = new Map<string, UsageLineRecord>();
    for (const row of rows) {
      const variant = fromJson(VideoVariantSchema, {
        ...(row.codec ? { codec: row.codec } : {}),
        ...(row.resolution ? { resolution: row.resolution } : {}),
        ...(row.width ? { width: Number(row.width) } : {}),
        ...(row.height ? { height: Number(row.height) } : {}),
      });
      const source = num(row.source_width) > 0 && num(row.source_height) > 0 ? { width: num(row.source_width), height: num(row.source_height), fps: 30 } : ASSUMED_SOURCE;
      const { codec, tier } = variantPricing(variant, source);
      const quality = QUALITY[row.quality ?? ""] ?? "standard";
      const priority = row.priority as PriorityName;
      const key = `${row.test} ${codec} ${tier} ${quality} ${priority}`;
      let line = lines.get(key);
      if (!line) {
        line = { codec, tier, quality, priority, renditions: 0, durationMs: 0 };
        lines.set(key, line);
        of(row.test).lines.push(line);
      }
      line.renditions += num(row.renditions);
      line.durationMs += num(row.duration_ms);
    }
    for (const t of [totals.live, totals.test]) {
      t.lines.sort((a, b) => `${a.codec} ${a.tier} ${a.quality} ${a.priority}`.localeCompare(`${b.codec} ${b.tier} ${b.quality} ${b.priority}`));
    }
    return totals;
  }
}
