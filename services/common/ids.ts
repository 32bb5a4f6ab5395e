import { randomBytes } from "node:crypto";

/** Crockford base32, lowercase: sorts the same as the numbers it encodes. */
const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

export type IdPrefix = "org" | "ak" | "ori" | "pst" | "job" | "out" | "thm" | "evt" | "whe" | "whd" | "msg" | "upl" | "tsk";

let lastTime = -1;
let lastRandom = 0n;
const RANDOM_BITS = 80n;

/**
 * Prefixed, time-sortable id in the ULID layout: 48-bit millisecond timestamp (10 chars) then
 * 80 random bits (16 chars). Ids sort by creation time, so "newest first" is "id descending" and a
 * cursor only needs the last id. Within one millisecond this process increments the random part
 * (ULID's monotonic mode), so ids made in order also sort in order.
 */
export function newId(prefix: IdPrefix, now: number = Date.now()): string {
  let random: bigint;
  if (now <= lastTime && lastRandom + 1n < 1n << RANDOM_BITS) {
    now = lastTime;
    random = lastRandom + 1n;
  } else {
    random = BigInt(`0x${randomBytes(10).toString("hex")}`);
  }
  lastTime = now;
  lastRandom = random;
  return `${prefix}_${encode(BigInt(now), 10)}${encode(random, 16)}`;
}

function encode(value: bigint, length: number): string {
  let out = "";
  for (let i = 0; i < length; i++) {
    out = ALPHABET[Number(value & 31n)] + out;
    value >>= 5n;
  }
  return out;
}
