/**
 * OTLP `ExportMetricsServiceRequest`s (opentelemetry-proto collector/metrics/v1) from a collection of the metrics
 * pipeline (the OpenTelemetry SDK's `ResourceMetrics`, as aggregate.ts and SelfMetrics.ts build it), as protobuf or
 * OTLP/JSON, with the writers the span encoders use: each resource's attributes encoded once (cached by identity,
 * as for spans), attribute names from the same cache, no protobufjs and no SDK transformer. A collection becomes as
 * few requests as `maxBytes` allows (the SDK's exporters sent one per resource): resources are never split, so a
 * request is larger than the bound only when one process's metrics are.
 *
 * What the SDK's transformer writes, field for field: sums (with temporality and monotonicity), gauges and explicit
 * histograms (count, sum, bucket counts, bounds, min and max when known); `asInt` for an integer instrument, else
 * `asDouble`. Exponential histograms are not made by this pipeline: a metric of that kind is left out.
 */
import type { HrTime } from "@opentelemetry/api"
import { ValueType } from "@opentelemetry/api"
import {
  AggregationTemporality,
  DataPointType,
  type DataPoint,
  type Histogram,
  type MetricData,
  type ResourceMetrics
} from "@opentelemetry/sdk-metrics"
import { hrTimeNanos, type ResourceLike } from "./fields.ts"
import * as Json from "./json.ts"
import * as Protobuf from "./protobuf.ts"
import { JsonWriter, ProtoWriter } from "./ProtoWriter.ts"

/**
 * Epoch nanoseconds of an `HrTime` (seconds, nanoseconds). The points of a collection share a few time objects (one
 * start per series' resource or interval, one end per collection): the last two conversions are kept, so a
 * collection makes a handful of BigInts rather than two per point. Kept by identity: the pipeline makes a new time
 * array per clock reading and never changes one.
 */
const lastTimes = (() => {
  interface Entry {
    readonly t: HrTime
    readonly n: bigint
    text: string | undefined
  }
  let a: Entry | undefined
  let b: Entry | undefined
  return (t: HrTime): Entry => {
    if (a !== undefined && t === a.t) return a
    if (b !== undefined && t === b.t) return b
    b = a
    a = { t, n: hrTimeNanos(t), text: undefined }
    return a
  }
})()

const nanos = (t: HrTime): bigint => lastTimes(t).n

/** The same as a decimal string (OTLP/JSON's form of a 64-bit integer), made once per time object kept. */
const nanosText = (t: HrTime): string => {
  const entry = lastTimes(t)
  return entry.text ??= String(entry.n)
}

const TWO_32 = 2 ** 32

/** A fixed64 of a non-negative safe integer (a count), without a BigInt: two little-endian 32-bit halves. */
const fixed64Of = (w: ProtoWriter, n: number): void => {
  w.ensure(8)
  w.view.setUint32(w.pos, n % TWO_32, true)
  w.view.setUint32(w.pos + 4, Math.floor(n / TWO_32), true)
  w.pos += 8
}

/** OTLP's `AggregationTemporality`: DELTA 1, CUMULATIVE 2 (the SDK's enum counts from 0). */
const temporality = (t: AggregationTemporality): number => t === AggregationTemporality.DELTA ? 1 : 2

/** Whether a data point goes out as `as_int`: an integer instrument's exact integer (anything else as a double). */
const asInt = (m: MetricData, v: number): boolean => m.descriptor.valueType === ValueType.INT && Number.isSafeInteger(v)

// ---------------------------------------------------------------------------------------------------------------
// Protobuf
// ---------------------------------------------------------------------------------------------------------------

const writeTimes = (w: ProtoWriter, start: HrTime, end: HrTime): void => {
  w.byte(0x11) // start_time_unix_nano (2), fixed64
  w.fixed64(nanos(start))
  w.byte(0x19) // time_unix_nano (3), fixed64
  w.fixed64(nanos(end))
}

/** `data_points` (1) of a Sum or Gauge: NumberDataPoints. */
const writeNumberPoints = (w: ProtoWriter, m: MetricData, points: ReadonlyArray<DataPoint<number>>) => {
  for (const p of points) {
    w.byte(0x0a)
    const point = w.begin(2)
    writeTimes(w, p.startTime, p.endTime)
    if (asInt(m, p.value)) {
      w.byte(0x31) // as_int (6), sfixed64
      if (p.value >= 0) fixed64Of(w, p.value)
      else w.fixed64(BigInt.asUintN(64, BigInt(p.value))) // two's complement: sfixed64 and fixed64 share the wire form
    } else {
      w.byte(0x21) // as_double (4)
      w.double(p.value)
    }
    Protobuf.writeKeyValues(w, p.attributes, 0x3a) // attributes (7)
    w.end(point, 2)
  }
}

