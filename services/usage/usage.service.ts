import { InvalidArgumentError, type FieldViolation } from "../common/errors.js";
import type { UsageRepository } from "./usage.repository.js";
import type { UsageReport } from "./usage.types.js";

/** The longest range one GetUsage covers. */
export const MAX_USAGE_RANGE_DAYS = 366;

/** Pure: end after start, at most MAX_USAGE_RANGE_DAYS apart. */
export function checkUsageRange(start: Date, end: Date): FieldViolation[] {
  if (end <= start) return [{ field: "end_time", rule: "usage.end_after_start", message: "must be after start_time" }];
  if (end.getTime() - start.getTime() > MAX_USAGE_RANGE_DAYS * 86_400_000) {
    return [{ field: "end_time", rule: "usage.range_max", message: `must be at most ${MAX_USAGE_RANGE_DAYS} days after start_time` }];
  }
  return [];
}

export class UsageManager {
  constructor(private readonly repo: Pick<UsageRepository, "usage">) {}

  async get(organizationId: string, start: Date, end: Date): Promise<UsageReport> {
    const violations = checkUsageRange(start, end);
    if (violations.length) throw new InvalidArgumentError(violations);
    return { start, end, ...(await this.repo.usage(organizationId, start, end)) };
  }
}
