import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Exit, Layer, Option, Scope } from "effect"
import { type LogData, type Severity, TelemetrySink } from "../../src/probe/Telemetry.ts"
import { ExportError } from "../../src/telemetry/Exporter.ts"
import * as KernelClock from "../../src/telemetry/KernelClock.ts"
import * as Logs from "../../src/telemetry/Logs.ts"
import * as ProcessResources from "../../src/telemetry/ProcessResources.ts"
import * as Telemetry from "../../src/telemetry/Telemetry.ts"
import * as TelemetryConfig from "../../src/telemetry/TelemetryConfig.ts"

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
const SPAN = "00f067aa0ba902b7"
const OFFSET = 1_700_000_000_000_000_000n

const panic: LogData = {
  pid: 4242,
  probe: "go_panic",
  timeMonoNs: 5_123_456_789n,
  severity: "error",
  body: "panic: boom",
  attributes: { "exception.type": "string", "code.lineno": 42, "retry": false },
  traceId: TRACE,
  spanId: SPAN,
  traceFlags: 1
}

const { resources, shop } = Effect.runSync(Effect.gen(function*() {
  const resources = ProcessResources.make({ serviceName: undefined, attributes: {} })
  yield* resources.register(4242, { exe: "/srv/shop", goVersion: "1.26.0" })
  return { resources, shop: resources.resourceFor(4242) }
}))

const toRecord = (log: LogData) =>
  Logs.toReadableLogRecord(log, resources.resourceFor(log.pid), "0.1.0", (ns) => ns + OFFSET)

describe("Logs.toReadableLogRecord", () => {
  it("a record inside a span: times from the kernel clock, severity, body, attributes, span context, scope", () => {
    const r = toRecord(panic)
    assert.deepStrictEqual(r, {
      hrTime: [1_700_000_005, 123_456_789],
      hrTimeObserved: [1_700_000_005, 123_456_789],
      spanContext: { traceId: TRACE, spanId: SPAN, traceFlags: 1 },
      severityNumber: 17,
      severityText: "ERROR",
      body: "panic: boom",
      resource: shop,
      instrumentationScope: { name: "probescope/go_panic", version: "0.1.0" },
      attributes: { "exception.type": "string", "code.lineno": 42, "retry": false },
      droppedAttributesCount: 0
    })
    // The very resource object of the process (exporters group by identity), and its own copy of the attributes.
    assert.strictEqual(r.resource, shop)
    assert.notStrictEqual<unknown>(r.attributes, panic.attributes)
  })

  it("severity: the first SeverityNumber of each OpenTelemetry range, and its short name", () => {
    const severities: ReadonlyArray<Severity> = ["trace", "debug", "info", "warn", "error", "fatal"]
    assert.deepStrictEqual(
      severities.map((severity) => {
        const r = toRecord({ ...panic, severity })
        return [r.severityNumber, r.severityText]
      }),
      [[1, "TRACE"], [5, "DEBUG"], [9, "INFO"], [13, "WARN"], [17, "ERROR"], [21, "FATAL"]]
    )
  })

  it("a span context only when both ids are there; trace flags default to 0", () => {
    const { spanId: _s, traceFlags: _f, ...noSpan } = panic
    assert.isUndefined(toRecord(noSpan).spanContext)
    assert.isFalse("spanContext" in toRecord(noSpan))
    const { traceId: _t, ...noTrace } = panic
    assert.isUndefined(toRecord(noTrace).spanContext)
    const { traceFlags: _g, ...noFlags } = panic
    assert.deepStrictEqual(toRecord(noFlags).spanContext, { traceId: TRACE, spanId: SPAN, traceFlags: 0 })
  })

  it("records of one probe share one scope object (the OTLP log exporters group scopes by identity)", () => {
    const a = toRecord(panic)
    const b = toRecord({ ...panic, body: "again" })
    const other = toRecord({ ...panic, probe: "tcp_metrics" })
    assert.strictEqual(a.instrumentationScope, b.instrumentationScope)
    assert.notStrictEqual(a.instrumentationScope, other.instrumentationScope)
    assert.deepStrictEqual(other.instrumentationScope, { name: "probescope/tcp_metrics", version: "0.1.0" })
    const newer = Logs.toReadableLogRecord(panic, shop, "0.2.0", (ns) => ns)
    assert.deepStrictEqual(newer.instrumentationScope, { name: "probescope/go_panic", version: "0.2.0" })
  })
})

