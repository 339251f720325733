import type { HrTime } from "@opentelemetry/api"
import { AggregationTemporality, DataPointType, type Histogram } from "@opentelemetry/sdk-metrics"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Context, Deferred, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { TestClock } from "effect/testing"
import type { SpanData } from "../../src/probe/Telemetry.ts"
import { TelemetrySink } from "../../src/probe/Telemetry.ts"
import { ExportError } from "../../src/telemetry/Exporter.ts"
import * as Deadline from "../../src/telemetry/internal/deadline.ts"
import * as KernelClock from "../../src/telemetry/KernelClock.ts"
import * as ProcessResources from "../../src/telemetry/ProcessResources.ts"
import * as SpanMetrics from "../../src/telemetry/SpanMetrics.ts"
import * as Telemetry from "../../src/telemetry/Telemetry.ts"
import * as TelemetryConfig from "../../src/telemetry/TelemetryConfig.ts"

const START: HrTime = [1_700_000_000, 0]
const END: HrTime = [1_700_000_060, 500]

const ms = (n: number) => BigInt(Math.round(n * 1_000_000))

const serverSpan = (pid: number, durationMs: number, attributes: SpanData["attributes"] = {}): SpanData => ({
  pid,
  probe: "nethttp_server",
  traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  spanId: "00f067aa0ba902b7",
  traceFlags: 1,
  name: "GET /users/{id}",
  kind: "server",
  startMonoNs: 1_000_000_000n,
  endMonoNs: 1_000_000_000n + ms(durationMs),
  attributes: {
    "http.request.method": "GET",
    "url.path": "/users/7",
    "url.scheme": "http",
    "http.route": "/users/{id}",
    "http.response.status_code": 200,
    "server.address": "localhost",
    "server.port": 8080,
    "network.peer.address": "127.0.0.1",
    "network.peer.port": 51234,
    "network.protocol.version": "1.1",
    ...attributes
  },
  status: { code: "unset" }
})

const clientSpan = (pid: number, durationMs: number, attributes: SpanData["attributes"] = {}): SpanData => ({
  pid,
  probe: "nethttp_client",
  traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  spanId: "1111111111111111",
  traceFlags: 1,
  name: "GET",
  kind: "client",
  startMonoNs: 2_000_000_000n,
  endMonoNs: 2_000_000_000n + ms(durationMs),
  attributes: {
    "http.request.method": "GET",
    "url.full": "http://backend:9090/items?id=3",
    "server.address": "backend",
    "server.port": 9090,
    "http.response.status_code": 200,
    "network.local.port": 40000,
    ...attributes
  },
  status: { code: "unset" }
})

const config: TelemetryConfig.MetricsConfig = {
  exporters: [],
  otlp: { protocol: "http/protobuf", endpoint: "http://127.0.0.1:1/v1/metrics", headers: {}, timeoutMillis: 1000 },
  intervalMillis: 3_600_000,
  exportTimeoutMillis: 1000
}

/** SpanMetrics with a memory exporter and fixed times, in its own scope (closed by the caller's test scope). */
const setup = (histograms: SpanMetrics.Options["histograms"] = {}) =>
  Effect.gen(function*() {
    const memory = SpanMetrics.memory()
    let t = 0
    const metrics = yield* SpanMetrics.make(config, {
      exporters: [memory],
      histograms: { now: () => (t++ === 0 ? START : END), ...histograms }
    })
    const resources = ProcessResources.make({ serviceName: undefined, attributes: {} })
    yield* resources.register(100, { exe: "/srv/frontend", goVersion: "1.26.0" })
    yield* resources.register(200, { exe: "/srv/backend", goVersion: "1.25.1" })
    const record = (span: SpanData) => metrics.record(span, resources.resourceFor(span.pid))
    return { memory, metrics, resources, record }
  })

const last = <A>(xs: ReadonlyArray<A>): A => xs[xs.length - 1]!

const histogram = (value: unknown) => value as Histogram

