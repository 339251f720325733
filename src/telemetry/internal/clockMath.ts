/**
 * Pure math for mapping kernel CLOCK_MONOTONIC nanoseconds onto wall-clock epoch nanoseconds.
 *
 * The wall clock is only readable in milliseconds from JS (`Date.now()`), so one sample watches for the instant the
 * millisecond counter ticks: at that edge the wall clock is exactly `ms * 1e6` ns, and the edge happened between the
 * two monotonic reads that bracket it. The bracket width bounds the error of that sample.
 */

/** One observation of a wall-clock millisecond edge between two monotonic reads. */
export interface EdgeSample {
  /** Monotonic ns read just before the wall clock was seen to change. */
  readonly monoBeforeNs: bigint
  /** Wall-clock epoch ns at the edge (the new millisecond value times 1e6). */
  readonly wallNs: bigint
  /** Monotonic ns read just after the wall clock was seen to change. */
  readonly monoAfterNs: bigint
}

/** An estimate of wall − mono, with the width of the bracket it came from. */
export interface ClockOffset {
  readonly offsetNs: bigint
  /** Width of the tightest bracket: the estimate is within ±uncertaintyNs/2. */
  readonly uncertaintyNs: bigint
  /** Monotonic ns at which the estimate was taken. */
  readonly sampledAtMonoNs: bigint
}

/** Offset implied by one sample: the edge is placed at the bracket's midpoint. */
export const sampleOffset = (s: EdgeSample): bigint => s.wallNs - (s.monoBeforeNs + s.monoAfterNs) / 2n

/** Keeps the sample with the narrowest bracket; earliest wins ties. Undefined for no samples. */
export const bestOffset = (samples: ReadonlyArray<EdgeSample>): ClockOffset | undefined => {
  let best: EdgeSample | undefined
  for (const s of samples) {
    if (s.monoAfterNs < s.monoBeforeNs) continue
    if (best === undefined || s.monoAfterNs - s.monoBeforeNs < best.monoAfterNs - best.monoBeforeNs) best = s
  }
  if (best === undefined) return undefined
  return {
    offsetNs: sampleOffset(best),
    uncertaintyNs: best.monoAfterNs - best.monoBeforeNs,
    sampledAtMonoNs: best.monoAfterNs
  }
}

/** Kernel monotonic ns → wall-clock epoch ns. */
export const monoToEpochNs = (monoNs: bigint, offset: ClockOffset): bigint => monoNs + offset.offsetNs

const NS_PER_S = 1_000_000_000n

/** Epoch ns → OpenTelemetry HrTime `[seconds, nanoseconds]`, exact (no float rounding). */
export const nsToHrTime = (ns: bigint): [number, number] => {
  const s = ns / NS_PER_S
  let rem = ns % NS_PER_S
  if (rem < 0n) return [Number(s - 1n), Number(rem + NS_PER_S)]
  return [Number(s), Number(rem)]
}

/**
 * Takes one edge sample by spinning until the millisecond wall clock changes. `maxSpins` bounds the spin (a wall
 * clock that never changes yields undefined rather than hanging).
 */
export const takeEdgeSample = (
  readMono: () => bigint,
  readWallMs: () => number,
  maxSpins = 10_000_000
): EdgeSample | undefined => {
  // Lower bound: a mono read taken before a wall read that still showed the old value. Upper bound: a mono read
  // taken after the wall read that showed the new one.
  let lower = readMono()
  const startMs = readWallMs()
  for (let i = 0; i < maxSpins; i++) {
    const m = readMono()
    const ms = readWallMs()
    if (ms === startMs) {
      lower = m
      continue
    }
    return { monoBeforeNs: lower, wallNs: BigInt(ms) * 1_000_000n, monoAfterNs: readMono() }
  }
  return undefined
}

/** Takes `count` edge samples and keeps the tightest. */
export const estimateOffset = (
  readMono: () => bigint,
  readWallMs: () => number,
  count: number
): ClockOffset | undefined => {
  const samples: Array<EdgeSample> = []
  for (let i = 0; i < count; i++) {
    const s = takeEdgeSample(readMono, readWallMs)
    if (s !== undefined) samples.push(s)
  }
  return bestOffset(samples)
}
