/**
 * The OTLP/JSON encoding of OTLP traces, written as bytes straight into a buffer: the protobuf JSON mapping with
 * OTLP's exceptions — ids as hex, enums as numbers, lowerCamelCase names; 64-bit integers (times, int values) as
 * decimal strings, non-finite doubles as "NaN"/"Infinity"/"-Infinity". Empty fields are left out.
 */
import type { Id } from "../../../probe/Telemetry.ts"
import {
  endMonoNs,
  hasParent,
  isInt64,
  isScalar,
  KIND,
  keyCache,
  type KeyEntry,
  lastAttributes,
  type LastAttributes,
  recall,
  remember,
  spanFlags,
  type SpanFields,
  STATUS
} from "./fields.ts"
import { JsonWriter } from "./ProtoWriter.ts"

const COMMA = 0x2c
const QUOTE = 0x22
const CLOSE = 0x7d
const DIGIT_0 = 0x30

const NON_FINITE: Record<string, string> = { NaN: "\"NaN\"", Infinity: "\"Infinity\"", "-Infinity": "\"-Infinity\"" }

/** One AnyValue object. */
export const writeAnyValue = (w: JsonWriter, v: unknown): void => {
  switch (typeof v) {
    case "string":
      w.ascii(`{"stringValue":`)
      w.quoted(v)
      w.byte(CLOSE)
      return
    case "number":
      // Past 2^53 a number's shortest decimal form is not its exact integer value: BigInt prints that.
      if (isInt64(v)) w.ascii(`{"intValue":"${Number.isSafeInteger(v) ? v : BigInt(v)}"}`)
      else w.ascii(`{"doubleValue":${Number.isFinite(v) ? String(v) : NON_FINITE[String(v)]}}`)
      return
    case "boolean":
      w.ascii(v ? `{"boolValue":true}` : `{"boolValue":false}`)
      return
    case "object": {
      if (v === null) break
      if (v instanceof Uint8Array) {
        w.ascii(`{"bytesValue":"${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64")}"}`)
        return
      }
      if (Array.isArray(v)) {
        w.ascii(`{"arrayValue":{"values":[`)
        for (let i = 0; i < v.length; i++) {
          if (i > 0) w.byte(COMMA)
          writeAnyValue(w, v[i])
        }
        w.ascii("]}}")
        return
      }
      w.ascii(`{"kvlistValue":{"values":[`)
      writeKeyValues(w, v as Record<string, unknown>)
      w.ascii("]}}")
      return
    }
  }
  // undefined, null (and what attributes cannot hold): an empty AnyValue, as the SDK writes it.
  w.ascii("{}")
}

/** Per name: `{"key":"<name>","value":`; per scalar value: the whole KeyValue object. */
const keys = keyCache((key) => {
  const w = new JsonWriter(64)
  w.ascii(`{"key":`)
  w.quoted(key)
  w.ascii(`,"value":`)
  return w.buf.slice(0, w.pos)
})

const writeKeyValue = (w: JsonWriter, entry: KeyEntry<Uint8Array>, value: unknown): void => {
  w.raw(entry.key)
  writeAnyValue(w, value)
  w.byte(CLOSE)
}

const scratch = new JsonWriter(256)

/** The span attributes encoded last, by position (see `LastAttributes`). */
const lastSpan = lastAttributes<Uint8Array>()

/**
 * KeyValue objects, comma-separated (no brackets); returns how many. With `last` (the spans' attributes), an
 * attribute equal to the one at its position in the previous call is copied from there.
 */
