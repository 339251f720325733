import type { HrTime } from "@opentelemetry/api"
import { ValueType } from "@opentelemetry/api"
import {
  AggregationTemporality,
  DataPointType,
  type Histogram,
  type MetricData,
  type ResourceMetrics
} from "@opentelemetry/sdk-metrics"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Context, Deferred, Effect, Exit, Fiber, Layer, Logger, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as Instruments from "../../src/probe/Instruments.ts"
import { type Instrument, type Measurement, TelemetrySink } from "../../src/probe/Telemetry.ts"
import { ExportError } from "../../src/telemetry/Exporter.ts"
import * as Deadline from "../../src/telemetry/internal/deadline.ts"
import * as KernelClock from "../../src/telemetry/KernelClock.ts"
import * as Metrics from "../../src/telemetry/Metrics.ts"
import * as ProcessResources from "../../src/telemetry/ProcessResources.ts"
import * as SelfMetrics from "../../src/telemetry/SelfMetrics.ts"
import * as Telemetry from "../../src/telemetry/Telemetry.ts"
import * as TelemetryConfig from "../../src/telemetry/TelemetryConfig.ts"
import { countingClock } from "./countingClock.ts"

/** Wall-clock second `n` of the tests' fake clock. */
const T = (n: number): HrTime => [1_700_000_000 + n, 0]

const requests = Instruments.counter("shop.requests", { unit: "{request}", description: "Requests served." })
const active = Instruments.upDownCounter("shop.requests.active", {
  unit: "{request}",
  description: "Requests being served now."
})
const depth = Instruments.gauge("shop.queue.depth", { unit: "{item}", description: "Items waiting." })
const latency = Instruments.histogram("shop.latency", {
  unit: "ms",
  description: "Time to serve a request.",
  boundaries: [10, 100]
})

/** A measurement as a probe's `emit.metric` makes it: of process `pid`, or of the host as a whole ("host"). */
const m = (
  instrument: Instrument,
  value: number,
  attributes: Measurement["attributes"] = {},
  pid: number | "host" = 100,
  probe = "shop"
): Measurement => ({ pid: pid === "host" ? undefined : pid, probe, instrument, value, attributes })

const config: TelemetryConfig.MetricsConfig = {
  exporters: [],
  otlp: { protocol: "http/protobuf", endpoint: "http://127.0.0.1:1/v1/metrics", headers: {}, timeoutMillis: 1000 },
  temporality: "cumulative",
  intervalMillis: 3_600_000,
  exportTimeoutMillis: 1000
}

/**
 * Metrics with a memory exporter and a clock that reads T(0), T(1), ... (one read when a resource is first
 * recorded into, one per collection), in the caller's scope. Process 100 is "frontend", 200 is "backend".
 */
const setup = (
  temporality: TelemetryConfig.TemporalityPreference = "cumulative",
  aggregation: NonNullable<Metrics.Options["aggregation"]> = {}
) =>
  Effect.gen(function*() {
    const memory = Metrics.memory()
    let tick = 0
    const metrics = yield* Metrics.make({ ...config, temporality }, {
      exporters: [memory],
      aggregation: { now: () => T(tick++), ...aggregation }
    })
    const resources = ProcessResources.make({ serviceName: undefined, attributes: {} })
    yield* resources.register(100, { exe: "/srv/frontend", goVersion: "1.26.0" })
    yield* resources.register(200, { exe: "/srv/backend", goVersion: "1.25.1" })
    const record = (...ms: ReadonlyArray<Measurement>) => {
      for (const x of ms) metrics.record(x, resources.resourceFor(x.pid ?? 0))
    }
    /** Collects and returns what the exporter got. */
    const collect = Effect.map(Effect.andThen(metrics.flush, Effect.sync(() => memory.batches.length)), (n) =>
      n === 0 ? [] : memory.batches[n - 1]!)
    return { memory, metrics, resources, record, collect }
  })

/** The metrics of one collection by name (one resource, one scope). */
const byName = (batch: ReadonlyArray<ResourceMetrics>): Record<string, MetricData> => {
  const out: Record<string, MetricData> = {}
  for (const rm of batch) for (const sm of rm.scopeMetrics) for (const metric of sm.metrics) {
    out[metric.descriptor.name] = metric
  }
  return out
}

const sumPoints = (metric: MetricData | undefined) =>
  metric?.dataPoints.map((p) => [p.attributes, p.value, p.startTime, p.endTime]) ?? []

const histogramPoints = (metric: MetricData | undefined) =>
  metric?.dataPoints.map((p) => {
    const h = p.value as Histogram
    return [p.attributes, h.buckets.counts, h.count, h.sum, h.min, h.max, p.startTime, p.endTime]
  }) ?? []

