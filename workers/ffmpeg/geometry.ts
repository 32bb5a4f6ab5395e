/** Pixel sizes: the scaling rules shared by video variants and thumbnails. */

export interface Size {
  width: number;
  height: number;
}

/** Nearest even integer, at least 2: 4:2:0 chroma subsampling needs even dimensions. */
function nearestEven(value: number): number {
  return Math.max(2, Math.round(value / 2) * 2);
}

/** Even integer not above `value` (at least 2): a size the caller asked for is never exceeded. */
function evenAtMost(value: number): number {
  return Math.max(2, Math.floor(value / 2) * 2);
}

/**
 * Size of a video variant, every side even.
 *
 * - A resolution tier (480p ... 4320p) sets the SHORT side: 1080p is 1920x1080 for a 16:9 source
 *   and 1080x1920 for a 9:16 phone video, so a tier always means the same pixel count (which is
 *   what pricing charges for: custom sizes are priced by pixel count). The other side follows the
 *   source aspect. Tiers may upscale: the caller asked (and pays) for that tier.
 * - Custom width and height: fit inside that box keeping the aspect ratio (never stretched, never
 *   padded), so one side equals the box and the other is at most the box.
 * - Only one of width/height: the other follows the source aspect.
 * - Nothing: the source size.
 * Sides the caller gave are rounded DOWN to even (a 1281-wide request gives 1280); derived sides
 * are rounded to the nearest even number.
 */
export function variantSize(source: Size, shortSide: number | undefined, width: number, height: number): Size {
  const aspect = source.width / source.height;
  // The other side is derived from the final (even) given side, the closest match to the aspect.
  const byWidth = (w: number): Size => ({ width: evenAtMost(w), height: nearestEven(evenAtMost(w) / aspect) });
  const byHeight = (h: number): Size => ({ width: nearestEven(evenAtMost(h) * aspect), height: evenAtMost(h) });
  if (shortSide) return aspect >= 1 ? byHeight(shortSide) : byWidth(shortSide);
  if (width > 0 && height > 0) return fitInside(source, { width, height });
  if (width > 0) return byWidth(width);
  if (height > 0) return byHeight(height);
  return { width: evenAtMost(source.width), height: evenAtMost(source.height) };
}

/** The largest even size with the source aspect that fits inside `box`. */
function fitInside(source: Size, box: Size): Size {
  const scale = Math.min(box.width / source.width, box.height / source.height);
  return {
    width: Math.min(nearestEven(source.width * scale), evenAtMost(box.width)),
    height: Math.min(nearestEven(source.height * scale), evenAtMost(box.height)),
  };
}

/**
 * Size of a thumbnail image (no parity constraint). One side given: the other follows the
 * aspect. Both given: exactly that size (the filter crops to fill, see `thumbnailScaleFilter`).
 * None: `fallback` (the source size, or a default tile width for sprites).
 */
export function thumbnailSize(source: Size, width: number, height: number, fallback: { width?: number }): Size {
  const aspect = source.width / source.height;
  if (width > 0 && height > 0) return { width, height };
  if (width > 0) return { width, height: Math.max(1, Math.round(width / aspect)) };
  if (height > 0) return { width: Math.max(1, Math.round(height * aspect)), height };
  if (fallback.width) return { width: fallback.width, height: Math.max(1, Math.round(fallback.width / aspect)) };
  return { width: source.width, height: source.height };
}
