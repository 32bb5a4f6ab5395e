/**
 * A chunked job's progress (0..90, the last tenth is assembly and delivery): each chunk's
 * progress (0..100) weighted by its duration.
 */
export function chunkedJobProgress(chunks: ReadonlyArray<{ durationSeconds: number; progress: number }>): number {
  const total = chunks.reduce((sum, c) => sum + Math.max(0, c.durationSeconds), 0);
  if (total <= 0) return 0;
  const done = chunks.reduce((sum, c) => sum + Math.max(0, c.durationSeconds) * Math.min(100, Math.max(0, c.progress)), 0) / 100;
  return Math.min(90, Math.floor((done / total) * 90));
}
