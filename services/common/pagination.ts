import { InvalidArgumentError } from "./errors.js";

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

export interface PageRequest {
  limit: number;
  /** Return items whose id sorts before this one (lists are newest first, ids sort by time). */
  beforeId?: string;
}

/** Turns the wire pagination (limit 0 = default, opaque cursor) into a page request. */
export function parsePagination(pagination: { limit: number; cursor: string } | undefined): PageRequest {
  const limit = pagination?.limit ? Math.min(pagination.limit, MAX_PAGE_SIZE) : DEFAULT_PAGE_SIZE;
  const cursor = pagination?.cursor ?? "";
  return cursor ? { limit, beforeId: decodeCursor(cursor) } : { limit };
}

/** Cursors are opaque to callers: base64url JSON, so the encoding can change without an API change. */
export function encodeCursor(lastId: string): string {
  return Buffer.from(JSON.stringify({ b: lastId }), "utf8").toString("base64url");
}

export function decodeCursor(cursor: string): string {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
    if (parsed && typeof parsed === "object" && typeof (parsed as { b?: unknown }).b === "string") {
      return (parsed as { b: string }).b;
    }
  } catch {
    // fall through to the error below
  }
  throw new InvalidArgumentError([
    { field: "pagination.cursor", rule: "pagination.cursor_invalid", message: "is not a cursor returned by this API" },
  ]);
}

/** Given up to limit+1 rows fetched, returns the page and the cursor for the next one. */
export function paginate<T extends { id: string }>(rows: T[], limit: number): { items: T[]; nextCursor: string } {
  if (rows.length <= limit) return { items: rows, nextCursor: "" };
  const items = rows.slice(0, limit);
  return { items, nextCursor: encodeCursor(items[items.length - 1]!.id) };
}
