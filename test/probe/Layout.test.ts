/**
 * Layouts against BTF: `Binary.check` on hand-made structs, and what a probe does at load with the BTF the fake kernel
 * is given (checked, skipped without BTF, refused with the struct and field named).
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import type { BtfMember, BtfStruct } from "../../src/kernel/Bpf.ts"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import * as Binary from "../../src/probe/Binary.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"

const int = (name: string, offset: number, size: number): BtfMember => ({
  name,
  bitOffset: offset * 8,
  bitSize: 0,
  size,
  kind: "int",
  type: `u${size * 8}`
})
const array = (name: string, offset: number, size: number): BtfMember => ({
  ...int(name, offset, size),
  kind: "array",
  type: "unsigned char",
  elements: size
})
const nested = (name: string, offset: number, members: ReadonlyArray<BtfMember>, size: number): BtfMember => ({
  name,
  bitOffset: offset * 8,
  bitSize: 0,
  size,
  kind: "struct",
  type: name,
  members
})
const struct = (name: string, size: number, members: ReadonlyArray<BtfMember>): BtfStruct => ({
  name,
  size,
  kind: "struct",
  members
})

/** struct event { struct head { u64 start_ns; u32 pid; u32 _pad; } head; u8 trace_id[16]; u16 path_len; ... } */
const event = struct("event", 40, [
  nested("head", 0, [int("start_ns", 0, 8), int("pid", 8, 4), int("_pad", 12, 4)], 16),
  array("trace_id", 16, 16),
  int("path_len", 32, 2),
  int("flags", 34, 1)
])

const Event = Binary.struct({
  startNs: Binary.u64,
  pid: Binary.u32,
  _pad: Binary.pad(4),
  traceId: Binary.hex(16),
  pathLen: Binary.u16,
  flags: Binary.u8
}, { struct: "event" })

describe("Binary.check", () => {
  it("matches fields to C members by snake_case name, through nested structs", () => {
    assert.deepStrictEqual(Binary.check(Event, event), [])
  })

  it("names the field and the C member it mirrors when an offset or a width differs", () => {
    const moved = struct("event", 40, [...event.members.slice(0, 3), int("flags", 35, 1)])
    assert.deepStrictEqual(Binary.check(Event, moved), [
      { field: "flags", message: "field \"flags\": offset 34, BTF says 35" }
    ])
    const wider = struct("event", 40, [...event.members.slice(0, 2), int("path_len", 32, 4), event.members[3]!])
    assert.deepStrictEqual(Binary.check(Event, wider), [
      { field: "pathLen", message: "field \"pathLen\" (member path_len): 2 bytes, BTF says 4" }
    ])
  })

  it("an explicit member path wins; a missing or ambiguous member is named", () => {
    const Renamed = Binary.struct({ begin: Binary.member("head.start_ns", Binary.u64) }, { struct: "event" })
    assert.deepStrictEqual(Binary.check(Renamed, struct("event", 8, [event.members[0]!].map((m) => ({
      ...m,
      members: [m.members![0]!],
      size: 8
    })))), [])
    const Missing = Binary.struct({ start: Binary.u64 })
    assert.deepStrictEqual(Binary.check(Missing, struct("x", 8, [int("begin", 0, 8)])), [
      { field: "start", message: "field \"start\": no member \"start\"" }
    ])
    const twice = struct("x", 16, [nested("a", 0, [int("n", 0, 8)], 8), nested("b", 8, [int("n", 0, 8)], 8)])
    const N = Binary.struct({ n: Binary.u64, m: Binary.member("b.n", Binary.u64) })
    assert.deepStrictEqual(Binary.check(N, twice), [
      { field: "n", message: "field \"n\": member \"n\" is ambiguous (a.n, b.n): name its path" }
    ])
  })

  it("a size that differs, a C member no field covers, and a bitfield are each named", () => {
    const Short = Binary.struct({ startNs: Binary.u64 })
    assert.deepStrictEqual(Binary.check(Short, struct("x", 16, [int("start_ns", 0, 8), int("extra", 8, 8)])), [
      { field: "", message: "size 8 bytes, BTF says 16" },
      { field: "extra", message: "member extra (offset 8, 8 bytes) is not in the layout" }
    ])
    // A member added in what the layout leaves as an alignment hole: same size, same offsets, still noticed.
    const Holey = Binary.struct({ a: Binary.u32, b: Binary.u64 })
    assert.deepStrictEqual(Binary.check(Holey, struct("x", 16, [int("a", 0, 4), int("c", 4, 4), int("b", 8, 8)])), [
      { field: "c", message: "member c (offset 4, 4 bytes) is not in the layout" }
    ])
    const bits = struct("x", 4, [{ ...int("mode", 0, 4), bitSize: 3 }])
    assert.deepStrictEqual(Binary.check(Binary.struct({ mode: Binary.u32 }), bits), [
      { field: "mode", message: "field \"mode\": is a bitfield, which a layout cannot mirror" }
    ])
  })
})

