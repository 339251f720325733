/**
 * Testing a probe against a mocked dependency (no root, no kernel, no BPF object of the dependency).
 *
 * The built-in net/http server probe reuses two maps of the go_context daemon (`reuseMaps: GoContext.sharedMaps`).
 * `ProbeTest.mock(GoContext)` stands in for go_context under its own tag: the server probe, given the mock, takes
 * its maps from it instead of loading go_context, and the Manager composes the mock as it would the real daemon
 * (attached before the server, and only to the processes the server attaches to).
 *
 *   npx vitest run examples/mock-dependency
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { GoContext } from "../../src/instrumentations/GoContext.ts"
import { NetHttpServer } from "../../src/instrumentations/NetHttpServer.ts"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import type { Manifest } from "../../src/probe/Manifest.ts"
import { ProbeAttachError } from "../../src/probe/ProbeError.ts"
import type { Target } from "../../src/probe/Target.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { MockLog } from "../../src/probe/ProbeTest.ts"

/** A Go process with every symbol and struct field the given probes ask for (made-up offsets). */
const goProcess = (pid: number, probes: ReadonlyArray<{ readonly manifest: Manifest }>): Target => {
  const functions: Record<string, {}> = {}
  const fields: Record<string, number> = {}
  for (const { manifest } of probes) {
    for (const s of manifest.symbols ?? []) functions[s.name] = {}
    for (const f of Object.values(manifest.fields ?? {})) {
      fields[`${f.type}.${f.field}`] = 8 * Object.keys(fields).length
    }
  }
  return ProbeTest.target({ pid, goVersion: "1.26.8", functions, fields })
}

/** The server probe over the mocked daemon: the mock is provided to it (and passed on to whoever composes it). */
const ServerOverMock = NetHttpServer.layer.pipe(Layer.provide(ProbeTest.mock(GoContext)))

describe("a dependent probe against a mocked dependency", () => {
  it.effect("loads taking the mocked daemon's maps; the daemon's object is never loaded", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const server = yield* NetHttpServer.tag
      const loads = (yield* kernel.events).flatMap((e) => e._tag === "Load" ? [e] : [])
      assert.deepStrictEqual(loads.map((l) => l.object), ["nethttp_server"])
      assert.deepStrictEqual(loads[0]!.reusedMaps, {
        go_spans: "go_context/go_spans",
        ps_conn_spans: "go_context/ps_conn_spans",
        ps_ctx_spans: "go_context/ps_ctx_spans"
      })
      assert.deepStrictEqual(server.dependsOn, ["go_context"])
    }).pipe(Effect.provide(ServerOverMock.pipe(Layer.provideMerge(ProbeTest.layer)))))

  it.effect("under the Manager, the mock attaches before the server and only where the server attaches", () =>
    Effect.gen(function*() {
      const manager = yield* Manager
      const log = yield* MockLog
      assert.deepStrictEqual(manager.probes.map((p) => `${p.kind} ${p.name}`), [
        "daemon go_context",
        "instrument nethttp_server"
      ])
      // pid 10 serves HTTP; pid 20 is a Go program without net/http: go_context alone would apply there.
      yield* manager.handle({ _tag: "Started", target: goProcess(10, [GoContext, NetHttpServer]) })
      yield* manager.handle({ _tag: "Started", target: goProcess(20, [GoContext]) })
      assert.deepStrictEqual((yield* manager.targets).map((t) => [t.pid, t.probes]), [
        [10, ["go_context", "nethttp_server"]]
      ])
      assert.deepStrictEqual((yield* log.entries).filter((e) => e.startsWith("attach")), ["attach go_context 10"])
      yield* manager.handle({ _tag: "Exited", pid: 10 })
      assert.deepStrictEqual((yield* log.entries).filter((e) => e.startsWith("detach")), ["detach go_context 10"])
    }).pipe(Effect.provide(ManagerM.layerWith(ServerOverMock).pipe(Layer.provideMerge(ProbeTest.layer)))))

  it.effect("a mocked dependency's own capabilities are the test's: here an attach that fails", () =>
    Effect.gen(function*() {
      const manager = yield* Manager
      yield* manager.handle({ _tag: "Started", target: goProcess(30, [GoContext, NetHttpServer]) })
      // The daemon failing leaves the server attached: a failure stays with its probe.
      assert.deepStrictEqual((yield* manager.targets).map((t) => [t.pid, t.probes]), [[30, ["nethttp_server"]]])
      const stats = (yield* manager.stats).find((s) => s.probe === "go_context")!
      assert.strictEqual(stats.attachFailures, 1)
    }).pipe(Effect.provide(
      ManagerM.layerWith(NetHttpServer.layer.pipe(Layer.provide(ProbeTest.mock(GoContext, {
        attacher: ProbeTest.mockAttacher("go_context", GoContext.manifest, (t) =>
          Effect.fail(
            new ProbeAttachError({ probe: "go_context", pid: t.pid, reason: "Test", message: "uprobes unavailable" })
          ))
      })))).pipe(Layer.provideMerge(ProbeTest.layer))
    )))
})
