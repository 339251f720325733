/**
 * The direct OTLP metrics encoder (src/telemetry/internal/otlp/metrics.ts) against the official protos and the
 * OpenTelemetry JS SDK: a collection of the real aggregation (every instrument kind, cumulative and delta, two
 * processes and the host) and hand-made edge cases encode to requests that decode, with opentelemetry-proto's own
 * definitions, to exactly what the SDK's serializers write for the same `ResourceMetrics`; its OTLP/JSON says the
 * same as its protobuf and as the SDK's JSON; a collection larger than the size bound becomes several requests that
 * hold every resource once, in order.
 */
import { assert, describe, it } from "@effect/vitest"
import { type HrTime, ValueType } from "@opentelemetry/api"
import { JsonMetricsSerializer, ProtobufMetricsSerializer } from "@opentelemetry/otlp-transformer"
import { resourceFromAttributes } from "@opentelemetry/resources"
import {
  AggregationTemporality,
  DataPointType,
  type ResourceMetrics,
  type SumMetricData
} from "@opentelemetry/sdk-metrics"
import * as Instruments from "../../src/probe/Instruments.ts"
import type { Instrument, Measurement } from "../../src/probe/Telemetry.ts"
import * as Aggregate from "../../src/telemetry/internal/aggregate.ts"
import { makeMetricsEncoder } from "../../src/telemetry/internal/otlp/metrics.ts"
import { scopeOf } from "../../src/telemetry/Metrics.ts"
import { comparableJson, decodeMetricsRequest } from "./otlp-proto/decode.ts"

const T = (n: number): HrTime => [1_700_000_000 + n, 123_456_789]

const requests = Instruments.counter("shop.requests", { unit: "{request}", description: "Requests served." })
const active = Instruments.upDownCounter("shop.requests.active", { unit: "{request}", description: "In flight." })
const load = Instruments.gauge("shop.load", { unit: "1", description: "Share of the workers busy." })
const latency = Instruments.histogram("shop.latency", {
  unit: "s",
  description: "Time to serve a request.",
  boundaries: [0.005, 0.01, 0.1]
})

const frontend = resourceFromAttributes({
  "service.name": "frontend",
  "process.pid": 100,
  "process.command_args": ["/srv/frontend", "-port", "8080"]
})
const backend = resourceFromAttributes({ "service.name": "bäckend ✓", "process.pid": 200 })
const host = resourceFromAttributes({ "host.name": "box" })

const m = (instrument: Instrument, value: number, attributes: Measurement["attributes"] = {}): Measurement => ({
  pid: 100,
  probe: "shop",
  instrument,
  value,
  attributes
})

/** A collection of the real aggregation: every kind, with attributes of every scalar type. */
const collection = (temporality: "cumulative" | "delta"): ReadonlyArray<ResourceMetrics> => {
  let tick = 0
  const aggregate = Aggregate.make({ now: () => T(tick++), temporality, scope: scopeOf })
  const record = (resource: typeof frontend, ...ms: ReadonlyArray<Measurement>) => {
    for (const x of ms) aggregate.record(x, resource)
  }
  record(
    frontend,
    m(requests, 2, { route: "/a", code: 200, ok: true }),
    m(requests, 3, { route: "/a", code: 200, ok: true }),
    m(requests, 1, { route: "/b", code: 500, ok: false }),
    m(active, 2),
    m(active, -5),
    m(load, 0.25, { pool: "workers" }),
    m(latency, 0.003, { route: "/a" }),
    m(latency, 0.02, { route: "/a" }),
    m(latency, 7, { route: "/a" }),
    m(latency, 0.01, { route: "/b", "error.type": "500" })
  )
  record(backend, { ...m(requests, 40, { route: "/ü" }), pid: 200, probe: "nethttp_server" })
  record(host, { ...m(load, 1.5), pid: undefined, probe: "host" })
  return aggregate.collect()
}

/** Hand-made edge cases the aggregation does not make: no description or unit, no sum/min/max, an exponential one. */
const edges: ResourceMetrics = {
  resource: host,
  scopeMetrics: [{
    scope: { name: "probescope/self" },
    metrics: [
      {
        descriptor: { name: "bare", description: "", unit: "", valueType: ValueType.INT },
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.SUM,
        isMonotonic: false,
        dataPoints: [
          { startTime: T(0), endTime: T(1), attributes: {}, value: 0 },
          { startTime: T(0), endTime: T(1), attributes: { k: "v" }, value: -9_007_199_254_740_991 },
          { startTime: T(0), endTime: T(1), attributes: { k: "w" }, value: 2 ** 50 + 1 }
        ]
      },
      {
        descriptor: { name: "sparse.histogram", description: "", unit: "By", valueType: ValueType.DOUBLE },
        aggregationTemporality: AggregationTemporality.DELTA,
        dataPointType: DataPointType.HISTOGRAM,
        dataPoints: [{
          startTime: T(2),
          endTime: T(3),
          attributes: {},
          // Past 2^32: the counts' high halves are written too.
          value: { buckets: { boundaries: [], counts: [2 ** 40 + 3] }, count: 2 ** 40 + 3 }
        }]
      }
    ]
  }]
}

