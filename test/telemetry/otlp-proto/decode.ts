/**
 * Decoding OTLP trace, metrics and logs requests with the official protos (vendored beside this file) through
 * protobufjs. Trace requests become one comparable shape: a flat list of spans, each with its resource and scope, ids
 * in hex, 64-bit integers as decimal strings, enums as numbers, proto3 defaults filled in (so a zero written explicitly
 * and a zero left out compare equal, as they mean the same on the wire). `comparableJson` puts OTLP/JSON of any
 * signal, whoever wrote it, into one form.
 */
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import protobuf from "protobufjs"

const here = dirname(fileURLToPath(import.meta.url))

const root = new protobuf.Root()
root.resolvePath = (_origin, target) => join(here, target)
root.loadSync("opentelemetry/proto/collector/trace/v1/trace_service.proto")
root.loadSync("opentelemetry/proto/collector/metrics/v1/metrics_service.proto")
root.loadSync("opentelemetry/proto/collector/logs/v1/logs_service.proto")

/** `ExportTraceServiceRequest` of opentelemetry-proto v1.11.0. */
export const ExportTraceServiceRequest = root.lookupType(
  "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest"
)

const hex = (base64: string) => Buffer.from(base64, "base64").toString("hex")

/** The decoded request as a plain object (ids still base64, as protobufjs gives them). */
export const decodeRequest = (bytes: Uint8Array): Record<string, any> =>
  ExportTraceServiceRequest.toObject(ExportTraceServiceRequest.decode(bytes), {
    longs: String,
    enums: Number,
    bytes: String,
    defaults: true,
    arrays: true
  })

/** One span as decoded, with the resource and scope it was sent under. */
export interface FlatSpan {
  readonly resource: unknown
  readonly scope: unknown
  readonly span: Record<string, any>
}

/** Every span of a request, in order, with ids as hex. */
export const flatSpans = (bytes: Uint8Array): Array<FlatSpan> => {
  const out: Array<FlatSpan> = []
  for (const rs of decodeRequest(bytes)["resourceSpans"]) {
    for (const ss of rs.scopeSpans) {
      for (const span of ss.spans) {
        out.push({
          resource: rs.resource,
          scope: ss.scope,
          span: {
            ...span,
            traceId: hex(span.traceId),
            spanId: hex(span.spanId),
            parentSpanId: hex(span.parentSpanId),
            links: span.links
          }
        })
      }
    }
  }
  return out
}

/** `ExportMetricsServiceRequest` of opentelemetry-proto v1.11.0. */
export const ExportMetricsServiceRequest = root.lookupType(
  "opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest"
)

/**
 * A decoded metrics request as a plain object: 64-bit integers as decimal strings, enums as numbers, proto3 defaults
 * filled in, and `optional` fields (a histogram's sum, min, max) present only when they were written.
 */
export const decodeMetricsRequest = (bytes: Uint8Array): Record<string, any> =>
  ExportMetricsServiceRequest.toObject(ExportMetricsServiceRequest.decode(bytes), {
    longs: String,
    enums: Number,
    defaults: true,
    arrays: true
  })

/** `ExportLogsServiceRequest` of opentelemetry-proto v1.11.0. */
export const ExportLogsServiceRequest = root.lookupType("opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest")

/** A decoded logs request as a plain object (ids base64, as protobufjs gives them; the rest as for metrics). */
export const decodeLogsRequest = (bytes: Uint8Array): Record<string, any> =>
  ExportLogsServiceRequest.toObject(ExportLogsServiceRequest.decode(bytes), {
    longs: String,
    enums: Number,
    bytes: String,
    defaults: true,
    arrays: true
  })

/** OTLP/JSON fields holding a 64-bit integer: a decimal string on the wire, compared as one. */
const INT64 = new Set([
  "intValue",
  "asInt",
  "count",
  "startTimeUnixNano",
  "endTimeUnixNano",
  "timeUnixNano",
  "observedTimeUnixNano"
])
/** Doubles that may come as strings ("NaN", or a serializer's choice): compared as numbers. */
const DOUBLE = new Set(["doubleValue", "asDouble", "sum", "min", "max"])
/** Fields whose zero, empty or false value is a value, not a default left out. */
const KEPT = new Set([...INT64, ...DOUBLE, "code", "stringValue", "boolValue"])

/**
 * An OTLP/JSON request (or a decoded protobuf one, as a plain object) in one comparable form, whoever wrote it:
 * 64-bit integers as strings, doubles as numbers, and proto3 defaults (zeros, empty strings and lists, false) dropped,
 * so that a default written and a default left out compare equal, as they mean the same on the wire.
 */
export const comparableJson = (value: unknown, key = ""): unknown => {
  if (INT64.has(key) && value !== null && value !== undefined) return String(value)
  if (key === "bucketCounts" && Array.isArray(value)) return value.map(String)
  if (DOUBLE.has(key) && typeof value === "string") return Number(value)
  if (Array.isArray(value)) return value.map((v) => comparableJson(v))
  if (typeof value === "object" && value !== null) {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) {
      const n = comparableJson(v, k)
      const isDefault = n === undefined || n === null || (Array.isArray(n) && n.length === 0) ||
        (!KEPT.has(k) && (n === 0 || n === "" || n === "0" || n === false))
      if (!isDefault) out[k] = n
    }
    return out
  }
  return value
}
