/**
 * The protobuf encoding of OTLP traces (opentelemetry-proto trace/v1, common/v1, resource/v1), field by field from
 * `SpanFields`. Zero-valued fields (dropped counts, an unset status code) are left out, as proto3 allows.
 *
 * Tags are written as their bytes, `(field number << 3) | wire type`: 0x0a is field 1 length-delimited, 0x12 field 2,
 * 0x18 field 3 varint, 0x21 field 4 fixed64, 0x39 field 7 fixed64, 0x85 0x01 field 16 fixed32, and so on; each write
 * names the field it is for where the code does not.
 */
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
import { ProtoWriter, putId } from "./ProtoWriter.ts"

/** The fields of one AnyValue message (its tag and length written by the caller). */
export const writeAnyValue = (w: ProtoWriter, v: unknown): void => {
  switch (typeof v) {
    case "string":
      w.byte(0x0a) // string_value (1)
      w.string(v)
      return
    case "number":
      if (isInt64(v)) {
        w.byte(0x18) // int_value (3)
        w.int64(v)
      } else {
        w.byte(0x21) // double_value (4)
        w.double(v)
      }
      return
    case "boolean":
      w.byte(0x10) // bool_value (2)
      w.byte(v ? 1 : 0)
      return
    case "object": {
      if (v === null) return
      if (v instanceof Uint8Array) {
        w.byte(0x3a) // bytes_value (7)
        w.uint32(v.length)
        w.raw(v)
        return
      }
      if (Array.isArray(v)) {
        w.byte(0x2a) // array_value (5)
        const array = w.begin(1)
        for (let i = 0; i < v.length; i++) {
          w.byte(0x0a) // ArrayValue.values (1)
          const item = w.begin(1)
          writeAnyValue(w, v[i])
          w.end(item, 1)
        }
        w.end(array, 1)
        return
      }
      w.byte(0x32) // kvlist_value (6)
      const list = w.begin(1)
      writeKeyValues(w, v as Record<string, unknown>, 0x0a) // KeyValueList.values (1)
      w.end(list, 1)
      return
    }
    default:
      // undefined (and what attributes cannot hold): an empty AnyValue, as the SDK writes it.
      return
  }
}

/** Per name: `KeyValue.key` plus the tag of `KeyValue.value`; per scalar value: the whole KeyValue, length first. */
const keys = keyCache((key) => {
  const w = new ProtoWriter(64)
  w.byte(0x0a) // KeyValue.key (1)
  w.string(key)
  w.byte(0x12) // KeyValue.value (2)
  return w.buf.slice(0, w.pos)
})

/** One KeyValue message, length prefix first, without its tag. */
const writeKeyValue = (w: ProtoWriter, entry: KeyEntry<Uint8Array>, value: unknown): void => {
  const kv = w.begin(1)
  w.raw(entry.key)
  const start = w.begin(1)
  writeAnyValue(w, value)
  w.end(start, 1)
  w.end(kv, 1)
}

const scratch = new ProtoWriter(256)

/** The span attributes encoded last, by position (see `LastAttributes`). */
const lastSpan = lastAttributes<Uint8Array>()

/**
 * Repeated KeyValue under the one-byte tag `tagByte`. With `last` (the spans' attributes), an attribute equal to the
 * one at its position in the previous call is copied from there.
 */
export const writeKeyValues = (
  w: ProtoWriter,
  attributes: Readonly<Record<string, unknown>>,
  tagByte: number,
  last?: LastAttributes<Uint8Array>
): void => {
  let i = 0
  for (const key in attributes) {
    const value = attributes[key]
    const at = i++
    const recalled = recall(last, at, key, value)
    if (recalled !== undefined) {
      w.field(tagByte, recalled)
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
      w.field(tagByte, bytes)
      remember(last, at, key, value, bytes)
    } else {
      w.byte(tagByte)
      writeKeyValue(w, entry, value)
      remember(last, at, key, value, undefined)
    }
  }
}