const exponential: ResourceMetrics = {
  resource: host,
  scopeMetrics: [{
    scope: { name: "other", version: "1.0.0" },
    metrics: [{
      descriptor: { name: "exp", description: "", unit: "", valueType: ValueType.DOUBLE },
      aggregationTemporality: AggregationTemporality.DELTA,
      dataPointType: DataPointType.EXPONENTIAL_HISTOGRAM,
      dataPoints: [{
        startTime: T(0),
        endTime: T(1),
        attributes: {},
        value: {
          count: 1,
          sum: 1,
          min: 1,
          max: 1,
          scale: 0,
          zeroCount: 0,
          positive: { offset: 0, bucketCounts: [1] },
          negative: { offset: 0, bucketCounts: [] }
        }
      }]
    }]
  }]
}

/** What the SDK's protobuf serializer writes for the same collection, decoded: its requests' resources in order. */
const sdkProtobuf = (batch: ReadonlyArray<ResourceMetrics>) =>
  batch.flatMap((rm) => decodeMetricsRequest(ProtobufMetricsSerializer.serializeRequest(rm)!)["resourceMetrics"])

const oursProtobuf = (requests: ReadonlyArray<Uint8Array>) =>
  requests.flatMap((r) => decodeMetricsRequest(r)["resourceMetrics"])


