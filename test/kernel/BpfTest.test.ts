import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope, Stream } from "effect"
import { Bpf } from "../../src/kernel/Bpf.ts"
import * as BpfTest from "../../src/kernel/BpfTest.ts"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"

const bytes = (...xs: Array<number>) => new Uint8Array(xs)

describe("BpfTest (fake kernel)", () => {
  it.effect("records load, attach, detach and close in order", () =>
    Effect.gen(function*() {
      const bpf = yield* Bpf
      const kernel = yield* FakeKernel
      const scope = yield* Scope.make()
      const obj = yield* bpf.load({ file: "/x/bpf/out/demo.bpf.o", constants: { ps_wakeup_bytes: 0n } }).pipe(
        Scope.provide(scope)
      )
      assert.strictEqual(obj.name, "demo")
      const linkScope = yield* Scope.make()
      const link = yield* obj.attachUprobe({ program: "up", binary: "/bin/app", offset: 100, pid: 7 }).pipe(
        Scope.provide(linkScope)
      )
      const ret = yield* obj.attachUprobe({ program: "ret", binary: "/lib/libc.so.6", offsets: [8], retprobe: true })
        .pipe(Scope.provide(linkScope))
      const tp = yield* obj.attachTracepoint({ program: "tp", category: "sched", name: "sched_switch" })
        .pipe(Scope.provide(linkScope))
      assert.deepStrictEqual(yield* kernel.liveLinks, [
        { id: link.id, object: "demo", program: "up", pid: 7, offset: 100, binary: "/bin/app" },
        { id: ret.id, object: "demo", program: "ret", offsets: [8], binary: "/lib/libc.so.6", retprobe: true },
        { id: tp.id, object: "demo", program: "tp", tracepoint: "sched/sched_switch" }
      ])
      const attaches = (yield* kernel.events).filter((e) => e._tag === "Attach")
      assert.deepStrictEqual(attaches.map((e) => e._tag === "Attach" ? e.retprobe : undefined), [undefined, true, undefined])
      yield* Scope.close(linkScope, Exit.void)
      yield* Scope.close(scope, Exit.void)
      const tags = (yield* kernel.events).map((e) => e._tag)
      assert.deepStrictEqual(tags, ["Load", "Attach", "Attach", "Attach", "Detach", "Detach", "Detach", "Close"])
      const load = (yield* kernel.events)[0]!
      assert.strictEqual(load._tag === "Load" && load.constants["ps_wakeup_bytes"], 0n)
      assert.deepStrictEqual(yield* kernel.liveObjects, [])
    }).pipe(Effect.provide(BpfTest.layer)))

  it.effect("pushed records flow through RingBuffer.records, with consumer and kernel drop counts", () =>
    Effect.gen(function*() {
      const bpf = yield* Bpf
      const kernel = yield* FakeKernel
      const obj = yield* bpf.load({ file: "demo.bpf.o" })
      yield* kernel.push("demo", [bytes(1), bytes(2)])
      const rb = yield* obj.ringBuffer("events", { capacity: 3 })
      const fiber = yield* rb.records.pipe(Stream.take(3), Stream.runCollect, Effect.forkChild)
      yield* Effect.yieldNow
      const dropped = yield* kernel.push("demo", [bytes(3)])
      const got = yield* Fiber.join(fiber)
      assert.deepStrictEqual(Array.from(got).map((b) => b[0]), [1, 2, 3])
      assert.strictEqual(dropped, 0)
      // Nobody reads now: a full queue drops and counts.
      const overflow = yield* kernel.push("demo", [bytes(4), bytes(5), bytes(6), bytes(7)])
      assert.strictEqual(overflow, 1)
      const stats = yield* rb.stats
      assert.strictEqual(stats.dropped, 1)
      assert.strictEqual(stats.received, 6)
      yield* kernel.dropInKernel("demo", 5)
      const submitted = yield* obj.lookup("ps_stats", bytes(0, 0, 0, 0))
      const droppedK = yield* obj.lookup("ps_stats", bytes(1, 0, 0, 0))
      assert.strictEqual(submitted._tag === "Some" && submitted.value.length, 8 * BpfTest.CPUS)
      assert.strictEqual(droppedK._tag === "Some" && new DataView(droppedK.value.buffer).getBigUint64(0, true), 5n)
    }).pipe(Effect.scoped, Effect.provide(BpfTest.layer)))

  it.effect("a load fails with an injected verifier log", () =>
    Effect.gen(function*() {
      const bpf = yield* Bpf
      const kernel = yield* FakeKernel
      yield* kernel.failVerifier({ object: "bad" }, "R1 invalid mem access 'scalar'")
      const error = yield* Effect.flip(bpf.load({ file: "/o/bad.bpf.o" }))
      assert.strictEqual(error._tag, "BpfLoadError")
      assert.strictEqual(error.message, "program rejected by the verifier")
      assert.strictEqual(error._tag === "BpfLoadError" && error.verifierLog, "R1 invalid mem access 'scalar'")
    }).pipe(Effect.scoped, Effect.provide(BpfTest.layer)))

  it.effect("an attach of a given program and pid fails with the injected typed error", () =>
    Effect.gen(function*() {
      const bpf = yield* Bpf
      const kernel = yield* FakeKernel
      const obj = yield* bpf.load({ file: "demo.bpf.o" })
      yield* kernel.failAttach({ program: "up", pid: 9 }, BpfTest.attachError("up", "ESRCH", "no such process"))
      yield* obj.attachUprobe({ program: "up", binary: "/bin/a", offset: 1, pid: 8 })
      const error = yield* Effect.flip(obj.attachUprobe({ program: "up", binary: "/bin/a", offset: 1, pid: 9 }))
      assert.strictEqual(error._tag, "BpfAttachError")
      assert.strictEqual(error.message, "no such process")
      assert.strictEqual(error.code, "ESRCH")
    }).pipe(Effect.scoped, Effect.provide(BpfTest.layer)))

  it.effect("defined objects are strict about programs, maps and constants", () =>
    Effect.gen(function*() {
      const bpf = yield* Bpf
      const kernel = yield* FakeKernel
      yield* kernel.define("strict", { programs: ["p"], maps: ["events"], constants: ["c"] })
      const constErr = yield* Effect.flip(bpf.load({ file: "strict.bpf.o", constants: { nope: 1 } }))
      assert.strictEqual(constErr._tag, "BpfMapError")
      assert.strictEqual(constErr.message, "object strict has no constant nope")
      const obj = yield* bpf.load({ file: "strict.bpf.o", constants: { c: 1 } })
      const mapErr = yield* Effect.flip(obj.lookup("other", bytes(0)))
      assert.strictEqual(mapErr.message, "object strict has no map other")
      const progErr = yield* Effect.flip(obj.attachUprobe({ program: "q", binary: "/b", offset: 0 }))
      assert.strictEqual(progErr._tag, "BpfAttachError")
      assert.strictEqual(progErr.message, "object strict has no program q")
    }).pipe(Effect.scoped, Effect.provide(BpfTest.layer)))

  it.effect("reused maps share storage; maps of a closed object fail with EBADF", () =>
    Effect.gen(function*() {
      const bpf = yield* Bpf
      const kernel = yield* FakeKernel
      const ownerScope = yield* Scope.make()
      const owner = yield* bpf.load({ file: "owner.bpf.o" }).pipe(Scope.provide(ownerScope))
      const ref = yield* owner.mapRef("shared")
      const user = yield* bpf.load({ file: "user.bpf.o", reuseMaps: { mine: ref } })
      yield* user.update("mine", bytes(1), bytes(42))
      const seen = yield* owner.lookup("shared", bytes(1))
      assert.deepStrictEqual(seen._tag === "Some" ? Array.from(seen.value) : [], [42])
      const load = (yield* kernel.events).find((e) => e._tag === "Load" && e.object === "user")
      assert.deepStrictEqual(load?._tag === "Load" ? load.reusedMaps : {}, { mine: "owner/shared" })
      yield* Scope.close(ownerScope, Exit.void)
      const err = yield* Effect.flip(user.lookup("mine", bytes(1)))
      assert.strictEqual(err._tag, "BpfMapError")
      assert.strictEqual(err.message, "object owner is closed")
    }).pipe(Effect.scoped, Effect.provide(BpfTest.layer)))

  it.effect("a hanging attach is interruptible", () =>
    Effect.gen(function*() {
      const bpf = yield* Bpf
      const kernel = yield* FakeKernel
      const obj = yield* bpf.load({ file: "demo.bpf.o" })
      yield* kernel.hangAttach({ offset: 2 })
      const fiber = yield* obj.attachUprobe({ program: "p", binary: "/b", offset: 2 }).pipe(Effect.scoped, Effect.forkChild)
      yield* Effect.yieldNow
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(yield* kernel.liveLinks, [])
    }).pipe(Effect.scoped, Effect.provide(BpfTest.layer)))
})
