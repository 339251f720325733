/**
 * Testing a probe with no root: decoding alone, then the whole Manager composition on the fake kernel.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedSpans, TestTargets } from "../../src/probe/ProbeTest.ts"
import { WorkProbe, WorkRecord } from "./WorkProbe.ts"

const bytes = (n: number) =>
  WorkRecord.encode({
    start: 1_000n,
    end: 5_000n,
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: "00f067aa0ba902b7",
    n,
    goroutine: 0xc000001a40n,
    pid: 77
  })

describe("WorkProbe", () => {
  it.effect("decodes a record into a span", () =>
    Effect.gen(function*() {
      const span = yield* WorkProbe.decode(bytes(1200))
      assert.strictEqual(span?.name, "main.work")
      assert.strictEqual(span?.pid, 77)
      assert.strictEqual(span?.attributes["work.n"], 1200)
      assert.strictEqual(span?.endMonoNs, 5_000n)
    }))

  it.effect("rejects a negative minN, naming the probe and field", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(WorkProbe.decode(bytes(1), { minN: -1 }))
      assert.strictEqual(error._tag, "ProbeConfigError")
      assert.strictEqual(error.message, "probe example/work: config field \"minN\": Expected a value greater than or equal to 0")
    }))

  it.effect("runs under the Manager: attaches to a Go process with main.work, emits its spans", () =>
    Effect.gen(function*() {
      const targets = yield* TestTargets
      const kernel = yield* FakeKernel
      const captured = yield* CapturedSpans
      const manager = yield* Manager
      yield* targets.start(ProbeTest.target({ pid: 77, functions: { "main.work": { entryOffset: 0x4a2f4, returnOffsets: [0x4a350] } } }))
      yield* targets.start(ProbeTest.target({ pid: 78, functions: {} }))
      // The Manager applies events in fibers of their own: wait until pid 77 is attached.
      yield* Effect.repeat(Effect.andThen(Effect.yieldNow, manager.targets), {
        until: (attached) => attached.some((t) => t.pid === 77)
      })
      yield* kernel.push("example/work", [bytes(1000), bytes(1100)])
      const spans = yield* captured.take(2)
      assert.deepStrictEqual(spans.map((s) => s.attributes["work.n"]), [1000, 1100])
      const load = (yield* kernel.events).find((e) => e._tag === "Load")
      assert.strictEqual(load?._tag === "Load" && load.constants["min_n"], 500n)
      const attaches = (yield* kernel.events).filter((e) => e._tag === "Attach")
      assert.deepStrictEqual(attaches.map((e) => e._tag === "Attach" ? [e.program, e.offsets, e.pid] : []), [
        ["uprobe_work", [0x4a2f4], 77],
        ["uprobe_work_ret", [0x4a350], 77]
      ])
      const why = manager.inspect(ProbeTest.target({ pid: 78 }))[0]!.applicability
      assert.strictEqual(why._tag === "NotApplicable" && why.reason, "required symbol main.work is not in the binary")
    }).pipe(
      Effect.provide(ManagerM.layer.pipe(Layer.provide(WorkProbe.layer), Layer.provideMerge(ProbeTest.layer))),
      Effect.provide(Probe.settings({ "example/work": { minN: 500 } }))
    ))
})
