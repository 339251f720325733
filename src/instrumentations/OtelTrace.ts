/**
 * Spans made by hand with the OpenTelemetry Go API (`go.opentelemetry.io/otel`, v1.30 and later) in a program that
 * configures no SDK: `otel.Tracer(name).Start(ctx, ...)` then hands out the API's global no-op tracer, whose spans
 * record nothing. This probe records them, with their names, kinds, attributes, events and status, in the same trace
 * as the automatic spans: a manual span inside a handler is the server span's child, and an automatic span made with
 * the context Start returned (an HTTP client call) or on the same goroutine while it is open is the manual span's
 * child.
 *
 * BPF side: bpf/otel_trace.bpf.c. Why these functions: `(*tracer).Start` in go.opentelemetry.io/otel/internal/global
 * is what every global tracer's Start runs; it forwards to the SDK once one is set (`tracer.delegate`), which the BPF
 * side checks so SDK spans are left to the SDK. The span it returns is a `nonRecordingSpan` value; the `trace.Span`
 * methods a program calls on it run the compiler-made pointer wrappers `(*nonRecordingSpan).End`, `SetAttributes`,
 * `SetStatus`, `SetName`, `AddEvent`, `RecordError`, whose receiver is the span's data word: the key from Start to
 * End. (The newer "auto SDK" hand-over needs the agent to write the target's memory, which this kernel forbids.)
 *
 * Start options: `trace.WithAttributes` is read (an attributeOption, the only slice among the option types) and
 * `trace.WithSpanKind` too: it returns a closure, told apart from the other function options by its code, which is
 * one of the `WithSpanKind.func<N>` functions of the executable (one per call site the compiler inlined it at). Other
 * options (WithLinks, WithNewRoot, WithTimestamp) are ignored.
 *
 * Reading order: manifest -> per-target value -> record layout -> span -> the probe.
 */
import * as fs from "node:fs"
import { Option } from "effect"
import * as Binary from "../probe/Binary.ts"
import * as Manifest from "../probe/Manifest.ts"
import * as Probe from "../probe/Probe.ts"
import type { Target as ProbeTarget } from "../probe/Target.ts"
import type { AttributeValue, SpanEvent, SpanKind } from "../probe/Telemetry.ts"
import { parseElf, readSymbols, SHT_SYMTAB } from "../target/internal/Elf.ts"
import * as GoContext from "./GoContext.ts"
import { goVersions } from "./GoContext.ts"
import * as GoSymbols from "./internal/GoSymbols.ts"
import * as Http from "./internal/Http.ts"

// ---------------------------------------------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------------------------------------------

/** The module whose version decides (internal/global is part of it). */
export const MODULE = "go.opentelemetry.io/otel"

const GLOBAL = `${MODULE}/internal/global`
const SPAN = `${GLOBAL}.(*nonRecordingSpan)`

/** The functions probed: the same names and signatures in every release from v1.30.0 to v1.47.0. */
export const symbols = {
  start: `${GLOBAL}.(*tracer).Start`,
  end: `${SPAN}.End`,
  setAttributes: `${SPAN}.SetAttributes`,
  setStatus: `${SPAN}.SetStatus`,
  setName: `${SPAN}.SetName`,
  addEvent: `${SPAN}.AddEvent`,
  recordError: `${SPAN}.RecordError`
} as const

/** The supported releases of go.opentelemetry.io/otel. */
export const versions = ">=1.30.0 <2"

