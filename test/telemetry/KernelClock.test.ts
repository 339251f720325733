import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import {
  bestOffset,
  estimateOffset,
  monoToEpochNs,
  nsToHrTime,
  sampleOffset,
  takeEdgeSample
} from "../../src/telemetry/internal/clockMath.ts"
import * as KernelClock from "../../src/telemetry/KernelClock.ts"

/** A simulated machine: mono advances `step` ns per read; wall = mono + trueOffset (ms resolution when read). */
const fakeClocks = (trueOffsetNs: bigint, stepNs: bigint, startMonoNs = 10_000_000_000n) => {
  let mono = startMonoNs
  const readMono = () => (mono += stepNs)
  const readWallMs = () => {
    mono += stepNs
    return Number((mono + trueOffsetNs) / 1_000_000n)
  }
  return { readMono, readWallMs }
}

describe("clock math", () => {
  it("a sample places the edge at the bracket's midpoint", () => {
    assert.strictEqual(sampleOffset({ monoBeforeNs: 100n, wallNs: 5_000_000n, monoAfterNs: 300n }), 4_999_800n)
  })

  it("keeps the tightest bracket and reports its width", () => {
    const best = bestOffset([
      { monoBeforeNs: 0n, wallNs: 1_000_000n, monoAfterNs: 1000n },
      { monoBeforeNs: 2_000_100n, wallNs: 3_000_000n, monoAfterNs: 2_000_140n },
      { monoBeforeNs: 5_000_000n, wallNs: 6_000_000n, monoAfterNs: 5_000_500n },
      { monoBeforeNs: 9n, wallNs: 9n, monoAfterNs: 1n }
    ])
    assert.deepStrictEqual(best, { offsetNs: 999_880n, uncertaintyNs: 40n, sampledAtMonoNs: 2_000_140n })
    assert.isUndefined(bestOffset([]))
  })

  it("mono → epoch is a plain addition; HrTime conversion is exact beyond 2^53", () => {
    const offset = { offsetNs: 1_764_000_000_123_456_789n, uncertaintyNs: 0n, sampledAtMonoNs: 0n }
    const epoch = monoToEpochNs(987_654_321_987n, offset)
    assert.strictEqual(epoch, 1_764_000_987_777_778_776n)
    assert.deepStrictEqual(nsToHrTime(epoch), [1_764_000_987, 777_778_776])
    assert.deepStrictEqual(nsToHrTime(-1n), [-1, 999_999_999])
  })

  it("an edge sample brackets the wall-clock millisecond tick", () => {
    const trueOffset = 1_700_000_000_000_000_000n + 123_457n
    const { readMono, readWallMs } = fakeClocks(trueOffset, 1_000n)
    const s = takeEdgeSample(readMono, readWallMs)!
    assert.isDefined(s)
    // The tick happened at mono = wallNs - trueOffset, inside the bracket.
    const tickMono = s.wallNs - trueOffset
    assert.isTrue(s.monoBeforeNs <= tickMono && tickMono <= s.monoAfterNs)
    assert.strictEqual(s.wallNs % 1_000_000n, 0n)
  })

  it("the estimate lands within half the bracket of the true offset", () => {
    const trueOffset = 1_700_000_000_000_000_000n + 654_321n
    const { readMono, readWallMs } = fakeClocks(trueOffset, 700n)
    const est = estimateOffset(readMono, readWallMs, 5)!
    const error = est.offsetNs - trueOffset
    assert.isAtMost(Number(error < 0n ? -error : error), Number(est.uncertaintyNs) / 2)
    // lower read, old wall read, mono, new wall read, upper read: four steps.
    assert.isAtMost(Number(est.uncertaintyNs), 4 * 700)
  })

  it("a wall clock that never ticks gives no sample instead of spinning forever", () => {
    let mono = 0n
    assert.isUndefined(takeEdgeSample(() => (mono += 1n), () => 42, 1000))
  })
})

describe("KernelClock", () => {
  it.effect("the layer converts with the estimated offset", () =>
    Effect.gen(function*() {
      const trueOffset = 1_650_000_000_000_000_000n + 42_000n
      const clock = yield* KernelClock.KernelClock
      const offset = yield* clock.offset
      const error = offset.offsetNs - trueOffset
      assert.isAtMost(Number(error < 0n ? -error : error), Number(offset.uncertaintyNs))
      assert.strictEqual(clock.toEpochNs(1_000n), 1_000n + offset.offsetNs)
    }).pipe(Effect.provide(KernelClock.layerWith({ ...fakeClocks(1_650_000_000_000_000_000n + 42_000n, 500n) }))))

  it.effect("on the real clocks the offset matches Date.now() to within a few ms", () =>
    Effect.gen(function*() {
      const clock = yield* KernelClock.KernelClock
      const epochMs = Number(clock.toEpochNs(process.hrtime.bigint()) / 1_000_000n)
      assert.isAtMost(Math.abs(epochMs - Date.now()), 5)
      const offset = yield* clock.offset
      assert.isAtMost(Number(offset.uncertaintyNs), 1_000_000)
    }).pipe(Effect.provide(Layer.fresh(KernelClock.layer))))
})
