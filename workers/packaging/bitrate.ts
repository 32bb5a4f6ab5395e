/** A segment's size and duration, as measured after encoding. */
export interface MeasuredSegment {
  bytes: number;
  durationS: number;
}

/**
 * The peak segment bit rate as RFC 8216 §4.3.4.2 defines BANDWIDTH: the largest bit rate of any
 * run of consecutive segments whose total duration is between 0.5 and 1.5 times the target
 * duration. A stream shorter than half a target duration has no such run: its whole average is
 * then the peak. Bits per second, rounded up.
 */
export function peakBitrate(segments: readonly MeasuredSegment[], targetDurationS: number): number {
  let peak = 0;
  for (let i = 0; i < segments.length; i++) {
    let bytes = 0;
    let duration = 0;
    for (let j = i; j < segments.length; j++) {
      bytes += segments[j]!.bytes;
      duration += segments[j]!.durationS;
      if (duration > 1.5 * targetDurationS) break;
      if (duration >= 0.5 * targetDurationS && duration > 0) peak = Math.max(peak, (bytes * 8) / duration);
    }
  }
  return Math.ceil(peak || averageBitrate(segments));
}

/** Total bits over total duration (AVERAGE-BANDWIDTH), bits per second, rounded up. */
export function averageBitrate(segments: readonly MeasuredSegment[]): number {
  const bytes = segments.reduce((sum, s) => sum + s.bytes, 0);
  const duration = segments.reduce((sum, s) => sum + s.durationS, 0);
  return duration > 0 ? Math.ceil((bytes * 8) / duration) : 0;
}
