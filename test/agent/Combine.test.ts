/**
 * `combine`, which joins the probes the agent is given into one layer: two copies of one probe module (a checkout's
 * `src/` probe run next to the built-ins compiled to `dist/`) must not load the same object twice.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import { combine } from "../../src/agent/internal/probes.ts"
import * as Binary from "../../src/probe/Binary.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeRegistry from "../../src/probe/ProbeRegistry.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"

/** What a probe module evaluates to; called twice, it stands for two copies of the module. */
const copyOfModule = () => {
  const Daemon = Probe.daemon({
    name: "test/shared-daemon",
    object: Probe.objectFile("test_shared_daemon"),
    manifest: {},
    shares: ["spans"]
  })
  const Instrument = Probe.instrument({
    name: "test/user",
    object: Probe.objectFile("test_user"),
    manifest: {},
    reuseMaps: { spans: Daemon.map("spans") },
    record: Binary.schema(Binary.struct({ pid: Binary.u32 })),
    instruments: {},
    signals: () => {}
  })
  return { Daemon, Instrument }
}

describe("combine", () => {
  it.effect("a dependency already given is shared, and a probe given twice is loaded once", () =>
    Effect.gen(function*() {
      const builtin = copyOfModule()
      const module = copyOfModule()
      const layer = combine([builtin.Daemon, module.Instrument, module.Daemon])
      yield* Layer.build(layer)
      const kernel = yield* FakeKernel
      const loads = (yield* kernel.events).flatMap((e) => e._tag === "Load" ? [e.object] : [])
      assert.deepStrictEqual(loads, ["test/shared-daemon", "test/user"])
      const user = (yield* kernel.events).find((e) => e._tag === "Load" && e.object === "test/user")
      assert.deepStrictEqual(user?._tag === "Load" ? user.reusedMaps : undefined, { spans: "test/shared-daemon/spans" })
    }).pipe(Effect.provide(Layer.merge(ProbeTest.layer, ProbeRegistry.layer)), Effect.scoped))
})