export const manifest = Manifest.make({
  library: { module: MODULE, versions },
  goVersions,
  symbols: [
    { name: symbols.start, entry: "uprobe_start", return: "uprobe_start_ret" },
    { name: symbols.end, entry: "uprobe_end" },
    // The linker drops a wrapper no interface call in the program can reach (a program that never calls SetName
    // has none): such a method has nothing to observe.
    { name: symbols.setAttributes, entry: "uprobe_set_attributes", optional: true },
    { name: symbols.setStatus, entry: "uprobe_set_status", optional: true },
    { name: symbols.setName, entry: "uprobe_set_name", optional: true },
    { name: symbols.addEvent, entry: "uprobe_add_event", optional: true },
    { name: symbols.recordError, entry: "uprobe_record_error", optional: true }
  ],
  fields: {
    tracerDelegate: { type: `${GLOBAL}.tracer`, field: "delegate" },
    kvKey: { type: `${MODULE}/attribute.KeyValue`, field: "Key" },
    kvValue: { type: `${MODULE}/attribute.KeyValue`, field: "Value" },
    valueType: { type: `${MODULE}/attribute.Value`, field: "vtype" },
    valueNumeric: { type: `${MODULE}/attribute.Value`, field: "numeric" },
    valueStringly: { type: `${MODULE}/attribute.Value`, field: "stringly" },
    valueSlice: { type: `${MODULE}/attribute.Value`, field: "slice" },
    ...GoSymbols.typeFields
  }
})

// ---------------------------------------------------------------------------------------------------------------
// Per-target value: `struct otel_trace_target`
// ---------------------------------------------------------------------------------------------------------------

/** WithSpanKind closures the BPF side tells apart (OT_KIND_FNS); more call sites than this get INTERNAL. */
export const KIND_FNS = 32

/** Layout of `struct otel_trace_target`. */
export const Target = Binary.struct({
  tracerDelegate: Binary.u64n,
  kvKey: Binary.u64n,
  kvValue: Binary.u64n,
  kvSize: Binary.u64n,
  valueVtype: Binary.u64n,
  valueNumeric: Binary.u64n,
  valueStringly: Binary.u64n,
  ...GoSymbols.typeLayout,
  typesFromRecordError: Binary.i64,
  typesFromStart: Binary.i64,
  typesKnown: Binary.u64n,
  /** s64[KIND_FNS]: each WithSpanKind closure's address minus Start's entry probe address. */
  kindFns: Binary.bytes(KIND_FNS * 8),
  kindFnCount: Binary.u64n
}, { struct: "otel_trace_target" })

/** A WithSpanKind closure: `trace.WithSpanKind.func1`, or `<caller>.WithSpanKind.func<N>` where it was inlined. */
const KIND_CLOSURE = /(^|\.)WithSpanKind\.func\d+$/

/** The link-time addresses of the executable's WithSpanKind closures, per file (read once). */
const closuresByFile = new Map<string, ReadonlyArray<bigint>>()

const STT_FUNC = 2

const kindClosures = (target: ProbeTarget): ReadonlyArray<bigint> => {
  const key = target.file ?? target.exe
  const known = closuresByFile.get(key)
  if (known !== undefined) return known
  let found: ReadonlyArray<bigint> = []
  try {
    const elf = parseElf(fs.readFileSync(target.exe))
    const symtab = elf.sections.find((s) => s.type === SHT_SYMTAB)
    if (symtab !== undefined) {
      found = readSymbols(elf, symtab).filter((s) => s.type === STT_FUNC && KIND_CLOSURE.test(s.name)).map((s) =>
        s.value
      )
    }
  } catch {
    // Unreadable: every span is INTERNAL.
  }
  closuresByFile.set(key, found)
  return found
}

/** Where Start's entry probe sits (its link-time address), which the BPF side sees as its instruction pointer. */
const startProbe = (target: ProbeTarget): bigint | undefined => {
  const f = Option.getOrUndefined(target.function(symbols.start))
  return f === undefined ? undefined : f.address + BigInt(f.entryOffset - f.fileOffset)
}

/** The kind_fns array: each closure's distance from Start's entry probe, so a PIE works wherever it is loaded. */
export const kindDistances = (closures: ReadonlyArray<bigint>, start: bigint | undefined) => {
  const out = new Uint8Array(KIND_FNS * 8)
  const view = new DataView(out.buffer)
  const used = start === undefined ? [] : closures.slice(0, KIND_FNS)
  used.forEach((c, i) => view.setBigInt64(i * 8, c - start!, true))
  return { kindFns: out, kindFnCount: used.length }
}

// ---------------------------------------------------------------------------------------------------------------
// Record: `struct otel_trace_record` (checked against the object's BTF at load)
// ---------------------------------------------------------------------------------------------------------------

