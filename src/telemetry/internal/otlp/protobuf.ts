/**
 * The protobuf encoding of OTLP traces (opentelemetry-proto trace/v1, common/v1, resource/v1), field by field from
 * `SpanData`. Zero-valued fields (dropped counts, an unset status code) are left out, as proto3 allows.
 */
import type { SpanData } from "../../../probe/Telemetry.ts"
import { endMonoNs, hasParent, isInt64, isScalar, KIND, keyCache, type KeyEntry, spanFlags, STATUS } from "./fields.ts"
import { ProtoWriter } from "./ProtoWriter.ts"

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

/** Per name: `KeyValue.key` plus the tag of `KeyValue.value`; per scalar value: the whole KeyValue, length first. */
const keys = keyCache((key) => {
  const w = new ProtoWriter(64)
  w.byte(0x0a)
  w.string(key)
  w.byte(0x12)
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

/** Repeated KeyValue under the one-byte tag `tagByte`. */
const writeKeyValues = (w: ProtoWriter, attributes: Readonly<Record<string, unknown>>, tagByte: number): void => {
  for (const key in attributes) {
    const entry = keys.entry(key)
    const value = attributes[key]
    w.byte(tagByte)
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
    } else {
      writeKeyValue(w, entry, value)
    }
  }
}

/** One `ScopeSpans.spans` entry. */
export const writeSpan = (w: ProtoWriter, s: SpanData, offsetNs: bigint): void => {
  w.byte(0x12)
  const start = w.begin(2)
  w.byte(0x0a)
  w.hexId(s.traceId, 16)
  w.byte(0x12)
  w.hexId(s.spanId, 8)
  if (hasParent(s)) {
    w.byte(0x22)
    w.hexId(s.parentSpanId!, 8)
  }
  w.byte(0x2a)
  w.string(s.name)
  w.byte(0x30)
  w.byte(KIND[s.kind])
  w.byte(0x39)
  w.fixed64(s.startMonoNs + offsetNs)
  w.byte(0x41)
  w.fixed64(endMonoNs(s) + offsetNs)
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

/** Field 1 (resource) of a ResourceSpans, tag and length included. */
export const resourceField = (attributes: Readonly<Record<string, unknown>>): Uint8Array => {
  const w = new ProtoWriter(1024)
  w.byte(0x0a)
  const start = w.begin(2)
  writeKeyValues(w, attributes, 0x0a)
  w.end(start, 2)
  return w.buf.slice(0, w.pos)
}

/** Field 1 (scope) of a ScopeSpans, tag and length included. */
export const scopeField = (name: string, version: string): Uint8Array => {
  const w = new ProtoWriter(256)
  w.byte(0x0a)
  const start = w.begin(1)
  w.byte(0x0a)
  w.string(name)
  if (version !== "") {
    w.byte(0x12)
    w.string(version)
  }
  w.end(start, 1)
  return w.buf.slice(0, w.pos)
}
