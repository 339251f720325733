import { assert, describe, it } from "@effect/vitest"
import { SpanKind, SpanStatusCode } from "@opentelemetry/api"
import { ConfigProvider, Context, Effect, Exit, Fiber, Layer, Option, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as Ids from "../../src/probe/Ids.ts"
import * as Instruments from "../../src/probe/Instruments.ts"
import { type Measurement, type SpanData, TelemetrySink } from "../../src/probe/Telemetry.ts"
import * as Exporter from "../../src/telemetry/Exporter.ts"
import { ExportError } from "../../src/telemetry/Exporter.ts"
import * as KernelClock from "../../src/telemetry/KernelClock.ts"
import * as ProcessResources from "../../src/telemetry/ProcessResources.ts"
import * as Metrics from "../../src/telemetry/Metrics.ts"
import * as Telemetry from "../../src/telemetry/Telemetry.ts"
import * as TelemetryConfig from "../../src/telemetry/TelemetryConfig.ts"

const server = {
  pid: 31337,
  probe: "net/http.server",
  traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  spanId: "00f067aa0ba902b7",
  parentSpanId: "b7ad6b7169203331",
  parentIsRemote: true,
  traceFlags: 1,
  name: "GET /",
  kind: "server",
  startMonoNs: 5_000_000_001n,
  endMonoNs: 5_002_000_002n,
  attributes: { "http.request.method": "GET", "http.response.status_code": 404 },
  status: { code: "error", message: "not found" }
} satisfies SpanData

const root: SpanData = {
  ...server,
  spanId: "1111111111111111",
  name: "tick",
  kind: "consumer",
  status: { code: "ok" },
  attributes: {}
}
delete (root as { parentSpanId?: string }).parentSpanId
delete (root as { parentIsRemote?: boolean }).parentIsRemote

describe("Telemetry.layerTest", () => {
  it.effect("captures SpanData and the exact OpenTelemetry span it becomes", () =>
    Effect.gen(function*() {
      const resources = yield* ProcessResources.ProcessResources
      yield* resources.register(31337, { exe: "/usr/local/bin/shop", goVersion: "1.25.1" })
      const sink = yield* TelemetrySink
      yield* sink.span(server)
      yield* sink.span(root)
      const capture = yield* Telemetry.TelemetryCapture
      assert.deepStrictEqual(yield* capture.spans, [server, root])
      const [s, r] = yield* capture.exported
      assert.deepStrictEqual(s!.spanContext(), {
        traceId: server.traceId,
        spanId: server.spanId,
        traceFlags: 1,
        isRemote: false
      })
      assert.deepStrictEqual(s!.parentSpanContext, {
        traceId: server.traceId,
        spanId: "b7ad6b7169203331",
        traceFlags: 1,
        isRemote: true
      })
      assert.strictEqual(s!.kind, SpanKind.SERVER)
      assert.deepStrictEqual(s!.startTime, [1_700_000_005, 1])
      assert.deepStrictEqual(s!.endTime, [1_700_000_005, 2_000_002])
      assert.deepStrictEqual(s!.duration, [0, 2_000_001])
      assert.deepStrictEqual(s!.status, { code: SpanStatusCode.ERROR, message: "not found" })
      assert.deepStrictEqual<unknown>(s!.attributes, server.attributes)
      assert.deepStrictEqual(s!.instrumentationScope, { name: "probescope/net/http.server", version: "0.1.0" })
      assert.strictEqual(s!.resource.attributes["service.name"], "shop")
      assert.strictEqual(s!.resource, r!.resource)
      assert.isUndefined(r!.parentSpanContext)
      assert.strictEqual(r!.kind, SpanKind.CONSUMER)
      assert.deepStrictEqual(r!.status, { code: SpanStatusCode.OK })
      assert.strictEqual((yield* (yield* Telemetry.Telemetry).stats).received, 2)
    }).pipe(Effect.provide(Telemetry.layerTest(1_700_000_000_000_000_000n))))

  it.effect("span events are exported with their times on the wall clock and their own attributes", () =>
    Effect.gen(function*() {
      const sink = yield* TelemetrySink
      const attributes = { "exception.type": "string", "exception.message": "boom" }
      yield* sink.span({ ...server, events: [{ name: "exception", timeMonoNs: 5_001_000_003n, attributes }] })
      yield* sink.span(root)
      const [s, r] = yield* (yield* Telemetry.TelemetryCapture).exported
      assert.deepStrictEqual<unknown>(s!.events, [
        { name: "exception", time: [1_700_000_005, 1_000_003], attributes, droppedAttributesCount: 0 }
      ])
      assert.notStrictEqual<unknown>(s!.events[0]!.attributes, attributes)
      assert.deepStrictEqual(r!.events, [])
    }).pipe(Effect.provide(Telemetry.layerTest(1_700_000_000_000_000_000n))))

  it.effect("a span whose end precedes its start is exported with zero duration", () =>
    Effect.gen(function*() {
      const sink = yield* TelemetrySink
      yield* sink.span({ ...root, startMonoNs: 10n, endMonoNs: 5n })
      const [s] = yield* (yield* Telemetry.TelemetryCapture).exported
      assert.deepStrictEqual([s!.startTime, s!.endTime, s!.duration], [[0, 10], [0, 10], [0, 0]])
    }).pipe(Effect.provide(Telemetry.layerTest())))
})

const baseConfig = Effect.runSync(
  TelemetryConfig.load.pipe(
    Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ OTEL_TRACES_EXPORTER: "console" })))
  )
)

