/**
 * OTLP `ExportTraceServiceRequest` straight from the probes' `SpanData`, as protobuf (opentelemetry-proto
 * collector/trace/v1) or OTLP/JSON, without building OpenTelemetry SDK spans first: ids go from hex to bytes inside
 * the output buffer, times are the kernel's bigint nanoseconds plus the clock offset, and each resource's and probe's
 * encoded Resource and InstrumentationScope are made once and copied into every request after that.
 *
 * Grouping follows the SDK's: one ResourceSpans per resource object (ProcessResources hands out one per process), one
 * ScopeSpans per probe within it, spans in the order given. Zero-valued fields (dropped counts, an unset status code)
 * are left out, as proto3 allows; the span flags carry the W3C trace flags in the low byte plus 0x100 ("is-remote"
 * known) and 0x200 (the parent is remote), as the OpenTelemetry JS SDK sets them.
 */
import type { SpanData } from "../../../probe/Telemetry.ts"
import { ProtoWriter } from "./ProtoWriter.ts"

/** What a resource must offer: its attributes (an OpenTelemetry JS `Resource` is one). Cached by identity. */
export interface ResourceLike {
  readonly attributes: Readonly<Record<string, unknown>>
}

/** One span to export: the probe's record, the resource of its process, and the kernel clock's offset to epoch. */
export interface OtlpSpan {
  readonly span: SpanData
  readonly resource: ResourceLike
  /** Epoch ns = kernel monotonic ns + offsetNs (`KernelClock.toEpochNs(0n)` when the span was accepted). */
  readonly offsetNs: bigint
}

const KIND = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 } as const
const STATUS = { unset: 0, ok: 1, error: 2 } as const

const MIN_INT64 = -(2 ** 63)
const MAX_INT64 = 2 ** 63

/** OTLP span flags: W3C flags, "is-remote known", and "parent is remote" when there is a remote parent. */
export const spanFlags = (span: SpanData): number =>
  (span.traceFlags & 0xff) | 0x100 |
  (span.parentIsRemote === true && span.parentSpanId !== undefined && span.parentSpanId !== "" ? 0x200 : 0)

/** Whether a number goes out as `int_value` (else `double_value`): the SDK's rule. */
const isInt64 = (n: number) => Number.isInteger(n) && n >= MIN_INT64 && n < MAX_INT64

// ---------------------------------------------------------------------------------------------------------------
// protobuf

/** The fields of one AnyValue message (its tag and length written by the caller). */
const writeAnyValue = (w: ProtoWriter, v: unknown): void => {
  switch (typeof v) {
    case "string":
      w.byte(0x0a)
      w.string(v)
      return
    case "number":
      if (isInt64(v)) {
        w.byte(0x18)
        w.int64(v)
      } else {
        w.byte(0x21)
        w.double(v)
      }
      return
    case "boolean":
      w.byte(0x10)
      w.byte(v ? 1 : 0)
      return
    case "object": {
      if (v === null) return
      if (v instanceof Uint8Array) {
        w.byte(0x3a)
        w.uint32(v.length)
        w.raw(v)
        return
      }
      if (Array.isArray(v)) {
        w.byte(0x2a)
        const array = w.begin(1)
        for (let i = 0; i < v.length; i++) {
          w.byte(0x0a)
          const item = w.begin(1)
          writeAnyValue(w, v[i])
          w.end(item, 1)
        }
        w.end(array, 1)
        return
      }
      w.byte(0x32)
      const list = w.begin(1)
      writeKeyValues(w, v as Record<string, unknown>, 0x0a)
      w.end(list, 1)
      return
    }
    default:
      // undefined (and what attributes cannot hold): an empty AnyValue, as the SDK writes it.
      return
  }
}

/** Repeated KeyValue under the one-byte tag `tagByte`. */
const writeKeyValues = (w: ProtoWriter, attributes: Readonly<Record<string, unknown>>, tagByte: number): void => {
  for (const key in attributes) {
    w.byte(tagByte)
    const kv = w.begin(1)
    w.byte(0x0a)
    w.string(key)
    w.byte(0x12)
    const value = w.begin(1)
    writeAnyValue(w, attributes[key])
    w.end(value, 1)
    w.end(kv, 1)
  }
}