describe("Metrics: the aggregation of declared instruments", () => {
  it.effect("counter: a monotonic integer sum per attribute set, cumulative from the resource's start", () =>
    Effect.gen(function*() {
      const { collect, record, resources } = yield* setup()
      record(
        m(requests, 1, { route: "/a", code: 200 }),
        // The same attribute set in another key order: the same series.
        m(requests, 2, { code: 200, route: "/a" }),
        m(requests, 4, { route: "/b", code: 200 }),
        m(requests, 0, {})
      )
      const first = yield* collect
      assert.strictEqual(first.length, 1)
      assert.strictEqual(first[0]!.resource, resources.resourceFor(100))
      assert.deepStrictEqual(first[0]!.scopeMetrics.map((sm) => sm.scope), [
        { name: "probescope/shop", version: ProcessResources.version }
      ])
      assert.deepStrictEqual(first[0]!.scopeMetrics[0]!.metrics, [{
        descriptor: {
          name: "shop.requests",
          description: "Requests served.",
          unit: "{request}",
          valueType: ValueType.INT
        },
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.SUM,
        isMonotonic: true,
        dataPoints: [
          { startTime: T(0), endTime: T(1), attributes: { route: "/a", code: 200 }, value: 3 },
          { startTime: T(0), endTime: T(1), attributes: { route: "/b", code: 200 }, value: 4 },
          { startTime: T(0), endTime: T(1), attributes: {}, value: 0 }
        ]
      }])

      // Cumulative: every series again, totals grown, from the same start.
      record(m(requests, 5, { route: "/a", code: 200 }))
      assert.deepStrictEqual(sumPoints(byName(yield* collect)["shop.requests"]), [
        [{ route: "/a", code: 200 }, 8, T(0), T(2)],
        [{ route: "/b", code: 200 }, 4, T(0), T(2)],
        [{}, 0, T(0), T(2)]
      ])
    }))

  it.effect("attribute values keep their type: 1, \"1\", true and \"number:1\" are four series", () =>
    Effect.gen(function*() {
      const { collect, record } = yield* setup()
      record(
        m(requests, 1, { v: 1 }),
        m(requests, 2, { v: "1" }),
        m(requests, 3, { v: true }),
        m(requests, 4, { v: "number:1" }),
        m(requests, 5, { v: [1, 2] }),
        m(requests, 6, { v: "[1,2]" }),
        m(requests, 7, { v: 1 })
      )
      assert.deepStrictEqual(sumPoints(byName(yield* collect)["shop.requests"]).map(([a, v]) => [a, v]), [
        [{ v: 1 }, 8],
        [{ v: "1" }, 2],
        [{ v: true }, 3],
        [{ v: "number:1" }, 4],
        [{ v: [1, 2] }, 5],
        [{ v: "[1,2]" }, 6]
      ])
    }))

  it.effect("attribute sets of several shapes in one instrument: any order of one set is one series, a prefix is not", () =>
    Effect.gen(function*() {
      const { collect, record } = yield* setup()
      record(
        m(requests, 1, { a: 1, b: 2 }),
        m(requests, 2, { b: 2, a: 1 }),
        m(requests, 4, { a: 1 }),
        m(requests, 8, { c: 1 }),
        m(requests, 16, { a: 1, c: 2 }),
        m(requests, 32, {}),
        // Each shape again, after the others have taken their places at each level.
        m(requests, 64, { c: 1 }),
        m(requests, 128, { a: 1, c: 2 }),
        m(requests, 256, { b: 2, a: 1 }),
        m(requests, 512, { a: 1 })
      )
      assert.deepStrictEqual(sumPoints(byName(yield* collect)["shop.requests"]).map(([a, v]) => [a, v]), [
        [{ a: 1, b: 2 }, 1 + 2 + 256],
        [{ a: 1 }, 4 + 512],
        [{ c: 1 }, 8 + 64],
        [{ a: 1, c: 2 }, 16 + 128],
        [{}, 32]
      ])
    }))

  it.effect("a frozen attribute set shared by many measurements is one series; a frozen set's array stays by content", () =>
    Effect.gen(function*() {
      const { collect, record } = yield* setup()
      const shared = Object.freeze({ route: "/a", code: 200 })
      const codes = [1, 2]
      const withArray = Object.freeze({ codes })
      record(
        m(requests, 1, shared),
        m(requests, 2, shared),
        // The same set as another object, and another set between two recordings of the shared one.
        m(requests, 4, { code: 200, route: "/a" }),
        m(requests, 8, { route: "/b", code: 200 }),
        m(requests, 16, shared),
        m(requests, 32, withArray)
      )
      // Freezing the set does not freeze its array: what the array holds when recorded is the series.
      codes.push(3)
      record(m(requests, 64, withArray))
      const points = sumPoints(byName(yield* collect)["shop.requests"])
      assert.deepStrictEqual(points.map(([, v]) => v), [1 + 2 + 4 + 16, 8, 32, 64])
      assert.deepStrictEqual(points.map(([a]) => a).slice(0, 2), [{ route: "/a", code: 200 }, { route: "/b", code: 200 }])
      assert.deepStrictEqual(points[3]![0], { codes: [1, 2, 3] })
    }))

  it.effect("delta: a frozen set recorded after a collection goes to the new interval's series", () =>
    Effect.gen(function*() {
      const { collect, record } = yield* setup("delta")
      const shared = Object.freeze({ route: "/a" })
      record(m(requests, 1, shared), m(latency, 20, shared))
      assert.deepStrictEqual(sumPoints(byName(yield* collect)["shop.requests"]).map(([a, v]) => [a, v]), [
        [{ route: "/a" }, 1]
      ])
      record(m(requests, 2, shared), m(latency, 200, shared), m(requests, 4, shared))
      const metrics = byName(yield* collect)
      assert.deepStrictEqual(sumPoints(metrics["shop.requests"]).map(([a, v]) => [a, v]), [[{ route: "/a" }, 6]])
      assert.deepStrictEqual(histogramPoints(metrics["shop.latency"]).map(([a, c, n]) => [a, c, n]), [
        [{ route: "/a" }, [0, 0, 1], 1]
      ])
    }))

  it.effect("a string value cannot pass for more attributes (traced data may hold any character)", () =>
    Effect.gen(function*() {
      const { collect, record } = yield* setup()
      record(
        m(requests, 1, { a: "x", b: "y" }),
        // Spelled as the separators, type prefixes and escapes could make { a: "x", b: "y" }'s key.
        m(requests, 10, { a: "x\u0002b\u0001y" }),
        m(requests, 100, { a: "x\u0002b\u0001sy" }),
        m(requests, 1000, { a: "x\u0002b\u0001\"y\"" })
      )
      assert.deepStrictEqual(sumPoints(byName(yield* collect)["shop.requests"]).map(([, v]) => v), [1, 10, 100, 1000])
    }))

  it.effect("up-down counter: a non-monotonic sum that takes negative increments", () =>
    Effect.gen(function*() {
      const { collect, record } = yield* setup()
      record(m(active, 1), m(active, 1), m(active, -1), m(active, -3, { pool: "b" }))
      const metric = byName(yield* collect)["shop.requests.active"]!
      assert.strictEqual(metric.dataPointType, DataPointType.SUM)
      assert.isTrue(metric.dataPointType === DataPointType.SUM && !metric.isMonotonic)
      assert.strictEqual(metric.aggregationTemporality, AggregationTemporality.CUMULATIVE)
      assert.strictEqual(metric.descriptor.valueType, ValueType.INT)
      assert.deepStrictEqual(sumPoints(metric), [[{}, 1, T(0), T(1)], [{ pool: "b" }, -3, T(0), T(1)]])
    }))

  it.effect("gauge: the last value recorded per series, exported at every collection", () =>
    Effect.gen(function*() {
      const { collect, record } = yield* setup()
      record(m(depth, 7, { queue: "in" }), m(depth, 3, { queue: "in" }), m(depth, 9, { queue: "out" }))
      const metric = byName(yield* collect)["shop.queue.depth"]!
      assert.deepStrictEqual(
        [metric.dataPointType, metric.aggregationTemporality, metric.descriptor.valueType],
        [DataPointType.GAUGE, AggregationTemporality.CUMULATIVE, ValueType.INT]
      )
      assert.deepStrictEqual(sumPoints(metric), [[{ queue: "in" }, 3, T(0), T(1)], [{ queue: "out" }, 9, T(0), T(1)]])
      // Not recorded since: still the last value.
      record(m(depth, 0.5, { queue: "out" }))
      const again = byName(yield* collect)["shop.queue.depth"]!
      assert.strictEqual(again.descriptor.valueType, ValueType.DOUBLE)
      assert.deepStrictEqual(sumPoints(again), [[{ queue: "in" }, 3, T(0), T(2)], [{ queue: "out" }, 0.5, T(0), T(2)]])
    }))

  it.effect("histogram: explicit buckets (a value on a bound is in that bound's bucket), count, sum, min, max", () =>
    Effect.gen(function*() {
      const { collect, record } = yield* setup()
      for (const v of [0, 10, 10.5, 100, 250, 3]) record(m(latency, v, { route: "/a" }))
      const metric = byName(yield* collect)["shop.latency"]!
      assert.deepStrictEqual(
        [metric.dataPointType, metric.aggregationTemporality, metric.descriptor],
        [DataPointType.HISTOGRAM, AggregationTemporality.CUMULATIVE, {
          name: "shop.latency",
          description: "Time to serve a request.",
          unit: "ms",
          // A histogram's sum is a double whatever was recorded.
          valueType: ValueType.DOUBLE
        }]
      )
      assert.deepStrictEqual(metric.dataPoints[0]!.value, {
        buckets: { boundaries: [10, 100], counts: [3, 2, 1] },
        count: 6,
        sum: 373.5,
        min: 0,
        max: 250
      })
      // Cumulative: count, sum, min and max over everything so far.
      record(m(latency, 1000, { route: "/a" }))
      assert.deepStrictEqual(histogramPoints(byName(yield* collect)["shop.latency"]), [
        [{ route: "/a" }, [3, 2, 2], 7, 1373.5, 0, 1000, T(0), T(2)]
      ])
    }))

  it.effect("a histogram declared without boundaries uses OpenTelemetry's defaults", () =>
    Effect.gen(function*() {
      const plain = Instruments.histogram("shop.size", { unit: "By", description: "Sizes." })
      assert.deepStrictEqual(plain.boundaries, Instruments.DEFAULT_BOUNDARIES)
      const { collect, record } = yield* setup()
      record(m(plain, 5), m(plain, 6), m(plain, 20_000))
      const h = byName(yield* collect)["shop.size"]!.dataPoints[0]!.value as Histogram
      assert.deepStrictEqual(
        h.buckets.boundaries,
        [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000]
      )
      assert.deepStrictEqual(h.buckets.counts, [0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    }))

  it.effect("integer or double: INT while every value was an integer, DOUBLE from the first that was not", () =>
    Effect.gen(function*() {
      const { collect, record } = yield* setup()
      record(m(requests, 2), m(active, 1))
      const ints = byName(yield* collect)
      assert.deepStrictEqual(
        [ints["shop.requests"]!.descriptor.valueType, ints["shop.requests.active"]!.descriptor.valueType],
        [ValueType.INT, ValueType.INT]
      )
      record(m(requests, 0.25, { other: "series" }), m(active, 1))
      const mixed = byName(yield* collect)
      // One non-integer in any series makes the whole instrument DOUBLE (an INT point cannot carry 2.25).
      assert.deepStrictEqual(
        [mixed["shop.requests"]!.descriptor.valueType, mixed["shop.requests.active"]!.descriptor.valueType],
        [ValueType.DOUBLE, ValueType.INT]
      )
      assert.deepStrictEqual(sumPoints(mixed["shop.requests"]).map(([a, v]) => [a, v]), [
        [{}, 2],
        [{ other: "series" }, 0.25]
      ])
      // And it stays DOUBLE: the series already exported as doubles.
      record(m(requests, 1))
      assert.strictEqual(byName(yield* collect)["shop.requests"]!.descriptor.valueType, ValueType.DOUBLE)
    }))

  it.effect("one ResourceMetrics per process, one scope per probe, under the very resource its spans use", () =>
    Effect.gen(function*() {
      const { collect, record, resources } = yield* setup()
      record(
        m(requests, 1, {}, 100, "nethttp_server"),
        m(requests, 1, {}, 200, "nethttp_server"),
        m(latency, 5, {}, 100, "nethttp_client"),
        m(requests, 1, {}, 100, "nethttp_server")
      )
      const batch = yield* collect
      assert.deepStrictEqual(batch.map((rm) => rm.resource), [resources.resourceFor(100), resources.resourceFor(200)])
      assert.deepStrictEqual(batch.map((rm) => rm.resource.attributes["service.name"]), ["frontend", "backend"])
      assert.deepStrictEqual(
        batch.map((rm) =>
          rm.scopeMetrics.map((sm) => [sm.scope.name, sm.metrics.map((x) => [x.descriptor.name, x.dataPoints.length])])
        ),
        [
          [["probescope/nethttp_server", [["shop.requests", 1]]], ["probescope/nethttp_client", [["shop.latency", 1]]]],
          [["probescope/nethttp_server", [["shop.requests", 1]]]]
        ]
      )
      assert.strictEqual(sumPoints(byName([batch[0]!])["shop.requests"])[0]![1], 2)
      assert.deepStrictEqual(Metrics.scopeOf("x"), { name: "probescope/x", version: ProcessResources.version })
    }))

  it.effect("two instruments of one name in two probes stay apart (the instrument object is the identity)", () =>
    Effect.gen(function*() {
      const { collect, record } = yield* setup()
      const again = Instruments.counter("shop.requests", { unit: "{request}", description: "Requests served." })
      record(m(requests, 1, {}, 100, "a"), m(again, 10, {}, 100, "b"))
      const batch = yield* collect
      assert.deepStrictEqual(
        batch[0]!.scopeMetrics.map((sm) => [sm.scope.name, sm.metrics[0]!.dataPoints[0]!.value]),
        [["probescope/a", 1], ["probescope/b", 10]]
      )
    }))
})

describe("Metrics: delta temporality", () => {
  for (const preference of ["delta", "lowmemory"] as const) {
    it.effect(`${preference}: counters and histograms report each interval; up-down counters, gauges cumulative`, () =>
      Effect.gen(function*() {
        const { collect, record } = yield* setup(preference)
        record(
          m(requests, 2, { route: "/a" }),
          m(requests, 3, { route: "/b" }),
          m(latency, 50),
          m(latency, 500),
          m(active, 4),
          m(depth, 8)
        )
        const first = byName(yield* collect)
        assert.deepStrictEqual(
          Object.values(first).map((x) => [x.descriptor.name, x.aggregationTemporality]),
          [
            ["shop.requests", AggregationTemporality.DELTA],
            ["shop.latency", AggregationTemporality.DELTA],
            ["shop.requests.active", AggregationTemporality.CUMULATIVE],
            ["shop.queue.depth", AggregationTemporality.CUMULATIVE]
          ]
        )
        assert.deepStrictEqual(sumPoints(first["shop.requests"]), [
          [{ route: "/a" }, 2, T(0), T(1)],
          [{ route: "/b" }, 3, T(0), T(1)]
        ])
        assert.deepStrictEqual(histogramPoints(first["shop.latency"]), [[{}, [0, 1, 1], 2, 550, 50, 500, T(0), T(1)]])

        // The second interval: only what was recorded since, starting where the last one ended; /b was not
        // recorded into, so it is left out; min and max are the interval's.
        record(m(requests, 1, { route: "/a" }), m(latency, 7), m(active, -1))
        const second = byName(yield* collect)
        assert.deepStrictEqual(sumPoints(second["shop.requests"]), [[{ route: "/a" }, 1, T(1), T(2)]])
        assert.deepStrictEqual(histogramPoints(second["shop.latency"]), [[{}, [1, 0, 0], 1, 7, 7, 7, T(1), T(2)]])
        assert.deepStrictEqual(sumPoints(second["shop.requests.active"]), [[{}, 3, T(0), T(2)]])
        assert.deepStrictEqual(sumPoints(second["shop.queue.depth"]), [[{}, 8, T(0), T(2)]])

        // Nothing recorded: no delta metric at all; the cumulative ones are exported again.
        const third = byName(yield* collect)
        assert.deepStrictEqual(Object.keys(third), ["shop.requests.active", "shop.queue.depth"])

        // After an empty interval, the next one starts at the end of the empty one.
        record(m(requests, 6, { route: "/b" }))
        assert.deepStrictEqual(sumPoints(byName(yield* collect)["shop.requests"]), [[{ route: "/b" }, 6, T(3), T(4)]])
      }))
  }

  it.effect("delta: an instrument first recorded into after a collection starts at that collection", () =>
    Effect.gen(function*() {
      const { collect, record } = yield* setup("delta")
      record(m(requests, 1))
      yield* collect
      record(m(latency, 1))
      const metrics = byName(yield* collect)
      assert.deepStrictEqual(histogramPoints(metrics["shop.latency"]), [[{}, [1, 0, 0], 1, 1, 1, 1, T(1), T(2)]])
    }))

  it.effect("delta: a process first recorded into after a collection starts when it was first seen", () =>
    Effect.gen(function*() {
      const { collect, record, resources } = yield* setup("delta")
      record(m(requests, 1, {}, 100))
      yield* collect // T(1)
      record(m(requests, 2, {}, 200)) // resource 200 first seen at T(2)
      const batch = yield* collect // T(3)
      assert.deepStrictEqual(batch.map((rm) => rm.resource), [resources.resourceFor(200)])
      assert.deepStrictEqual(sumPoints(byName(batch)["shop.requests"]), [[{}, 2, T(2), T(3)]])
    }))
})

describe("Metrics: cardinality, resources, eviction", () => {
  it.effect("past the cardinality limit, recordings go to one otel.metric.overflow series per instrument", () =>
    Effect.gen(function*() {
      const { collect, record } = yield* setup("cumulative", { cardinalityLimit: 3 })
      for (const route of ["/a", "/b", "/c", "/d", "/a"]) record(m(requests, 1, { route }), m(latency, 20, { route }))
      const metrics = byName(yield* collect)
      // The limit bounds what is exported: two series and the overflow one.
      assert.deepStrictEqual(sumPoints(metrics["shop.requests"]).map(([a, v]) => [a, v]), [
        [{ route: "/a" }, 2],
        [{ route: "/b" }, 1],
        [{ [Metrics.OVERFLOW_ATTRIBUTE]: true }, 2]
      ])
      assert.deepStrictEqual(histogramPoints(metrics["shop.latency"]).map(([a, c]) => [a, c]), [
        [{ route: "/a" }, [0, 2, 0]],
        [{ route: "/b" }, [0, 1, 0]],
        [{ "otel.metric.overflow": true }, [0, 2, 0]]
      ])
      // A known series keeps its own point past the limit.
      record(m(requests, 1, { route: "/b" }), m(requests, 1, { route: "/e" }))
      assert.deepStrictEqual(sumPoints(byName(yield* collect)["shop.requests"]).map(([, v]) => v), [2, 2, 3])
      // Frozen sets past the limit: a known one keeps its series, an unknown one goes to the overflow, each time.
      const known = Object.freeze({ route: "/a" })
      const unknown = Object.freeze({ route: "/f" })
      record(m(requests, 1, known), m(requests, 1, unknown), m(requests, 1, known), m(requests, 1, unknown))
      assert.deepStrictEqual(sumPoints(byName(yield* collect)["shop.requests"]).map(([a, v]) => [a, v]), [
        [{ route: "/a" }, 4],
        [{ route: "/b" }, 2],
        [{ [Metrics.OVERFLOW_ATTRIBUTE]: true }, 5]
      ])
    }))

  it.effect("delta: the limit bounds the attribute sets of one interval, not every one seen before", () =>
    Effect.gen(function*() {
      const { collect, record } = yield* setup("delta", { cardinalityLimit: 3 })
      for (const route of ["/a", "/b", "/c", "/d"]) record(m(requests, 1, { route }))
      assert.deepStrictEqual(sumPoints(byName(yield* collect)["shop.requests"]).map(([a, v]) => [a, v]), [
        [{ route: "/a" }, 1],
        [{ route: "/b" }, 1],
        [{ "otel.metric.overflow": true }, 2]
      ])
      for (const route of ["/c", "/d", "/c"]) record(m(requests, 1, { route }))
      assert.deepStrictEqual(sumPoints(byName(yield* collect)["shop.requests"]).map(([a, v]) => [a, v]), [
        [{ route: "/c" }, 2],
        [{ route: "/d" }, 1]
      ])
    }))

  it.effect("the limit is per instrument and per resource", () =>
    Effect.gen(function*() {
      const { collect, record } = yield* setup("cumulative", { cardinalityLimit: 2 })
      record(
        m(requests, 1, { a: 1 }, 100),
        m(requests, 1, { a: 2 }, 100),
        m(active, 1, { a: 1 }, 100),
        m(requests, 1, { a: 2 }, 200)
      )
      const batch = yield* collect
      assert.deepStrictEqual(
        batch.map((rm) => sumPoints(byName([rm])["shop.requests"]).map(([a]) => a)),
        [[{ a: 1 }, { "otel.metric.overflow": true }], [{ a: 2 }]]
      )
      assert.deepStrictEqual(sumPoints(byName([batch[0]!])["shop.requests.active"]).map(([a]) => a), [{ a: 1 }])
    }))

  it.effect("forgets a resource after it stayed idle for the configured collections, then starts afresh", () =>
    Effect.gen(function*() {
      const { memory, metrics, record, resources } = yield* setup("cumulative", { evictAfterIdleCollections: 2 })
      record(m(requests, 5)) // resource first seen: T(0)
      yield* metrics.flush // T(1): recorded since the last one, not idle
      record(m(requests, 1, {}, 200)) // T(2)
      yield* metrics.flush // T(3): 100 idle once
      yield* metrics.flush // T(4): 100 idle twice: exported one last time, then forgotten; 200 idle once
      yield* metrics.flush // T(5): 200 idle twice, forgotten
      yield* metrics.flush // T(6): nothing to export
      assert.deepStrictEqual(
        memory.batches.map((b) => b.map((rm) => rm.resource.attributes["process.pid"])),
        [[100], [100, 200], [100, 200], [200]]
      )
      assert.strictEqual((yield* metrics.stats).collections, 5)
      // A process recorded into again after it was forgotten: a new cumulative stream from now.
      record(m(requests, 2)) // T(7)
      yield* metrics.flush // T(8)
      assert.deepStrictEqual(memory.batches.length, 5)
      const last = memory.batches[4]!
      assert.strictEqual(last[0]!.resource, resources.resourceFor(100))
      assert.deepStrictEqual(sumPoints(byName(last)["shop.requests"]), [[{}, 2, T(7), T(8)]])
    }))

  it.effect("stats count every measurement recorded; nothing is aggregated without an exporter", () =>
    Effect.gen(function*() {
      const { metrics, record } = yield* setup()
      record(m(requests, 1), m(depth, 2), m(latency, 3))
      assert.strictEqual((yield* metrics.stats).recorded, 3)
      const off = yield* Metrics.make(config, { exporters: [] })
      off.record(m(requests, 1), ProcessResources.make({ serviceName: undefined, attributes: {} }).resourceFor(1))
      yield* off.flush
      assert.deepStrictEqual([(yield* off.stats).recorded, (yield* off.stats).exporters], [1, []])
    }))

  it.effect("closing the scope collects and exports once more", () =>
    Effect.gen(function*() {
      const memory = Metrics.memory()
      const scope = yield* Scope.make()
      const metrics = yield* Metrics.make(config, { exporters: [memory] }).pipe(Scope.provide(scope))
      const resources = ProcessResources.make({ serviceName: "svc", attributes: {} })
      metrics.record(m(requests, 1, {}, 1), resources.resourceFor(1))
      assert.strictEqual(memory.batches.length, 0)
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(memory.batches.length, 1)
      assert.strictEqual(memory.batches[0]![0]!.resource.attributes["service.name"], "svc")
    }))

  it.effect("a failing exporter is counted with its typed error and does not stop the next collection", () =>
    Effect.gen(function*() {
      let calls = 0
      const failing: Metrics.MetricsExporter = {
        name: "otlp",
        endpoint: "http://c/v1/metrics",
        export: () =>
          Effect.suspend(() => {
            calls++
            return Effect.fail(
              new ExportError({ exporter: "otlp", endpoint: "http://c/v1/metrics", message: "refused" })
            )
          }),
        shutdown: Effect.void
      }
      const metrics = yield* Metrics.make(config, { exporters: [failing] })
      const resources = ProcessResources.make({ serviceName: undefined, attributes: {} })
      metrics.record(m(requests, 1, {}, 1), resources.resourceFor(1))
      yield* metrics.flush
      yield* metrics.flush
      const stats = yield* metrics.stats
      assert.strictEqual(calls, 2)
      assert.strictEqual(stats.failedExports, 2)
      assert.strictEqual(stats.lastError._tag, "Some")
      if (stats.lastError._tag === "Some") {
        assert.strictEqual(stats.lastError.value._tag, "ExportError")
        assert.strictEqual(stats.lastError.value.message, "refused")
      }
    }))
})

describe("Metrics accounting", () => {
  const refused = () =>
    Effect.fail(new ExportError({ exporter: "otlp", endpoint: "http://c/v1/metrics", message: "refused" }))
  const resources = ProcessResources.make({ serviceName: undefined, attributes: {} })

  it.effect("counts data points per exporter: exported, failed, and the failing state", () =>
    Effect.gen(function*() {
      let down = true
      const flaky: Metrics.MetricsExporter = {
        name: "otlp",
        endpoint: "http://c/v1/metrics",
        export: () => Effect.suspend(() => down ? refused() : Effect.void),
        shutdown: Effect.void
      }
      const metrics = yield* Metrics.make(config, { exporters: [flaky] })
      // Two series of one process: two data points per collection.
      metrics.record(m(latency, 1, { code: 200 }, 1), resources.resourceFor(1))
      metrics.record(m(latency, 1, { code: 500 }, 1), resources.resourceFor(1))
      yield* metrics.flush
      const failing = (yield* metrics.stats).exporters[0]!
      assert.deepStrictEqual(
        [failing.sent, failing.exported, failing.dropped, failing.failed, failing.failedExports, failing.failing],
        [2, 0, 0, 2, 1, true]
      )
      assert.strictEqual(failing.lastError._tag === "Some" && failing.lastError.value.message, "refused")
      down = false
      yield* metrics.flush
      const up = (yield* metrics.stats).exporters[0]!
      assert.deepStrictEqual(
        [up.sent, up.exported, up.dropped, up.failed, up.inFlight, up.failing],
        [4, 2, 0, 2, 0, false]
      )
    }))

  it.effect("at most one export per exporter is pending: a collection meeting a busy exporter is dropped", () =>
    Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      let calls = 0
      const slow: Metrics.MetricsExporter = {
        name: "otlp",
        endpoint: "http://slow/v1/metrics",
        export: () => Effect.suspend(() => (calls++, Deferred.await(release))),
        shutdown: Effect.void
      }
      const metrics = yield* Metrics.make({ ...config, exportTimeoutMillis: 60_000 }, { exporters: [slow] })
      metrics.record(m(requests, 1, {}, 1), resources.resourceFor(1))
      const first = yield* Effect.forkChild(metrics.flush)
      yield* Effect.yieldNow
      yield* metrics.flush
      yield* metrics.flush
      const busy = (yield* metrics.stats).exporters[0]!
      assert.deepStrictEqual([calls, busy.sent, busy.inFlight, busy.dropped], [1, 3, 1, 2])
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(first)
      const done = (yield* metrics.stats).exporters[0]!
      assert.deepStrictEqual([done.exported, done.dropped, done.failed, done.inFlight], [1, 2, 0, 0])
    }))

  it.effect("failed exports warned once per interval after a loss; nothing new, no line; a summary at close", () => {
    const lines: Array<string> = []
    const logger = Logger.make(({ logLevel, message }) => {
      if (logLevel === "Warn") lines.push(Array.isArray(message) ? message.join(" ") : String(message))
    })
    return Effect.gen(function*() {
      const scope = yield* Scope.make()
      const failing: Metrics.MetricsExporter = {
        name: "otlp",
        endpoint: "http://c/v1/metrics",
        export: refused,
        shutdown: Effect.void
      }
      const clock = yield* countingClock
      const metrics = yield* Metrics.make({ ...config, intervalMillis: 3_600_000 }, {
        exporters: [failing],
        reportIntervalMillis: 5000
      }).pipe(Scope.provide(scope), clock.provide)
      const reportTimers = () => clock.sleeps.filter((ms) => ms === 5000).length
      // Nothing lost yet: however long the wait, no warning, and no timer armed for one.
      yield* TestClock.adjust("20 seconds")
      assert.deepStrictEqual([lines, reportTimers()], [[], 0])
      metrics.record(m(requests, 1, {}, 1), resources.resourceFor(1))
      yield* metrics.flush
      yield* metrics.flush
      assert.deepStrictEqual(lines, [], "nothing before the interval")
      yield* Effect.yieldNow.pipe(Effect.repeat({ times: 20 }))
      assert.strictEqual(reportTimers(), 1, "two losses, one timer")
      yield* TestClock.adjust("5 seconds")
      assert.deepStrictEqual(lines, [
        "metric data points to otlp http://c/v1/metrics: 0 dropped (previous export still running), 2 failed to " +
        "export since the last report; 0 dropped, 2 failed in total; last error: refused"
      ])
      yield* TestClock.adjust("30 seconds")
      assert.strictEqual(lines.length, 1, "nothing new: no line")
      yield* metrics.flush
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(lines.length, 2)
      assert.match(
        lines[1]!,
        /: 0 dropped \(previous export still running\), 1 failed to export since the last report; 0 dropped, 3 failed/
      )
      yield* Scope.close(scope, Exit.void)
      assert.match(lines.at(-1)!, /^metric data points to otlp http:\/\/c\/v1\/metrics: 0 exported, 0 dropped, \d+ fail/)
    }).pipe(Effect.provide(Logger.layer([logger])))
  })

  it.effect("close is bounded by the deadline: a hung last export counts as failed, a hung shutdown is cut off", () =>
    Effect.gen(function*() {
      const hung: Metrics.MetricsExporter = {
        name: "otlp",
        endpoint: "http://hung/v1/metrics",
        export: () => Effect.never,
        shutdown: Effect.never
      }
      const scope = yield* Scope.make()
      const metrics = yield* Metrics.make({ ...config, exportTimeoutMillis: 60_000 }, {
        exporters: [hung],
        deadline: Deadline.make(2000)
      }).pipe(Scope.provide(scope))
      metrics.record(m(requests, 1, {}, 1), resources.resourceFor(1))
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* Effect.yieldNow
      yield* TestClock.adjust("1999 millis")
      assert.isUndefined(closing.pollUnsafe(), "the last export may use the deadline")
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(closing)
      const s = (yield* metrics.stats).exporters[0]!
      assert.deepStrictEqual([s.sent, s.exported, s.failed, s.inFlight], [1, 0, 1, 0])
    }))

  it.effect("the export interval collects on its own (OTEL_METRIC_EXPORT_INTERVAL)", () =>
    Effect.gen(function*() {
      const memory = Metrics.memory()
      const metrics = yield* Metrics.make({ ...config, intervalMillis: 1000 }, { exporters: [memory] })
      metrics.record(m(requests, 1, {}, 1), resources.resourceFor(1))
      yield* TestClock.adjust("999 millis")
      assert.strictEqual(memory.batches.length, 0)
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(memory.batches.length, 1)
      yield* TestClock.adjust("1000 millis")
      assert.deepStrictEqual([memory.batches.length, (yield* metrics.stats).collections], [2, 2])
    }))
})

