/**
 * go/panic: Go panics as OpenTelemetry log records, and the SERVER span of a request whose handler panicked.
 *
 * BPF side: bpf/go_panic.bpf.c, three programs:
 * - `runtime.gopanic(e any)`, entry: what the panic value is (its type's name and kind, its first 32 bytes, the string
 *   in it) and the span active on the goroutine (go_context's `go_spans`). One PANIC record: a log record of severity
 *   ERROR with `exception.type` and, for a string or a known error, `exception.message`, tied to that span.
 * - `runtime.recovery(gp)`, entry: the runtime calls it once a deferred call has recovered gp's panic. One RECOVERED
 *   record: a log record of severity WARN saying the panic was recovered (same exception attributes and span).
 * - `runtime.fatalpanic`, entry: nothing recovered the panic and the process is about to exit. One FATAL record: a log
 *   record of severity FATAL saying so (same exception attributes and span).
 * - net/http's recovering closures, entry: the closure `(*conn).serve` defers (HTTP/1) and the one the HTTP/2
 *   server's `runHandler` defers, which recover a handler's panic. A panicking handler unwinds past
 *   `serverHandler.ServeHTTP`, so the net/http server probe's RET programs never run and its request would produce
 *   no span. When the closure finds the goroutine's request still in flight (the server probe's
 *   `nethttp_server_inflight`, shared with this probe), it ends it: one SERVER_SPAN record, the server probe's own
 *   span with status ERROR, `error.type` the panic's type and an `exception` event.
 *
 * Go cannot be asked for an error's text (that is a method call), so `exception.message` is only given where the
 * text sits in memory: a string value (`panic("...")`, and the runtime's own string errors such as "assignment to
 * entry in nil map"), the errors whose first field is their message (`errors.New`, `fmt.Errorf`), and index/slice
 * bounds errors (formatted here as the runtime formats them).
 *
 * Reading order of this file: manifest -> per-target value -> record layout -> the panic value -> signals -> probe.
 */
import {
  ATTR_ERROR_TYPE,
  ATTR_EXCEPTION_MESSAGE,
  ATTR_EXCEPTION_TYPE
} from "@opentelemetry/semantic-conventions"
import { Effect, Schema } from "effect"
import * as Binary from "../probe/Binary.ts"
import * as Manifest from "../probe/Manifest.ts"
import * as Probe from "../probe/Probe.ts"
import type { Target as ProbeTarget } from "../probe/Target.ts"
import type { Attributes, AttributeValue } from "../probe/Telemetry.ts"
import * as GoContext from "./GoContext.ts"
import { goVersions } from "./GoContext.ts"
import * as GoSymbols from "./internal/GoSymbols.ts"
import * as Http from "./internal/Http.ts"
import * as NetHttpServer from "./NetHttpServer.ts"

// ---------------------------------------------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------------------------------------------

/** The runtime's panic and recovery, and net/http's recovering closures (absent from programs without a server). */
export const manifest = Manifest.make({
  library: { module: "std", package: "runtime", versions: goVersions },
  goVersions,
  symbols: [
    { name: "runtime.gopanic", entry: "uprobe_gopanic" },
    { name: "runtime.recovery", entry: "uprobe_recovery" },
    { name: "runtime.fatalpanic", entry: "uprobe_fatalpanic" },
    // The first closure of each is its deferred recover (Go 1.25 through 1.27); the HTTP/2 server moved to an
    // internal package in Go 1.27.
    { name: "net/http.(*conn).serve.func1", entry: "uprobe_http_recover", optional: true },
    { name: "net/http.(*http2serverConn).runHandler.func1", entry: "uprobe_http_recover", optional: true },
    { name: "net/http/internal/http2.(*serverConn).runHandler.func1", entry: "uprobe_http_recover", optional: true }
  ],
  fields: {
    ...GoSymbols.typeFields,
    requestPattern: { type: "net/http.Request", field: "Pattern", optional: true }
  }
})

// ---------------------------------------------------------------------------------------------------------------
// Per-target value: `struct go_panic_target`
// ---------------------------------------------------------------------------------------------------------------

/** Layout of `struct go_panic_target`. */
export const Target = Binary.struct({
  typesFromGopanic: Binary.i64,
  typesKnown: Binary.u64n,
  ...GoSymbols.typeLayout,
  requestPattern: Binary.u64n
}, { struct: "go_panic_target" })

