/**
 * The otel_trace probe without a kernel: its layouts against the built object's BTF, what records turn into
 * (`OtelTrace.signals` on hand-made records: exact spans) — names, kinds, each attribute type, what is dropped and
 * counted, events and RecordError's exception events, each status — and its load, attach and applicability on the
 * fake kernel.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Scope } from "effect"
import * as OtelTrace from "../../src/instrumentations/OtelTrace.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import * as Binary from "../../src/probe/Binary.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import type { Target } from "../../src/probe/Target.ts"
import * as Ids from "../../src/probe/Ids.ts"
import { holding, name, type, words } from "./HeldMemory.ts"

const TRACE = "0af7651916cd43dd8448eb211c80319c"
const PARENT = "b7ad6b7169203331"
const SPAN = "1111111111111111"
const MODULE = "go.opentelemetry.io/otel"

/** One attribute as the BPF side records it (owner 0: the span). */
const attr = (key: string, type: number, value: bigint | string, over: Partial<OtelTrace.Attr> = {}) => {
  const str = typeof value === "string" ? value : ""
  return OtelTrace.Attr.encode({
    strSize: Buffer.byteLength(str),
    keySize: Buffer.byteLength(key),
    owner: 0,
    type,
    keyLen: 0,
    strLen: 0,
    num: typeof value === "bigint" ? value : 0n,
    keyAt: 0n,
    key,
    str,
    ...over
  })
}
const float = (x: number) => {
  const v = new DataView(new ArrayBuffer(8))
  v.setFloat64(0, x, true)
  return v.getBigUint64(0, true)
}
const T = OtelTrace.AttrType

/** One event as the BPF side records it. */
const event = (name: string, timeNs: bigint, over: Partial<OtelTrace.Event> = {}) =>
  OtelTrace.Event.encode({
    timeNs,
    nameAt: 0n,
    msgAt: 0n,
    nameLen: 0,
    exception: false,
    errTflag: 0,
    errKind: 0,
    msgLen: 0,
    nameColdLen: 0,
    msgColdLen: 0,
    name,
    msg: "",
    ...over
  })

const array = (items: ReadonlyArray<Uint8Array>, size: number, count: number) => {
  const out = new Uint8Array(size * count)
  items.forEach((b, i) => out.set(b, i * size))
  return out
}

/** A record: span "work", INTERNAL, child of a sampled span, status unset, unless overridden. */
const record = (
  over: Partial<OtelTrace.Record> = {},
  attrs: ReadonlyArray<Uint8Array> = [],
  events: ReadonlyArray<Uint8Array> = []
) =>
  OtelTrace.Record.encode({
    startNs: 1_000_000n,
    endNs: 1_250_000n,
    traceId: Ids.fromHex(TRACE),
    spanId: Ids.fromHex(SPAN),
    parentSpanId: Ids.fromHex(PARENT),
    pid: 4242,
    flags: 1,
    parent: 1,
    kind: 1,
    statusCode: 0,
    nameLen: 0,
    descLen: 0,
    attrCount: attrs.length,
    eventCount: events.length,
    attrsDropped: 0,
    eventsDropped: 0,
    nameColdLen: 0,
    descColdLen: 0,
    types: 0n,
    nameAt: 0n,
    descAt: 0n,
    optionAt: 0n,
    name: "work",
    desc: "",
    attrs: array(attrs, OtelTrace.Attr.size, OtelTrace.ATTRS),
    events: array(events, OtelTrace.Event.size, OtelTrace.EVENTS),
    ...over
  })

/** The one span a record gives. */
const one = (bytes: Uint8Array) =>
  Effect.gen(function*() {
    const out = ProbeTest.capturedSignals(yield* OtelTrace.OtelTrace.signals(bytes))
    assert.deepStrictEqual([out.spans.length, out.logs.length, out.measurements.length], [1, 0, 0])
    return out.spans[0]!
  })

const head = {
  probe: "otel_trace",
  pid: 4242,
  traceId: TRACE,
  spanId: SPAN,
  parentSpanId: PARENT,
  parentIsRemote: false,
  traceFlags: 1,
  startMonoNs: 1_000_000n,
  endMonoNs: 1_250_000n
}

