/**
 * Parser for ffmpeg's `-progress pipe:1` output: blocks of `key=value` lines, each closed by
 * `progress=continue` or, once at the end, `progress=end`. Pure (no I/O, no clock): feed it
 * stdout chunks as they arrive, in any split.
 */

export interface ProgressBlock {
  /** Position of the output in microseconds, when ffmpeg knew it ("N/A" at the very start). */
  outTimeUs?: number;
  /** `progress=end`: ffmpeg finished writing. */
  end: boolean;
}

/** Splits a stream of chunks into complete blocks; a partial line waits for the next chunk. */
export class ProgressParser {
  private pending = "";
  private outTimeUs: number | undefined;

  push(chunk: string): ProgressBlock[] {
    const lines = (this.pending + chunk).split(/\r?\n/);
    this.pending = lines.pop() ?? "";
    const blocks: ProgressBlock[] = [];
    for (const line of lines) {
      const block = this.line(line);
      if (block) blocks.push(block);
    }
    return blocks;
  }

  private line(line: string): ProgressBlock | undefined {
    const eq = line.indexOf("=");
    if (eq <= 0) return undefined; // garbage, blank lines
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    switch (key) {
      // Both are microseconds: "out_time_ms" is a historical misnomer in ffmpeg.
      case "out_time_us":
      case "out_time_ms": {
        const us = Number(value);
        if (value !== "" && Number.isFinite(us) && us >= 0) this.outTimeUs = us;
        return undefined;
      }
      case "out_time": {
        // Only a fallback for builds that print no out_time_us.
        const us = parseClock(value);
        if (us !== undefined && this.outTimeUs === undefined) this.outTimeUs = us;
        return undefined;
      }
      case "progress": {
        const block: ProgressBlock = { end: value === "end" };
        if (this.outTimeUs !== undefined) block.outTimeUs = this.outTimeUs;
        this.outTimeUs = undefined;
        return block;
      }
      default:
        return undefined;
    }
  }
}

/** "00:01:02.500000" → microseconds; undefined for "N/A" or anything else. */
export function parseClock(value: string): number | undefined {
  const match = /^(-?)(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$/.exec(value.trim());
  if (!match || match[1] === "-") return undefined;
  const total = Number(match[2]) * 3600 + Number(match[3]) * 60 + Number(match[4]);
  return Number.isFinite(total) ? Math.round(total * 1e6) : undefined;
}

/**
 * Turns blocks into a fraction of `durationMs` that never goes down and stays in 0..1.
 * `progress=end` counts as 1. Without a known duration only the end gives a value.
 */
export class ProgressTracker {
  private readonly parser = new ProgressParser();
  private current = 0;

  constructor(private readonly durationMs: number | undefined) {}

  /** The new fraction if this chunk moved it forward, else undefined. */
  push(chunk: string): number | undefined {
    const before = this.current;
    for (const block of this.parser.push(chunk)) {
      const fraction = block.end ? 1 : progressFraction(block.outTimeUs, this.durationMs);
      if (fraction !== undefined && fraction > this.current) this.current = fraction;
    }
    return this.current > before ? this.current : undefined;
  }

  get fraction(): number {
    return this.current;
  }
}

function progressFraction(outTimeUs: number | undefined, durationMs: number | undefined): number | undefined {
  if (outTimeUs === undefined || !durationMs || durationMs <= 0) return undefined;
  return Math.min(1, Math.max(0, outTimeUs / 1000 / durationMs));
}