/** `data_points` (1) of a Histogram. */
const writeHistogramPoints = (w: ProtoWriter, points: ReadonlyArray<DataPoint<Histogram>>) => {
  for (const p of points) {
    const h = p.value
    w.byte(0x0a)
    const point = w.begin(2)
    writeTimes(w, p.startTime, p.endTime)
    w.byte(0x21) // count (4), fixed64
    fixed64Of(w, h.count)
    if (h.sum !== undefined) {
      w.byte(0x29) // sum (5), double
      w.double(h.sum)
    }
    const counts = h.buckets.counts
    if (counts.length > 0) {
      w.byte(0x32) // bucket_counts (6), packed fixed64
      w.uint32(8 * counts.length)
      for (const c of counts) fixed64Of(w, c)
    }
    const bounds = h.buckets.boundaries
    if (bounds.length > 0) {
      w.byte(0x3a) // explicit_bounds (7), packed double
      w.uint32(8 * bounds.length)
      for (const b of bounds) w.double(b)
    }
    Protobuf.writeKeyValues(w, p.attributes, 0x4a) // attributes (9)
    if (h.min !== undefined) {
      w.byte(0x59) // min (11), double
      w.double(h.min)
    }
    if (h.max !== undefined) {
      w.byte(0x61) // max (12), double
      w.double(h.max)
    }
    w.end(point, 2)
  }
}

/** One `ScopeMetrics.metrics` (2) entry. */
const writeMetric = (w: ProtoWriter, m: MetricData): void => {
  if (m.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM) return
  w.byte(0x12)
  const metric = w.begin(2)
  w.byte(0x0a) // name (1)
  w.string(m.descriptor.name)
  if (m.descriptor.description !== "") {
    w.byte(0x12) // description (2)
    w.string(m.descriptor.description)
  }
  if (m.descriptor.unit !== "") {
    w.byte(0x1a) // unit (3)
    w.string(m.descriptor.unit)
  }
  switch (m.dataPointType) {
    case DataPointType.SUM: {
      w.byte(0x3a) // sum (7)
      const sum = w.begin(3)
      writeNumberPoints(w, m, m.dataPoints)
      w.byte(0x10) // aggregation_temporality (2)
      w.byte(temporality(m.aggregationTemporality))
      if (m.isMonotonic) {
        w.byte(0x18) // is_monotonic (3)
        w.byte(1)
      }
      w.end(sum, 3)
      break
    }
    case DataPointType.GAUGE: {
      w.byte(0x2a) // gauge (5)
      const gauge = w.begin(3)
      writeNumberPoints(w, m, m.dataPoints)
      w.end(gauge, 3)
      break
    }
    case DataPointType.HISTOGRAM: {
      w.byte(0x4a) // histogram (9)
      const histogram = w.begin(3)
      writeHistogramPoints(w, m.dataPoints)
      w.byte(0x10) // aggregation_temporality (2)
      w.byte(temporality(m.aggregationTemporality))
      w.end(histogram, 3)
      break
    }
  }
  w.end(metric, 2)
}

// ---------------------------------------------------------------------------------------------------------------
// OTLP/JSON
// ---------------------------------------------------------------------------------------------------------------

const NON_FINITE: Record<string, string> = { NaN: "\"NaN\"", Infinity: "\"Infinity\"", "-Infinity": "\"-Infinity\"" }
const jsonDouble = (v: number): string => Number.isFinite(v) ? String(v) : NON_FINITE[String(v)]!

const jsonTimes = (w: JsonWriter, start: HrTime, end: HrTime): void => {
  w.ascii(`"startTimeUnixNano":"${nanosText(start)}","timeUnixNano":"${nanosText(end)}"`)
}

const jsonAttributes = (w: JsonWriter, attributes: Readonly<Record<string, unknown>>): void =>
  Json.writeAttributesField(w, attributes, ",")

const jsonNumberPoints = (w: JsonWriter, m: MetricData, points: ReadonlyArray<DataPoint<number>>) => {
  w.ascii(`"dataPoints":[`)
  points.forEach((p, i) => {
    w.ascii(i === 0 ? "{" : ",{")
    jsonTimes(w, p.startTime, p.endTime)
    w.ascii(asInt(m, p.value) ? `,"asInt":"${p.value}"` : `,"asDouble":${jsonDouble(p.value)}`)
    jsonAttributes(w, p.attributes)
    w.byte(0x7d)
  })
  w.byte(0x5d)
}

const jsonHistogramPoints = (w: JsonWriter, points: ReadonlyArray<DataPoint<Histogram>>) => {
  w.ascii(`"dataPoints":[`)
  points.forEach((p, i) => {
    const h = p.value
    w.ascii(i === 0 ? "{" : ",{")
    jsonTimes(w, p.startTime, p.endTime)
    w.ascii(`,"count":"${h.count}"`)
    if (h.sum !== undefined) w.ascii(`,"sum":${jsonDouble(h.sum)}`)
    if (h.buckets.counts.length > 0) w.ascii(`,"bucketCounts":[${h.buckets.counts.map((c) => `"${c}"`).join(",")}]`)
    const bounds = h.buckets.boundaries
    if (bounds.length > 0) w.ascii(`,"explicitBounds":[${bounds.map(jsonDouble).join(",")}]`)
    jsonAttributes(w, p.attributes)
    if (h.min !== undefined) w.ascii(`,"min":${jsonDouble(h.min)}`)
    if (h.max !== undefined) w.ascii(`,"max":${jsonDouble(h.max)}`)
    w.byte(0x7d)
  })
  w.byte(0x5d)
}