const Targets = Binary.struct({ method: Binary.u64, url: Binary.u64 })

const probe = (record: Binary.Layout<any>) =>
  Probe.instrument({
    name: "test/layout",
    object: Probe.objectFile("test_layout"),
    manifest: { library: { module: "std" }, symbols: [{ name: "main.f", entry: "uprobe_f" }] },
    perTarget: { layout: Targets, value: () => ({ method: 0n, url: 0n }) },
    record: Binary.schema(record),
    span: () => undefined
  })

const btf = {
  structs: { event, offsets: struct("offsets", 16, [int("method", 0, 8), int("url", 8, 8)]) },
  mapValues: { ps_targets: "offsets" }
}

/** Build the probe on the fake kernel, given this BTF for its object (none when undefined): its layout checks. */
const load = (definition: ReturnType<typeof probe>, given: typeof btf | undefined) =>
  Effect.gen(function*() {
    const kernel = yield* FakeKernel
    if (given !== undefined) yield* kernel.defineBtf("test/layout", given)
    const context = yield* Layer.build(definition.layer)
    return (yield* Context.get(context, definition.tag).loader.load).layouts
  }).pipe(Effect.scoped, Effect.provide(ProbeTest.layer))

describe("a probe's layouts at load", () => {
  it.effect("are checked against the object's BTF: the record by its struct, per-target by the map's value", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* load(probe(Event), btf), [
        { role: "record", struct: "event", checked: true },
        { role: "perTarget", struct: "offsets", checked: true }
      ])
    }))

  it.effect("are not checked when the object has no BTF (the fake kernel's default)", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* load(probe(Event), undefined), [
        { role: "record", struct: "event", checked: false },
        { role: "perTarget", struct: "", checked: false }
      ])
    }))

  it.effect("a struct the BTF lacks fails the load and says how to anchor it", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(load(probe(Binary.named(Event, "nethttp_event")), btf))
      assert.strictEqual(error._tag, "ProbeLoadError")
      assert.strictEqual(
        error.message,
        "probe test/layout: record layout does not match struct nethttp_event in the BTF of test_layout.bpf.o: the " +
          "BTF has no struct nethttp_event (a record type only reserved by size needs PS_RECORD(nethttp_event) in " +
          "the C file)"
      )
    }))

  it.effect("a per-target layout that disagrees with the map's value names the struct and the field", () =>
    Effect.gen(function*() {
      const offsets = struct("offsets", 16, [int("url", 0, 8), int("method", 8, 8)])
      const error = yield* Effect.flip(load(probe(Event), { ...btf, structs: { ...btf.structs, offsets } }))
      assert.strictEqual(error._tag, "ProbeLoadError")
      assert.strictEqual(
        error.message,
        "probe test/layout: per-target layout does not match struct offsets in the BTF of test_layout.bpf.o: " +
          "field \"method\": offset 0, BTF says 8 (and 1 more)"
      )
      const cause = error._tag === "ProbeLoadError" ? error.cause : undefined
      assert.deepStrictEqual([cause?._tag, cause?.role, cause?.struct, cause?.field], [
        "LayoutMismatch",
        "perTarget",
        "offsets",
        "method"
      ])
    }))
})
