/**
 * The priority governor on this very process (root: taking a priority back needs CAP_SYS_NICE), fed a main-thread
 * wait that says the agent is falling behind, then none.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Fiber, Logger } from "effect"
import { execFileSync, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Priority from "../../src/cli/Priority.ts"
import * as Scheduling from "../../src/kernel/Scheduling.ts"

const nices = () =>
  Fs.readdirSync("/proc/self/task").flatMap((tid) => {
    try {
      return [Os.getPriority(Number(tid))]
    } catch {
      return []
    }
  })

/** Each thread's scheduling policy (/proc/<tid>/stat field 41: 0 SCHED_OTHER, 5 SCHED_IDLE). */
const policies = () =>
  Fs.readdirSync("/proc/self/task").flatMap((tid) => {
    try {
      const stat = Fs.readFileSync(`/proc/self/task/${tid}/stat`, "latin1")
      return [Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[38])]
    } catch {
      return []
    }
  })

/** How many threads have each policy: `{ 0: n, 5: m }`. */
const byPolicy = (list: ReadonlyArray<number>) => {
  const out: Record<number, number> = {}
  for (const p of list) out[p] = (out[p] ?? 0) + 1
  return out
}

const idle = Scheduling.idlePolicy()!

/** `PROBESCOPE_GIVE_WAY` set to `value` for `effect`'s config reads. */
const withGiveWay = (value: string) =>
  Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ PROBESCOPE_GIVE_WAY: value })))

/**
 * Runs `body` with the priority this process started with, and gives every thread that priority and SCHED_OTHER back
 * after it.
 */
const atStartedPriority = <A, E>(body: (started: number) => Effect.Effect<A, E>) => {
  const started = Os.getPriority()
  return body(started).pipe(Effect.ensuring(Effect.sync(() => {
    idle.takeBack(started)
    for (const tid of Fs.readdirSync("/proc/self/task")) {
      try {
        Os.setPriority(Number(tid), started)
      } catch {
        // exited
      }
    }
  })))
}

/**
 * SCHED_IDLE as the governor gives way with it, but with a guard that never fires. These tests feed the governor its
 * samples themselves; on a host busy with other tests (the suite runs two files at once on two CPUs), the real guard
 * would rightly find this process's main thread waiting and put every thread back behind the test's back. The guard
 * has tests of its own below.
 */
const unguarded = (plan: Priority.Plan): Priority.Yielder => ({
  how: "SCHED_IDLE",
  giveWay: () => idle.giveWay(Number.MAX_SAFE_INTEGER, Priority.GUARD_MS, plan.usual),
  takeBack: () => idle.takeBack(plan.usual),
  fellBehind: () => undefined
})