export const writeKeyValues = (
  w: JsonWriter,
  attributes: Readonly<Record<string, unknown>>,
  last?: LastAttributes<Uint8Array>
): number => {
  let n = 0
  for (const key in attributes) {
    const at = n++
    if (at > 0) w.byte(COMMA)
    const value = attributes[key]
    const recalled = recall(last, at, key, value)
    if (recalled !== undefined) {
      w.raw(recalled)
      continue
    }
    const entry = keys.entry(key)
    const values = entry.values
    if (values !== undefined && isScalar(value)) {
      let bytes = values.get(value)
      if (bytes === undefined) {
        scratch.reset()
        writeKeyValue(scratch, entry, value)
        bytes = scratch.buf.slice(0, scratch.pos)
        keys.keep(entry, value, bytes)
      }
      w.raw(bytes)
      remember(last, at, key, value, bytes)
    } else {
      writeKeyValue(w, entry, value)
      remember(last, at, key, value, undefined)
    }
  }
  return n
}

/** `,"attributes":[...]`, or nothing for none; `last`: given for a span's own attributes. */
const writeAttributes = (
  w: JsonWriter,
  attributes: Readonly<Record<string, unknown>>,
  last?: LastAttributes<Uint8Array>
): void => {
  const mark = w.pos
  w.ascii(`,"attributes":[`)
  if (writeKeyValues(w, attributes, last) === 0) w.pos = mark
  else w.byte(0x5d)
}

/** `"<decimal>"` of a time. */
const writeTime = (w: JsonWriter, ns: bigint): void => {
  w.byte(QUOTE)
  w.ascii(String(ns))
  w.byte(QUOTE)
}

/** "0123456789abcdef" as bytes. */
const HEX_DIGITS = new TextEncoder().encode("0123456789abcdef")

/** An id's bytes as lowercase hex at `p` of `buf`, which has room; returns the position after them. */
const putHex = (buf: Uint8Array, p: number, id: Uint8Array, bytes: number): number => {
  for (let i = 0; i < bytes; i++) {
    const b = id[i]!
    buf[p++] = HEX_DIGITS[b >> 4]!
    buf[p++] = HEX_DIGITS[b & 15]!
  }
  return p
}

/** A JSON id: lowercase hex (the telemetry layer refuses anything else), so nothing to escape. */
const writeId = (w: JsonWriter, id: Id): void => {
  if (typeof id === "string") return w.ascii(id)
  w.ensure(2 * id.length)
  w.pos = putHex(w.buf, w.pos, id, id.length)
}

const ascii = (text: string): Uint8Array => new TextEncoder().encode(text)
const TRACE_ID = ascii(`{"traceId":"`)
const SPAN_ID = ascii(`","spanId":"`)
const PARENT_SPAN_ID = ascii(`","parentSpanId":"`)

/** `bytes` (ASCII) at `p` of `buf`, which has room; returns the position after them. */
const putAscii = (buf: Uint8Array, p: number, bytes: Uint8Array): number => {
  for (let i = 0; i < bytes.length; i++) buf[p++] = bytes[i]!
  return p
}