/** Bounds of the BPF side (OT_*). */
export const ATTRS = 16
export const KEY_CAP = 64
export const STR_CAP = 64
export const EVENTS = 4
export const EVENT_NAME_CAP = 64
export const MSG_CAP = 64
export const NAME_CAP = 64
export const DESC_CAP = 128

/** `struct otel_attr`: one attribute of the span (owner 0) or of its event owner-1. */
export const Attr = Binary.struct({
  strSize: Binary.u32,
  keySize: Binary.u16,
  owner: Binary.u8,
  /** go.opentelemetry.io/otel/attribute.Type. */
  type: Binary.u8,
  keyLen: Binary.u8,
  strLen: Binary.u8,
  _pad: Binary.pad(6),
  /** bool, int64 or float64 bits; a string's bytes' address when the kernel could not read them. */
  num: Binary.u64,
  /** The key's bytes when the kernel could not read them, else 0. */
  keyAt: Binary.u64,
  key: Binary.string(KEY_CAP, "keyLen", { intern: true }),
  str: Binary.string(STR_CAP, "strLen")
}, { struct: "otel_attr" })
export type Attr = ReturnType<typeof Attr.decode>

/** `struct otel_event`. */
export const Event = Binary.struct({
  timeNs: Binary.u64,
  /**
   * What the kernel could not read (else 0): RecordError's error's itab (its type), else the name's bytes
   * (`nameColdLen` of them); the message's string header.
   */
  nameAt: Binary.u64,
  msgAt: Binary.u64,
  nameLen: Binary.u8,
  exception: Binary.bool,
  errTflag: Binary.u8,
  errKind: Binary.u8,
  msgLen: Binary.u8,
  nameColdLen: Binary.u8,
  /** The message's length when its bytes are at `msgAt` (0: its header is). */
  msgColdLen: Binary.u8,
  _pad: Binary.pad(1),
  name: Binary.string(EVENT_NAME_CAP, "nameLen"),
  msg: Binary.string(MSG_CAP, "msgLen")
}, { struct: "otel_event" })
export type Event = ReturnType<typeof Event.decode>

/** Layout of `struct otel_trace_record`. */
export const Record = Binary.struct({
  startNs: Binary.u64,
  endNs: Binary.u64,
  traceId: Binary.bytes(16),
  spanId: Binary.bytes(8),
  parentSpanId: Binary.bytes(8),
  pid: Binary.u32,
  flags: Binary.u8,
  /** 1 when the span had a parent, else 0 (as Http.Parent). */
  parent: Binary.u8,
  /** trace.SpanKind. */
  kind: Binary.u8,
  /** codes.Code: 0 Unset, 1 Error, 2 Ok. */
  statusCode: Binary.u8,
  nameLen: Binary.u8,
  descLen: Binary.u8,
  attrCount: Binary.u8,
  eventCount: Binary.u8,
  attrsDropped: Binary.u32,
  eventsDropped: Binary.u32,
  /** The name's and description's lengths when the kernel could not read their bytes (then at nameAt, descAt). */
  nameColdLen: Binary.u8,
  descColdLen: Binary.u8,
  _pad: Binary.pad(2),
  /** runtime.types, for an event's error type the kernel could not read. */
  types: Binary.u64,
  nameAt: Binary.u64,
  descAt: Binary.u64,
  /** The itab of a start option whose type the kernel could not read; its attributes are owned by OWNER_UNREAD. */
  optionAt: Binary.u64,
  name: Binary.string(NAME_CAP, "nameLen", { intern: true }),
  desc: Binary.string(DESC_CAP, "descLen"),
  attrs: Binary.bytes(ATTRS * Attr.size),
  events: Binary.bytes(EVENTS * Event.size)
}, { struct: "otel_trace_record" })

/** A decoded record. */
export type Record = ReturnType<typeof Record.decode>

// ---------------------------------------------------------------------------------------------------------------
// Span
// ---------------------------------------------------------------------------------------------------------------

/** attribute.Type values the BPF side reads. */
export const AttrType = { bool: 1, int64: 2, float64: 3, string: 4 } as const