/**
 * Where the BPF side finds `runtime.types` (the base of every type name): its distance from the address gopanic's
 * entry probe sits at, which the BPF program sees as its instruction pointer. A distance, not an address, so a
 * position-independent executable works wherever it is loaded. Undefined when the executable cannot be read.
 */
export const typesFromGopanic = (target: ProbeTarget): bigint | undefined =>
  GoSymbols.typesFrom(target, "runtime.gopanic")

// ---------------------------------------------------------------------------------------------------------------
// Record: `struct go_panic_record` (checked against the object's BTF at load)
// ---------------------------------------------------------------------------------------------------------------

/** `go_panic_record.kind` (GO_PANIC_KIND_* in the C). */
export const Kind = { panic: 1, recovered: 2, serverSpan: 3, fatal: 4 } as const

/** How many bytes of the value and of its message the BPF side copies. */
const VALUE_CAP = 32
const MESSAGE_CAP = 128

/** Layout of `struct go_panic_record`; the panic's fields are those of its nested `struct go_panic_info`. */
export const Record = Binary.struct({
  timeNs: Binary.u64,
  pid: Binary.u32,
  kind: Binary.u8,
  /** SERVER_SPAN: a panic unwound the handler (else it left by runtime.Goexit). */
  hasPanic: Binary.bool,
  _pad: Binary.pad(2),
  panicNs: Binary.u64,
  traceId: Binary.bytes(16),
  spanId: Binary.bytes(8),
  traceFlags: Binary.u8,
  hasSpan: Binary.bool,
  /** internal/abi.Kind of the value's type. */
  typeKind: Binary.u8,
  typeTflag: Binary.u8,
  typeLen: Binary.u8,
  /** panic(nil): the runtime panics with a *runtime.PanicNilError instead. */
  nilValue: Binary.bool,
  messageLen: Binary.u16,
  /** What the kernel could not read (else 0), for `readCold`: the type (with runtime.types), the value, the message. */
  types: Binary.u64,
  typeAt: Binary.u64,
  valueAt: Binary.u64,
  messageAt: Binary.u64,
  /** The value's first 32 bytes (a pointer type's: those it points at). */
  value: Binary.bytes(VALUE_CAP),
  typeName: Binary.string(64, "typeLen"),
  message: Binary.string(MESSAGE_CAP, "messageLen"),
  /** SERVER_SPAN: a `struct nethttp_server_record`, decoded with the server probe's layout. */
  server: Binary.bytes(NetHttpServer.Record.size)
}, { struct: "go_panic_record" })

/** A decoded record. */
export type Record = ReturnType<typeof Record.decode>

/**
 * The record with what the kernel could not read filled in from the process (GoSymbols): the value's type, the value
 * and its message (panic("...") panics with a constant), when their pages were not mapped yet. The record itself
 * when nothing was missing.
 */
