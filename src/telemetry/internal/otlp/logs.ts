/**
 * OTLP `ExportLogsServiceRequest`s (opentelemetry-proto collector/logs/v1) from a batch of the logs pipeline (the
 * SDK's `ReadableLogRecord`, as Logs.toReadableLogRecord builds it), as protobuf or OTLP/JSON, with the span
 * encoders' writers: records grouped by resource (by identity, each resource's attributes encoded once while it
 * lives) and by scope, in the order they came. One request per batch: the batcher bounds a batch's records.
 *
 * What the SDK's transformer writes, field for field: both times, severity number and text, the body as an AnyValue,
 * attributes, the dropped count when not zero, and the span context (flags, trace id, span id) when the record has
 * one.
 */
import type { ReadableLogRecord } from "@opentelemetry/sdk-logs"
import { hrTimeNanos } from "./fields.ts"
import * as Json from "./json.ts"
import * as Protobuf from "./protobuf.ts"
import { JsonWriter, ProtoWriter } from "./ProtoWriter.ts"

const nanos = hrTimeNanos

/** The records of a batch by resource, then by scope (name and version), each list in the batch's order. */
const grouped = (records: ReadonlyArray<ReadableLogRecord>) => {
  const byResource = new Map<ReadableLogRecord["resource"], Map<string, Array<ReadableLogRecord>>>()
  for (const r of records) {
    let scopes = byResource.get(r.resource)
    if (scopes === undefined) {
      scopes = new Map()
      byResource.set(r.resource, scopes)
    }
    const scopeKey = `${r.instrumentationScope.name}\u0000${r.instrumentationScope.version ?? ""}`
    let list = scopes.get(scopeKey)
    if (list === undefined) {
      list = []
      scopes.set(scopeKey, list)
    }
    list.push(r)
  }
  return byResource
}

/** One `ScopeLogs.log_records` (2) entry. */
const writeRecord = (w: ProtoWriter, r: ReadableLogRecord): void => {
  w.byte(0x12)
  const start = w.begin(2)
  w.byte(0x09) // time_unix_nano (1), fixed64
  w.fixed64(nanos(r.hrTime))
  if (r.severityNumber !== undefined && r.severityNumber !== 0) {
    w.byte(0x10) // severity_number (2)
    w.uint32(r.severityNumber)
  }
  if (r.severityText !== undefined && r.severityText !== "") {
    w.byte(0x1a) // severity_text (3)
    w.string(r.severityText)
  }
  if (r.body !== undefined) {
    w.byte(0x2a) // body (5)
    const body = w.begin(1)
    Protobuf.writeAnyValue(w, r.body)
    w.end(body, 1)
  }
  Protobuf.writeKeyValues(w, r.attributes, 0x32) // attributes (6)
  if (r.droppedAttributesCount > 0) {
    w.byte(0x38) // dropped_attributes_count (7)
    w.uint32(r.droppedAttributesCount)
  }
  const context = r.spanContext
  if (context !== undefined) {
    w.byte(0x45) // flags (8), fixed32
    w.fixed32(context.traceFlags)
    w.byte(0x4a) // trace_id (9), its length written by hexId
    w.hexId(context.traceId, 16)
    w.byte(0x52) // span_id (10)
    w.hexId(context.spanId, 8)
  }
  w.byte(0x59) // observed_time_unix_nano (11), fixed64
  w.fixed64(nanos(r.hrTimeObserved))
  if (r.eventName !== undefined && r.eventName !== "") {
    w.byte(0x62) // event_name (12)
    w.string(r.eventName)
  }
  w.end(start, 2)
}

const jsonRecord = (w: JsonWriter, r: ReadableLogRecord, first: boolean): void => {
  w.ascii(first ? "{" : ",{")
  w.ascii(`"timeUnixNano":"${nanos(r.hrTime)}","observedTimeUnixNano":"${nanos(r.hrTimeObserved)}"`)
  if (r.severityNumber !== undefined && r.severityNumber !== 0) w.ascii(`,"severityNumber":${r.severityNumber}`)
  if (r.severityText !== undefined && r.severityText !== "") {
    w.ascii(`,"severityText":`)
    w.quoted(r.severityText)
  }
  if (r.body !== undefined) {
    w.ascii(`,"body":`)
    Json.writeAnyValue(w, r.body)
  }
  Json.writeAttributesField(w, r.attributes, ",")
  if (r.droppedAttributesCount > 0) w.ascii(`,"droppedAttributesCount":${r.droppedAttributesCount}`)
  const context = r.spanContext
  if (context !== undefined) {
    // Ids are hex in OTLP/JSON, as the probes' records carry them here.
    w.ascii(`,"flags":${context.traceFlags},"traceId":"${context.traceId}","spanId":"${context.spanId}"`)
  }
  if (r.eventName !== undefined && r.eventName !== "") {
    w.ascii(`,"eventName":`)
    w.quoted(r.eventName)
  }
  w.byte(0x7d)
}

/** Encodes logs export requests; keeps each resource's encoded attributes while the resource lives. */
export interface LogsEncoder {
  readonly protobuf: (records: ReadonlyArray<ReadableLogRecord>) => Buffer
  readonly json: (records: ReadonlyArray<ReadableLogRecord>) => Buffer
}

export const makeLogsEncoder = (): LogsEncoder => {
  const resourceFields = new WeakMap<ReadableLogRecord["resource"], Uint8Array>()
  const w = new ProtoWriter(16 * 1024)
  const jw = new JsonWriter(16 * 1024)
  return {
    protobuf: (records) => {
      w.reset()
      for (const [resource, scopes] of grouped(records)) {
        w.byte(0x0a) // ExportLogsServiceRequest.resource_logs (1)
        const rl = w.begin(3)
        let field = resourceFields.get(resource)
        if (field === undefined) {
          field = Protobuf.resourceField(resource.attributes)
          resourceFields.set(resource, field)
        }
        w.raw(field) // ResourceLogs.resource (1), tag and length included
        for (const list of scopes.values()) {
          const scope = list[0]!.instrumentationScope
          w.byte(0x12) // ResourceLogs.scope_logs (2)
          const sl = w.begin(3)
          w.raw(Protobuf.scopeField(scope.name, scope.version ?? "")) // ScopeLogs.scope (1)
          for (const r of list) writeRecord(w, r)
          w.end(sl, 3)
        }
        w.end(rl, 3)
      }
      return w.finish()
    },
    json: (records) => {
      jw.reset()
      jw.ascii(`{"resourceLogs":[`)
      let firstResource = true
      for (const [resource, scopes] of grouped(records)) {
        if (!firstResource) jw.byte(0x2c)
        firstResource = false
        Json.writeResourceOpening(jw, resource.attributes, "scopeLogs")
        let firstScope = true
        for (const list of scopes.values()) {
          const scope = list[0]!.instrumentationScope
          if (!firstScope) jw.byte(0x2c)
          firstScope = false
          Json.writeScopeOpening(jw, scope.name, scope.version ?? "", "logRecords")
          list.forEach((r, i) => jsonRecord(jw, r, i === 0))
          jw.ascii("]}")
        }
        jw.ascii("]}")
      }
      jw.ascii("]}")
      return jw.finish()
    }
  }
}