describe("Logs.console", () => {
  it("formatLine: time, severity, service, pid, body, attributes (strings quoted), then the ids", () => {
    assert.strictEqual(
      Logs.formatLine(toRecord(panic)),
      `2023-11-14T22:13:25.123Z ERROR shop pid=4242 panic: boom exception.type="string" code.lineno=42 retry=false ` +
        `trace=${TRACE} span=${SPAN}\n`
    )
    const { traceId: _t, spanId: _s, ...outside } = panic
    assert.strictEqual(
      Logs.formatLine(toRecord({ ...outside, severity: "warn", body: "slow", attributes: {}, pid: 9 })),
      "2023-11-14T22:13:25.123Z WARN unknown_service pid=9 slow\n"
    )
  })

  it("writes one text per batch, a line per record; an empty batch writes nothing", () =>
    Effect.gen(function*() {
      const out: Array<string> = []
      const console = Logs.console((t) => out.push(t))
      assert.deepStrictEqual([console.name, console.endpoint], ["console", "stdout"])
      const a = toRecord(panic)
      const b = toRecord({ ...panic, severity: "info", body: "ok" })
      yield* console.export([a, b])
      yield* console.export([])
      assert.deepStrictEqual(out, [Logs.formatLine(a) + Logs.formatLine(b)])
    }).pipe(Effect.runSync))
})

const logsConfig: TelemetryConfig.LogsConfig = {
  exporters: ["otlp"],
  otlp: { protocol: "http/protobuf", endpoint: "http://127.0.0.1:1/v1/logs", headers: {}, timeoutMillis: 1000 },
  batch: {
    maxQueueSize: 100,
    maxExportBatchSize: 50,
    scheduleDelayMillis: 3_600_000,
    exportTimeoutMillis: 1000,
    maxRetries: 0,
    retryBaseMillis: 10
  }
}

const baseConfig = Effect.runSync(
  TelemetryConfig.load.pipe(
    Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ OTEL_TRACES_EXPORTER: "none" })))
  )
)

/** The telemetry layer with these options and logs configuration (null: none), built in a scope of its own. */
const build = (options: Partial<Telemetry.Options>, logs: TelemetryConfig.LogsConfig | null = logsConfig) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const ctx = yield* Layer.buildWithScope(
      Telemetry.layerWith(baseConfig, {
        clock: KernelClock.layerFixed(OFFSET),
        ...(logs === null ? {} : { logs }),
        ...options
      }),
      scope
    )
    yield* Context.get(ctx, ProcessResources.ProcessResources).register(4242, { exe: "/srv/shop", goVersion: "1.26.0" })
    return {
      scope,
      sink: Context.get(ctx, TelemetrySink),
      telemetry: Context.get(ctx, Telemetry.Telemetry)
    }
  })

