/**
 * Maps kernel CLOCK_MONOTONIC timestamps (what `bpf_ktime_get_ns` returns) to wall-clock epoch nanoseconds.
 *
 * Node's `process.hrtime.bigint()` reads the same CLOCK_MONOTONIC on Linux, so wall − mono is one offset. NTP slews
 * the wall clock (and may step it), so the offset is re-estimated periodically in a scoped fiber.
 */
import { Context, Duration, Effect, Layer } from "effect"
import { type ClockOffset, estimateOffset, monoToEpochNs } from "./internal/clockMath.ts"

export type { ClockOffset } from "./internal/clockMath.ts"

/** Converts kernel monotonic ns to epoch ns. `toEpochNs` is synchronous: it sits on the span hot path. */
export class KernelClock extends Context.Service<KernelClock, {
  readonly toEpochNs: (monoNs: bigint) => bigint
  /** The offset currently in use. */
  readonly offset: Effect.Effect<ClockOffset>
  /** Re-samples the offset now (also done every `resyncEvery`). */
  readonly resync: Effect.Effect<ClockOffset>
}>()("probescope/telemetry/KernelClock") {}

/** How the offset is sampled. */
export interface KernelClockOptions {
  /** Edge samples per estimate; the tightest bracket wins. Each costs up to 1 ms of spinning. */
  readonly samples?: number
  readonly resyncEvery?: Duration.Input
  readonly readMono?: () => bigint
  readonly readWallMs?: () => number
}

const fallbackOffset = (readMono: () => bigint, readWallMs: () => number): ClockOffset => {
  const mono = readMono()
  return { offsetNs: BigInt(readWallMs()) * 1_000_000n - mono, uncertaintyNs: 1_000_000n, sampledAtMonoNs: mono }
}

/** Builds a KernelClock that samples the real clocks (or the given readers) and re-estimates periodically. */
export const layerWith = (options: KernelClockOptions = {}): Layer.Layer<KernelClock> =>
  Layer.effect(
    KernelClock,
    Effect.gen(function*() {
      const readMono = options.readMono ?? process.hrtime.bigint
      const readWallMs = options.readWallMs ?? Date.now
      const samples = options.samples ?? 5
      const sample = () => estimateOffset(readMono, readWallMs, samples) ?? fallbackOffset(readMono, readWallMs)
      let current = sample()
      const resync = Effect.sync(() => {
        current = sample()
        return current
      })
      yield* Effect.sleep(options.resyncEvery ?? Duration.minutes(1)).pipe(
        Effect.andThen(resync),
        Effect.forever,
        Effect.forkScoped
      )
      return KernelClock.of({
        toEpochNs: (monoNs) => monoToEpochNs(monoNs, current),
        offset: Effect.sync(() => current),
        resync
      })
    })
  )

/** The real clocks, re-estimated every minute. */
export const layer: Layer.Layer<KernelClock> = layerWith()

/** A fixed offset (tests): epoch = mono + offsetNs. */
export const layerFixed = (offsetNs: bigint): Layer.Layer<KernelClock> => {
  const offset: ClockOffset = { offsetNs, uncertaintyNs: 0n, sampledAtMonoNs: 0n }
  return Layer.succeed(KernelClock, {
    toEpochNs: (monoNs) => monoNs + offsetNs,
    offset: Effect.succeed(offset),
    resync: Effect.succeed(offset)
  })
}