const jsonMetric = (w: JsonWriter, m: MetricData, first: boolean): boolean => {
  if (m.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM) return false
  w.ascii(first ? `{"name":` : `,{"name":`)
  w.quoted(m.descriptor.name)
  if (m.descriptor.description !== "") {
    w.ascii(`,"description":`)
    w.quoted(m.descriptor.description)
  }
  if (m.descriptor.unit !== "") {
    w.ascii(`,"unit":`)
    w.quoted(m.descriptor.unit)
  }
  switch (m.dataPointType) {
    case DataPointType.SUM:
      w.ascii(`,"sum":{`)
      jsonNumberPoints(w, m, m.dataPoints)
      w.ascii(`,"aggregationTemporality":${temporality(m.aggregationTemporality)}`)
      if (m.isMonotonic) w.ascii(`,"isMonotonic":true`)
      w.byte(0x7d)
      break
    case DataPointType.GAUGE:
      w.ascii(`,"gauge":{`)
      jsonNumberPoints(w, m, m.dataPoints)
      w.byte(0x7d)
      break
    case DataPointType.HISTOGRAM:
      w.ascii(`,"histogram":{`)
      jsonHistogramPoints(w, m.dataPoints)
      w.ascii(`,"aggregationTemporality":${temporality(m.aggregationTemporality)}}`)
      break
  }
  w.byte(0x7d)
  return true
}

// ---------------------------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------------------------

/**
 * A request is closed once it holds this much (1 MiB): far under the 4 MiB a gRPC server takes by default, and a
 * size an HTTP collector reads at once.
 */
export const MAX_REQUEST_BYTES = 1024 * 1024

/** Encodes metrics export requests; keeps each resource's encoded attributes while the resource lives. */
export interface MetricsEncoder {
  /** The collection as protobuf requests (none for an empty collection). */
  readonly protobuf: (batch: ReadonlyArray<ResourceMetrics>) => Array<Buffer>
  /** The collection as OTLP/JSON requests (none for an empty collection). */
  readonly json: (batch: ReadonlyArray<ResourceMetrics>) => Array<Buffer>
}

export const makeMetricsEncoder = (maxBytes: number = MAX_REQUEST_BYTES): MetricsEncoder => {
  const resourceFields = new WeakMap<ResourceLike, Uint8Array>()
  const resourceField = (r: ResourceLike) => {
    let field = resourceFields.get(r)
    if (field === undefined) {
      field = Protobuf.resourceField(r.attributes)
      resourceFields.set(r, field)
    }
    return field
  }
  // The writers are kept between collections: a collection a minute (the default) reuses the same buffers.
  const w = new ProtoWriter(16 * 1024)
  const jw = new JsonWriter(16 * 1024)

  const protobufResource = (rm: ResourceMetrics) => {
    w.byte(0x0a) // ExportMetricsServiceRequest.resource_metrics (1)
    const resource = w.begin(3)
    w.raw(resourceField(rm.resource)) // ResourceMetrics.resource (1), tag and length included
    for (const sm of rm.scopeMetrics) {
      w.byte(0x12) // ResourceMetrics.scope_metrics (2)
      const scope = w.begin(3)
      w.raw(Protobuf.scopeField(sm.scope.name, sm.scope.version ?? "")) // ScopeMetrics.scope (1)
      for (const m of sm.metrics) writeMetric(w, m)
      w.end(scope, 3)
    }
    w.end(resource, 3)
  }

  const jsonResource = (rm: ResourceMetrics) => {
    Json.writeResourceOpening(jw, rm.resource.attributes, "scopeMetrics")
    rm.scopeMetrics.forEach((sm, j) => {
      if (j > 0) jw.byte(0x2c)
      Json.writeScopeOpening(jw, sm.scope.name, sm.scope.version ?? "", "metrics")
      let first = true
      for (const m of sm.metrics) if (jsonMetric(jw, m, first)) first = false
      jw.ascii("]}")
    })
    jw.ascii("]}")
  }

  return {
    protobuf: (batch) => {
      const requests: Array<Buffer> = []
      w.reset()
      for (const rm of batch) {
        protobufResource(rm)
        if (w.pos >= maxBytes) {
          requests.push(w.finish())
          w.reset()
        }
      }
      if (w.pos > 0) requests.push(w.finish())
      return requests
    },
    json: (batch) => {
      const requests: Array<Buffer> = []
      let open = false
      for (const rm of batch) {
        if (open) jw.byte(0x2c)
        else {
          jw.reset()
          jw.ascii(`{"resourceMetrics":[`)
          open = true
        }
        jsonResource(rm)
        if (jw.pos >= maxBytes) {
          jw.ascii("]}")
          requests.push(jw.finish())
          open = false
        }
      }
      if (open) {
        jw.ascii("]}")
        requests.push(jw.finish())
      }
      return requests
    }
  }
}