describe("Telemetry.layerWith", () => {

  it.effect("routes spans to every exporter, counts them, and flushes on scope close", () =>
    Effect.gen(function*() {
      const a = Exporter.memory()
      const b = Exporter.memory()
      const scope = yield* Scope.make()
      const ctx = yield* Layer.buildWithScope(
        Telemetry.layerWith(baseConfig, { exporters: [a, b], clock: KernelClock.layerFixed(0n) }),
        scope
      )
      const sink = Context.get(ctx, TelemetrySink)
      yield* sink.span(server)
      yield* sink.span(root)
      const stats = yield* Context.get(ctx, Telemetry.Telemetry).stats
      assert.strictEqual(stats.received, 2)
      assert.deepStrictEqual(stats.exporters.map((e) => [e.exporter, e.accepted, e.queued]), [
        ["memory", 2, 2],
        ["memory", 2, 2]
      ])
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(a.batches.map((batch) => batch.map((s) => s.name)), [["GET /", "tick"]])
      assert.deepStrictEqual(b.batches.map((batch) => batch.map((s) => s.name)), [["GET /", "tick"]])
    }))

  it.effect("the console exporter prints trees through the writer", () =>
    Effect.gen(function*() {
      const out: Array<string> = []
      const scope = yield* Scope.make()
      const ctx = yield* Layer.buildWithScope(
        Telemetry.layerWith(baseConfig, { write: (t) => out.push(t), clock: KernelClock.layerFixed(0n) }),
        scope
      )
      yield* Context.get(ctx, ProcessResources.ProcessResources).register(31337, {
        exe: "/usr/local/bin/shop",
        goVersion: "1.25.1"
      })
      yield* Context.get(ctx, TelemetrySink).span(server)
      yield* Context.get(ctx, Telemetry.Telemetry).flush
      assert.deepStrictEqual(out, [
        "trace 4bf92f3577b34da6a3ce929d0e0e4736\n" +
        "└─ GET /  server  2.000 ms  ERROR \"not found\"  http.request.method=GET http.response.status_code=404  " +
        "(shop pid 31337)  [remote parent b7ad6b7169203331]\n"
      ])
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("Telemetry.layer fails with the typed config error", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Effect.scoped(Layer.build(Telemetry.layer)).pipe(
          Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ OTEL_EXPORTER_OTLP_PROTOCOL: "udp" })))
        )
      )
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        const error = exit.cause.reasons[0]
        assert.strictEqual(error?._tag, "Fail")
        if (error?._tag === "Fail") {
          assert.strictEqual(error.error._tag, "TelemetryConfigError")
          assert.strictEqual(
            error.error.message,
            `Invalid OTEL_EXPORTER_OTLP_PROTOCOL="udp": Expected "http/protobuf" | "http/json" | "grpc"`
          )
        }
      }
    }))

  it.effect("spans with malformed ids are refused and counted, so they cannot spoil a batch", () =>
    Effect.gen(function*() {
      const a = Exporter.memory()
      const scope = yield* Scope.make()
      const ctx = yield* Layer.buildWithScope(
        Telemetry.layerWith(baseConfig, { exporters: [a], clock: KernelClock.layerFixed(0n) }),
        scope
      )
      const sink = Context.get(ctx, TelemetrySink)
      yield* sink.span({ ...server, traceId: "XYZ" })
      yield* sink.span({ ...server, spanId: "0000000000000000" })
      yield* sink.span({ ...server, parentSpanId: "123" })
      yield* sink.span({ ...server, traceId: server.traceId.toUpperCase() })
      // The same rules for ids given as bytes: the length in bytes, not all zero.
      yield* sink.span({ ...server, traceId: Ids.fromHex(server.traceId).subarray(0, 15) })
      yield* sink.span({ ...server, spanId: new Uint8Array(8) })
      yield* sink.span({ ...server, parentSpanId: new Uint8Array(16) })
      yield* sink.span(server)
      yield* sink.span({
        ...server,
        name: "bytes",
        traceId: Ids.fromHex(server.traceId),
        spanId: Ids.fromHex(server.spanId),
        parentSpanId: new Uint8Array(8)
      })
      const stats = yield* Context.get(ctx, Telemetry.Telemetry).stats
      assert.deepStrictEqual([stats.received, stats.invalid, stats.exporters[0]!.accepted], [9, 7, 2])
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(a.batches.flat().map((s) => s.name), ["GET /", "bytes"])
      // The SDK exporters get hex, whichever form the probe gave.
      const bytes = a.batches.flat()[1]!
      assert.deepStrictEqual(
        [bytes.spanContext().traceId, bytes.spanContext().spanId, bytes.parentSpanContext?.spanId],
        [server.traceId, server.spanId, "0000000000000000"]
      )
    }))

  it.effect("OTEL_TRACES_EXPORTER=none exports nothing but still counts what it received", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(Telemetry.layer)
      yield* Context.get(ctx, TelemetrySink).span(server)
      const stats = yield* Context.get(ctx, Telemetry.Telemetry).stats
      assert.deepStrictEqual(stats, {
        received: 1,
        invalid: 0,
        exporters: [],
        metrics: [],
        measurements: 0,
        logRecords: 0,
        logs: [],
        lost: { spans: 0, metricPoints: 0, logRecords: 0, total: 0 }
      })
    }).pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({
      OTEL_TRACES_EXPORTER: "none",
      OTEL_METRICS_EXPORTER: "none",
      OTEL_LOGS_EXPORTER: "none"
    })))))
})

