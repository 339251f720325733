/**
 * The priority governor on this very process (root: taking a priority back needs CAP_SYS_NICE), fed a main-thread
 * wait that says the agent is falling behind, then none.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Logger } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Priority from "../../src/cli/Priority.ts"

const nices = () =>
  Fs.readdirSync("/proc/self/task").flatMap((tid) => {
    try {
      return [Os.getPriority(Number(tid))]
    } catch {
      return []
    }
  })

/** Runs `body` with the priority this process started with, and gives every thread that priority back after it. */
const atStartedPriority = <A, E>(body: (started: number) => Effect.Effect<A, E>) => {
  const started = Os.getPriority()
  return body(started).pipe(Effect.ensuring(Effect.sync(() => {
    for (const tid of Fs.readdirSync("/proc/self/task")) {
      try {
        Os.setPriority(Number(tid), started)
      } catch {
        // exited
      }
    }
  })))
}

/** Runs the governor of `plan` over `read` for `ms`, then stops it; returns what it logged. */
const govern = (plan: Priority.Plan, read: () => Priority.Sched | undefined, ms: number) =>
  Effect.gen(function*() {
    const logs: Array<string> = []
    const fiber = yield* Priority.governor(plan, read).pipe(
      Effect.andThen(Effect.never),
      Effect.scoped,
      Effect.provide(Logger.layer([Logger.make(({ logLevel, message }) => {
        if (logLevel !== "Debug") logs.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
      })])),
      Effect.forkChild
    )
    yield* Effect.sleep(ms)
    yield* Fiber.interrupt(fiber)
    return logs
  })

describe("the priority governor", () => {
  it.live("gives way at 10 once busy and calm, then takes every thread back when the main thread waits", () =>
    atStartedPriority((started) =>
      Effect.gen(function*() {
        const plan = yield* Priority.apply
        assert.deepStrictEqual(plan, { yielding: 10, usual: started })
        // Unset, nothing changes before the agent is busy.
        assert.deepStrictEqual([...new Set(nices())], [started])
        // Samples of 50 ms run each: four calm ones, then one that waited 400 ms. What the threads ran at when the
        // fifth was read is kept.
        let n = 0
        let run = 0
        let wait = 0
        let atFifth: Array<number> = []
        const read = () => {
          if (n === 5) atFifth = nices()
          if (n++ === 5) wait += 400e6
          return { runNs: (run += 50e6), waitNs: wait }
        }
        const logs = yield* govern(plan, read, 2_900)
        assert.deepStrictEqual([...new Set(atFifth)], [10])
        assert.deepStrictEqual([...new Set(nices())], [started])
        assert.strictEqual(logs.length, 1, logs.join("\n"))
        const m = /^the agent waited 400 ms of (\d+) for a CPU: nice (\d+) for 30 s at least \(PROBESCOPE_NICE\)$/
          .exec(logs[0]!)
        assert.isNotNull(m, logs[0])
        assert.strictEqual(Number(m![2]), started)
        // The sample's own wall time: each sample comes a whole interval after the one before.
        assert.isAtLeast(Number(m![1]), 450)
      })
    ))

  it.live("an idle agent stays at its usual priority and says nothing", () =>
    atStartedPriority((started) =>
      Effect.gen(function*() {
        const plan = yield* Priority.apply
        let run = 0
        const logs = yield* govern(plan, () => ({ runNs: (run += 1e6), waitNs: 0 }), 2_600)
        assert.deepStrictEqual(logs, [])
        assert.deepStrictEqual([...new Set(nices())], [started])
      })
    ))

  it.live("a schedstat that can no longer be read ends the governor at the usual priority, with a warning", () =>
    atStartedPriority((started) =>
      Effect.gen(function*() {
        const plan = yield* Priority.apply
        // Four busy, calm samples (it gives way), then nothing to read.
        let n = 0
        let run = 0
        const read = () => (n++ <= 4 ? { runNs: (run += 50e6), waitNs: 0 } : undefined)
        let atGone: Array<number> = []
        const logs = yield* govern(plan, () => {
          if (n === 5) atGone = nices()
          return read()
        }, 2_900)
        assert.deepStrictEqual([...new Set(atGone)], [10])
        assert.deepStrictEqual([...new Set(nices())], [started])
        assert.deepStrictEqual(logs, ["priority governor stopped: the main thread's schedstat cannot be read"])
      })
    ))
})
