import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"
import { AgentConfigError } from "../../src/cli/Errors.ts"
import * as Priority from "../../src/cli/Priority.ts"

const env = (vars: Record<string, string>) => Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(vars)))

describe("PROBESCOPE_NICE", () => {
  it.effect("unset or empty leaves the choice to apply (the default, never a raise); whole numbers -20..19 pass", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* Priority.niceConfig.pipe(env({})), undefined)
      assert.strictEqual(yield* Priority.niceConfig.pipe(env({ PROBESCOPE_NICE: " " })), undefined)
      const read = (v: string) => Priority.niceConfig.pipe(env({ PROBESCOPE_NICE: v }))
      assert.deepStrictEqual(
        [yield* read("0"), yield* read(" 7 "), yield* read("19"), yield* read("-20"), yield* read("+5")],
        [0, 7, 19, -20, 5]
      )
    }))

  it.effect("anything else is an AgentConfigError naming the variable and the range", () =>
    Effect.gen(function*() {
      for (const bad of ["abc", "20", "-21", "1.5", "10ms"]) {
        const e = yield* Effect.flip(Priority.niceConfig.pipe(env({ PROBESCOPE_NICE: bad })))
        assert.instanceOf(e, AgentConfigError)
        assert.strictEqual(e.variable, "PROBESCOPE_NICE")
        assert.strictEqual(
          e.message,
          `Invalid PROBESCOPE_NICE=${JSON.stringify(bad)}: expected a whole number from -20 to 19`
        )
      }
    }))
})

describe("the priority plan", () => {
  it("unset: gives way at 10 and takes the starting priority back, only where it may raise it again", () => {
    assert.deepStrictEqual(Priority.plan(undefined, 0, true), { yielding: 10, usual: 0 })
    assert.deepStrictEqual(Priority.plan(undefined, 3, true), { yielding: 10, usual: 3 })
    // Without CAP_SYS_NICE a lowered priority could not come back: it is not lowered.
    assert.deepStrictEqual(Priority.plan(undefined, 0, false), { yielding: 0, usual: 0 })
    // Started lower than the default: never raised.
    assert.deepStrictEqual(Priority.plan(undefined, 15, true), { yielding: 15, usual: 15 })
  })

  it("a value given is fixed, whatever the start and the capability", () => {
    assert.deepStrictEqual(Priority.plan(4, 0, false), { yielding: 4, usual: 4 })
    assert.deepStrictEqual(Priority.plan(0, 15, true), { yielding: 0, usual: 0 })
    assert.deepStrictEqual(Priority.plan(-5, 0, true), { yielding: -5, usual: -5 })
  })
})

describe("the governor's step", () => {
  const ms = 1e6
  const wall = 500 * ms
  /** Busy (the main thread ran 50 ms of 500) with a wait of `wait` ms. */
  const busy = (s: Priority.GovernorState, wait: number, now: number) => Priority.step(s, 50 * ms, wait * ms, wall, now)
  const idle = (s: Priority.GovernorState, now: number) => Priority.step(s, 1 * ms, 0, wall, now)

  it("starts at the usual priority and gives way after four busy, calm samples in a row", () => {
    let s = Priority.initial
    for (let i = 1; i <= 3; i++) s = busy(s, 10, i * 500)
    assert.deepStrictEqual(s, { yielding: false, since: -Infinity, calm: 3 })
    s = busy(s, 10, 2_000)
    assert.deepStrictEqual(s, { yielding: true, since: -Infinity, calm: 0 })
  })

  it("an idle sample, or a busy one with a wait of 5 % or more, starts the count again", () => {
    let s = busy(busy(Priority.initial, 0, 500), 0, 1_000)
    assert.strictEqual(idle(s, 1_500).calm, 0)
    assert.strictEqual(busy(s, 25, 1_500).calm, 0) // 25 ms of 500: 5 %, not calm
    s = busy(s, 24, 1_500)
    assert.strictEqual(s.calm, 3)
  })

  it("giving way, a wait above a quarter of the sample takes the usual priority back, held 30 s", () => {
    const giving = { yielding: true, since: -Infinity, calm: 0 }
    assert.deepStrictEqual(busy(giving, 125, 10_000), giving) // exactly a quarter: stays
    let s = busy(giving, 126, 10_000)
    assert.deepStrictEqual(s, { yielding: false, since: 10_000, calm: 0 })
    // Calm samples within the hold count, but do not end it.
    for (let t = 10_500; t < 10_000 + Priority.HOLD_MS; t += 500) s = busy(s, 0, t)
    assert.isFalse(s.yielding)
    s = busy(s, 0, 10_000 + Priority.HOLD_MS)
    assert.deepStrictEqual(s, { yielding: true, since: 10_000, calm: 0 })
  })

  it("giving way, an idle sample goes back to the usual priority, with no hold: the next burst starts there", () => {
    let s = idle({ yielding: true, since: -Infinity, calm: 0 }, 5_000)
    assert.deepStrictEqual(s, { yielding: false, since: -Infinity, calm: 0 })
    for (let i = 1; i <= 4; i++) s = busy(s, 0, 5_000 + i * 500)
    assert.isTrue(s.yielding)
  })
})

describe("the governor's sampling interval", () => {
  it("0.5 s while the main thread ran or waited 1 % of the last interval, 4 s while it idles", () => {
    const ms = 1e6
    assert.strictEqual(Priority.nextSampleMs(5 * ms, 0, 500 * ms), 500)
    assert.strictEqual(Priority.nextSampleMs(0, 5 * ms, 500 * ms), 500)
    assert.strictEqual(Priority.nextSampleMs(2 * ms, 2 * ms, 500 * ms), 4000)
    assert.strictEqual(Priority.nextSampleMs(30 * ms, 0, 4000 * ms), 4000)
    assert.strictEqual(Priority.nextSampleMs(40 * ms, 0, 4000 * ms), 500)
  })
})
