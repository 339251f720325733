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

describe("the priority governor", () => {
  it.live("gives way at 10, then takes every thread back to the usual priority when the main thread waits", () =>
    Effect.gen(function*() {
      const started = Os.getPriority()
      const logs: Array<string> = []
      try {
        const plan = yield* Priority.apply
        assert.deepStrictEqual(plan, { yielding: 10, usual: started })
        // Unset, nothing changes before the agent is ready: the governor gives way.
        assert.deepStrictEqual([...new Set(nices())], [started])
        // A wait of 400 ms per sample: the agent is behind. What the threads ran at when it was first read is kept.
        let wait = 0
        let atFirstSample: Array<number> = []
        const read = () => {
          if (wait === 0) atFirstSample = nices()
          return { runNs: 0, waitNs: (wait += 400e6) }
        }
        const fiber = yield* Priority.governor(plan, read).pipe(
          Effect.andThen(Effect.never),
          Effect.scoped,
          Effect.provide(Logger.layer([Logger.make(({ message }) => {
            logs.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
          })])),
          Effect.forkChild
        )
        yield* Effect.sleep("1200 millis")
        yield* Fiber.interrupt(fiber)
        assert.deepStrictEqual([...new Set(atFirstSample)], [10])
        assert.deepStrictEqual([...new Set(nices())], [started])
        assert.strictEqual(logs.length, 1, logs.join("\n"))
        const m = /^the agent waited 400 ms of (\d+) for a CPU: nice (\d+) until the host is calm \(PROBESCOPE_NICE\)$/
          .exec(logs[0]!)
        assert.isNotNull(m, logs[0])
        assert.strictEqual(Number(m![2]), started)
        // The sample's own wall time: the first sample comes a whole interval after the start.
        assert.isAtLeast(Number(m![1]), 450)
      } finally {
        for (const tid of Fs.readdirSync("/proc/self/task")) {
          try {
            Os.setPriority(Number(tid), started)
          } catch {
            // exited
          }
        }
      }
    }))

  it.live("an idle agent's few milliseconds of wait leave it giving way (its first sample is a full interval in)", () =>
    Effect.gen(function*() {
      const started = Os.getPriority()
      const logs: Array<string> = []
      try {
        const plan = yield* Priority.apply
        let wait = 0
        const fiber = yield* Priority.governor(plan, () => ({ runNs: 0, waitNs: (wait += 3e6) })).pipe(
          Effect.andThen(Effect.never),
          Effect.scoped,
          Effect.provide(Logger.layer([Logger.make(({ message }) => {
            logs.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
          })])),
          Effect.forkChild
        )
        yield* Effect.sleep("1200 millis")
        yield* Fiber.interrupt(fiber)
        assert.deepStrictEqual(logs, [])
        assert.deepStrictEqual([...new Set(nices())], [10])
      } finally {
        for (const tid of Fs.readdirSync("/proc/self/task")) {
          try {
            Os.setPriority(Number(tid), started)
          } catch {
            // exited
          }
        }
      }
    }))
})