describe("record layouts", () => {
  it.effect("Record, Attr, Event and Target match the object's BTF", () =>
    Effect.gen(function*() {
      const btf = yield* BpfLive.readBtf(Probe.objectFile("otel_trace")).pipe(
        Effect.map(Option.getOrThrow),
        Effect.orDie
      )
      for (const layout of [OtelTrace.Record, OtelTrace.Attr, OtelTrace.Event, OtelTrace.Target]) {
        const struct = btf.structs[layout.struct!]!
        assert.deepStrictEqual(Binary.check(layout, struct), [], layout.struct)
        assert.strictEqual(layout.size, struct.size)
      }
    }))
})

describe("spans", () => {
  it.effect("a span with no attributes or events: its name, INTERNAL, the parent, status unset", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* one(record()), {
        ...head,
        name: "work",
        kind: "internal",
        attributes: {},
        status: { code: "unset" }
      })
    }))

  it.effect("a root span has no parent; each trace.SpanKind maps to its kind (Unspecified and unknown: INTERNAL)", () =>
    Effect.gen(function*() {
      const root = yield* one(record({ parent: 0, parentSpanId: Ids.fromHex("0000000000000000") }))
      assert.isUndefined(root.parentSpanId)
      assert.isUndefined(root.parentIsRemote)
      const kinds = []
      for (const kind of [0, 1, 2, 3, 4, 5, 9]) kinds.push((yield* one(record({ kind }))).kind)
      assert.deepStrictEqual(kinds, ["internal", "internal", "server", "client", "producer", "consumer", "internal"])
    }))

  it.effect("attributes of each type; a later value of a key wins; slices and cut keys dropped and counted", () =>
    Effect.gen(function*() {
      const span = yield* one(record({ attrsDropped: 2 }, [
        attr("app.user", T.string, "alice"),
        attr("app.items", T.int64, 3n),
        attr("app.delta", T.int64, BigInt.asUintN(64, -42n)),
        attr("app.cached", T.bool, 0n),
        attr("app.hit", T.bool, 1n),
        attr("app.ratio", T.float64, float(0.25)),
        attr("app.tags", 8 /* STRINGSLICE */, 0n),
        attr("k".repeat(64), T.string, "cut key", { keySize: 70 }),
        // A value longer than the 64 bytes read: its first 64 bytes.
        attr("app.long", T.string, "x".repeat(64), { strSize: 100 }),
        attr("app.user", T.string, "bob")
      ]))
      assert.deepStrictEqual(span.attributes, {
        "app.user": "bob",
        "app.items": 3,
        "app.delta": -42,
        "app.cached": false,
        "app.hit": true,
        "app.ratio": 0.25,
        "app.long": "x".repeat(64)
      })
      // The two that did not fit in the record, the slice and the cut key: OTLP's dropped_attributes_count.
      assert.deepStrictEqual([span.droppedAttributesCount, span.droppedEventsCount], [4, undefined])
    }))

  it.live("what the kernel could not read is read from the process: name, description, keys, strings, events", () =>
    Effect.gen(function*() {
      // Constants a Go program would have in read-only data: bytes at fixed offsets of the held buffer; an itab (96)
      // of a type (112) named *errors.errorString (160), an errorString (192) whose text is "no stock" (208).
      const texts = ["checkout", "failed", "http.route", "/cart", "paid", "app.id"]
      const offsets = [0, 16, 32, 48, 64, 80]
      const { base, pid } = yield* holding((b) => {
        const m = Buffer.alloc(224)
        texts.forEach((t, i) => Buffer.from(t).copy(m, offsets[i]!))
        words(0n, b + 112n).copy(m, 96)
        type(0, 22, 160).copy(m, 112)
        name("*errors.errorString").copy(m, 160)
        words(b + 208n, 8n).copy(m, 192)
        Buffer.from("no stock").copy(m, 208)
        return m
      })
      const at = (i: number) => base + BigInt(offsets[i]!)
      const len = (i: number) => texts[i]!.length
      const span = yield* one(record(
        {
          pid,
          types: base,
          name: "",
          nameAt: at(0),
          nameColdLen: len(0),
          statusCode: 1,
          desc: "",
          descAt: at(1),
          descColdLen: len(1)
        },
        [
          attr("", T.string, "", { keySize: len(2), keyAt: at(2), strSize: len(3), num: at(3) }),
          attr("", T.int64, 7n, { keySize: len(5), keyAt: at(5) })
        ],
        [
          event("", 1_100_000n, { nameAt: at(4), nameColdLen: len(4) }),
          event("", 1_200_000n, { exception: true, nameAt: base + 96n, msgAt: base + 192n })
        ]
      ))
      assert.deepStrictEqual(
        [span.name, span.status, span.attributes],
        ["checkout", { code: "error", message: "failed" }, { "http.route": "/cart", "app.id": 7 }]
      )
      assert.deepStrictEqual(span.events!.map((e) => [e.name, e.attributes]), [
        ["paid", {}],
        ["exception", { "exception.type": "*errors.errorString", "exception.message": "no stock" }]
      ])
    }).pipe(Effect.scoped))

  it.live("attributes read on a guess from a start option of an unread type: kept if it is WithAttributes'", () =>
    Effect.gen(function*() {
      // Two itabs (0, 16) of types (32: a slice, trace.attributeOption; 80: a func) named at 128 and 160.
      const { base, pid } = yield* holding((b) => {
        const m = Buffer.alloc(192)
        words(0n, b + 32n, 0n, b + 80n).copy(m, 0)
        type(0, 23, 128).copy(m, 32)
        type(0, 19, 160).copy(m, 80)
        name("trace.attributeOption").copy(m, 128)
        name("trace.spanOptionFunc").copy(m, 160)
        return m
      })
      const guessed = [
        attr("app.user", T.string, "alice"),
        attr("app.items", T.int64, 3n, { owner: OtelTrace.OWNER_UNREAD }),
        attr("app.tags", 11, 0n, { owner: OtelTrace.OWNER_UNREAD })
      ]
      const spanOf = (optionAt: bigint) => one(record({ pid, types: base, optionAt }, guessed))
      const slice = yield* spanOf(base)
      // A slice: the guessed attributes are the span's, a string slice among them counted as dropped as usual.
      assert.deepStrictEqual(
        [slice.attributes, slice.droppedAttributesCount],
        [{ "app.user": "alice", "app.items": 3 }, 1]
      )
      const func = yield* spanOf(base + 16n)
      // Not a slice: the guess is left out, and not counted as dropped.
      assert.deepStrictEqual([func.attributes, func.droppedAttributesCount], [{ "app.user": "alice" }, undefined])
    }).pipe(Effect.scoped))

  it.effect("events in order with their own attributes; RecordError's as 'exception'; dropped events counted", () =>
    Effect.gen(function*() {
      const span = yield* one(record({ eventsDropped: 3 }, [
        attr("app.user", T.string, "alice"),
        attr("cache.key", T.string, "k1", { owner: 1 }),
        attr("retry", T.int64, 2n, { owner: 3 }),
        attr("tags", 5 /* BOOLSLICE */, 0n, { owner: 3 })
      ], [
        event("cache miss", 1_100_000n),
        event("*errors.errorString", 1_150_000n, { exception: true, errKind: 22, msg: "boom" }),
        // A named error type stored as "*T" with TFlagExtraStar: its name is T; its message is not its first field.
        event("*net.OpError", 1_160_000n, { exception: true, errKind: 25, errTflag: 2, msg: "garbage" }),
        event("*fmt.wrapError", 1_170_000n, { exception: true, errKind: 22, msg: "wrapped: boom" })
      ]))
      assert.deepStrictEqual(span.attributes, { "app.user": "alice" })
      assert.deepStrictEqual([span.droppedAttributesCount, span.droppedEventsCount], [1, 3])
      assert.deepStrictEqual(span.events, [
        { name: "cache miss", timeMonoNs: 1_100_000n, attributes: { "cache.key": "k1" } },
        {
          name: "exception",
          timeMonoNs: 1_150_000n,
          attributes: { "exception.type": "*errors.errorString", "exception.message": "boom" }
        },
        { name: "exception", timeMonoNs: 1_160_000n, attributes: { "exception.type": "net.OpError", retry: 2 } },
        {
          name: "exception",
          timeMonoNs: 1_170_000n,
          attributes: { "exception.type": "*fmt.wrapError", "exception.message": "wrapped: boom" }
        }
      ])
    }))

  it.effect("status: Error with its description, Error without one, Ok", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual((yield* one(record({ statusCode: 1, desc: "nested failed" }))).status, {
        code: "error",
        message: "nested failed"
      })
      assert.deepStrictEqual((yield* one(record({ statusCode: 1 }))).status, { code: "error" })
      assert.deepStrictEqual((yield* one(record({ statusCode: 2 }))).status, { code: "ok" })
    }))

  it("kind closures are written as distances from Start's entry probe, at most KIND_FNS of them", () => {
    const { kindFnCount, kindFns } = OtelTrace.kindDistances([0x6a27a0n, 0x6a26e0n], 0x6a0a34n)
    const v = new DataView(kindFns.buffer)
    assert.deepStrictEqual([kindFnCount, v.getBigInt64(0, true), v.getBigInt64(8, true), v.getBigInt64(16, true)], [
      2,
      0x6a27a0n - 0x6a0a34n,
      0x6a26e0n - 0x6a0a34n,
      0n
    ])
    const many = Array.from({ length: 40 }, (_, i) => BigInt(i))
    assert.strictEqual(OtelTrace.kindDistances(many, 0n).kindFnCount, OtelTrace.KIND_FNS)
    assert.strictEqual(OtelTrace.kindDistances(many, undefined).kindFnCount, 0)
  })
})

