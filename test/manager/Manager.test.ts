import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { attachError, FakeKernel } from "../../src/kernel/BpfTest.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import type { Loaded } from "../../src/probe/Capabilities.ts"
import * as Probe from "../../src/probe/Probe.ts"
import { ProbeAttachError, ProbeLoadError } from "../../src/probe/ProbeError.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedSpans, MockLog, TestTargets } from "../../src/probe/ProbeTest.ts"
import { Client, fields, functions, GoCtx, Grpc, record, Server } from "../probe/fixtures.ts"

const target = (pid: number, extra: Partial<ProbeTest.FakeTargetOptions> = {}) =>
  ProbeTest.target({ pid, functions, fields, ...extra })

const Probes = Layer.mergeAll(Server.layer, Client.layer, Grpc.layer, GoCtx.layer)

/** The Manager over the real probe layers on the fake kernel; the test kit is shared with the probes. */
const App = ManagerM.layer.pipe(Layer.provide(Probes), Layer.provideMerge(ProbeTest.layer))

/** Wait until the Manager has handled what the target source emitted (events are handled one at a time). */
const settle = (pid: number, present: boolean) =>
  Effect.gen(function*() {
    const manager = yield* Manager
    for (let i = 0; i < 1000; i++) {
      const targets = yield* manager.targets
      if (targets.some((t) => t.pid === pid) === present) return
      yield* Effect.yieldNow
    }
    return yield* Effect.die(`pid ${pid} never became ${present ? "present" : "absent"}`)
  })