/** trace.SpanKind -> the span kind; Unspecified is INTERNAL, as the SDK makes it. */
const KINDS: ReadonlyArray<SpanKind> = ["internal", "internal", "server", "client", "producer", "consumer"]

/** abi.TFlagExtraStar: the stored type name has a '*' that is not part of it. */
const TFLAG_EXTRA_STAR = 1 << 1

/** Error types whose first field is their whole message (errors.New's, fmt.Errorf's with and without %w). */
const MESSAGE_FIRST = new Set(["*errors.errorString", "*fmt.wrapError", "*fmt.wrapErrors"])


export const attrsOf = (r: Record): ReadonlyArray<Attr> =>
  Array.from(
    { length: Math.min(ATTRS, r.attrCount) },
    (_, i) => readColdAttr(r.pid, Attr.decode(r.attrs.subarray(i * Attr.size)))
  )

/** An attribute whose key or string value (a constant) the kernel could not read, read from the process. */
const readColdAttr = (pid: number, a: Attr): Attr => {
  const coldStr = a.type === AttrType.string && a.strLen === 0 && a.strSize > 0 && a.num !== 0n
  if (a.keyAt === 0n && !coldStr) return a
  const key = a.keyAt === 0n ? a.key : GoSymbols.bytesAt(pid, a.keyAt, Math.min(a.keySize, KEY_CAP))
  const str = coldStr ? GoSymbols.bytesAt(pid, a.num, Math.min(a.strSize, STR_CAP)) : a.str
  return { ...a, key, keyLen: Buffer.byteLength(key), str, strLen: Buffer.byteLength(str) }
}

export const eventsOf = (r: Record): ReadonlyArray<Event> =>
  Array.from({ length: Math.min(EVENTS, r.eventCount) }, (_, i) => Event.decode(r.events.subarray(i * Event.size)))

/** One attribute's value; undefined when it cannot be exported (a slice, a cut key, an unknown type). */
export const attrValue = (a: Attr): AttributeValue | undefined => {
  if (a.keySize > a.keyLen || a.keyLen === 0) return undefined
  const bits = new DataView(new ArrayBuffer(8))
  bits.setBigUint64(0, a.num, true)
  switch (a.type) {
    case AttrType.bool:
      return a.num !== 0n
    case AttrType.int64:
      return Number(bits.getBigInt64(0, true))
    case AttrType.float64:
      return bits.getFloat64(0, true)
    case AttrType.string:
      return a.str
    default:
      return undefined
  }
}

/** The attributes of one owner (0: the span, i+1: event i), a later value of a key replacing an earlier one. */
const attributesOf = (attrs: ReadonlyArray<Attr>, owner: number) => {
  const out: globalThis.Record<string, AttributeValue> = {}
  let dropped = 0
  for (const a of attrs) {
    if (a.owner !== owner) continue
    const v = attrValue(a)
    if (v === undefined) dropped++
    else out[a.key] = v
  }
  return { attributes: out, dropped }
}

/** An event as the SDK would have it: RecordError's is "exception" with the error's type (and message, if known). */
const toEvent = (e: Event, attributes: globalThis.Record<string, AttributeValue>, r: Record): SpanEvent => {
  // What the kernel could not read (a constant, a type on a page not mapped yet) is read from the process.
  if (!e.exception) {
    const name = e.nameAt === 0n ? e.name : GoSymbols.bytesAt(r.pid, e.nameAt, e.nameColdLen)
    return { name, timeMonoNs: e.timeNs, attributes }
  }
  const cold = e.nameAt === 0n ? undefined : GoSymbols.coldType(r.pid, e.nameAt, r.types, "itab")
  const raw = cold?.name ?? e.name
  const type = ((cold?.tflag ?? e.errTflag) & TFLAG_EXTRA_STAR) !== 0 ? raw.slice(1) : raw
  const message = () => e.msgAt === 0n ? e.msg : GoSymbols.coldString(r.pid, e.msgAt, e.msgColdLen, MSG_CAP)
  return {
    name: "exception",
    timeMonoNs: e.timeNs,
    attributes: {
      ...(type === "" ? {} : { "exception.type": type }),
      ...(MESSAGE_FIRST.has(type) ? { "exception.message": message() } : {}),
      ...attributes
    }
  }
}