describe("Telemetry shutdown and accounting", () => {
  const hungSpans: Exporter.Exporter = {
    name: "otlp",
    endpoint: "http://hung/v1/traces",
    export: () => Effect.never,
    shutdown: Effect.never
  }
  const hungMetrics: Metrics.MetricsExporter = {
    name: "otlp",
    endpoint: "http://hung/v1/metrics",
    export: () => Effect.never,
    shutdown: Effect.never
  }
  const metricsConfig: TelemetryConfig.MetricsConfig = {
    exporters: ["otlp"],
    otlp: { protocol: "http/protobuf", endpoint: "http://hung/v1/metrics", headers: {}, timeoutMillis: 10_000 },
    intervalMillis: 3_600_000,
    exportTimeoutMillis: 30_000
  }
  const httpServer: SpanData = { ...server, attributes: { ...server.attributes, "http.route": "/" } }
  const requests = Instruments.counter("http.server.requests", { unit: "{request}", description: "Requests." })
  /** One data point per collection: the counter the probe recorded into for its span. */
  const measurement: Measurement = {
    pid: server.pid,
    probe: server.probe,
    instrument: requests,
    value: 1,
    attributes: {}
  }

  it.effect("one deadline bounds the whole shutdown; what was not exported by then is lost and counted", () =>
    Effect.gen(function*() {
      const config = { ...baseConfig, shutdownTimeoutMillis: 3000 }
      const scope = yield* Scope.make()
      const ctx = yield* Layer.buildWithScope(
        Telemetry.layerWith(config, {
          exporters: [hungSpans],
          clock: KernelClock.layerFixed(0n),
          metrics: metricsConfig,
          metricsOptions: { exporters: [hungMetrics] }
        }),
        scope
      )
      const sink = Context.get(ctx, TelemetrySink)
      const telemetry = Context.get(ctx, Telemetry.Telemetry)
      yield* sink.span(httpServer)
      yield* sink.measurements!([measurement])
      yield* sink.span(root)
      yield* sink.span({ ...root, traceId: "nope" })
      assert.strictEqual(yield* telemetry.lost, 1, "the invalid span")
      // Export timeouts of 30 s, hung exporter shutdowns: only the deadline ends this — 3 s less the 300 ms kept
      // for what follows the exports (Telemetry.exportBudget).
      assert.strictEqual(Telemetry.exportBudget(3000), 2700)
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* Effect.yieldNow
      yield* TestClock.adjust("2699 millis")
      assert.isUndefined(closing.pollUnsafe(), "still within the deadline")
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(closing)
      const stats = yield* telemetry.stats
      assert.deepStrictEqual(
        stats.exporters.map((e) => [e.sent, e.exported, e.dropped, e.failed, e.queued, e.inFlight]),
        [[2, 0, 0, 2, 0, 0]]
      )
      assert.deepStrictEqual(
        stats.metrics.map((e) => [e.sent, e.exported, e.dropped, e.failed, e.inFlight]),
        [[1, 0, 0, 1, 0]]
      )
      assert.deepStrictEqual(stats.lost, { spans: 3, metricPoints: 1, logRecords: 0, total: 4 })
      assert.strictEqual(yield* telemetry.lost, 4)
      assert.strictEqual(
        Telemetry.formatStats(stats),
        "spans 3 (1 invalid) · otlp http://hung/v1/traces: 0 exported, 0 queued, 0 dropped, 2 failed · " +
          "metric points · otlp http://hung/v1/metrics: 0 exported, 0 dropped, 1 failed"
      )
    }))

  it.effect("emitUnsafe (the Runner's batch path) takes spans, logs and measurements at once, as the effects do", () =>
    Effect.gen(function*() {
      const spans = Exporter.memory()
      const metrics = Metrics.memory()
      const scope = yield* Scope.make()
      const ctx = yield* Layer.buildWithScope(
        Telemetry.layerWith(baseConfig, {
          exporters: [spans],
          clock: KernelClock.layerFixed(0n),
          metrics: metricsConfig,
          metricsOptions: { exporters: [metrics] }
        }),
        scope
      )
      const sink = Context.get(ctx, TelemetrySink)
      assert.isDefined(sink.emitUnsafe)
      // The spans as a probe emits them, without the probe's name: the batch names it.
      const { probe: _server, ...serverInput } = server
      const { probe: _root, ...rootInput } = root
      const handed = [serverInput, rootInput, { ...rootInput, traceId: "nope" }]
      sink.emitUnsafe!(handed, [], [measurement, measurement], "kafka.reader")
      const stats = yield* Context.get(ctx, Telemetry.Telemetry).stats
      assert.deepStrictEqual([stats.received, stats.invalid, stats.measurements], [3, 1, 2])
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(spans.batches.map((batch) => batch.map((s) => s.name)), [["GET /", "tick"]])
      assert.deepStrictEqual(spans.batches.flat().map((s) => s.instrumentationScope.name), [
        "probescope/kafka.reader",
        "probescope/kafka.reader"
      ])
      // What the probe handed over is left as it was.
      assert.isFalse(handed.some((s) => "probe" in s))
      const points = metrics.batches.flat().flatMap((rm) =>
        rm.scopeMetrics.flatMap((sm) => sm.metrics.filter((m) => m.descriptor.name === requests.name))
      )
      assert.isAbove(points.length, 0)
      assert.strictEqual(points.at(-1)!.dataPoints[0]!.value, 2)
    }))

  it.effect("nothing lost: lost is 0 after a clean shutdown", () =>
    Effect.gen(function*() {
      const memory = Exporter.memory()
      const metricsMemory = Metrics.memory()
      const scope = yield* Scope.make()
      const ctx = yield* Layer.buildWithScope(
        Telemetry.layerWith(baseConfig, {
          exporters: [memory],
          clock: KernelClock.layerFixed(0n),
          metrics: metricsConfig,
          metricsOptions: { exporters: [metricsMemory] }
        }),
        scope
      )
      yield* Context.get(ctx, TelemetrySink).span(httpServer)
      yield* Context.get(ctx, TelemetrySink).measurements!([measurement])
      yield* Scope.close(scope, Exit.void)
      const telemetry = Context.get(ctx, Telemetry.Telemetry)
      const stats = yield* telemetry.stats
      assert.deepStrictEqual([stats.exporters[0]!.exported, stats.metrics[0]!.exported], [1, 1])
      assert.strictEqual(yield* telemetry.lost, 0)
    }))
})

