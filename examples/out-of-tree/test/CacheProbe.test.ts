/**
 * The probe on probescope's fake kernel, no root: decoding a record into the span, the config's bounds, and the whole
 * Manager composition (go_context comes in as the probe's dependency) attaching to a process that has the symbol and
 * skipping one that has not.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { BpfLive, BpfTest } from "probescope/kernel"
import { Manager } from "probescope/manager"
import { Binary, Probe, ProbeTest } from "probescope/probe"
import { CacheGetRecord, CacheProbe, objectPath } from "../src/CacheProbe.ts"

const serverSpanId = "00f067aa0ba902b7"

const record = (key: string, found: boolean, hasParent = true) =>
  CacheGetRecord.encode({
    startNs: 1_000n,
    endNs: 4_500n,
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: "b7ad6b7169203331",
    parentSpanId: hasParent ? serverSpanId : "0000000000000000",
    pid: 4242,
    flags: 1,
    hasParent,
    found,
    keyLen: key.length,
    key
  })

describe("CacheProbe", () => {
  it.effect("mirrors struct cache_get_record of the built object's BTF, field by field (npm run build:bpf first)", () =>
    Effect.gen(function*() {
      // Read from the ELF file without loading it: no root needed.
      const btf = Option.getOrThrow(yield* BpfLive.readBtf(objectPath))
      const struct = btf.structs["cache_get_record"]!
      assert.deepStrictEqual(Binary.check(CacheGetRecord, struct), [])
      assert.strictEqual(CacheGetRecord.size, struct.size)
    }))

  it.effect("decodes a record into a child span of the request's span", () =>
    Effect.gen(function*() {
      const span = yield* CacheProbe.decode(record("alpha", true))
      assert.strictEqual(span?.name, "Cache.Get")
      assert.strictEqual(span?.kind, "internal")
      assert.strictEqual(span?.parentSpanId, serverSpanId)
      assert.strictEqual(span?.traceId, "4bf92f3577b34da6a3ce929d0e0e4736")
      assert.deepStrictEqual(span?.attributes, { "cache.key": "alpha", "cache.hit": true })
      assert.strictEqual(span?.endMonoNs, 4_500n)
    }))

  it.effect("makes a root span when no span was active on the goroutine, and cuts keys to maxKeyBytes", () =>
    Effect.gen(function*() {
      const span = yield* CacheProbe.decode(record("a-rather-long-key", false, false), { maxKeyBytes: 4 })
      assert.isUndefined(span?.parentSpanId)
      assert.deepStrictEqual(span?.attributes, { "cache.key": "a-ra", "cache.hit": false })
    }))

  it.effect("rejects a maxKeyBytes the record cannot hold, naming the probe and field", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(CacheProbe.decode(record("alpha", true), { maxKeyBytes: 64 }))
      assert.strictEqual(error._tag, "ProbeConfigError")
      assert.strictEqual(
        error.message,
        "probe example/cache-get: config field \"maxKeyBytes\": Expected a value between 1 and 32"
      )
    }))

  it.effect("runs under the Manager: attaches to the process with main.(*Cache).Get, emits its spans", () =>
    Effect.gen(function*() {
      const targets = yield* ProbeTest.TestTargets
      const kernel = yield* BpfTest.FakeKernel
      const captured = yield* ProbeTest.CapturedSpans
      const manager = yield* Manager.Manager
      const functions = { "main.(*Cache).Get": { entryOffset: 0x22a76a, returnOffsets: [0x22a7d1, 0x22a802] } }
      yield* targets.start(ProbeTest.target({ pid: 4242, goVersion: "1.26.8", functions }))
      yield* targets.start(ProbeTest.target({ pid: 4243, goVersion: "1.26.8", functions: {} }))
      // The Manager applies target events in fibers of their own: wait until pid 4242 is attached.
      yield* Effect.repeat(Effect.andThen(Effect.yieldNow, manager.targets), {
        until: (attached) => attached.some((t) => t.pid === 4242)
      })
      yield* kernel.push("example/cache-get", [record("alpha", true), record("nope", false)])
      const spans = yield* captured.take(2)
      assert.deepStrictEqual(spans.map((s) => s.attributes["cache.hit"]), [true, false])
      assert.deepStrictEqual(spans.map((s) => s.parentSpanId), [serverSpanId, serverSpanId])
      const attaches = (yield* kernel.events).filter((e) => e._tag === "Attach" && e.pid === 4242)
      assert.deepStrictEqual(attaches.map((e) => e._tag === "Attach" ? [e.program, e.offsets] : []), [
        ["uprobe_cache_get", [0x22a76a]],
        ["uprobe_cache_get_ret", [0x22a7d1, 0x22a802]]
      ])
      const why = manager.inspect(ProbeTest.target({ pid: 4243 })).find((r) => r.probe === "example/cache-get")
      assert.strictEqual(
        why?.applicability._tag === "NotApplicable" && why.applicability.reason,
        "required symbol main.(*Cache).Get is not in the binary"
      )
    }).pipe(
      Effect.provide(Manager.layer.pipe(Layer.provide(CacheProbe.layer), Layer.provideMerge(ProbeTest.layer))),
      Effect.provide(Probe.settings({ "example/cache-get": { maxKeyBytes: 32 } }))
    ))
})