/** One `ScopeSpans.spans` entry. */
export const writeSpan = (w: ProtoWriter, s: SpanFields, offsetNs: bigint): void => {
  // The fixed-size head (tag, length, ids as bytes) and then the kind and times are written through one bounds
  // check each: a span is ~40 small writes, and each write's own check was a measurable part of the span's cost.
  const traceId = s.traceId
  const spanId = s.spanId
  const parent = hasParent(s) ? s.parentSpanId! : undefined
  let start: number
  if (typeof traceId !== "string" && typeof spanId !== "string" && typeof parent !== "string") {
    w.ensure(3 + 18 + 10 + 10)
    const buf = w.buf
    let p = w.pos
    buf[p] = 0x12 // ScopeSpans.spans (2)
    start = p + 1
    p += 3 // the span's length, 2 bytes reserved (see `begin`)
    buf[p++] = 0x0a // trace_id (1)
    buf[p++] = 16
    p = putId(buf, p, traceId, 16)
    buf[p++] = 0x12 // span_id (2)
    buf[p++] = 8
    p = putId(buf, p, spanId, 8)
    if (parent !== undefined) {
      buf[p++] = 0x22 // parent_span_id (4)
      buf[p++] = 8
      p = putId(buf, p, parent, 8)
    }
    w.pos = p
  } else {
    w.byte(0x12) // ScopeSpans.spans (2)
    start = w.begin(2)
    w.byte(0x0a) // trace_id (1)
    w.id(traceId, 16)
    w.byte(0x12) // span_id (2)
    w.id(spanId, 8)
    if (parent !== undefined) {
      w.byte(0x22) // parent_span_id (4)
      w.id(parent, 8)
    }
  }
  w.byte(0x2a) // name (5)
  w.string(s.name)
  w.ensure(2 + 9 + 9)
  const buf = w.buf
  const p = w.pos
  buf[p] = 0x30 // kind (6)
  buf[p + 1] = KIND[s.kind]
  buf[p + 2] = 0x39 // start_time_unix_nano (7)
  w.view.setBigUint64(p + 3, s.startMonoNs + offsetNs, true)
  buf[p + 11] = 0x41 // end_time_unix_nano (8)
  w.view.setBigUint64(p + 12, endMonoNs(s) + offsetNs, true)
  w.pos = p + 20
  writeKeyValues(w, s.attributes, 0x4a, lastSpan) // attributes (9)
  if (s.droppedAttributesCount !== undefined && s.droppedAttributesCount > 0) {
    w.byte(0x50) // dropped_attributes_count (10)
    w.uint32(s.droppedAttributesCount)
  }
  const events = s.events
  if (events !== undefined) {
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!
      w.byte(0x5a) // events (11)
      const event = w.begin(1)
      w.byte(0x09) // Event.time_unix_nano (1)
      w.fixed64(e.timeMonoNs + offsetNs)
      w.byte(0x12) // Event.name (2)
      w.string(e.name)
      writeKeyValues(w, e.attributes, 0x1a) // Event.attributes (3)
      w.end(event, 1)
    }
  }
  if (s.droppedEventsCount !== undefined && s.droppedEventsCount > 0) {
    w.byte(0x60) // dropped_events_count (12)
    w.uint32(s.droppedEventsCount)
  }
  // The status is always present (as the SDK sends it), empty when unset without a message.
  w.byte(0x7a) // status (15)
  const status = w.begin(1)
  const message = s.status.message
  if (message !== undefined && message !== "") {
    w.byte(0x12) // Status.message (2)
    w.string(message)
  }
  const code = STATUS[s.status.code]
  if (code !== 0) {
    w.byte(0x18) // Status.code (3)
    w.byte(code)
  }
  w.end(status, 1)
  // flags (16), fixed32: a two-byte tag.
  w.byte(0x85)
  w.byte(0x01)
  w.fixed32(spanFlags(s))
  w.end(start, 2)
}

/** Field 1 (resource) of a ResourceSpans, tag and length included. */
export const resourceField = (attributes: Readonly<Record<string, unknown>>): Uint8Array => {
  const w = new ProtoWriter(1024)
  w.byte(0x0a) // ResourceSpans.resource (1)
  const start = w.begin(2)
  writeKeyValues(w, attributes, 0x0a) // Resource.attributes (1)
  w.end(start, 2)
  return w.buf.slice(0, w.pos)
}

/** Field 1 (scope) of a ScopeSpans, tag and length included. */
export const scopeField = (name: string, version: string): Uint8Array => {
  const w = new ProtoWriter(256)
  w.byte(0x0a) // ScopeSpans.scope (1)
  const start = w.begin(1)
  w.byte(0x0a) // InstrumentationScope.name (1)
  w.string(name)
  if (version !== "") {
    w.byte(0x12) // InstrumentationScope.version (2)
    w.string(version)
  }
  w.end(start, 1)
  return w.buf.slice(0, w.pos)
}