/** One `ScopeSpans.spans` entry. */
const writeSpan = (w: ProtoWriter, s: SpanData, offsetNs: bigint): void => {
  w.byte(0x12)
  const start = w.begin(2)
  w.byte(0x0a)
  w.hexId(s.traceId, 16)
  w.byte(0x12)
  w.hexId(s.spanId, 8)
  const parent = s.parentSpanId
  if (parent !== undefined && parent !== "") {
    w.byte(0x22)
    w.hexId(parent, 8)
  }
  w.byte(0x2a)
  w.string(s.name)
  w.byte(0x30)
  w.byte(KIND[s.kind])
  const startNs = s.startMonoNs + offsetNs
  w.byte(0x39)
  w.fixed64(startNs)
  // A probe that saw the end before the start still yields a valid zero-length span (as readableSpan.ts does).
  w.byte(0x41)
  w.fixed64(s.endMonoNs >= s.startMonoNs ? s.endMonoNs + offsetNs : startNs)
  writeKeyValues(w, s.attributes, 0x4a)
  const events = s.events
  if (events !== undefined) {
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!
      w.byte(0x5a)
      const event = w.begin(1)
      w.byte(0x09)
      w.fixed64(e.timeMonoNs + offsetNs)
      w.byte(0x12)
      w.string(e.name)
      writeKeyValues(w, e.attributes, 0x1a)
      w.end(event, 1)
    }
  }
  // The status is always present (as the SDK sends it), empty when unset without a message.
  w.byte(0x7a)
  const status = w.begin(1)
  const message = s.status.message
  if (message !== undefined && message !== "") {
    w.byte(0x12)
    w.string(message)
  }
  const code = STATUS[s.status.code]
  if (code !== 0) {
    w.byte(0x18)
    w.byte(code)
  }
  w.end(status, 1)
  // flags: field 16, fixed32 (a two-byte tag).
  w.byte(0x85)
  w.byte(0x01)
  w.fixed32(spanFlags(s))
  w.end(start, 2)
}

// ---------------------------------------------------------------------------------------------------------------
// OTLP/JSON

const NON_FINITE: Record<string, string> = { NaN: "\"NaN\"", Infinity: "\"Infinity\"", "-Infinity": "\"-Infinity\"" }

/** An AnyValue object: int64 as a decimal string, non-finite doubles as the proto3 JSON strings. */
const anyValueJson = (v: unknown): string => {
  switch (typeof v) {
    case "string":
      return `{"stringValue":${JSON.stringify(v)}}`
    case "number":
      // Past 2^53 a number's shortest decimal form is not its exact integer value: BigInt prints that.
      if (isInt64(v)) return `{"intValue":"${Number.isSafeInteger(v) ? v : BigInt(v)}"}`
      return `{"doubleValue":${Number.isFinite(v) ? String(v) : NON_FINITE[String(v)]}}`
    case "boolean":
      return v ? `{"boolValue":true}` : `{"boolValue":false}`
    case "object": {
      if (v === null) return "{}"
      if (v instanceof Uint8Array) return `{"bytesValue":"${Buffer.from(v).toString("base64")}"}`
      if (Array.isArray(v)) {
        let out = `{"arrayValue":{"values":[`
        for (let i = 0; i < v.length; i++) out += (i === 0 ? "" : ",") + anyValueJson(v[i])
        return `${out}]}}`
      }
      return `{"kvlistValue":{"values":[${keyValuesJson(v as Record<string, unknown>)}]}}`
    }
    default:
      return "{}"
  }
}

/** The `{"key":...,"value":` prefix per attribute name: names repeat in every span. */
const keyPrefixes = new Map<string, string>()
const KEY_PREFIX_CACHE_LIMIT = 4096

const keyPrefix = (key: string) => {
  let prefix = keyPrefixes.get(key)
  if (prefix === undefined) {
    prefix = `{"key":${JSON.stringify(key)},"value":`
    if (keyPrefixes.size < KEY_PREFIX_CACHE_LIMIT) keyPrefixes.set(key, prefix)
  }
  return prefix
}

/** Comma-separated KeyValue objects (without the brackets). */
const keyValuesJson = (attributes: Readonly<Record<string, unknown>>): string => {
  let out = ""
  for (const key in attributes) out += `${out === "" ? "" : ","}${keyPrefix(key)}${anyValueJson(attributes[key])}}`
  return out
}

const spanJson = (s: SpanData, offsetNs: bigint): string => {
  const parent = s.parentSpanId
  const startNs = s.startMonoNs + offsetNs
  const endNs = s.endMonoNs >= s.startMonoNs ? s.endMonoNs + offsetNs : startNs
  // Ids are lowercase hex (checked by the telemetry layer): nothing to escape.
  let out = `{"traceId":"${s.traceId}","spanId":"${s.spanId}"` +
    (parent !== undefined && parent !== "" ? `,"parentSpanId":"${parent}"` : "") +
    `,"flags":${spanFlags(s)},"name":${JSON.stringify(s.name)},"kind":${KIND[s.kind]}` +
    `,"startTimeUnixNano":"${startNs}","endTimeUnixNano":"${endNs}"`
  const attributes = keyValuesJson(s.attributes)
  if (attributes !== "") out += `,"attributes":[${attributes}]`
  const events = s.events
  if (events !== undefined && events.length > 0) {
    out += `,"events":[`
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!
      const ea = keyValuesJson(e.attributes)
      out += `${i === 0 ? "" : ","}{"timeUnixNano":"${e.timeMonoNs + offsetNs}","name":${JSON.stringify(e.name)}` +
        `${ea === "" ? "" : `,"attributes":[${ea}]`}}`
    }
    out += "]"
  }
  const message = s.status.message
  const code = STATUS[s.status.code]
  out += `,"status":{${message !== undefined && message !== "" ? `"message":${JSON.stringify(message)},` : ""}` +
    `"code":${code}}}`
  return out
}

// ---------------------------------------------------------------------------------------------------------------