describe("Telemetry.layerWith({ logs })", () => {
  it.effect("log records reach every log exporter with the process's resource; counted per exporter", () =>
    Effect.gen(function*() {
      const a = Logs.memory()
      const b = Logs.memory()
      const { scope, sink, telemetry } = yield* build({ logExporters: [a, b] })
      const info: LogData = { pid: 4242, probe: "go_log", timeMonoNs: 1n, severity: "info", body: "hi", attributes: {} }
      yield* sink.logs!([panic, info])
      const queued = yield* telemetry.stats
      assert.deepStrictEqual(
        [queued.logRecords, queued.logs.map((e) => [e.exporter, e.sent, e.queued, e.exported])],
        [2, [["memory", 2, 2, 0], ["memory", 2, 2, 0]]]
      )
      yield* Scope.close(scope, Exit.void)
      for (const exporter of [a, b]) {
        assert.strictEqual(exporter.batches.length, 1)
        const [first, second] = exporter.batches[0]!
        assert.deepStrictEqual(first!.spanContext, { traceId: TRACE, spanId: SPAN, traceFlags: 1 })
        assert.deepStrictEqual(first!.hrTime, [1_700_000_005, 123_456_789])
        assert.strictEqual(first!.resource.attributes["service.name"], "shop")
        assert.strictEqual(first!.resource, second!.resource)
        assert.deepStrictEqual([second!.severityText, second!.body, second!.hrTime], ["INFO", "hi", [1_700_000_000, 1]])
      }
      const stats = yield* telemetry.stats
      assert.deepStrictEqual(stats.logs.map((e) => [e.sent, e.exported, e.dropped, e.failed, e.queued]), [
        [2, 2, 0, 0, 0],
        [2, 2, 0, 0, 0]
      ])
      assert.deepStrictEqual(stats.lost, { spans: 0, metricPoints: 0, logRecords: 0, total: 0 })
      assert.strictEqual(
        Telemetry.formatStats(stats),
        "spans 0 · log records 2 · memory memory: 2 exported, 0 queued, 0 dropped, 0 failed · " +
          "memory memory: 2 exported, 0 queued, 0 dropped, 0 failed"
      )
    }))

  it.effect("ids that are not W3C-valid: the record is kept, without a span context", () =>
    Effect.gen(function*() {
      const memory = Logs.memory()
      const { sink, telemetry } = yield* build({ logExporters: [memory] })
      const { spanId: _s, ...traceOnly } = panic
      const { traceId: _t, ...spanOnly } = panic
      const bad: ReadonlyArray<LogData> = [
        { ...panic, traceId: TRACE.toUpperCase(), body: "upper" },
        { ...panic, traceId: "0".repeat(32), body: "zero trace" },
        { ...panic, spanId: "0".repeat(16), body: "zero span" },
        { ...panic, spanId: "abc", body: "short span" },
        { ...panic, traceId: `${TRACE}00`, body: "long trace" },
        { ...traceOnly, body: "trace only" },
        { ...spanOnly, body: "span only" }
      ]
      yield* sink.logs!([...bad, panic])
      yield* telemetry.flush
      const exported = memory.batches.flat()
      assert.deepStrictEqual(
        exported.map((r) => [r.body, r.spanContext]),
        [
          ...bad.map((l) => [l.body, undefined]),
          ["panic: boom", { traceId: TRACE, spanId: SPAN, traceFlags: 1 }]
        ]
      )
      // Everything else about them is intact.
      assert.deepStrictEqual<unknown>(exported[0]!.attributes, panic.attributes)
      assert.strictEqual(exported[0]!.severityText, "ERROR")
      const stats = yield* telemetry.stats
      assert.deepStrictEqual([stats.logRecords, stats.logs[0]!.exported, stats.invalid, stats.lost.total], [8, 8, 0, 0])
    }))

  it.effect("lost.logRecords: records a log exporter dropped (queue full) or failed to export", () =>
    Effect.gen(function*() {
      const failing: Logs.LogExporter = {
        name: "otlp",
        endpoint: "http://c/v1/logs",
        export: () =>
          Effect.fail(new ExportError({ exporter: "otlp", endpoint: "http://c/v1/logs", message: "refused" })),
        shutdown: Effect.void
      }
      const { scope, sink, telemetry } = yield* build({ logExporters: [failing] }, {
        ...logsConfig,
        batch: { ...logsConfig.batch, maxQueueSize: 3, maxExportBatchSize: 3 }
      })
      yield* sink.logs!([panic, panic, panic, panic, panic])
      yield* Scope.close(scope, Exit.void)
      const stats = yield* telemetry.stats
      const e = stats.logs[0]!
      assert.deepStrictEqual([e.sent, e.exported, e.dropped, e.failed, e.queued, e.inFlight], [5, 0, 2, 3, 0, 0])
      assert.strictEqual(e.lastError._tag === "Some" && e.lastError.value.message, "refused")
      assert.deepStrictEqual(stats.lost, { spans: 0, metricPoints: 0, logRecords: 5, total: 5 })
      assert.strictEqual(yield* telemetry.lost, 5)
      assert.strictEqual(
        Telemetry.formatStats(stats),
        "spans 0 · log records 5 · " +
          "otlp http://c/v1/logs: 0 exported, 0 queued, 2 dropped, 3 failed (failing: refused)"
      )
      // The agent's own metrics count them under signal log_records.
      const samples = Telemetry.selfMetricSamples(stats).filter((s) => s.attributes.signal === "log_records")
      assert.deepStrictEqual(samples.map((s) => [s.name, s.attributes, s.value]), [
        ["probescope.export.sent", { exporter: "otlp", signal: "log_records" }, 5],
        ["probescope.export.exported", { exporter: "otlp", signal: "log_records" }, 0],
        ["probescope.export.dropped", { exporter: "otlp", signal: "log_records", reason: "queue_full" }, 2],
        ["probescope.export.dropped", { exporter: "otlp", signal: "log_records", reason: "shutting_down" }, 0],
        ["probescope.export.failed", { exporter: "otlp", signal: "log_records" }, 3],
        ["probescope.export.queue.size", { exporter: "otlp", signal: "log_records" }, 0]
      ])
    }))

  it.effect("OTEL_LOGS_EXPORTER=console prints a line per record through the writer", () =>
    Effect.gen(function*() {
      const out: Array<string> = []
      const { scope, sink } = yield* build({ write: (t) => out.push(t) }, { ...logsConfig, exporters: ["console"] })
      yield* sink.logs!([panic])
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(out, [Logs.formatLine(toRecord(panic))])
    }))

  it.effect("without a logs configuration the records are counted and go nowhere", () =>
    Effect.gen(function*() {
      const { sink, telemetry } = yield* build({}, null)
      yield* sink.logs!([panic, panic])
      const stats = yield* telemetry.stats
      assert.deepStrictEqual([stats.logRecords, stats.logs, stats.lost.logRecords], [2, [], 0])
      assert.strictEqual(Telemetry.formatStats(stats), "spans 0")
    }))

  it.effect("layerTest captures the log records handed to the sink, in order", () =>
    Effect.gen(function*() {
      const sink = yield* TelemetrySink
      yield* sink.logs!([panic])
      yield* sink.logs!([{ ...panic, body: "second" }])
      assert.deepStrictEqual(
        (yield* (yield* Telemetry.TelemetryCapture).logs).map((l) => l.body),
        ["panic: boom", "second"]
      )
      const stats = yield* (yield* Telemetry.Telemetry).stats
      assert.deepStrictEqual([stats.logRecords, stats.logs, stats.lost.logRecords], [2, [], 0])
    }).pipe(Effect.provide(Telemetry.layerTest())))
})