// ---------------------------------------------------------------------------------------------------------------
// On the fake kernel
// ---------------------------------------------------------------------------------------------------------------

const GLOBAL = `${MODULE}/internal/global`

/** A Go 1.26 target linking otel `release` with the probe's functions and fields (DWARF values of v1.47.0). */
const otelTarget = (pid: number, options: { readonly release?: string; readonly fields?: boolean } = {}): Target =>
  ProbeTest.target({
    pid,
    goVersion: "1.26.8",
    modules: { [MODULE]: options.release ?? "v1.47.0" },
    functions: {
      [OtelTrace.symbols.start]: { entryOffset: 0x2a0a34, returnOffsets: [0x2a0ad2, 0x2a0b88] },
      [OtelTrace.symbols.end]: { entryOffset: 0x2a13e4 },
      [OtelTrace.symbols.setAttributes]: { entryOffset: 0x2a1444 },
      [OtelTrace.symbols.setStatus]: { entryOffset: 0x2a1484 },
      [OtelTrace.symbols.addEvent]: { entryOffset: 0x2a13c4 },
      [OtelTrace.symbols.recordError]: { entryOffset: 0x2a1424 }
      // No SetName: the program never calls it, so the linker dropped it.
    },
    fields: options.fields === false ? {} : {
      [`${GLOBAL}.tracer.delegate`]: 48,
      [`${MODULE}/attribute.KeyValue.Key`]: 0,
      [`${MODULE}/attribute.KeyValue.Value`]: 16,
      [`${MODULE}/attribute.Value.vtype`]: 0,
      [`${MODULE}/attribute.Value.numeric`]: 8,
      [`${MODULE}/attribute.Value.stringly`]: 16,
      [`${MODULE}/attribute.Value.slice`]: 32
    },
    symbols: { "runtime.types": { fileOffset: 0x500000, address: 0x900000n, kind: "object" } }
  })

