import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../services/common/errors.js";
import { decodeCursor, encodeCursor, paginate, parsePagination } from "../../services/common/pagination.js";

describe("pagination", () => {
  it("defaults to 20 and caps at 100", () => {
    expect(parsePagination(undefined)).toEqual({ limit: 20 });
    expect(parsePagination({ limit: 0, cursor: "" })).toEqual({ limit: 20 });
    expect(parsePagination({ limit: 500, cursor: "" }).limit).toBe(100);
  });

  it("round-trips cursors and rejects forged ones with a field violation", () => {
    const cursor = encodeCursor("job_01abc");
    expect(cursor).not.toContain("job_01abc"); // opaque
    expect(decodeCursor(cursor)).toBe("job_01abc");
    expect(parsePagination({ limit: 5, cursor })).toEqual({ limit: 5, beforeId: "job_01abc" });
    for (const bad of ["x", Buffer.from("[]").toString("base64url"), Buffer.from('{"b":1}').toString("base64url")]) {
      const err = (() => {
        try {
          decodeCursor(bad);
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).violations[0]!.field).toBe("pagination.cursor");
    }
  });

  it("returns a next cursor only when there is another page", () => {
    const rows = [{ id: "c" }, { id: "b" }, { id: "a" }];
    expect(paginate(rows, 3)).toEqual({ items: rows, nextCursor: "" });
    const page = paginate(rows, 2);
    expect(page.items).toEqual(rows.slice(0, 2));
    expect(decodeCursor(page.nextCursor)).toBe("b");
  });
});