/** Runs the governor of `plan` over `read` (and `yielder`, if given) for `ms`, then stops it; returns what it logged. */
const govern = (plan: Priority.Plan, read: () => Priority.Sched | undefined, ms: number, yielder?: Priority.Yielder) =>
  Effect.gen(function*() {
    const logs: Array<string> = []
    const fiber = yield* Priority.governor(plan, read, yielder).pipe(
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
  it.live("gives way at SCHED_IDLE once busy and calm, then takes every thread back when the main thread waits", () =>
    atStartedPriority((started) =>
      Effect.gen(function*() {
        const plan = yield* Priority.apply
        assert.deepStrictEqual(plan, { yielding: 10, usual: started, idle: true })
        // Unset, nothing changes before the agent is busy.
        assert.deepStrictEqual([...new Set(nices())], [started])
        assert.deepStrictEqual([...new Set(policies())], [0])
        // Samples of 50 ms run each: four calm ones, then one that waited 400 ms. What the threads ran at when the
        // fifth was read is kept.
        let n = 0
        let run = 0
        let wait = 0
        let atFifth: Array<number> = []
        const read = () => {
          if (n === 5) atFifth = policies()
          if (n++ === 5) wait += 400e6
          return { runNs: (run += 50e6), waitNs: wait }
        }
        const logs = yield* govern(plan, read, 2_900, unguarded(plan))
        // Every thread idle but the guard.
        assert.deepStrictEqual(byPolicy(atFifth), { 0: 1, 5: atFifth.length - 1 })
        assert.deepStrictEqual([...new Set(policies())], [0])
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
          if (n === 5) atGone = policies()
          return read()
        }, 2_900, unguarded(plan))
        assert.deepStrictEqual(byPolicy(atGone), { 0: 1, 5: atGone.length - 1 })
        assert.deepStrictEqual([...new Set(policies())], [0])
        assert.deepStrictEqual([...new Set(nices())], [started])
        assert.deepStrictEqual(logs, ["priority governor stopped: the main thread's schedstat cannot be read"])
      })
    ))
  it.live("PROBESCOPE_GIVE_WAY=nice: the governor gives way at nice 10", () =>
    atStartedPriority((started) =>
      Effect.gen(function*() {
        const plan = yield* Priority.apply.pipe(withGiveWay("nice"))
        assert.deepStrictEqual(plan, { yielding: 10, usual: started })
        let n = 0
        let run = 0
        let atFifth: Array<number> = []
        const read = () => {
          if (n++ === 5) atFifth = nices()
          return { runNs: (run += 50e6), waitNs: 0 }
        }
        const logs = yield* Effect.gen(function*() {
          const fiber = yield* Priority.governor(plan, read).pipe(
            Effect.andThen(Effect.never),
            Effect.scoped,
            Effect.forkChild
          )
          yield* Effect.sleep(2_900)
          const during = nices()
          yield* Fiber.interrupt(fiber)
          return during
        })
        assert.deepStrictEqual([...new Set(atFifth)], [10])
        assert.deepStrictEqual([...new Set(logs)], [10])
        // Its scope closed while it gave way: the usual priority back.
        assert.deepStrictEqual([...new Set(nices())], [started])
        assert.deepStrictEqual([...new Set(policies())], [0])
      })
    ))

  it.live("the guard puts every thread back at SCHED_OTHER when the main thread waits for a CPU", () =>
    atStartedPriority((started) =>
      Effect.gen(function*() {
        // The main thread and a busy loop on one CPU: at SCHED_IDLE, the main thread waits nearly all the time. Both
        // undone with the scope; the loop also ends if this process dies first (it watches its parent).
        const cpu = String(Os.availableParallelism() - 1)
        yield* Effect.acquireRelease(
          Effect.sync(() =>
            spawn("taskset", ["-c", cpu, "sh", "-c", "while kill -0 $PPID 2>/dev/null; do :; done"], { stdio: "ignore" })
          ),
          (hog) => Effect.sync(() => hog.kill("SIGKILL"))
        )
        yield* Effect.acquireRelease(
          Effect.sync(() => {
            const allowed = /: (.+)$/.exec(execFileSync("taskset", ["-p", "-c", String(process.pid)]).toString().trim())![1]!
            execFileSync("taskset", ["-p", "-c", cpu, String(process.pid)], { stdio: "ignore" })
            return allowed
          }),
          (allowed) => Effect.sync(() => execFileSync("taskset", ["-p", "-c", allowed, String(process.pid)], { stdio: "ignore" }))
        )
        idle.giveWay(Priority.BEHIND, 50, started)
        assert.deepStrictEqual(byPolicy(policies())[5], policies().length - 1)
        // Busy on the main thread until the guard has fired (it reads the main thread's schedstat every 50 ms).
        const t0 = performance.now()
        let fired: Scheduling.FellBehind | undefined
        while (fired === undefined && performance.now() - t0 < 5_000) {
          for (let i = 0; i < 1e5; i++) Math.sqrt(i)
          fired = idle.fellBehind()
        }
        assert.isDefined(fired, "the guard did not fire within 5 s")
        assert.isAbove(fired!.waitedNs, Priority.BEHIND * fired!.wallNs)
        assert.deepStrictEqual([...new Set(policies())], [0])
        assert.deepStrictEqual([...new Set(nices())], [started])
        // Read once: cleared.
        assert.isUndefined(idle.fellBehind())
      }).pipe(Effect.scoped)
    ))

  it.live("a guard that fired ends the governor's giving way: it logs the wait and holds the usual priority", () =>
    atStartedPriority((started) =>
      Effect.gen(function*() {
        const plan = yield* Priority.apply
        // A yielder whose guard has fired once the agent gave way.
        let gaveWay = 0
        let tookBack = 0
        const yielder: Priority.Yielder = {
          how: "test",
          giveWay: () => void gaveWay++,
          takeBack: () => void tookBack++,
          fellBehind: () => (gaveWay > 0 && tookBack === 0 ? { waitedNs: 80e6, wallNs: 100e6 } : undefined)
        }
        let run = 0
        const logs = yield* govern(plan, () => ({ runNs: (run += 50e6), waitNs: 0 }), 4_300, yielder)
        // Gave way once (after four calm samples), was put back by the guard, and held: never gave way again.
        assert.strictEqual(gaveWay, 1)
        assert.strictEqual(tookBack, 0)
        assert.deepStrictEqual(logs, [`the agent waited 80 ms of 100 for a CPU: nice ${started} for 30 s at least (PROBESCOPE_NICE)`])
      })
    ))
  it.effect("a bad PROBESCOPE_GIVE_WAY is an AgentConfigError saying what it takes", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Priority.apply.pipe(withGiveWay("sometimes")))
      assert.strictEqual(error._tag, "AgentConfigError")
      assert.strictEqual(error.message, `Invalid PROBESCOPE_GIVE_WAY="sometimes": expected "nice" or "idle"`)
    }))
})