describe("direct OTLP metrics encoding", () => {
  const encoder = makeMetricsEncoder()

  for (const temporality of ["cumulative", "delta"] as const) {
    it(`protobuf (${temporality}) decodes with the official protos to exactly what the SDK's serializer writes`, () => {
      const batch = collection(temporality)
      const requests = encoder.protobuf(batch)
      assert.strictEqual(requests.length, 1)
      const mine = oursProtobuf(requests)
      assert.deepStrictEqual(mine, sdkProtobuf(batch))
      // Not vacuous: three resources, and the frontend's four metrics with their points.
      assert.strictEqual(mine.length, 3)
      const names = mine[0].scopeMetrics[0].metrics.map((x: any) => x.name).sort()
      assert.deepStrictEqual(names, ["shop.latency", "shop.load", "shop.requests", "shop.requests.active"])
      const sum = mine[0].scopeMetrics[0].metrics.find((x: any) => x.name === "shop.requests.active").sum
      assert.strictEqual(sum.dataPoints[0].asInt, "-3")
      assert.strictEqual(sum.isMonotonic, false)
      // Up-down counters stay cumulative under the delta preference, as the OTLP exporter spec says.
      assert.strictEqual(sum.aggregationTemporality, 2)
      const counter = mine[0].scopeMetrics[0].metrics.find((x: any) => x.name === "shop.requests").sum
      assert.strictEqual(counter.aggregationTemporality, temporality === "delta" ? 1 : 2)
      const histogram = mine[0].scopeMetrics[0].metrics.find((x: any) => x.name === "shop.latency").histogram
      const a = histogram.dataPoints.find((p: any) => p.attributes[0].value.stringValue === "/a")
      assert.deepStrictEqual(a.bucketCounts, ["1", "0", "1", "1"])
      assert.deepStrictEqual([a.count, a.min, a.max], ["3", 0.003, 7])
    })
  }

  it("edge cases: no description or unit, no sum/min/max, negative integers; exponential histograms left out", () => {
    const batch = [edges, exponential]
    const mine = oursProtobuf(encoder.protobuf(batch))
    const sdk = sdkProtobuf([edges])
    assert.deepStrictEqual(mine[0], sdk[0])
    const bare = mine[0].scopeMetrics[0].metrics[0]
    assert.deepStrictEqual(bare.sum.dataPoints.map((p: any) => p.asInt), ["0", "-9007199254740991", "1125899906842625"])
    const sparse = mine[0].scopeMetrics[0].metrics[1].histogram.dataPoints[0]
    assert.deepStrictEqual([sparse.sum, sparse.min, sparse.max], [undefined, undefined, undefined])
    assert.deepStrictEqual(sparse.explicitBounds, [])
    assert.deepStrictEqual([sparse.count, sparse.bucketCounts], ["1099511627779", ["1099511627779"]])
    // The exponential histogram's scope is sent with no metric in it.
    assert.strictEqual(mine[1].scopeMetrics[0].scope.name, "other")
    assert.deepStrictEqual(mine[1].scopeMetrics[0].metrics, [])
  })

  it("a non-integer value of an integer instrument goes out as a double, not truncated", () => {
    const bare = edges.scopeMetrics[0]!.metrics[0]! as SumMetricData
    const odd: ResourceMetrics = {
      ...edges,
      scopeMetrics: [{
        scope: { name: "s" },
        metrics: [{ ...bare, dataPoints: [{ ...bare.dataPoints[0]!, value: 2.5 }] }]
      }]
    }
    const point = oursProtobuf(encoder.protobuf([odd]))[0].scopeMetrics[0].metrics[0].sum.dataPoints[0]
    assert.strictEqual(point.asDouble, 2.5)
    assert.isUndefined(point.asInt)
  })

  it("OTLP/JSON says what the SDK's JSON says, and what its own protobuf says", () => {
    const batch = [...collection("cumulative"), edges]
    const [json, ...more] = encoder.json(batch)
    assert.strictEqual(more.length, 0)
    const mine = comparableJson(JSON.parse(json!.toString("utf8")))
    const sdk = comparableJson({
      resourceMetrics: batch.flatMap((rm) =>
        JSON.parse(Buffer.from(JsonMetricsSerializer.serializeRequest(rm)!).toString("utf8"))["resourceMetrics"]
      )
    })
    assert.deepStrictEqual(mine, sdk)
    assert.deepStrictEqual(mine, comparableJson({ resourceMetrics: oursProtobuf(encoder.protobuf(batch)) }))
  })

  it("non-finite doubles are the strings OTLP/JSON uses for them", () => {
    const nan: ResourceMetrics = {
      resource: host,
      scopeMetrics: [{
        scope: { name: "s" },
        metrics: [{
          descriptor: { name: "g", description: "", unit: "", valueType: ValueType.DOUBLE },
          aggregationTemporality: AggregationTemporality.CUMULATIVE,
          dataPointType: DataPointType.GAUGE,
          dataPoints: [
            { startTime: T(0), endTime: T(1), attributes: {}, value: NaN },
            { startTime: T(0), endTime: T(1), attributes: {}, value: -Infinity }
          ]
        }]
      }]
    }
    const json = JSON.parse(encoder.json([nan])[0]!.toString("utf8"))
    const points = json.resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints
    assert.deepStrictEqual(points.map((p: any) => p.asDouble), ["NaN", "-Infinity"])
  })

  it("an empty collection is no request", () => {
    assert.deepStrictEqual(encoder.protobuf([]), [])
    assert.deepStrictEqual(encoder.json([]), [])
  })

  it("past the size bound a collection becomes several requests, each resource once, in order", () => {
    const batch = collection("cumulative")
    const whole = encoder.protobuf(batch)[0]!.length
    // A bound smaller than any one resource: one resource per request.
    const tiny = makeMetricsEncoder(16)
    const protobuf = tiny.protobuf(batch)
    assert.strictEqual(protobuf.length, batch.length)
    assert.deepStrictEqual(oursProtobuf(protobuf), oursProtobuf(encoder.protobuf(batch)))
    assert.strictEqual(protobuf.reduce((n, r) => n + r.length, 0), whole)
    const json = tiny.json(batch)
    assert.strictEqual(json.length, batch.length)
    const services = json.map((r) =>
      JSON.parse(r.toString("utf8")).resourceMetrics.map((rm: any) =>
        rm.resource.attributes.find((a: any) => a.key === "service.name")?.value.stringValue ?? "host"
      )
    )
    assert.deepStrictEqual(services, [["frontend"], ["bäckend ✓"], ["host"]])
    // A bound between one resource and all of them: the requests fill up to it, nothing lost or repeated.
    const mid = makeMetricsEncoder(Math.ceil(whole / 2))
    const halves = mid.protobuf(batch)
    assert.isAbove(halves.length, 1)
    assert.isBelow(halves.length, batch.length + 1)
    assert.deepStrictEqual(oursProtobuf(halves), oursProtobuf(encoder.protobuf(batch)))
  })

  it("the writers are reused: a second collection encodes to its own bytes, the first's buffers unchanged", () => {
    const first = encoder.protobuf(collection("cumulative"))[0]!
    const copy = Buffer.from(first)
    encoder.protobuf([edges])
    assert.isTrue(first.equals(copy))
  })
})
