/**
 * Lowercase enum value without its prefix, as paths, messages and file names spell them:
 * VIDEO_CODEC_H264 -> "h264", OUTPUT_TYPE_MP4 -> "mp4", RESOLUTION_1080P -> "1080p".
 */
export function enumWord(names: Record<number, string>, value: number): string {
  return (names[value] ?? "").replace(/^RESOLUTION_/, "").toLowerCase();
}