describe("Manager", () => {
  it.effect("attaches matching probes per target, detaches on exit, runs each Runner once", () =>
    Effect.gen(function*() {
      const manager = yield* Manager
      const targets = yield* TestTargets
      const kernel = yield* FakeKernel
      const captured = yield* CapturedSpans
      assert.deepStrictEqual(manager.probes.map((p) => `${p.kind} ${p.name}`), [
        "daemon test/goctx",
        "instrument test/client",
        "instrument test/grpc",
        "instrument test/server"
      ])
      yield* targets.start(target(10))
      yield* settle(10, true)
      yield* targets.start(target(20))
      yield* settle(20, true)
      assert.deepStrictEqual((yield* manager.targets).map((t) => t.probes), [
        ["test/goctx", "test/client", "test/server"],
        ["test/goctx", "test/client", "test/server"]
      ])
      yield* kernel.push("test/client", [record({ path: "/out" })])
      yield* kernel.push("test/server", [record()])
      const spans = yield* captured.take(2)
      assert.deepStrictEqual(spans.map((s) => s.name).sort(), ["GET /hello", "client /out"])
      yield* targets.exit(10)
      yield* settle(10, false)
      const pids = new Set((yield* kernel.liveLinks).map((l) => l.pid))
      assert.deepStrictEqual([...pids], [20])
      const subscriptions = (yield* kernel.events).filter((e) => e._tag === "Subscribe").map((e) => e.object)
      assert.deepStrictEqual(subscriptions.sort(), ["test/client", "test/grpc", "test/server"])
      const stats = yield* manager.stats
      const server = stats.find((s) => s.probe === "test/server")!
      assert.strictEqual(server.targets, 1)
      assert.strictEqual(server.records, 1)
      assert.strictEqual(server.kernelSubmitted, 1n)
    }).pipe(Effect.provide(App)))

  it.effect("inspect says why a probe does not apply", () =>
    Effect.gen(function*() {
      const manager = yield* Manager
      const withGrpc = target(1, {
        modules: { "google.golang.org/grpc": "v1.38.0" },
        functions: { ...functions, "google.golang.org/grpc.(*Server).handleStream": {} }
      })
      const byProbe = Object.fromEntries(
        manager.inspect(withGrpc).map((i) => [
          i.probe,
          i.applicability._tag === "NotApplicable" ? i.applicability.reason : i.applicability._tag
        ])
      )
      assert.deepStrictEqual(byProbe, {
        "test/goctx": "Applies",
        "test/server": "Applies",
        "test/client": "Applies",
        "test/grpc": "google.golang.org/grpc v1.38.0 is outside the supported range >=1.40.0 <2"
      })
      const noGrpc = manager.inspect(target(2)).find((i) => i.probe === "test/grpc")!
      assert.deepStrictEqual(noGrpc.applicability, {
        _tag: "NotApplicable",
        probe: "test/grpc",
        reason: "module google.golang.org/grpc is not in the binary"
      })
    }).pipe(Effect.provide(App)))

  it.effect("a probe failing to attach to one target is counted and does not stop the others", () =>
    Effect.gen(function*() {
      const manager = yield* Manager
      const kernel = yield* FakeKernel
      yield* kernel.failAttach({ program: "uprobe_rt", pid: 31 }, attachError("uprobe_rt", "ESRCH", "gone"))
      yield* manager.handle({ _tag: "Started", target: target(31) })
      yield* manager.handle({ _tag: "Started", target: target(32) })
      const t = yield* manager.targets
      assert.deepStrictEqual(t.map((x) => [x.pid, x.probes]), [
        [31, ["test/goctx", "test/server"]],
        [32, ["test/goctx", "test/client", "test/server"]]
      ])
      const client = (yield* manager.stats).find((s) => s.probe === "test/client")!
      assert.strictEqual(client.attachFailures, 1)
      assert.strictEqual(client.targets, 1)
      // The failed probe left nothing behind on pid 31.
      const links31 = (yield* kernel.liveLinks).filter((l) => l.pid === 31 && l.object === "test/client")
      assert.deepStrictEqual(links31, [])
    }).pipe(Effect.provide(App)))

  it.effect("one process's hanging attach holds up no other; its exit cancels it and leaves nothing", () =>
    Effect.gen(function*() {
      const manager = yield* Manager
      const targets = yield* TestTargets
      const kernel = yield* FakeKernel
      yield* kernel.hangAttach({ pid: 1, program: "uprobe_serve" })
      yield* targets.start(target(1))
      yield* targets.start(target(2))
      yield* targets.exit(3)
      yield* targets.start(target(3))
      // pid 2 and 3 are attached although pid 1 never finishes; pid 3's exit came before its start and does not
      // undo it (events of one pid apply in order).
      for (let i = 0; i < 1000; i++) {
        const done = (yield* manager.targets).filter((t) => t.probes.length === 3).map((t) => t.pid)
        if (done.includes(2) && done.includes(3)) break
        yield* Effect.yieldNow
      }
      const attached = (yield* manager.targets).map((t) => [t.pid, t.probes.length])
      assert.deepStrictEqual(attached.filter(([pid]) => pid !== 1), [[2, 3], [3, 3]])
      yield* targets.exit(1)
      yield* settle(1, false)
      const pids = new Set((yield* kernel.liveLinks).map((l) => l.pid))
      assert.deepStrictEqual([...pids].sort(), [2, 3])
      assert.deepStrictEqual([...(yield* kernel.map("test/server", "ps_targets")).keys()].sort(), [
        "02000000",
        "03000000"
      ])
    }).pipe(Effect.provide(App)))

  it.effect("on shutdown every process is detached and each Runner reads what its ring still holds", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const captured = yield* CapturedSpans
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(ManagerM.layer.pipe(Layer.provide(Probes)), scope)
      const targets = yield* TestTargets
      yield* targets.start(target(7))
      yield* settle(7, true).pipe(Effect.provideContext(context))
      yield* kernel.push("test/server", [record({ path: "/a" }), record({ path: "/b" })])
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* kernel.liveLinks, [])
      assert.deepStrictEqual((yield* captured.all).map((s) => s.name), ["GET /a", "GET /b"])
    }).pipe(Effect.provide(ProbeTest.layer)))

  it.effect("interrupting a Started event mid-attach detaches everything attached to that process", () =>
    Effect.gen(function*() {
      const manager = yield* Manager
      const kernel = yield* FakeKernel
      yield* kernel.hangAttach({ program: "uprobe_rt_ret", pid: 41 })
      const fiber = yield* Effect.forkChild(manager.handle({ _tag: "Started", target: target(41) }))
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow
      assert.isTrue((yield* kernel.liveLinks).some((l) => l.pid === 41))
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual((yield* kernel.liveLinks).filter((l) => l.pid === 41), [])
      assert.deepStrictEqual(yield* manager.targets, [])
      assert.strictEqual((yield* kernel.map("test/server", "ps_targets")).size, 0)
    }).pipe(Effect.provide(App)))

  it.effect("release order: dependents detach before dependencies, then objects close dependencies last", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const scope = yield* Scope.make()
      const ctx = yield* Layer.buildWithScope(ManagerM.layer.pipe(Layer.provide(Probes)), scope)
      const manager = ctx.mapUnsafe.get(Manager.key) as Manager["Service"]
      yield* manager.handle({ _tag: "Started", target: target(7) })
      yield* kernel.clearEvents
      yield* Scope.close(scope, Exit.void)
      const order = (yield* kernel.events).flatMap((e) =>
        e._tag === "Detach" ? [`detach ${e.object}`] : e._tag === "Close" ? [`close ${e.object}`] : []
      )
      const dedup = order.filter((x, i) => order[i - 1] !== x)
      assert.deepStrictEqual(dedup, [
        "detach test/server",
        "detach test/client",
        "detach test/goctx",
        "close test/grpc",
        "close test/client",
        "close test/server",
        "close test/goctx"
      ])
      assert.deepStrictEqual(yield* kernel.liveObjects, [])
    }).pipe(Effect.provide(ProbeTest.layer)))

  it.effect("mock probes: a daemon has no Runner, failures stay with their probe", () =>
    Effect.gen(function*() {
      const manager = yield* Manager
      const log = yield* MockLog
      yield* manager.handle({ _tag: "Started", target: target(5) })
      yield* Effect.yieldNow
      assert.deepStrictEqual((yield* manager.targets)[0]!.probes, ["mock/daemon", "mock/ok"])
      const entries = yield* log.entries
      assert.deepStrictEqual(entries.filter((e) => e.startsWith("run")), ["run mock/bad", "run mock/ok"])
      assert.deepStrictEqual(entries.filter((e) => e.startsWith("attach")), ["attach mock/daemon 5", "attach mock/ok 5"])
      const bad = (yield* manager.stats).find((s) => s.probe === "mock/bad")!
      assert.strictEqual(bad.attachFailures, 1)
    }).pipe(
      Effect.provide(
        ManagerM.layer.pipe(
          Layer.provide(Layer.mergeAll(
            ProbeTest.mockProbe({ name: "mock/daemon", kind: "daemon", manifest: GoCtx.manifest }),
            ProbeTest.mockProbe({ name: "mock/ok", manifest: Server.manifest }),
            ProbeTest.mockProbe({
              name: "mock/bad",
              manifest: Client.manifest,
              attacher: ProbeTest.mockAttacher("mock/bad", Client.manifest, (t) =>
                Effect.fail(
                  new ProbeAttachError({
                    probe: "mock/bad",
                    pid: t.pid,
                    reason: "Test",
                    message: "mock failure"
                  })
                ))
            })
          )),
          Layer.provideMerge(ProbeTest.layer)
        )
      )
    ))
})