/** `otel_attr.owner` of attributes read on a guess from a start option whose type was not read (OT_OWNER_UNREAD). */
export const OWNER_UNREAD = 0x80

/**
 * The record's attributes, those read on a guess from a start option of a type the kernel could not read kept as the
 * span's when that type, read from the process, is a slice (WithAttributes'), and left out otherwise.
 */
const settledAttrs = (r: Record): ReadonlyArray<Attr> => {
  const attrs = attrsOf(r)
  if (!attrs.some((a) => a.owner === OWNER_UNREAD)) return attrs
  const slice = GoSymbols.coldType(r.pid, r.optionAt, r.types, "itab")?.kind === GoSymbols.GoKind.slice
  return slice
    ? attrs.map((a) => a.owner === OWNER_UNREAD ? { ...a, owner: 0 } : a)
    : attrs.filter((a) => a.owner !== OWNER_UNREAD)
}

/** Build the span of one record. */
export const toSpan = (r: Record): Probe.SpanInput => {
  const attrs = settledAttrs(r)
  const own = attributesOf(attrs, 0)
  const attributes = own.attributes
  const events = eventsOf(r).map((e, i) => toEvent(e, attributesOf(attrs, i + 1).attributes, r))
  const name = r.nameAt === 0n ? r.name : GoSymbols.bytesAt(r.pid, r.nameAt, r.nameColdLen)
  const desc = r.descAt === 0n ? r.desc : GoSymbols.bytesAt(r.pid, r.descAt, r.descColdLen)
  // Slices and cut keys of the span and its events, and what did not fit, together.
  const droppedAttrs = r.attrsDropped + attrs.filter((a) => attrValue(a) === undefined).length
  return {
    // OTLP's dropped counts, as the SDK would send them.
    ...(droppedAttrs > 0 ? { droppedAttributesCount: droppedAttrs } : {}),
    ...(r.eventsDropped > 0 ? { droppedEventsCount: r.eventsDropped } : {}),
    ...Http.spanHead({ ...r, parent: r.parent === 0 ? Http.Parent.none : Http.Parent.local }),
    name,
    kind: KINDS[r.kind] ?? "internal",
    attributes,
    status: r.statusCode === 1
      ? { code: "error", ...(desc === "" ? {} : { message: desc }) }
      : r.statusCode === 2
      ? { code: "ok" }
      : { code: "unset" },
    ...(events.length === 0 ? {} : { events })
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The probe
// ---------------------------------------------------------------------------------------------------------------

/** The OpenTelemetry Go API probe. Needs GoContext (the goroutine's active span, the contexts' spans). */
export const OtelTrace = Probe.instrument({
  name: "otel_trace",
  object: "otel_trace",
  manifest,
  reuseMaps: GoContext.sharedMaps,
  uses: [GoContext.goroutines],
  perTarget: {
    layout: Target,
    value: ({ target, offsets: o }) => {
      const types = GoSymbols.typesFrom(target, symbols.recordError)
      const typesFromStart = GoSymbols.typesFrom(target, symbols.start)
      return {
        tracerDelegate: o.tracerDelegate,
        kvKey: o.kvKey,
        kvValue: o.kvValue,
        // KeyValue is {Key string; Value attribute.Value} and Value ends with `slice any`: its size follows.
        kvSize: o.kvValue + o.valueSlice + 16,
        valueVtype: o.valueType,
        valueNumeric: o.valueNumeric,
        valueStringly: o.valueStringly,
        ...GoSymbols.typeValue(o),
        typesFromRecordError: types ?? 0n,
        typesFromStart: typesFromStart ?? 0n,
        typesKnown: types === undefined || typesFromStart === undefined ? 0 : 1,
        ...kindDistances(kindClosures(target), startProbe(target))
      }
    }
  },
  record: Binary.schema(Record),
  span: (r) => toSpan(r)
})

export default OtelTrace