describe("SpanMetrics", () => {
  it.effect("server spans: semconv attributes only, advised buckets, seconds, cumulative", () =>
    Effect.gen(function*() {
      const { memory, metrics, record, resources } = yield* setup()
      // 5 ms sits on the first bound (bucket 0); 5.001 ms in bucket 1; 12 s past the last bound.
      for (const d of [1, 5, 5.001, 30, 12_000]) record(serverSpan(100, d))
      yield* metrics.flush
      const [rm] = last(memory.batches)
      assert.strictEqual(last(memory.batches).length, 1)
      assert.strictEqual(rm!.resource, resources.resourceFor(100))
      assert.deepStrictEqual(rm!.scopeMetrics[0]!.scope, { name: "probescope", version: ProcessResources.version })
      const [metric] = rm!.scopeMetrics[0]!.metrics
      assert.strictEqual(rm!.scopeMetrics[0]!.metrics.length, 1)
      assert.strictEqual(metric!.descriptor.name, "http.server.request.duration")
      assert.strictEqual(metric!.descriptor.unit, "s")
      assert.strictEqual(metric!.aggregationTemporality, AggregationTemporality.CUMULATIVE)
      assert.strictEqual(metric!.dataPointType, DataPointType.HISTOGRAM)
      assert.strictEqual(metric!.dataPoints.length, 1)
      const dp = metric!.dataPoints[0]!
      assert.deepStrictEqual(dp.attributes, {
        "http.request.method": "GET",
        "url.scheme": "http",
        "http.route": "/users/{id}",
        "http.response.status_code": 200,
        "network.protocol.version": "1.1"
      })
      assert.deepStrictEqual(dp.startTime, START)
      assert.deepStrictEqual(dp.endTime, END)
      const h = histogram(dp.value)
      assert.deepStrictEqual(
        h.buckets.boundaries,
        [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
      )
      assert.deepStrictEqual(h.buckets.counts, [2, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
      assert.strictEqual(h.count, 5)
      assert.closeTo(h.sum!, 0.001 + 0.005 + 0.005001 + 0.03 + 12, 1e-12)
      assert.strictEqual(h.min, 0.001)
      assert.strictEqual(h.max, 12)

      // Cumulative: the next collection carries everything again, from the same start time.
      record(serverSpan(100, 20))
      yield* metrics.flush
      const again = histogram(last(memory.batches)[0]!.scopeMetrics[0]!.metrics[0]!.dataPoints[0]!.value)
      assert.strictEqual(again.count, 6)
      assert.deepStrictEqual(again.buckets.counts, [2, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
      assert.deepStrictEqual(last(memory.batches)[0]!.scopeMetrics[0]!.metrics[0]!.dataPoints[0]!.startTime, START)
    }))

  it.effect("series split by status and error.type; high-cardinality attributes never make a series", () =>
    Effect.gen(function*() {
      const { memory, metrics, record } = yield* setup()
      // Different paths, peers and ports: one series.
      for (let i = 0; i < 50; i++) {
        record(serverSpan(100, 1, { "url.path": `/users/${i}`, "network.peer.port": 40000 + i }))
      }
      record(serverSpan(100, 1, { "http.response.status_code": 503, "error.type": "503" }))
      record(serverSpan(100, 1, { "http.response.status_code": 404 }))
      yield* metrics.flush
      const points = last(memory.batches)[0]!.scopeMetrics[0]!.metrics[0]!.dataPoints
      assert.deepStrictEqual(
        points.map((p) => [
          p.attributes["http.response.status_code"],
          p.attributes["error.type"],
          histogram(p.value).count
        ]),
        [[200, undefined, 50], [503, "503", 1], [404, undefined, 1]]
      )
      for (const p of points) {
        for (const key of Object.keys(p.attributes)) assert.include(SpanMetrics.SERVER_ATTRIBUTES, key)
      }
    }))

  it.effect("client spans: method, server address and port, status, error.type; no url.full or local port", () =>
    Effect.gen(function*() {
      const { memory, metrics, record } = yield* setup()
      record(clientSpan(100, 80))
      record(clientSpan(100, 80, { "url.full": "http://backend:9090/other", "network.local.port": 40001 }))
      record(clientSpan(100, 2, { "error.type": "_OTHER", "http.response.status_code": 0 }))
      yield* metrics.flush
      const [metric] = last(memory.batches)[0]!.scopeMetrics[0]!.metrics
      assert.strictEqual(metric!.descriptor.name, "http.client.request.duration")
      assert.deepStrictEqual(metric!.dataPoints.map((p) => [p.attributes, histogram(p.value).count]), [
        [{
          "http.request.method": "GET",
          "server.address": "backend",
          "server.port": 9090,
          "http.response.status_code": 200
        }, 2],
        [{
          "http.request.method": "GET",
          "server.address": "backend",
          "server.port": 9090,
          "http.response.status_code": 0,
          "error.type": "_OTHER"
        }, 1]
      ])
    }))

  it.effect("one ResourceMetrics per process resource, each under the very resource its spans use", () =>
    Effect.gen(function*() {
      const { memory, metrics, record, resources } = yield* setup()
      record(serverSpan(100, 1))
      record(clientSpan(100, 1))
      record(serverSpan(200, 300))
      record(serverSpan(200, 300))
      yield* metrics.flush
      const batch = last(memory.batches)
      assert.strictEqual(batch.length, 2)
      const front = batch.find((rm) => rm.resource === resources.resourceFor(100))!
      const back = batch.find((rm) => rm.resource === resources.resourceFor(200))!
      assert.strictEqual(front.resource.attributes["service.name"], "frontend")
      assert.strictEqual(back.resource.attributes["service.name"], "backend")
      assert.deepStrictEqual(front.scopeMetrics[0]!.metrics.map((m) => m.descriptor.name), [
        "http.server.request.duration",
        "http.client.request.duration"
      ])
      assert.deepStrictEqual(back.scopeMetrics[0]!.metrics.map((m) => m.descriptor.name), [
        "http.server.request.duration"
      ])
      assert.strictEqual(histogram(back.scopeMetrics[0]!.metrics[0]!.dataPoints[0]!.value).count, 2)
      assert.strictEqual(histogram(front.scopeMetrics[0]!.metrics[0]!.dataPoints[0]!.value).count, 1)
    }))

  it.effect("ignores spans that are not HTTP server or client spans", () =>
    Effect.gen(function*() {
      const { memory, metrics, record } = yield* setup()
      record({ ...serverSpan(100, 1), kind: "internal" })
      record({ ...clientSpan(100, 1), attributes: { "db.system.name": "postgresql" } })
      yield* metrics.flush
      assert.deepStrictEqual(memory.batches, [])
      assert.strictEqual((yield* metrics.stats).recorded, 2)
    }))

  it.effect("past the cardinality limit, recordings go to one otel.metric.overflow series", () =>
    Effect.gen(function*() {
      const { memory, metrics, record } = yield* setup({ cardinalityLimit: 3 })
      for (const route of ["/a", "/b", "/c", "/d", "/a"]) record(serverSpan(100, 1, { "http.route": route }))
      yield* metrics.flush
      const points = last(memory.batches)[0]!.scopeMetrics[0]!.metrics[0]!.dataPoints
      const routes = points.map((p) => [p.attributes["http.route"] ?? p.attributes, histogram(p.value).count])
      assert.deepStrictEqual(routes, [
        ["/a", 2],
        ["/b", 1],
        [{ "otel.metric.overflow": true }, 2]
      ])
    }))

  it.effect("forgets a resource after it stayed idle for the configured number of collections", () =>
    Effect.gen(function*() {
      const { memory, metrics, record } = yield* setup({ evictAfterIdleCollections: 2 })
      record(serverSpan(100, 1))
      yield* metrics.flush // recorded since last: not idle
      yield* metrics.flush // idle 1
      yield* metrics.flush // idle 2: exported one last time, then forgotten
      yield* metrics.flush
      assert.strictEqual(memory.batches.length, 3)
      assert.strictEqual((yield* metrics.stats).collections, 4)
    }))

  it.effect("closing the scope collects and exports once more", () =>
    Effect.gen(function*() {
      const memory = SpanMetrics.memory()
      const scope = yield* Scope.make()
      const metrics = yield* SpanMetrics.make(config, { exporters: [memory] }).pipe(Scope.provide(scope))
      const resources = ProcessResources.make({ serviceName: "svc", attributes: {} })
      metrics.record(serverSpan(1, 1), resources.resourceFor(1))
      assert.strictEqual(memory.batches.length, 0)
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(memory.batches.length, 1)
      assert.strictEqual(memory.batches[0]![0]!.resource.attributes["service.name"], "svc")
    }))

  it.effect("a failing exporter is counted with its typed error and does not stop the next collection", () =>
    Effect.gen(function*() {
      let calls = 0
      const failing: SpanMetrics.MetricsExporter = {
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
      const metrics = yield* SpanMetrics.make(config, { exporters: [failing] })
      const resources = ProcessResources.make({ serviceName: undefined, attributes: {} })
      metrics.record(serverSpan(1, 1), resources.resourceFor(1))
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

describe("SpanMetrics accounting", () => {
  const refused = () =>
    Effect.fail(new ExportError({ exporter: "otlp", endpoint: "http://c/v1/metrics", message: "refused" }))

  it.effect("counts data points per exporter: exported, failed, and the failing state", () =>
    Effect.gen(function*() {
      let down = true
      const flaky: SpanMetrics.MetricsExporter = {
        name: "otlp",
        endpoint: "http://c/v1/metrics",
        export: () => Effect.suspend(() => down ? refused() : Effect.void),
        shutdown: Effect.void
      }
      const metrics = yield* SpanMetrics.make(config, { exporters: [flaky] })
      const resources = ProcessResources.make({ serviceName: undefined, attributes: {} })
      // Two series of one process: two data points per collection.
      metrics.record(serverSpan(1, 1), resources.resourceFor(1))
      metrics.record(serverSpan(1, 1, { "http.response.status_code": 500 }), resources.resourceFor(1))
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
      const slow: SpanMetrics.MetricsExporter = {
        name: "otlp",
        endpoint: "http://slow/v1/metrics",
        export: () => Effect.suspend(() => (calls++, Deferred.await(release))),
        shutdown: Effect.void
      }
      const metrics = yield* SpanMetrics.make({ ...config, exportTimeoutMillis: 60_000 }, { exporters: [slow] })
      const resources = ProcessResources.make({ serviceName: undefined, attributes: {} })
      metrics.record(serverSpan(1, 1), resources.resourceFor(1))
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

  it.effect("close is bounded by the deadline: a hung last export counts as failed, a hung shutdown is cut off", () =>
    Effect.gen(function*() {
      const hung: SpanMetrics.MetricsExporter = {
        name: "otlp",
        endpoint: "http://hung/v1/metrics",
        export: () => Effect.never,
        shutdown: Effect.never
      }
      const scope = yield* Scope.make()
      const metrics = yield* SpanMetrics.make({ ...config, exportTimeoutMillis: 60_000 }, {
        exporters: [hung],
        deadline: Deadline.make(2000)
      }).pipe(Scope.provide(scope))
      const resources = ProcessResources.make({ serviceName: undefined, attributes: {} })
      metrics.record(serverSpan(1, 1), resources.resourceFor(1))
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* Effect.yieldNow
      yield* TestClock.adjust("1999 millis")
      assert.isUndefined(closing.pollUnsafe(), "the last export may use the deadline")
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(closing)
      const s = (yield* metrics.stats).exporters[0]!
      assert.deepStrictEqual([s.sent, s.exported, s.failed, s.inFlight], [1, 0, 1, 0])
    }))
})

describe("SpanMetrics.console", () => {
  it.effect("prints one row per process and metric: requests, the median's bucket, errors", () =>
    Effect.gen(function*() {
      const out: Array<string> = []
      const metrics = yield* SpanMetrics.make(config, { exporters: [SpanMetrics.console((t) => out.push(t))] })
      const resources = ProcessResources.make({ serviceName: undefined, attributes: {} })
      yield* resources.register(100, { exe: "/srv/frontend", goVersion: "1.26.0" })
      yield* resources.register(2000, { exe: "/srv/backend", goVersion: "1.26.0" })
      const rec = (s: SpanData) => metrics.record(s, resources.resourceFor(s.pid))
      for (const d of [3, 20, 20, 40]) rec(serverSpan(100, d))
      rec(serverSpan(100, 900, { "http.response.status_code": 500, "error.type": "500" }))
      rec(clientSpan(100, 11_000))
      rec(serverSpan(2000, 1))
      yield* metrics.flush
      assert.strictEqual(
        out.join(""),
        [
          "probescope HTTP metrics (cumulative)",
          "service   pid   metric                        requests  p50     errors",
          "frontend  100   http.server.request.duration  5         ≤ 25ms  1",
          "frontend  100   http.client.request.duration  1         > 10s   0",
          "backend   2000  http.server.request.duration  1         ≤ 5ms   0",
          ""
        ].join("\n")
      )
    }))
})

describe("Telemetry.layerWith({ metrics })", () => {
  it.effect("records every valid span handed to the sink and exports the last collection when the layer closes", () =>
    Effect.gen(function*() {
      const memory = SpanMetrics.memory()
      const scope = yield* Scope.make()
      const base = yield* TelemetryConfig.load.pipe(
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ OTEL_TRACES_EXPORTER: "none" })))
      )
      const ctx = yield* Layer.buildWithScope(
        Telemetry.layerWith(base, {
          clock: KernelClock.layerFixed(0n),
          metrics: config,
          metricsOptions: { exporters: [memory] }
        }),
        scope
      )
      const sink = Context.get(ctx, TelemetrySink)
      yield* sink.spans!([serverSpan(7, 1), clientSpan(7, 1), { ...serverSpan(7, 1), traceId: "bad" }])
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(memory.batches.length, 1)
      const [rm] = memory.batches[0]!
      assert.strictEqual(rm!.resource.attributes["process.pid"], 7)
      assert.deepStrictEqual(
        rm!.scopeMetrics[0]!.metrics.map((m) => [m.descriptor.name, histogram(m.dataPoints[0]!.value).count]),
        [["http.server.request.duration", 1], ["http.client.request.duration", 1]]
      )
    }))
})

const loadMetrics = (env: Record<string, string>) =>
  TelemetryConfig.loadMetrics.pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env))))

const loadError = (env: Record<string, string>) =>
  Effect.flatMap(Effect.flip(loadMetrics(env)), (e) => Effect.succeed([e._tag, e.variable, e.message]))

describe("TelemetryConfig.loadMetrics", () => {
  it.effect("defaults: otlp http/protobuf to localhost:4318/v1/metrics every 60 s", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* loadMetrics({}), {
        exporters: ["otlp"],
        otlp: {
          protocol: "http/protobuf",
          endpoint: "http://localhost:4318/v1/metrics",
          headers: {},
          timeoutMillis: 10_000
        },
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
      assert.deepStrictEqual(yield* loadError({ OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: "delta" }), [
        "TelemetryConfigError",
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
        `Invalid OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="delta": only cumulative is supported`
      ])
    }))

  it.effect("Telemetry.layer fails with the metrics config error before starting anything", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(
        Effect.scoped(Layer.build(Telemetry.layer)).pipe(
          Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ OTEL_METRIC_EXPORT_INTERVAL: "-5" })))
        )
      )
      assert.strictEqual(e._tag, "TelemetryConfigError")
      assert.strictEqual(e.message, `Invalid OTEL_METRIC_EXPORT_INTERVAL="-5": Expected a value greater than 0`)
    }))
})