describe("Manager composition", () => {
  /** The Manager's probes and what it attaches to one target, for comparing compositions. */
  const observe = Effect.gen(function*() {
    const manager = yield* Manager
    yield* manager.handle({ _tag: "Started", target: target(9) })
    return { probes: manager.probes.map((p) => p.name), attached: (yield* manager.targets)[0]!.probes }
  })
  const expected = {
    probes: ["test/goctx", "test/client", "test/grpc", "test/server"],
    attached: ["test/goctx", "test/client", "test/server"]
  }

  it.effect("the same probes compose the same however their layers are merged or provided", () =>
    Effect.gen(function*() {
      const compositions = [
        ManagerM.layerWith(Layer.mergeAll(Server.layer, Client.layer, Grpc.layer)),
        ManagerM.layerWith(Layer.mergeAll(Grpc.layer, Client.layer, Server.layer, GoCtx.layer)),
        ManagerM.layer.pipe(Layer.provide(Server.layer), Layer.provide(Grpc.layer), Layer.provide(Client.layer)),
        // The daemon provided to its dependents only, not to the Manager: they pass it on.
        ManagerM.layerWith(Layer.mergeAll(Client.layer, Server.layer, Grpc.layer).pipe(Layer.provide(GoCtx.layer)))
      ]
      for (const composition of compositions) {
        const seen = yield* observe.pipe(Effect.provide(composition.pipe(Layer.provideMerge(ProbeTest.layer))))
        assert.deepStrictEqual(seen, expected)
      }
    }))

  it.effect("a dependency configured with layerWith and provided to its dependents is the one loaded", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const seen = yield* observe.pipe(
        Effect.provide(ManagerM.layerWith(Layer.mergeAll(Server.layer, Client.layer, Grpc.layer).pipe(
          Layer.provide(GoCtx.layerWith({}))
        )))
      )
      assert.deepStrictEqual(seen, expected)
      const loads = (yield* kernel.events).flatMap((e) => e._tag === "Load" ? [e.object] : [])
      assert.deepStrictEqual(loads.filter((o) => o === "test/goctx"), ["test/goctx"])
    }).pipe(Effect.provide(ProbeTest.layer)))

  it.effect("two probes with one name fail the build with a DuplicateProbeError", () =>
    Effect.gen(function*() {
      // A mock next to (not provided to) the probe depending on it: the dependent builds the real one too. (Two real
      // instances on the fake kernel already fail at load: it refuses a second live object of one name, EEXIST.)
      const twice = ManagerM.layerWith(Layer.mergeAll(Server.layer, ProbeTest.mock(GoCtx)))
      const exit = yield* Effect.exit(Effect.scoped(Layer.build(twice)))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
      assert.strictEqual(error?._tag === "Fail" ? error.error._tag : undefined, "DuplicateProbeError")
      assert.strictEqual(
        error?._tag === "Fail" ? error.error.message : undefined,
        "probe test/goctx is composed twice (two definitions with one name, or one built both with `layer` and " +
          "`layerWith`): give each probe a name of its own, and configure a shared one once (ProbeSettings or one " +
          "`layerWith` provided to its dependents)"
      )
      const mocks = ManagerM.layerWith(Layer.mergeAll(
        ProbeTest.mockProbe({ name: "mock/x", manifest: Server.manifest }),
        ProbeTest.mockProbe({ name: "mock/x", manifest: Client.manifest })
      ))
      const second = yield* Effect.flip(Effect.scoped(Layer.build(mocks)))
      assert.strictEqual(second._tag, "DuplicateProbeError")
      assert.strictEqual(second.probe, "mock/x")
    }).pipe(Effect.provide(ProbeTest.layer)))

  it.effect("a daemon attaches to a process only where a probe depending on it attaches", () =>
    Effect.gen(function*() {
      const manager = yield* Manager
      const kernel = yield* FakeKernel
      // pid 1: no dependent applies (no net/http symbols); pid 2: the one dependent that applies fails to attach.
      yield* manager.handle({ _tag: "Started", target: target(1, { functions: { "runtime.newproc1": {} } }) })
      yield* kernel.failAttach({ program: "uprobe_serve", pid: 2 }, attachError("uprobe_serve", "ESRCH", "gone"))
      const serverOnly = { "runtime.newproc1": {}, "net/http.serverHandler.ServeHTTP": {} }
      yield* manager.handle({ _tag: "Started", target: target(2, { functions: serverOnly }) })
      yield* manager.handle({ _tag: "Started", target: target(3, { functions: serverOnly }) })
      assert.deepStrictEqual((yield* manager.targets).map((t) => [t.pid, t.probes]), [
        [3, ["test/goctx", "test/server"]]
      ])
      const goctxLinks = (yield* kernel.liveLinks).filter((l) => l.object === "test/goctx").map((l) => l.pid)
      assert.deepStrictEqual(goctxLinks, [3])
      const attaches = (yield* kernel.events).flatMap((e) =>
        e._tag === "Attach" && e.object === "test/goctx" ? [e.pid] : []
      )
      // pid 2's daemon was attached before its dependent failed, then detached; pid 1's never.
      assert.deepStrictEqual(attaches, [2, 3])
    }).pipe(Effect.provide(App)))

  it.effect("a daemon nothing composed depends on attaches wherever it applies", () =>
    Effect.gen(function*() {
      const seen = yield* Effect.gen(function*() {
        const manager = yield* Manager
        yield* manager.handle({ _tag: "Started", target: target(4, { functions: { "runtime.newproc1": {} } }) })
        return (yield* manager.targets).map((t) => t.probes)
      }).pipe(Effect.provide(ManagerM.layerWith(GoCtx.layer)))
      assert.deepStrictEqual(seen, [["test/goctx"]])
    }).pipe(Effect.provide(ProbeTest.layer)))
})

