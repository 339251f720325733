import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Logger, Option, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as LossReport from "../../src/telemetry/internal/lossReport.ts"
import { countingClock } from "./countingClock.ts"

/** Lets forked fibers run (TestClock does not advance by itself). */
const settle = Effect.yieldNow.pipe(Effect.repeat({ times: 20 }))

describe("LossReport.whenLost", () => {
  it.effect("no timer while nothing is lost; one warning an interval after the first loss, later losses in it", () => {
    const lines: Array<string> = []
    const logger = Logger.make(({ logLevel, message }) => {
      if (logLevel === "Warn") lines.push(Array.isArray(message) ? message.join(" ") : String(message))
    })
    return Effect.gen(function*() {
      const counts = { exported: 0, dropped: 0, failed: 0, lastError: Option.none() }
      let reads = 0
      const report = LossReport.make({
        signal: "spans",
        exporter: "x",
        endpoint: "x://sink",
        dropReason: "queue full",
        read: () => {
          reads++
          return counts
        }
      })
      const clock = yield* countingClock
      const scope = yield* Scope.make()
      const armed = yield* LossReport.whenLost(report, 5000).pipe(Scope.provide(scope), clock.provide)
      for (let i = 0; i < 30; i++) yield* TestClock.adjust("1 second")
      yield* settle
      assert.deepStrictEqual([clock.sleeps, reads, lines], [[], 0, []], "idle: no timer, the counts never read")

      counts.dropped += 3
      armed.lost()
      yield* settle
      yield* TestClock.adjust("2 seconds")
      // Lost again during the wait: the same report carries it, no second timer.
      counts.failed += 2
      armed.lost()
      armed.lost()
      yield* settle
      assert.deepStrictEqual(clock.sleeps, [5000])
      yield* TestClock.adjust("2999 millis")
      yield* settle
      assert.deepStrictEqual(lines, [], "not before the interval")
      yield* TestClock.adjust("1 millis")
      yield* settle
      assert.deepStrictEqual(lines, [
        "spans to x x://sink: 3 dropped (queue full), 2 failed to export since the last report; " +
        "3 dropped, 2 failed in total"
      ])
      // Nothing lost since: no timer, no line, however long.
      yield* TestClock.adjust("1 minute")
      yield* settle
      assert.deepStrictEqual([clock.sleeps, lines.length], [[5000], 1])

      counts.dropped += 1
      armed.lost()
      yield* settle
      yield* TestClock.adjust("5 seconds")
      yield* settle
      assert.deepStrictEqual(clock.sleeps, [5000, 5000])
      assert.strictEqual(
        lines[1],
        "spans to x x://sink: 1 dropped (queue full), 0 failed to export since the last report; " +
          "4 dropped, 2 failed in total"
      )
      yield* Scope.close(scope, Exit.void)
      // The scope closed interrupts the fiber: a loss after it arms nothing.
      armed.lost()
      yield* TestClock.adjust("10 seconds")
      yield* settle
      assert.deepStrictEqual([clock.sleeps.length, lines.length], [2, 2])
    }).pipe(Effect.provide(Logger.layer([logger])))
  })
})
