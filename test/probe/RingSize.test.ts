/** A probe sizes its own ring buffer in the kernel with `ringBuffer.bytes` (else the agent's or the C file's size). */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import * as Binary from "../../src/probe/Binary.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"

const probe = (name: string, ringBuffer?: { readonly map?: string; readonly bytes?: number }) =>
  Probe.instrument({
    name,
    object: Probe.objectFile(name),
    manifest: {},
    ...(ringBuffer === undefined ? {} : { ringBuffer }),
    record: Binary.schema(Binary.struct({ pid: Binary.u32 })),
    instruments: {},
    signals: () => {}
  })

describe("Probe: ring buffer size", () => {
  it.effect("ringBuffer.bytes goes to the load as the ring map's size; without it the load sizes nothing", () =>
    Effect.gen(function*() {
      yield* Layer.build(Layer.mergeAll(
        probe("test/sized", { bytes: 65536 }).layer,
        probe("test/named-ring", { map: "records", bytes: 1 << 21 }).layer,
        probe("test/default").layer
      ))
      const loads = (yield* (yield* FakeKernel).events).flatMap((e) => e._tag === "Load" ? [[e.object, e.mapSizes]] : [])
      assert.deepStrictEqual(Object.fromEntries(loads), {
        "test/sized": { events: 65536 },
        "test/named-ring": { records: 1 << 21 },
        "test/default": {}
      })
    }).pipe(Effect.provide(ProbeTest.layer), Effect.scoped))
})