describe("Metrics.console", () => {
  const serverDuration = Instruments.histogram("http.server.request.duration", {
    unit: "s",
    description: "Duration of HTTP server requests.",
    boundaries: [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
  })
  const clientDuration = Instruments.histogram("http.client.request.duration", {
    unit: "s",
    description: "Duration of HTTP client requests.",
    boundaries: [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
  })

  /** A collection of histograms, sums and a gauge from two processes. */
  const collection = (temporality: TelemetryConfig.TemporalityPreference) =>
    Effect.gen(function*() {
      const { collect, record, resources } = yield* setup(temporality)
      yield* resources.register(2000, { exe: "/srv/billing", goVersion: "1.26.0" })
      for (const s of [0.003, 0.02, 0.02, 0.04]) record(m(serverDuration, s, { "http.response.status_code": 200 }))
      record(m(serverDuration, 0.9, { "http.response.status_code": 500, "error.type": "500" }))
      record(m(clientDuration, 11, {}))
      record(m(serverDuration, 0.001, {}, 2000))
      record(m(requests, 3, { route: "/a", code: 200 }), m(active, -2), m(depth, 1.5, { queue: "in" }))
      return yield* collect
    })

  it.effect("formatTable: one row per process and histogram: recordings, the median's bucket in the unit, errors", () =>
    Effect.gen(function*() {
      const batch = yield* collection("cumulative")
      assert.strictEqual(
        Metrics.formatTable(batch),
        [
          "service   pid   metric                        count  p50        errors",
          "frontend  100   http.server.request.duration  5      ≤ 0.025 s  1",
          "frontend  100   http.client.request.duration  1      > 10 s     0",
          "billing   2000  http.server.request.duration  1      ≤ 0.005 s  0",
          ""
        ].join("\n")
      )
    }))

  it.effect("formatTable: a histogram two probes record into (two scopes) is one row per process", () =>
    Effect.gen(function*() {
      const batch = yield* collection("cumulative")
      // The same process's server histogram again, as a second probe (scope) would export it: one more request.
      const [frontend] = batch
      const server = frontend!.scopeMetrics[0]!.metrics.find((m) => m.descriptor.name === "http.server.request.duration")!
      const first = server.dataPoints[0]!
      const again = {
        ...frontend!,
        scopeMetrics: [{
          scope: { name: "probescope/go_panic", version: "0" },
          metrics: [{ ...server, dataPoints: [{ ...first, value: { ...(first.value as Histogram), count: 1 } }] }]
        }]
      } as ResourceMetrics
      const lines = Metrics.formatTable([...batch, again]).split("\n")
      assert.deepStrictEqual(lines.filter((l) => l.includes("http.server.request.duration") && l.startsWith("frontend")), [
        "frontend  100   http.server.request.duration  6      ≤ 0.025 s  1"
      ])
    }))

  it.effect("formatSelfTable: the sums and gauges, one row per series, kind and k=v attributes", () =>
    Effect.gen(function*() {
      const batch = yield* collection("cumulative")
      assert.strictEqual(
        Metrics.formatSelfTable(batch),
        [
          "metric                kind           attributes         value",
          "shop.requests         counter        route=/a code=200  3",
          "shop.requests.active  updowncounter                     -2",
          "shop.queue.depth      gauge          queue=in           1.5",
          ""
        ].join("\n")
      )
      assert.strictEqual(Metrics.formatTable([]), "")
      assert.strictEqual(Metrics.formatSelfTable([]), "")
    }))

  for (const temporality of ["cumulative", "delta"] as const) {
    it.effect(`the console exporter prints both tables with a header naming the temporality (${temporality})`, () =>
      Effect.gen(function*() {
        const batch = yield* collection(temporality)
        const out: Array<string> = []
        yield* Metrics.console((t) => out.push(t)).export(batch)
        assert.deepStrictEqual(out, [
          `probescope histograms (${temporality})\n${Metrics.formatTable(batch)}`,
          `probescope counters and gauges\n${Metrics.formatSelfTable(batch)}`
        ])
        // Nothing to print, nothing written.
        const none: Array<string> = []
        yield* Metrics.console((t) => none.push(t)).export([])
        assert.deepStrictEqual(none, [])
      }))
  }
})

const baseConfig = (env: Record<string, string> = {}) =>
  TelemetryConfig.load.pipe(
    Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ OTEL_TRACES_EXPORTER: "none", ...env })))
  )