export const readCold = (r: Record): Record => {
  if (r.typeAt === 0n && r.valueAt === 0n && r.messageAt === 0n) return r
  const type = r.typeAt === 0n ? undefined : GoSymbols.coldType(r.pid, r.typeAt, r.types, "type")
  // As the BPF side does: a small value near the end of a mapping cannot be read whole.
  const read = r.valueAt === 0n ? undefined : [VALUE_CAP, 16, 8].reduce<Uint8Array | undefined>(
    (got, n) => got ?? GoSymbols.rawAt(r.pid, r.valueAt, n),
    undefined
  )
  const value = read === undefined ? r.value : Uint8Array.from({ length: VALUE_CAP }, (_, i) => read[i] ?? 0)
  // The string in the value's first two words, if it is one: read here when the value was (or its bytes were not).
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength)
  const [ptr, length] = [view.getBigUint64(0, true), view.getBigUint64(8, true)]
  const messageAt = r.messageAt !== 0n ? r.messageAt : read !== undefined && length <= 1n << 20n ? ptr : 0n
  const message = messageAt === 0n || length === 0n
    ? r.message
    : GoSymbols.bytesAt(r.pid, messageAt, Math.min(Number(length), MESSAGE_CAP))
  return {
    ...r,
    ...(type === undefined ? {} : { typeName: type.name, typeTflag: type.tflag, typeKind: type.kind }),
    value,
    message
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The panic value: its type as Go prints it (%T) and its message where memory holds it
// ---------------------------------------------------------------------------------------------------------------

/** internal/abi.Kind. */
const GoKind = GoSymbols.GoKind

/** The unnamed bool and integer types: Go prints their values bare, a named type's as `T(v)`. */
const BASIC_NAMES = new Set([
  "bool",
  "int",
  "int8",
  "int16",
  "int32",
  "int64",
  "uint",
  "uint8",
  "uint16",
  "uint32",
  "uint64",
  "uintptr"
])

/** abi.TFlagExtraStar: the stored name has a '*' that is not part of it. */
const TFLAG_EXTRA_STAR = 2

/** Error types whose first field is the string their Error() returns. */
const MESSAGE_FIRST = new Set(["*errors.errorString", "*fmt.wrapError", "*fmt.wrapErrors"])

/** The runtime's string errors that Error() prefixes with "runtime error: " (plainError does not). */
const RUNTIME_ERROR_STRINGS = new Set(["runtime.errorString"])

/** What `panic(nil)` panics with since Go 1.21. */
const PANIC_NIL = { type: "*runtime.PanicNilError", message: "panic called with nil argument" }

/** runtime.boundsError messages by code (abi.BoundsErrorCode), then the overrides for a negative index. */
const BOUNDS = [
  "index out of range [%x] with length %y",
  "slice bounds out of range [:%x] with length %y",
  "slice bounds out of range [:%x] with capacity %y",
  "slice bounds out of range [%x:%y]",
  "slice bounds out of range [::%x] with length %y",
  "slice bounds out of range [::%x] with capacity %y",
  "slice bounds out of range [:%x:%y]",
  "slice bounds out of range [%x:%y:]",
  "cannot convert slice with length %y to array or pointer to array with length %x"
]
const BOUNDS_NEGATIVE = [
  "index out of range [%x]",
  "slice bounds out of range [:%x]",
  "slice bounds out of range [:%x]",
  "slice bounds out of range [%x:]",
  "slice bounds out of range [::%x]",
  "slice bounds out of range [::%x]",
  "slice bounds out of range [:%x:]",
  "slice bounds out of range [%x::]"
]

/** `runtime.boundsError{x int64; y int; signed bool; code uint8}`'s Error(), from its bytes. */
export const boundsMessage = (value: Uint8Array): string | undefined => {
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength)
  const signed = value[16] !== 0
  const code = value[17]!
  const x = signed ? view.getBigInt64(0, true) : view.getBigUint64(0, true)
  const format = signed && x < 0n ? BOUNDS_NEGATIVE[code] : BOUNDS[code]
  if (format === undefined) return undefined
  const y = view.getBigInt64(8, true)
  return `runtime error: ${format.replace("%x", String(x)).replace("%y", String(y))}`
}

/** The panic value as far as memory tells: its type, its message (string or error), and a text for the log body. */
export interface PanicValue {
  readonly type: string | undefined
  readonly message: string | undefined
  readonly text: string
}

/** What one record says of its panic value. */
export const panicValue = (record: Record): PanicValue => {
  const r = readCold(record)
  if (r.nilValue) return { ...PANIC_NIL, text: PANIC_NIL.message }
  const type = r.typeName === "" ? undefined : (r.typeTflag & TFLAG_EXTRA_STAR) !== 0 ? r.typeName.slice(1) : r.typeName
  const message = r.typeKind === GoKind.string ?
    (type !== undefined && RUNTIME_ERROR_STRINGS.has(type) ? `runtime error: ${r.message}` : r.message) :
    type === "runtime.boundsError" ?
    boundsMessage(r.value) :
    type !== undefined && MESSAGE_FIRST.has(type) ?
    r.message :
    undefined
  if (message !== undefined) return { type, message, text: message }
  // As Go prints them: a bool or an integer by its value (wrapped in its type's name when it is a named type), else
  // the type in parentheses (Go adds the address).
  const view = new DataView(r.value.buffer, r.value.byteOffset, r.value.byteLength)
  const basic = r.typeKind === GoKind.bool ?
    String(r.value[0] !== 0) :
    r.typeKind >= GoKind.int && r.typeKind <= GoKind.int64 ?
    String(view.getBigInt64(0, true)) :
    r.typeKind >= GoKind.uint && r.typeKind <= GoKind.uintptr ?
    String(view.getBigUint64(0, true)) :
    undefined
  const text = basic === undefined ?
    `(${type ?? "unknown type"})` :
    type === undefined || BASIC_NAMES.has(type) ?
    basic :
    `${type}(${basic})`
  return { type, message: undefined, text }
}

/** `exception.type` and `exception.message`, each when known. */
const exceptionAttributes = (v: PanicValue): globalThis.Record<string, AttributeValue> => ({
  ...(v.type === undefined ? {} : { [ATTR_EXCEPTION_TYPE]: v.type }),
  ...(v.message === undefined ? {} : { [ATTR_EXCEPTION_MESSAGE]: v.message })
})