describe("Manager.lossReport", () => {
  const stats = (over: Partial<ManagerM.ProbeStats>): ManagerM.ProbeStats => ({
    probe: "p",
    kind: "instrument",
    load: "loaded",
    targets: 1,
    attachFailures: 0,
    records: 0,
    decodeErrors: 0,
    skipped: 0,
    signalErrors: 0,
    unsupported: 0,
    consumerDropped: 0,
    kernelSubmitted: 0n,
    kernelDropped: 0n,
    ...over
  })

  it("names kernel and consumer drops apart, with the counts since the last look and the totals", () => {
    const before = [stats({ kernelDropped: 10n, consumerDropped: 1 }), stats({ probe: "q" })]
    const after = [stats({ kernelDropped: 25n, consumerDropped: 4, decodeErrors: 2 }), stats({ probe: "q" })]
    assert.deepStrictEqual(ManagerM.lossReport(before, after, Duration.seconds(5)), [
      "probe p: records lost in the last 5s: 15 dropped in the kernel (ring full; 25 in total), " +
      "3 dropped by the consumer (buffer full; 4 in total), 2 undecodable (2 in total)"
    ])
  })

  it("says nothing when nothing was lost", () => {
    const same = [stats({ kernelDropped: 3n })]
    assert.deepStrictEqual(ManagerM.lossReport(same, same, Duration.seconds(5)), [])
  })
})