describe("Telemetry.layerWith({ metrics })", () => {
  it.effect("measurements of a process go under its resource; without a pid, under the agent's own resource", () =>
    Effect.gen(function*() {
      const memory = Metrics.memory()
      const scope = yield* Scope.make()
      const base = yield* baseConfig({ OTEL_RESOURCE_ATTRIBUTES: "deployment.environment.name=test" })
      const ctx = yield* Layer.buildWithScope(
        Telemetry.layerWith(base, {
          clock: KernelClock.layerFixed(0n),
          metrics: { ...config, exporters: ["otlp"] },
          metricsOptions: { exporters: [memory] }
        }),
        scope
      )
      yield* Context.get(ctx, ProcessResources.ProcessResources).register(7, { exe: "/srv/shop", goVersion: "1.26.0" })
      const sink = Context.get(ctx, TelemetrySink)
      yield* sink.measurements!([
        m(requests, 1, { route: "/" }, 7, "nethttp_server"),
        m(depth, 12, { "network.interface": "lo" }, "host", "tcp_metrics"),
        m(requests, 1, { route: "/" }, 7, "nethttp_server")
      ])
      const telemetry = Context.get(ctx, Telemetry.Telemetry)
      assert.strictEqual((yield* telemetry.stats).measurements, 3)
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(memory.batches.length, 1)
      const [shop, agent] = memory.batches[0]!
      assert.strictEqual(memory.batches[0]!.length, 2)
      assert.deepStrictEqual(
        [shop!.resource.attributes["service.name"], shop!.resource.attributes["process.pid"]],
        ["shop", 7]
      )
      const points = (rm: ResourceMetrics) =>
        rm.scopeMetrics.map((sm) => [sm.scope.name, sumPoints(sm.metrics[0]).map(([a, v]) => [a, v])])
      assert.deepStrictEqual(points(shop!), [
        ["probescope/nethttp_server", [[{ route: "/" }, 2]]]
      ])
      assert.deepStrictEqual(
        agent!.resource.attributes,
        SelfMetrics.agentAttributes({ "deployment.environment.name": "test" })
      )
      assert.deepStrictEqual(points(agent!), [
        ["probescope/tcp_metrics", [[{ "network.interface": "lo" }, 12]]]
      ])
      const stats = yield* telemetry.stats
      assert.deepStrictEqual(
        [stats.measurements, stats.metrics[0]!.sent, stats.metrics[0]!.exported, stats.lost.metricPoints],
        [3, 2, 2, 0]
      )
    }))

  it.effect("the temporality preference reaches the aggregation", () =>
    Effect.gen(function*() {
      const memory = Metrics.memory()
      const ctx = yield* Layer.build(
        Telemetry.layerWith(yield* baseConfig(), {
          clock: KernelClock.layerFixed(0n),
          metrics: { ...config, exporters: ["otlp"], temporality: "delta" },
          metricsOptions: { exporters: [memory] }
        })
      )
      yield* Context.get(ctx, TelemetrySink).measurements!([m(requests, 1, {}, 7)])
      const telemetry = Context.get(ctx, Telemetry.Telemetry)
      yield* telemetry.flush
      yield* telemetry.flush
      assert.strictEqual(memory.batches.length, 1)
      assert.strictEqual(
        memory.batches[0]![0]!.scopeMetrics[0]!.metrics[0]!.aggregationTemporality,
        AggregationTemporality.DELTA
      )
    }))

  it.effect("metrics off (OTEL_METRICS_EXPORTER=none): measurements are counted, nothing is exported", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(
        Telemetry.layerWith(yield* baseConfig(), {
          clock: KernelClock.layerFixed(0n),
          metrics: { ...config, exporters: [] }
        })
      )
      yield* Context.get(ctx, TelemetrySink).measurements!([m(requests, 1), m(depth, 1, {}, "host")])
      const stats = yield* Context.get(ctx, Telemetry.Telemetry).stats
      assert.deepStrictEqual([stats.measurements, stats.metrics], [2, []])
    }))

  it.effect("layerTest captures the measurements handed to the sink, in order", () =>
    Effect.gen(function*() {
      const sink = yield* TelemetrySink
      const batch = [m(requests, 1), m(latency, 2.5, { route: "/a" }, "host")]
      yield* sink.measurements!(batch)
      yield* sink.measurements!([m(depth, 3)])
      assert.deepStrictEqual(yield* (yield* Telemetry.TelemetryCapture).measurements, [...batch, m(depth, 3)])
      assert.strictEqual((yield* (yield* Telemetry.Telemetry).stats).measurements, 3)
    }).pipe(Effect.provide(Telemetry.layerTest())))
})