// ---------------------------------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------------------------------

/** Severity and body prefix of each log record kind: the panic, then how it ended. */
const LOG_KINDS = {
  [Kind.panic]: { severity: "error", prefix: "panic" },
  [Kind.recovered]: { severity: "warn", prefix: "recovered from panic" },
  [Kind.fatal]: { severity: "fatal", prefix: "panic not recovered, the process exits" }
} as const

/**
 * The log record of a PANIC, RECOVERED or FATAL record, tied to the span that was active when the goroutine
 * panicked; undefined for another kind.
 */
export const toLog = (r: Record): Probe.LogInput | undefined => {
  if (r.kind !== Kind.panic && r.kind !== Kind.recovered && r.kind !== Kind.fatal) return undefined
  const { prefix, severity } = LOG_KINDS[r.kind]
  const v = panicValue(r)
  return {
    pid: r.pid,
    // RECOVERED and FATAL records are written when the panic ends; a PANIC one a moment after the panic it times.
    timeMonoNs: r.kind === Kind.panic ? r.panicNs : r.timeNs,
    severity,
    body: `${prefix}: ${v.text}`,
    attributes: exceptionAttributes(v) as Attributes,
    ...(r.hasSpan ? { traceId: r.traceId, spanId: r.spanId, traceFlags: r.traceFlags } : {})
  }
}

/**
 * The server span of a request whose handler panicked (or called runtime.Goexit): the net/http server probe's span
 * of the same request, ended when net/http recovered, with status ERROR, `error.type` the panic's type and an
 * `exception` event at the moment of the panic. No `http.response.status_code`: the client gets none (the
 * connection is closed), unless the handler wrote one before panicking, which is not read.
 */
export const toServerSpan = (r: Record): Probe.SpanInput => {
  const span = NetHttpServer.toSpan(NetHttpServer.Record.decode(r.server))
  const v = r.hasPanic ? panicValue(r) : undefined
  const errorType = v === undefined ? "runtime.Goexit" : v.type ?? "_OTHER"
  return {
    ...span,
    attributes: { ...span.attributes, [ATTR_ERROR_TYPE]: errorType },
    status: { code: "error", message: v === undefined ? "handler exited by runtime.Goexit" : `panic: ${v.text}` },
    ...(v === undefined ? {} : {
      events: [{ name: "exception", timeMonoNs: r.panicNs, attributes: exceptionAttributes(v) as Attributes }]
    })
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The probe
// ---------------------------------------------------------------------------------------------------------------

/**
 * The go/panic instrument probe. It reuses go_context's maps (the goroutine's active span) and the net/http server
 * probe's in-flight requests, so composing it brings both along.
 */
export const GoPanic = Probe.instrument({
  name: "go_panic",
  object: "go_panic",
  manifest,
  reuseMaps: {
    ...GoContext.sharedMaps,
    nethttp_server_inflight: NetHttpServer.NetHttpServer.map("nethttp_server_inflight")
  },
  config: Schema.Struct({
    /**
     * Tie a panic in a goroutine a handler started — the crash that ends the process — to the request (go_context's
     * goroutine tracking). On by default; `false` spares an HTTP server two uprobe traps per request (net/http starts
     * a goroutine per request) where no other probe tracks goroutines, and such a panic is then recorded without
     * the request's span.
     */
    goroutines: Schema.Boolean.pipe(Schema.withDecodingDefault(Effect.succeed(true)))
  }),
  uses: ({ config }) => config.goroutines ? [GoContext.goroutines] : [],
  // Nothing here starts a trace: the spans it ends were sampled by the server probe, and logs are not sampled.
  sampling: "none",
  perTarget: {
    layout: Target,
    value: ({ target, offsets: o }) => {
      const types = typesFromGopanic(target)
      return {
        typesFromGopanic: types ?? 0n,
        typesKnown: types === undefined ? 0 : 1,
        ...GoSymbols.typeValue(o),
        requestPattern: o.requestPattern ?? 0
      }
    }
  },
  record: Binary.schema(Record),
  // The recovered request counts in the HTTP server duration metric like any other (with its error.type).
  instruments: { duration: Http.serverDuration },
  signals: (r, emit) => {
    if (r.kind === Kind.serverSpan) {
      Http.emitWithDuration(emit, "duration", toServerSpan(r), Http.SERVER_METRIC_KEYS)
      return
    }
    const log = toLog(r)
    if (log !== undefined) emit.log(log)
  }
})