describe("Telemetry.formatStats", () => {
  /** Stats with nothing in them. */
  const none: Telemetry.TelemetryStats = {
    received: 0,
    invalid: 0,
    exporters: [],
    metrics: [],
    measurements: 0,
    logRecords: 0,
    logs: [],
    lost: Telemetry.lostOf(0, [], [])
  }

  it("renders one status line, with the error only while exports fail", () => {
    const exporter = {
      exporter: "otlp",
      endpoint: "http://c:4318/v1/traces",
      sent: 120,
      accepted: 118,
      queued: 0,
      inFlight: 0,
      exported: 118,
      dropped: 2,
      failed: 0,
      droppedShuttingDown: 0,
      failedAttempts: 1,
      lastError: Option.some(
        new ExportError({ exporter: "otlp", endpoint: "http://c:4318/v1/traces", message: "export failed: refused" })
      ),
      failing: false
    }
    const lost = Telemetry.lostOf(0, [exporter], [])
    assert.strictEqual(
      Telemetry.formatStats({ ...none, received: 120, exporters: [exporter], lost }),
      "spans 120 · otlp http://c:4318/v1/traces: 118 exported, 0 queued, 2 dropped, 0 failed"
    )
    assert.strictEqual(
      Telemetry.formatStats({
        received: 120,
        invalid: 0,
        exporters: [{ ...exporter, failing: true }],
        metrics: [],
        measurements: 0,
        logRecords: 0,
        logs: [],
        lost
      }),
      "spans 120 · otlp http://c:4318/v1/traces: 118 exported, 0 queued, 2 dropped, 0 failed " +
        "(failing: export failed: refused)"
    )
    assert.strictEqual(
      Telemetry.formatStats({
        received: 120,
        invalid: 0,
        exporters: [{ ...exporter, queued: 10, inFlight: 8, exported: 100 }],
        metrics: [],
        measurements: 0,
        logRecords: 0,
        logs: [],
        lost
      }),
      "spans 120 · otlp http://c:4318/v1/traces: 100 exported, 10 queued, 8 in flight, 2 dropped, 0 failed"
    )
    assert.strictEqual(
      Telemetry.formatStats({ ...none, received: 3, invalid: 1, lost: Telemetry.lostOf(1, [], []) }),
      "spans 3 (1 invalid)"
    )
  })
})