const loadMetrics = (env: Record<string, string>) =>
  TelemetryConfig.loadMetrics.pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env))))

const loadError = (env: Record<string, string>) =>
  Effect.flatMap(Effect.flip(loadMetrics(env)), (e) => Effect.succeed([e._tag, e.variable, e.message]))

describe("TelemetryConfig.loadMetrics", () => {
  it.effect("defaults: otlp http/protobuf to localhost:4318/v1/metrics every 60 s, cumulative", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* loadMetrics({}), {
        exporters: ["otlp"],
        otlp: {
          protocol: "http/protobuf",
          endpoint: "http://localhost:4318/v1/metrics",
          headers: {},
          timeoutMillis: 10_000
        },
        temporality: "cumulative",
        intervalMillis: 60_000,
        exportTimeoutMillis: 30_000
      })
    }))

  it.effect("per-signal variables win over the generic ones", () =>
    Effect.gen(function*() {
      const c = yield* loadMetrics({
        OTEL_METRICS_EXPORTER: "console,otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/",
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_EXPORTER_OTLP_HEADERS: "a=1,b=2",
        OTEL_EXPORTER_OTLP_METRICS_HEADERS: "b=3",
        OTEL_EXPORTER_OTLP_METRICS_TIMEOUT: "1500",
        OTEL_METRIC_EXPORT_INTERVAL: "5000",
        OTEL_METRIC_EXPORT_TIMEOUT: "2000",
        OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: "Cumulative"
      })
      assert.deepStrictEqual(c, {
        exporters: ["console", "otlp"],
        otlp: {
          protocol: "http/json",
          endpoint: "http://collector:4318/v1/metrics",
          headers: { a: "1", b: "3" },
          timeoutMillis: 1500
        },
        temporality: "cumulative",
        intervalMillis: 5000,
        exportTimeoutMillis: 2000
      })
      const g = yield* loadMetrics({
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: "grpc",
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4317"
      })
      assert.deepStrictEqual([g.otlp.protocol, g.otlp.endpoint], ["grpc", "http://collector:4317"])
      const own = yield* loadMetrics({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318",
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: "http://m:9000/custom"
      })
      assert.strictEqual(own.otlp.endpoint, "http://m:9000/custom")
      assert.deepStrictEqual((yield* loadMetrics({ OTEL_METRICS_EXPORTER: "none" })).exporters, [])
    }))

  it.effect("the temporality preference: cumulative, delta or lowmemory, in any case; blank is the default", () =>
    Effect.gen(function*() {
      const temporality = (value: string) =>
        Effect.map(loadMetrics({ OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: value }), (c) => c.temporality)
      assert.deepStrictEqual(
        [
          yield* temporality("delta"),
          yield* temporality(" DELTA "),
          yield* temporality("LowMemory"),
          yield* temporality("cumulative"),
          yield* temporality("  ")
        ],
        ["delta", "delta", "lowmemory", "cumulative", "cumulative"]
      )
    }))

  it.effect("bad values are TelemetryConfigErrors naming the variable", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* loadError({ OTEL_METRICS_EXPORTER: "prometheus" }), [
        "TelemetryConfigError",
        "OTEL_METRICS_EXPORTER",
        `Invalid OTEL_METRICS_EXPORTER="prometheus": Expected "otlp" | "console" | "none"`
      ])
      assert.deepStrictEqual(yield* loadError({ OTEL_METRIC_EXPORT_INTERVAL: "0" }), [
        "TelemetryConfigError",
        "OTEL_METRIC_EXPORT_INTERVAL",
        `Invalid OTEL_METRIC_EXPORT_INTERVAL="0": Expected a value greater than 0`
      ])
      assert.deepStrictEqual(yield* loadError({ OTEL_METRIC_EXPORT_TIMEOUT: "soon" }), [
        "TelemetryConfigError",
        "OTEL_METRIC_EXPORT_TIMEOUT",
        `Invalid OTEL_METRIC_EXPORT_TIMEOUT="soon": Expected an integer`
      ])
      assert.deepStrictEqual(yield* loadError({ OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: "udp" }), [
        "TelemetryConfigError",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        `Invalid OTEL_EXPORTER_OTLP_METRICS_PROTOCOL="udp": Expected "http/protobuf" | "http/json" | "grpc"`
      ])
      assert.deepStrictEqual(yield* loadError({ OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: "collector:4318" }), [
        "TelemetryConfigError",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        `Invalid OTEL_EXPORTER_OTLP_METRICS_ENDPOINT="collector:4318": not an http(s) URL`
      ])
      assert.deepStrictEqual(yield* loadError({ OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: "Deltas" }), [
        "TelemetryConfigError",
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
        `Invalid OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="Deltas": ` +
        `Expected "cumulative" | "delta" | "lowmemory"`
      ])
    }))

  it.effect("Telemetry.layer fails with the metrics config error before starting anything", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(
        Effect.scoped(Layer.build(Telemetry.layer)).pipe(
          Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({
            OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: "sometimes"
          })))
        )
      )
      assert.strictEqual(e._tag, "TelemetryConfigError")
      assert.strictEqual(e.variable, "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE")
      assert.strictEqual(
        e.message,
        `Invalid OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="sometimes": ` +
          `Expected "cumulative" | "delta" | "lowmemory"`
      )
    }))
})