const onFakeKernel = <A, E>(self: Effect.Effect<A, E, any>) =>
  self.pipe(
    Effect.provide(OtelTrace.OtelTrace.layer.pipe(Layer.provideMerge(ProbeTest.layer))),
    Effect.scoped
  ) as Effect.Effect<A, E>

describe("on the fake kernel", () => {
  it.effect("loads after go_context, reusing its maps", () =>
    onFakeKernel(Effect.gen(function*() {
      const loads = (yield* (yield* FakeKernel).events).flatMap((e) => e._tag === "Load" ? [e] : [])
      assert.deepStrictEqual(loads.map((l) => l.object), ["go_context", "otel_trace"])
      assert.deepStrictEqual(loads[1]!.reusedMaps, {
        go_spans: "go_context/go_spans",
        ps_conn_spans: "go_context/ps_conn_spans",
        ps_ctx_spans: "go_context/ps_ctx_spans"
      })
    })))

  it.effect("attach writes the offsets, KeyValue's size and where the type data is; a program per method present", () =>
    onFakeKernel(Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const probe = yield* OtelTrace.OtelTrace.tag
      const scope = yield* Scope.make()
      const target = otelTarget(77)
      yield* probe.attacher.attach(target).pipe(Scope.provide(scope))
      const f = Option.getOrThrow(target.function(OtelTrace.symbols.recordError))
      const start = Option.getOrThrow(target.function(OtelTrace.symbols.start))
      const value = (yield* kernel.map("otel_trace", "ps_targets")).get("4d000000")!
      assert.deepStrictEqual(OtelTrace.Target.decode(value), {
        tracerDelegate: 48,
        kvKey: 0,
        kvValue: 16,
        kvSize: 64,
        valueVtype: 0,
        valueNumeric: 8,
        valueStringly: 16,
        typeTflag: 20,
        typeKind: 23,
        typeStr: 40,
        typesFromRecordError: 0x900000n - (f.address + BigInt(f.entryOffset - f.fileOffset)),
        typesFromStart: 0x900000n - (start.address + BigInt(start.entryOffset - start.fileOffset)),
        typesKnown: 1,
        // The fake executable cannot be read: no WithSpanKind closures known, every span INTERNAL.
        kindFns: new Uint8Array(OtelTrace.KIND_FNS * 8),
        kindFnCount: 0
      })
      const programs = (yield* kernel.liveLinks).map((l) => `${l.program}@${l.offsets?.map((o) => o.toString(16))}`)
      assert.deepStrictEqual(programs.sort(), [
        "uprobe_add_event@2a13c4",
        "uprobe_end@2a13e4",
        "uprobe_record_error@2a1424",
        "uprobe_set_attributes@2a1444",
        "uprobe_set_status@2a1484",
        "uprobe_start@2a0a34",
        "uprobe_start_ret@2a0ad2,2a0b88"
      ])
      yield* Scope.close(scope, Exit.void)
      assert.isFalse((yield* kernel.map("otel_trace", "ps_targets")).has("4d000000"))
    })))

  it.effect("not applicable, with the reason: no otel, a release outside the range, no offsets", () =>
    Effect.gen(function*() {
      const manager = yield* Manager
      const why = (target: Target) => {
        const a = manager.inspect(target).find((i) => i.probe === "otel_trace")!.applicability
        return a._tag === "NotApplicable" ? a.reason : a._tag
      }
      assert.strictEqual(why(otelTarget(80)), "Applies")
      assert.strictEqual(why(otelTarget(81, { release: "v1.30.0" })), "Applies")
      assert.strictEqual(
        why(ProbeTest.target({ pid: 82, goVersion: "1.26.8" })),
        `module ${MODULE} is not in the binary`
      )
      assert.strictEqual(
        why(otelTarget(83, { release: "v1.29.0" })),
        `${MODULE} v1.29.0 is outside the supported range >=1.30.0 <2`
      )
      assert.strictEqual(
        why(otelTarget(84, { fields: false })),
        `no offset for ${GLOBAL}.tracer.delegate (Go 1.26.8, ${MODULE} v1.47.0)`
      )
    }).pipe(
      Effect.provide(
        ManagerM.layer.pipe(Layer.provide(OtelTrace.OtelTrace.layer), Layer.provideMerge(ProbeTest.layer))
      ),
      Effect.scoped
    ))
})