describe("Manager: loads and attaches overlap", () => {
  /** A load held until the test opens its gate (or fails it): what a slow verifier looks like to the Manager. */
  const heldLoad = (gate: Deferred.Deferred<void, ProbeLoadError>) =>
    // The Manager never reads what a load gives: the attacher below stands in for the loaded probe.
    Deferred.await(gate).pipe(Effect.as({} as Loaded))
  const withHeldServer = (gate: Deferred.Deferred<void, ProbeLoadError>) =>
    ManagerM.layer.pipe(
      Layer.provide(Layer.mergeAll(
        ProbeTest.mock(GoCtx),
        ProbeTest.mock(Server, {
          loader: { load: heldLoad(gate), status: Effect.succeed("loading") },
          // As a real probe's attach does, it waits for its own load (and fails with it).
          attacher: ProbeTest.mockAttacher(Server.name, Server.manifest, (t) =>
            Deferred.await(gate).pipe(
              Effect.mapError((e) =>
                new ProbeAttachError({ probe: Server.name, pid: t.pid, reason: e.reason, message: e.message })
              )
            ))
        })
      )),
      Layer.provideMerge(ProbeTest.layer)
    )
  const serverOnly = { "runtime.newproc1": {}, "net/http.serverHandler.ServeHTTP": {} }
  /** Yields until `entry` is in the MockLog, or dies. */
  const logged = (entry: string) =>
    Effect.gen(function*() {
      const log = yield* MockLog
      for (let i = 0; i < 1000; i++) {
        if ((yield* log.entries).includes(entry)) return
        yield* Effect.yieldNow
      }
      return yield* Effect.die(`never logged: ${entry}`)
    })

  it.effect("a probe attaches once its own load is done, while a later probe still loads", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void, ProbeLoadError>()
      yield* Effect.gen(function*() {
        const manager = yield* Manager
        const log = yield* MockLog
        const handled = yield* Effect.forkChild(
          manager.handle({ _tag: "Started", target: target(7, { functions: serverOnly }) })
        )
        // The daemon is attached while its dependent's load is still held.
        yield* logged("attach test/goctx 7")
        assert.notInclude(yield* log.entries, "attach test/server 7")
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(handled)
        assert.deepStrictEqual((yield* manager.targets).map((t) => [t.pid, t.probes]), [
          [7, ["test/goctx", "test/server"]]
        ])
      }).pipe(Effect.provide(withHeldServer(gate)))
    }))

  it.effect("a dependent's failed load leaves nothing attached: the daemon attached meanwhile is detached", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void, ProbeLoadError>()
      yield* Effect.gen(function*() {
        const manager = yield* Manager
        const log = yield* MockLog
        const handled = yield* Effect.forkChild(
          manager.handle({ _tag: "Started", target: target(8, { functions: serverOnly }) })
        )
        yield* logged("attach test/goctx 8")
        yield* Deferred.fail(
          gate,
          new ProbeLoadError({
            probe: Server.name,
            reason: "BpfLoadError",
            message: "probe test/server: program rejected by the verifier",
            verifierLog: "R1 invalid mem access"
          })
        )
        yield* Fiber.join(handled)
        assert.deepStrictEqual(yield* manager.targets, [])
        assert.deepStrictEqual((yield* log.entries).filter((e) => e.endsWith(" 8")), [
          "attach test/goctx 8",
          "detach test/goctx 8"
        ])
        const server = (yield* manager.stats).find((s) => s.probe === Server.name)!
        assert.strictEqual(server.attachFailures, 1)
      }).pipe(Effect.provide(withHeldServer(gate)))
    }))

  it.effect("a dependency's slow attach does not hold its dependent's back; outcomes stay in attach order", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      // go_context's first links at launch: the kernel's wait, 10-25 ms, held here until the test opens the gate.
      const heldGoCtx = ManagerM.layer.pipe(
        Layer.provide(Layer.mergeAll(
          ProbeTest.mock(GoCtx, {
            attacher: ProbeTest.mockAttacher(GoCtx.name, GoCtx.manifest, () => Deferred.await(gate))
          }),
          ProbeTest.mock(Server)
        )),
        Layer.provideMerge(ProbeTest.layer)
      )
      yield* Effect.gen(function*() {
        const manager = yield* Manager
        const log = yield* MockLog
        const handled = yield* Effect.forkChild(
          manager.handle({ _tag: "Started", target: target(9, { functions: serverOnly }) })
        )
        // The dependent attaches while its dependency's attach is still under way (one after the other, it waited).
        yield* logged("attach test/server 9")
        assert.notInclude(yield* log.entries, "attach test/goctx 9")
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(handled)
        assert.deepStrictEqual((yield* manager.targets).map((t) => [t.pid, t.probes]), [
          [9, ["test/goctx", "test/server"]]
        ])
      }).pipe(Effect.provide(heldGoCtx))
    }))
})

