import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Stream } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Discovery from "../../src/discovery/Discovery.ts"
import type { ProcessEvent } from "../../src/discovery/ProcessEvent.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { buildAll } from "../kernel/fixtures.ts"

buildAll()

// A private copy of `sleep`, so no other process on the machine matches the selector.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "probescope-discovery-"))
const sleeper = path.join(dir, "sleeper")
fs.copyFileSync("/usr/bin/sleep", sleeper)
fs.chmodSync(sleeper, 0o755)

const run = (seconds: number) => spawn(sleeper, [String(seconds)], { stdio: "ignore" })

describe("discovery on the real kernel", () => {
  it.live("reports a running process from the scan, then new ones from exec, and their exits", () =>
    Effect.gen(function*() {
      const before = run(1.5)
      yield* Effect.sleep("100 millis")
      const seen: Array<ProcessEvent> = []
      const fiber = yield* Discovery.events({ pids: [], exes: [sleeper] }).pipe(
        Stream.tap((e) => Effect.sync(() => seen.push(e))),
        Stream.takeUntil((e) => e._tag === "Exited" && e.pid !== before.pid),
        Stream.runDrain,
        Effect.forkChild
      )
      // the subscription is live once the scan has reported the running process
      while (seen.length === 0) yield* Effect.sleep("10 millis")
      const later = run(0.2)
      yield* Fiber.join(fiber).pipe(Effect.timeout("5 seconds"))
      assert.deepStrictEqual(seen.slice(0, 2), [
        { _tag: "Started", pid: before.pid!, exe: sleeper },
        { _tag: "Started", pid: later.pid!, exe: sleeper }
      ])
      assert.deepStrictEqual(seen.at(-1), { _tag: "Exited", pid: later.pid! })
      before.kill()
    }).pipe(Effect.provide(Discovery.layer.pipe(Layer.provide(BpfLive.layer)))))

  it.live("after an idle while, a new process is reported on its exec's wakeup, not at a drain tick", () =>
    Effect.gen(function*() {
      const seen: Array<{ readonly event: ProcessEvent; readonly at: number }> = []
      const fiber = yield* Discovery.events({ pids: [], exes: [sleeper] }).pipe(
        Stream.tap((event) => Effect.sync(() => seen.push({ event, at: performance.now() }))),
        Stream.take(1),
        Stream.runDrain,
        Effect.forkChild
      )
      // A ticking reader of an idle ring backs off to one drain a second (native/src/ringbuf.cc): an exec then
      // waited up to 1 s, on a quiet host. Discovery's ring has no ticks; the exec itself wakes the reader.
      yield* Effect.sleep("1300 millis")
      const started = performance.now()
      const child = run(0.5)
      yield* Fiber.join(fiber).pipe(Effect.timeout("5 seconds"))
      assert.deepStrictEqual(seen[0]?.event, { _tag: "Started", pid: child.pid!, exe: sleeper })
      const latency = seen[0]!.at - started
      assert.isBelow(latency, 250, `reported ${latency.toFixed(0)} ms after the spawn`)
      child.kill()
    }).pipe(Effect.provide(Discovery.layer.pipe(Layer.provide(BpfLive.layer)))))

  it.live("a process the scan found has its exit reported (the kernel sends only what discovery follows)", () =>
    Effect.gen(function*() {
      // Started before discovery: no exec of it for the kernel to remember; the scan tells the kernel to follow it.
      const early = run(0.6)
      yield* Effect.sleep("100 millis")
      const seen: Array<ProcessEvent> = []
      yield* Discovery.events({ pids: [], exes: [sleeper] }).pipe(
        Stream.tap((e) => Effect.sync(() => seen.push(e))),
        Stream.takeUntil((e) => e._tag === "Exited"),
        Stream.runDrain,
        Effect.timeout("5 seconds")
      )
      assert.deepStrictEqual(seen, [
        { _tag: "Started", pid: early.pid!, exe: sleeper },
        { _tag: "Exited", pid: early.pid! }
      ])
    }).pipe(Effect.provide(Discovery.layer.pipe(Layer.provide(BpfLive.layer)))))

  it.live("an explicit pid that does not exist fails with ProcessNotFound", () =>
    Effect.gen(function*() {
      const err = yield* Effect.flip(Stream.runDrain(Discovery.events({ pids: [4_000_001], exes: [] })))
      assert.strictEqual(err._tag, "ProcessNotFound")
      assert.strictEqual(err.message, "process 4000001 does not exist")
    }).pipe(Effect.provide(Discovery.layer.pipe(Layer.provide(BpfLive.layer)))))
})