const loadLogs = (env: Record<string, string>) =>
  TelemetryConfig.loadLogs.pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env))))

const loadError = (env: Record<string, string>) =>
  Effect.flatMap(Effect.flip(loadLogs(env)), (e) => Effect.succeed([e._tag, e.variable, e.message]))

describe("TelemetryConfig.loadLogs", () => {
  it.effect("defaults: otlp http/protobuf to localhost:4318/v1/logs, the batch log record processor's knobs", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* loadLogs({}), {
        exporters: ["otlp"],
        otlp: {
          protocol: "http/protobuf",
          endpoint: "http://localhost:4318/v1/logs",
          headers: {},
          timeoutMillis: 10_000
        },
        batch: {
          maxQueueSize: 2048,
          maxExportBatchSize: 512,
          scheduleDelayMillis: 1000,
          exportTimeoutMillis: 30_000,
          maxRetries: 3,
          retryBaseMillis: 200
        }
      })
      const grpc = yield* loadLogs({ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" })
      assert.deepStrictEqual([grpc.otlp.protocol, grpc.otlp.endpoint], ["grpc", "http://localhost:4317"])
    }))

  it.effect("per-signal variables win over the generic ones; OTEL_BLRP_* is the logs' own, not OTEL_BSP_*", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(
        yield* loadLogs({
          OTEL_LOGS_EXPORTER: "console, otlp",
          OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/",
          OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
          OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: "http/json",
          OTEL_EXPORTER_OTLP_HEADERS: "a=1,b=2",
          OTEL_EXPORTER_OTLP_LOGS_HEADERS: "b=3",
          OTEL_EXPORTER_OTLP_TIMEOUT: "5000",
          OTEL_EXPORTER_OTLP_LOGS_TIMEOUT: "1500",
          OTEL_BSP_MAX_QUEUE_SIZE: "7",
          OTEL_BSP_SCHEDULE_DELAY: "9",
          OTEL_BLRP_MAX_QUEUE_SIZE: "100",
          OTEL_BLRP_MAX_EXPORT_BATCH_SIZE: "10",
          OTEL_BLRP_SCHEDULE_DELAY: "0",
          OTEL_BLRP_EXPORT_TIMEOUT: "2000",
          PROBESCOPE_EXPORT_RETRIES: "0",
          PROBESCOPE_EXPORT_RETRY_DELAY: "50"
        }),
        {
          exporters: ["console", "otlp"],
          otlp: {
            protocol: "http/json",
            endpoint: "http://collector:4318/v1/logs",
            headers: { a: "1", b: "3" },
            timeoutMillis: 1500
          },
          batch: {
            maxQueueSize: 100,
            maxExportBatchSize: 10,
            scheduleDelayMillis: 0,
            exportTimeoutMillis: 2000,
            maxRetries: 0,
            retryBaseMillis: 50
          }
        }
      )
      const own = yield* loadLogs({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318",
        OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: "http://l:9000/custom"
      })
      assert.strictEqual(own.otlp.endpoint, "http://l:9000/custom")
      const grpc = yield* loadLogs({
        OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: "grpc",
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4317"
      })
      assert.strictEqual(grpc.otlp.endpoint, "http://collector:4317")
      assert.deepStrictEqual((yield* loadLogs({ OTEL_LOGS_EXPORTER: "none" })).exporters, [])
      // The traces' and metrics' exporters do not turn the logs' off.
      assert.deepStrictEqual(
        (yield* loadLogs({ OTEL_TRACES_EXPORTER: "none", OTEL_METRICS_EXPORTER: "none" })).exporters,
        ["otlp"]
      )
    }))

  it.effect("bad values are TelemetryConfigErrors naming the variable", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* loadError({ OTEL_LOGS_EXPORTER: "otlp,loki" }), [
        "TelemetryConfigError",
        "OTEL_LOGS_EXPORTER",
        `Invalid OTEL_LOGS_EXPORTER="loki": Expected "otlp" | "console" | "none"`
      ])
      assert.deepStrictEqual(yield* loadError({ OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: "udp" }), [
        "TelemetryConfigError",
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
        `Invalid OTEL_EXPORTER_OTLP_LOGS_PROTOCOL="udp": Expected "http/protobuf" | "http/json" | "grpc"`
      ])
      assert.deepStrictEqual(yield* loadError({ OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: "collector:4318" }), [
        "TelemetryConfigError",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        `Invalid OTEL_EXPORTER_OTLP_LOGS_ENDPOINT="collector:4318": not an http(s) URL`
      ])
      assert.deepStrictEqual(yield* loadError({ OTEL_EXPORTER_OTLP_LOGS_HEADERS: "novalue" }), [
        "TelemetryConfigError",
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
        `Invalid OTEL_EXPORTER_OTLP_LOGS_HEADERS: entry "novalue" is not key=value`
      ])
      assert.deepStrictEqual(yield* loadError({ OTEL_EXPORTER_OTLP_LOGS_TIMEOUT: "0" }), [
        "TelemetryConfigError",
        "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
        `Invalid OTEL_EXPORTER_OTLP_LOGS_TIMEOUT="0": Expected a value greater than 0`
      ])
      assert.deepStrictEqual(yield* loadError({ OTEL_BLRP_SCHEDULE_DELAY: "soon" }), [
        "TelemetryConfigError",
        "OTEL_BLRP_SCHEDULE_DELAY",
        `Invalid OTEL_BLRP_SCHEDULE_DELAY="soon": Expected an integer`
      ])
      assert.deepStrictEqual(
        yield* loadError({ OTEL_BLRP_MAX_QUEUE_SIZE: "10", OTEL_BLRP_MAX_EXPORT_BATCH_SIZE: "11" }),
        [
          "TelemetryConfigError",
          "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
          "Invalid OTEL_BLRP_MAX_EXPORT_BATCH_SIZE=11: must not exceed OTEL_BLRP_MAX_QUEUE_SIZE (10)"
        ]
      )
    }))

  it.effect("Telemetry.layer fails with the logs config error before starting anything", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(
        Effect.scoped(Layer.build(Telemetry.layer)).pipe(
          Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ OTEL_LOGS_EXPORTER: "stdout" })))
        )
      )
      assert.deepStrictEqual([e._tag, e.variable, e.message], [
        "TelemetryConfigError",
        "OTEL_LOGS_EXPORTER",
        `Invalid OTEL_LOGS_EXPORTER="stdout": Expected "otlp" | "console" | "none"`
      ])
    }))

  it.effect("Telemetry.layer exports the probes' log records by default (OTEL_LOGS_EXPORTER unset is otlp)", () =>
    Effect.gen(function*() {
      const stats = yield* Effect.scoped(Effect.gen(function*() {
        const ctx = yield* Layer.build(Telemetry.layer)
        return yield* Context.get(ctx, Telemetry.Telemetry).stats
      })).pipe(
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({
          OTEL_TRACES_EXPORTER: "none",
          OTEL_METRICS_EXPORTER: "none",
          // Nothing is sent: the layer closes before the first export is due and the queue is empty.
          OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9"
        })))
      )
      assert.deepStrictEqual(stats.logs.map((e) => [e.exporter, e.endpoint]), [["otlp", "http://127.0.0.1:9/v1/logs"]])
      assert.strictEqual(Option.isNone(stats.logs[0]!.lastError), true)
    }))
})
