import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Scope } from "effect"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import { TargetEvent } from "../../src/manager/TargetEvent.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedSpans } from "../../src/probe/ProbeTest.ts"
import { Client, fields, functions, GoCtx, Grpc, record, Server } from "./fixtures.ts"

const target = (pid: number) => ProbeTest.target({ pid, functions, fields })

/** The probes under the "onAttach" policy on the fake kernel. */
const onAttach = <A, E, R>(self: Effect.Effect<A, E, R>, probes: Layer.Layer<any, any, any>) =>
  self.pipe(
    Effect.provide(probes.pipe(Layer.provideMerge(ProbeTest.layer), Layer.provide(Probe.loadPolicy("onAttach")))),
    Effect.scoped
  ) as Effect.Effect<A, E>

const loads = Effect.gen(function*() {
  const kernel = yield* FakeKernel
  return (yield* kernel.events).flatMap((e) => e._tag === "Load" ? [e.object] : [])
})

describe("Probe.LoadPolicy onAttach", () => {
  it.effect("the layer loads nothing; the first attach loads the probe and its dependency, once", () =>
    onAttach(
      Effect.gen(function*() {
        const server = yield* Server.tag
        const goctx = yield* GoCtx.tag
        assert.deepStrictEqual(yield* loads, [])
        assert.strictEqual(yield* server.loader.status, "unloaded")
        // Before the load the manifest answers.
        assert.strictEqual(server.attacher.applicability(target(1))._tag, "Applies")
        assert.deepStrictEqual(yield* server.kernelStats, { submitted: 0n, dropped: 0n })
        const s1 = yield* Scope.make()
        const s2 = yield* Scope.make()
        // Two processes at once share the one load.
        yield* Effect.all([
          server.attacher.attach(target(1)).pipe(Scope.provide(s1)),
          server.attacher.attach(target(2)).pipe(Scope.provide(s2))
        ], { concurrency: "unbounded" })
        assert.deepStrictEqual(yield* loads, ["test/goctx", "test/server"])
        assert.strictEqual(yield* server.loader.status, "loaded")
        assert.strictEqual(yield* goctx.loader.status, "loaded")
        assert.strictEqual((yield* (yield* FakeKernel).liveLinks).length, 4)
        yield* Scope.close(s1, Exit.void)
        yield* Scope.close(s2, Exit.void)
        assert.deepStrictEqual(yield* loads, ["test/goctx", "test/server"])
      }),
      Server.layer
    ))

  it.effect("closing the layer closes what a later attach loaded", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        Server.layer.pipe(Layer.provide(Probe.loadPolicy("onAttach"))),
        scope
      )
      const server = yield* Server.tag.pipe(Effect.provide(context))
      yield* server.attacher.attach(target(3)).pipe(Scope.provide(scope))
      assert.deepStrictEqual([...(yield* kernel.liveObjects)].sort(), ["test/goctx", "test/server"])
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* kernel.liveObjects, [])
      assert.deepStrictEqual(yield* kernel.liveLinks, [])
    }).pipe(Effect.scoped, Effect.provide(ProbeTest.layer)))

  it.effect("a failed load fails each attach with the ProbeLoadError, and is not tried again", () =>
    onAttach(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        yield* kernel.failVerifier({ object: "test/server" }, "invalid access to map value")
        const server = yield* Server.tag
        const first = yield* Effect.flip(server.attacher.attach(target(4)).pipe(Effect.scoped))
        // A second try would now load: the failure kept is what the next attach gets.
        yield* kernel.clearFailures
        const second = yield* Effect.flip(server.attacher.attach(target(5)).pipe(Effect.scoped))
        for (const e of [first, second]) {
          assert.strictEqual(e._tag, "ProbeLoadError")
          assert.strictEqual(e.message, "probe test/server: program rejected by the verifier")
          assert.strictEqual(e._tag === "ProbeLoadError" ? e.verifierLog : "", "invalid access to map value")
        }
        assert.strictEqual(yield* server.loader.status, "failed")
        assert.deepStrictEqual(yield* loads, ["test/goctx"])
        assert.deepStrictEqual(yield* kernel.liveLinks, [])
      }),
      Server.layer
    ))

  it.effect("a dependency that cannot load fails its dependent's load, naming both", () =>
    onAttach(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        yield* kernel.failVerifier({ object: "test/goctx" }, "R1 invalid mem access")
        const client = yield* Client.tag
        const error = yield* Effect.flip(client.loader.load)
        assert.strictEqual(error._tag, "ProbeLoadError")
        assert.strictEqual(error.reason, "DependencyNotLoaded")
        assert.strictEqual(
          error.message,
          "probe test/client: probe test/goctx, whose maps it reuses, did not load: probe test/goctx: program " +
            "rejected by the verifier"
        )
        assert.strictEqual(error.verifierLog, "R1 invalid mem access")
        assert.strictEqual(yield* client.loader.status, "failed")
      }),
      Client.layer
    ))

  it.effect("a Runner waits for the load without causing it; stop ends the wait", () =>
    onAttach(
      Effect.gen(function*() {
        const server = yield* Server.tag
        if (server.kind !== "instrument") return assert.fail("an instrument")
        const fiber = yield* Effect.forkChild(server.runner.run)
        yield* Effect.yieldNow
        assert.deepStrictEqual(yield* loads, [])
        assert.deepStrictEqual(yield* server.runner.stats, {
          records: 0,
          decodeErrors: 0,
          skipped: 0,
          signalErrors: 0,
          unsupported: 0,
          consumerDropped: 0
        })
        yield* server.runner.stop
        assert.isTrue(Exit.isSuccess(yield* Fiber.await(fiber)))
      }),
      Server.layer
    ))
})