/** One span object. */
export const writeSpan = (w: JsonWriter, s: SpanFields, offsetNs: bigint): void => {
  const traceId = s.traceId
  const spanId = s.spanId
  const parent = hasParent(s) ? s.parentSpanId! : undefined
  if (typeof traceId !== "string" && typeof spanId !== "string" && typeof parent !== "string") {
    // Ids as bytes (the built-in probes'): the span's head through one bounds check, not one per piece.
    w.ensure(TRACE_ID.length + 32 + SPAN_ID.length + 16 + PARENT_SPAN_ID.length + 16 + 1)
    const buf = w.buf
    let p = putAscii(buf, w.pos, TRACE_ID)
    p = putHex(buf, p, traceId, 16)
    p = putAscii(buf, p, SPAN_ID)
    p = putHex(buf, p, spanId, 8)
    if (parent !== undefined) {
      p = putAscii(buf, p, PARENT_SPAN_ID)
      p = putHex(buf, p, parent, 8)
    }
    buf[p++] = QUOTE
    w.pos = p
  } else {
    w.ascii(`{"traceId":"`)
    writeId(w, traceId)
    w.ascii(`","spanId":"`)
    writeId(w, spanId)
    w.byte(QUOTE)
    if (parent !== undefined) {
      w.ascii(`,"parentSpanId":"`)
      writeId(w, parent)
      w.byte(QUOTE)
    }
  }
  w.ascii(`,"flags":`)
  w.ascii(String(spanFlags(s)))
  w.ascii(`,"name":`)
  w.quoted(s.name)
  w.ascii(`,"kind":`)
  w.byte(DIGIT_0 + KIND[s.kind])
  w.ascii(`,"startTimeUnixNano":`)
  writeTime(w, s.startMonoNs + offsetNs)
  w.ascii(`,"endTimeUnixNano":`)
  writeTime(w, endMonoNs(s) + offsetNs)
  writeAttributes(w, s.attributes, lastSpan)
  if (s.droppedAttributesCount !== undefined && s.droppedAttributesCount > 0) {
    w.ascii(`,"droppedAttributesCount":${s.droppedAttributesCount}`)
  }
  const events = s.events
  if (events !== undefined && events.length > 0) {
    w.ascii(`,"events":[`)
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!
      if (i > 0) w.byte(COMMA)
      w.ascii(`{"timeUnixNano":`)
      writeTime(w, e.timeMonoNs + offsetNs)
      w.ascii(`,"name":`)
      w.quoted(e.name)
      writeAttributes(w, e.attributes)
      w.byte(CLOSE)
    }
    w.byte(0x5d)
  }
  if (s.droppedEventsCount !== undefined && s.droppedEventsCount > 0) {
    w.ascii(`,"droppedEventsCount":${s.droppedEventsCount}`)
  }
  w.ascii(`,"status":{`)
  const message = s.status.message
  if (message !== undefined && message !== "") {
    w.ascii(`"message":`)
    w.quoted(message)
    w.byte(COMMA)
  }
  w.ascii(`"code":`)
  w.byte(DIGIT_0 + STATUS[s.status.code])
  w.ascii("}}")
}

/** `<prefix>"attributes":[...]`, or nothing when there are none (an empty list is proto3's default, left out). */
export const writeAttributesField = (
  w: JsonWriter,
  attributes: Readonly<Record<string, unknown>>,
  prefix: string
): void => {
  const mark = w.pos
  w.ascii(`${prefix}"attributes":[`)
  if (writeKeyValues(w, attributes) === 0) w.pos = mark
  else w.byte(0x5d)
}

/** `{"resource":{...},"<list>":[`: a ResourceSpans, ResourceMetrics or ResourceLogs up to its first scope. */
export const writeResourceOpening = (
  w: JsonWriter,
  attributes: Readonly<Record<string, unknown>>,
  list: string
): void => {
  w.ascii(`{"resource":{`)
  writeAttributesField(w, attributes, "")
  w.ascii(`},"${list}":[`)
}

/** `{"scope":{...},"<list>":[`: a ScopeSpans, ScopeMetrics or ScopeLogs up to its first item. */
export const writeScopeOpening = (w: JsonWriter, name: string, version: string, list: string): void => {
  w.ascii(`{"scope":{"name":`)
  w.quoted(name)
  if (version !== "") {
    w.ascii(`,"version":`)
    w.quoted(version)
  }
  w.ascii(`},"${list}":[`)
}

/** `{"resource":{...},"scopeSpans":[`: a ResourceSpans up to its first ScopeSpans. */
export const resourceOpening = (attributes: Readonly<Record<string, unknown>>): Uint8Array => {
  const w = new JsonWriter(1024)
  writeResourceOpening(w, attributes, "scopeSpans")
  return w.buf.slice(0, w.pos)
}

/** `{"scope":{...},"spans":[`: a ScopeSpans up to its first span. */
export const scopeOpening = (name: string, version: string): Uint8Array => {
  const w = new JsonWriter(256)
  writeScopeOpening(w, name, version, "spans")
  return w.buf.slice(0, w.pos)
}