/** Spans grouped by resource object, then by probe, in the order they first appear. */
const group = (items: ReadonlyArray<OtlpSpan>) => {
  const groups = new Map<ResourceLike, Map<string, Array<OtlpSpan>>>()
  let lastResource: ResourceLike | undefined
  let lastProbe: string | undefined
  let last: Array<OtlpSpan> = []
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!
    // Runs of one process's spans from one probe are the common case: skip both lookups.
    if (item.resource !== lastResource || item.span.probe !== lastProbe) {
      lastResource = item.resource
      lastProbe = item.span.probe
      let byProbe = groups.get(item.resource)
      if (byProbe === undefined) {
        byProbe = new Map()
        groups.set(item.resource, byProbe)
      }
      let list = byProbe.get(lastProbe)
      if (list === undefined) {
        list = []
        byProbe.set(lastProbe, list)
      }
      last = list
    }
    last.push(item)
  }
  return groups
}

/** Encodes trace export requests; keeps the per-resource and per-probe caches and one reused buffer. */
export interface TraceEncoder {
  /** An `ExportTraceServiceRequest` in protobuf (empty for no spans). */
  readonly protobuf: (items: ReadonlyArray<OtlpSpan>) => Buffer
  /** The same request in OTLP/JSON (UTF-8). */
  readonly json: (items: ReadonlyArray<OtlpSpan>) => Buffer
}

/** An encoder whose scopes are `probescope/<probe>` at `scopeVersion`. */
export const makeTraceEncoder = (scopeVersion: string): TraceEncoder => {
  const w = new ProtoWriter()
  // Field 1 (resource) of a ResourceSpans, tag and length included, per resource object.
  const resourceFields = new WeakMap<ResourceLike, Buffer>()
  // Field 1 (scope) of a ScopeSpans, per probe.
  const scopeFields = new Map<string, Buffer>()
  const resourceJson = new WeakMap<ResourceLike, string>()
  const scopeJson = new Map<string, string>()

  const resourceField = (resource: ResourceLike) => {
    let bytes = resourceFields.get(resource)
    if (bytes === undefined) {
      const rw = new ProtoWriter(1024)
      rw.byte(0x0a)
      const start = rw.begin(2)
      writeKeyValues(rw, resource.attributes, 0x0a)
      rw.end(start, 2)
      bytes = rw.finish()
      resourceFields.set(resource, bytes)
    }
    return bytes
  }

  const scopeField = (probe: string) => {
    let bytes = scopeFields.get(probe)
    if (bytes === undefined) {
      const sw = new ProtoWriter(256)
      sw.byte(0x0a)
      const start = sw.begin(1)
      sw.byte(0x0a)
      sw.string(`probescope/${probe}`)
      if (scopeVersion !== "") {
        sw.byte(0x12)
        sw.string(scopeVersion)
      }
      sw.end(start, 1)
      bytes = sw.finish()
      scopeFields.set(probe, bytes)
    }
    return bytes
  }

  const protobuf = (items: ReadonlyArray<OtlpSpan>): Buffer => {
    w.reset()
    for (const [resource, byProbe] of group(items)) {
      w.byte(0x0a)
      const resourceSpans = w.begin(3)
      w.raw(resourceField(resource))
      for (const [probe, spans] of byProbe) {
        w.byte(0x12)
        const scopeSpans = w.begin(3)
        w.raw(scopeField(probe))
        for (let i = 0; i < spans.length; i++) writeSpan(w, spans[i]!.span, spans[i]!.offsetNs)
        w.end(scopeSpans, 3)
      }
      w.end(resourceSpans, 3)
    }
    return w.finish()
  }

  const resourceOf = (resource: ResourceLike) => {
    let json = resourceJson.get(resource)
    if (json === undefined) {
      const attributes = keyValuesJson(resource.attributes)
      json = `{"resource":{${attributes === "" ? "" : `"attributes":[${attributes}]`}},"scopeSpans":[`
      resourceJson.set(resource, json)
    }
    return json
  }

  const scopeOf = (probe: string) => {
    let json = scopeJson.get(probe)
    if (json === undefined) {
      json = `{"scope":{"name":${JSON.stringify(`probescope/${probe}`)}` +
        `${scopeVersion === "" ? "" : `,"version":${JSON.stringify(scopeVersion)}`}},"spans":[`
      scopeJson.set(probe, json)
    }
    return json
  }

  const json = (items: ReadonlyArray<OtlpSpan>): Buffer => {
    let out = `{"resourceSpans":[`
    let firstResource = true
    for (const [resource, byProbe] of group(items)) {
      out += (firstResource ? "" : ",") + resourceOf(resource)
      firstResource = false
      let firstScope = true
      for (const [probe, spans] of byProbe) {
        out += (firstScope ? "" : ",") + scopeOf(probe)
        firstScope = false
        for (let i = 0; i < spans.length; i++) out += (i === 0 ? "" : ",") + spanJson(spans[i]!.span, spans[i]!.offsetNs)
        out += "]}"
      }
      out += "]}"
    }
    return Buffer.from(`${out}]}`, "utf8")
  }

  return { protobuf, json }
}