describe("Manager.preloadProbes", () => {
  /** The probes on the fake kernel, loaded on attach: built, nothing in the kernel yet. */
  const built = Layer.mergeAll(Server.layer, Client.layer, Grpc.layer, GoCtx.layer).pipe(
    Layer.provideMerge(ProbeTest.layer),
    Layer.provide(Probe.loadPolicy("onAttach"))
  )
  const loads = Effect.gen(function*() {
    const kernel = yield* FakeKernel
    return (yield* kernel.events).flatMap((e) => e._tag === "Load" ? [e.object] : [])
  })

  it.effect("loads the probes that would attach to the target (and their daemon), without a Manager", () =>
    Effect.gen(function*() {
      const found = Probe.instancesIn(yield* Effect.context<never>())
      assert.deepStrictEqual(yield* loads, [])
      // Only the daemon applies: nothing depending on it does, so nothing loads.
      yield* ManagerM.preloadProbes(found, target(1, { functions: { "runtime.newproc1": {} } }))
      assert.deepStrictEqual(yield* loads, [])
      // grpc's module is not in the process: not loaded.
      yield* ManagerM.preloadProbes(found, target(2))
      assert.deepStrictEqual([...(yield* loads)].sort(), ["test/client", "test/goctx", "test/server"])
      // What a Manager built afterwards finds loaded is not loaded again.
      yield* Effect.gen(function*() {
        const manager = yield* Manager
        yield* manager.handle({ _tag: "Started", target: target(3) })
        assert.deepStrictEqual((yield* manager.targets).map((t) => t.probes), [
          ["test/goctx", "test/client", "test/server"]
        ])
      }).pipe(Effect.provide(ManagerM.layer))
      assert.deepStrictEqual([...(yield* loads)].sort(), ["test/client", "test/goctx", "test/server"])
    }).pipe(Effect.provide(built)))

  it.effect("a composition the Manager would refuse (two probes of one name) loads nothing", () =>
    Effect.gen(function*() {
      const twice = Layer.mergeAll(Server.layer, Server.layerWith({})).pipe(
        Layer.provideMerge(ProbeTest.layer),
        Layer.provide(Probe.loadPolicy("onAttach"))
      )
      yield* Effect.gen(function*() {
        const found = Probe.instancesIn(yield* Effect.context<never>())
        assert.deepStrictEqual(found.map((p) => p.name).sort(), ["test/goctx", "test/server", "test/server"])
        yield* ManagerM.preloadProbes(found, target(4))
        assert.deepStrictEqual(yield* loads, [])
      }).pipe(Effect.provide(twice))
    }))
})