describe("Manager with probes loaded on attach", () => {
  const App = ManagerM.layer.pipe(
    Layer.provide(Layer.mergeAll(Server.layer, Client.layer, Grpc.layer, GoCtx.layer)),
    Layer.provideMerge(ProbeTest.layer),
    Layer.provide(Probe.loadPolicy("onAttach"))
  )

  it.effect("loads only what the process needs, and the Runners read once loaded", () =>
    Effect.gen(function*() {
      const manager = yield* Manager
      const kernel = yield* FakeKernel
      const captured = yield* CapturedSpans
      assert.deepStrictEqual(yield* loads, [])
      yield* manager.handle(TargetEvent.Started({ target: target(10) }))
      assert.deepStrictEqual((yield* manager.targets).map((t) => t.probes), [
        ["test/goctx", "test/client", "test/server"]
      ])
      // grpc's module is not in the process: never loaded.
      assert.deepStrictEqual((yield* loads).sort(), ["test/client", "test/goctx", "test/server"])
      yield* kernel.push("test/server", [record()])
      const spans = yield* captured.take(1)
      assert.deepStrictEqual(spans.map((s) => s.name), ["GET /hello"])
      const stats = yield* manager.stats
      assert.strictEqual(stats.find((s) => s.probe === "test/grpc")?.records, 0)
      assert.strictEqual(stats.find((s) => s.probe === "test/server")?.records, 1)
    }).pipe(Effect.provide(App)))

  it.effect("a probe that fails to load is that process's attach failure; the others attach", () =>
    Effect.gen(function*() {
      const manager = yield* Manager
      const kernel = yield* FakeKernel
      yield* kernel.failVerifier({ object: "test/client" }, "back-edge")
      yield* manager.handle(TargetEvent.Started({ target: target(11) }))
      assert.deepStrictEqual((yield* manager.targets).map((t) => t.probes), [["test/goctx", "test/server"]])
      const stats = yield* manager.stats
      assert.strictEqual(stats.find((s) => s.probe === "test/client")?.attachFailures, 1)
    }).pipe(Effect.provide(App)))
})
