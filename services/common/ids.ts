import { randomBytes } from "node:crypto";

/** Crockford base32, lowercase: sorts the same as the numbers it encodes. */
const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

export type IdPrefix = "org" | "ak" | "ori" | "pst" | "job" | "out" | "thm" | "evt";

/**
 * Prefixed, time-sortable id in the ULID layout: 48-bit millisecond timestamp (10 chars) then
 * 80 random bits (16 chars). Ids of one prefix sort by creation time, so "newest first" is
 * "id descending" and a cursor only needs the last id.
 */
export function newId(prefix: IdPrefix, now: number = Date.now()): string {
  let time = "";
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const bytes = randomBytes(10);
  let random = "";
  // 80 bits = 16 base32 chars: read 5 bits at a time.
  let acc = 0;
  let bits = 0;
  for (const byte of bytes) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      random += ALPHABET[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
  }
  return `${prefix}_${time}${random}`;
}

export function hasPrefix(id: string, prefix: IdPrefix): boolean {
  return id.startsWith(`${prefix}_`);
}
