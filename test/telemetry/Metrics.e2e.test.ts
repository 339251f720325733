/**
 * The probes' metrics and log records through a real OpenTelemetry Collector (test/collector/Collector.ts), read back
 * from the collector's file exporter: exactly the OTLP the collector received, over http/protobuf, http/json and
 * grpc. Measurements of every instrument kind (the HTTP probes' own duration histogram among them), per process and
 * for the host (the agent's resource), cumulative and delta; log records with and without a span.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Context, Duration, Effect, Layer, Schedule } from "effect"
import { beforeAll } from "vitest"
import { serverDuration } from "../../src/instrumentations/internal/Http.ts"
import * as Instruments from "../../src/probe/Instruments.ts"
import { type LogData, type Measurement, TelemetrySink } from "../../src/probe/Telemetry.ts"
import * as KernelClock from "../../src/telemetry/KernelClock.ts"
import * as ProcessResources from "../../src/telemetry/ProcessResources.ts"
import * as Telemetry from "../../src/telemetry/Telemetry.ts"
import * as TelemetryConfig from "../../src/telemetry/TelemetryConfig.ts"
import * as Collector from "../collector/Collector.ts"

// The first build compiles the collector (minutes on a 2-core machine): outside every test's own timeout.
beforeAll(() => Effect.runPromise(Collector.build), 45 * 60_000)

const OFFSET = 1_700_000_000_000_000_000n
const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
const SPAN = "00f067aa0ba902b7"

const requests = Instruments.counter("shop.requests", { unit: "{request}", description: "Requests served." })
const active = Instruments.upDownCounter("shop.requests.active", {
  unit: "{request}",
  description: "Requests being served now."
})
const load = Instruments.gauge("shop.load", { unit: "1", description: "Share of the workers busy." })
const retransmits = Instruments.counter("tcp.retransmits", { unit: "{segment}", description: "TCP retransmits." })

const measurements: ReadonlyArray<Measurement> = [
  { pid: 4242, probe: "nethttp_server", instrument: serverDuration, value: 0.003, attributes: { route: "/a" } },
  { pid: 4242, probe: "nethttp_server", instrument: serverDuration, value: 0.02, attributes: { route: "/a" } },
  { pid: 4242, probe: "shop", instrument: requests, value: 2, attributes: { route: "/a", code: 200 } },
  { pid: 4242, probe: "shop", instrument: requests, value: 3, attributes: { code: 200, route: "/a" } },
  { pid: 4242, probe: "shop", instrument: active, value: 3, attributes: {} },
  { pid: 4242, probe: "shop", instrument: active, value: -1, attributes: {} },
  { pid: 4242, probe: "shop", instrument: load, value: 0.75, attributes: { pool: "main" } },
  { pid: undefined, probe: "tcp_metrics", instrument: retransmits, value: 7, attributes: { "network.interface": "lo" } }
]

const panic: LogData = {
  pid: 4242,
  probe: "go_panic",
  timeMonoNs: 5_000_000_123n,
  severity: "error",
  body: "panic: boom",
  attributes: { "exception.type": "string", "exception.message": "boom", "code.lineno": 42, "recovered": false },
  traceId: TRACE,
  spanId: SPAN,
  traceFlags: 1
}
/** The same probe, the same process: one ScopeLogs with both records. */
const recovered: LogData = {
  ...panic,
  timeMonoNs: 5_000_000_456n,
  severity: "warn",
  body: "recovered: boom",
  attributes: { "exception.type": "string", "exception.message": "boom", "recovered": true }
}
const started: LogData = {
  pid: 777,
  probe: "go_log",
  timeMonoNs: 6_000_000_000n,
  severity: "info",
  body: "worker started",
  attributes: { "ratio": 0.5 }
}

const telemetryFor = (env: Record<string, string>) =>
  Layer.unwrap(
    Effect.map(
      Effect.all([TelemetryConfig.load, TelemetryConfig.loadMetrics, TelemetryConfig.loadLogs]),
      ([config, metrics, logs]) =>
        Telemetry.layerWith(config, { clock: KernelClock.layerFixed(OFFSET), metrics, logs })
    )
  ).pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env))))

/** Builds the telemetry layer in the current scope with both processes registered. */
const startTelemetry = Effect.fnUntraced(function*(env: Record<string, string>) {
  const ctx = yield* Layer.build(telemetryFor(env))
  const r = Context.get(ctx, ProcessResources.ProcessResources)
  yield* r.register(4242, { exe: "/srv/bin/users-api", goVersion: "1.26.0" })
  yield* r.register(777, { exe: "/opt/worker", goVersion: "1.24.3", serviceName: "worker" })
  return { sink: Context.get(ctx, TelemetrySink), telemetry: Context.get(ctx, Telemetry.Telemetry) }
})

/** Polls the collector's file export until `done` holds (or fails after 15 s with what it got). */
const waitForExported = (
  collector: Collector.Collector,
  done: (requests: ReadonlyArray<Collector.ExportedRequest>) => boolean
) =>
  collector.exported.pipe(
    Effect.repeat({ until: done, schedule: Schedule.spaced(Duration.millis(100)) }),
    Effect.timeoutOrElse({
      duration: Duration.seconds(15),
      orElse: () =>
        Effect.flatMap(collector.exported, (got) =>
          Effect.die(new Error(`the collector exported: ${JSON.stringify(got)}`)))
    })
  )

type KeyValue = { readonly key: string; readonly value: Record<string, unknown> }

/** Attributes as OTLP/JSON writes them: integers as decimal strings, other numbers as doubles. */
const kv = (attributes: Readonly<Record<string, string | number | boolean>>): ReadonlyArray<KeyValue> =>
  Object.entries(attributes).map(([key, v]) => ({
    key,
    value: typeof v === "string" ?
      { stringValue: v } :
      typeof v === "boolean" ?
      { boolValue: v } :
      Number.isInteger(v) ?
      { intValue: String(v) } :
      { doubleValue: v }
  }))

/** OTLP/JSON attributes back to a plain object (for resources, whose key order is not the point). */
const plain = (attributes: ReadonlyArray<KeyValue> | undefined): Record<string, unknown> =>
  Object.fromEntries((attributes ?? []).map(({ key, value }) => {
    const [kind, v] = Object.entries(value)[0]!
    return [key, kind === "intValue" ? Number(v) : v]
  }))

/** The parts of OTLP/JSON metrics the tests read (everything else is compared as written). */
interface OtlpPoint {
  readonly startTimeUnixNano: string
  readonly timeUnixNano: string
  readonly asInt?: string
  readonly [field: string]: unknown
}
interface OtlpData {
  readonly dataPoints: ReadonlyArray<OtlpPoint>
  readonly aggregationTemporality?: number
}
interface OtlpMetric {
  readonly name: string
  readonly sum?: OtlpData
  readonly gauge?: OtlpData
  readonly histogram?: OtlpData
}

interface OtlpResource {
  readonly resource: { readonly attributes?: ReadonlyArray<KeyValue> }
  readonly scopeMetrics?: ReadonlyArray<{ readonly scope: unknown; readonly metrics: ReadonlyArray<OtlpMetric> }>
  readonly scopeLogs?: ReadonlyArray<{ readonly scope: unknown; readonly logRecords: ReadonlyArray<unknown> }>
}

/** Every log record the collector exported, with its resource (as an object) and scope. */
const logRecordsOf = (requests: ReadonlyArray<Collector.ExportedRequest>) =>
  requests.flatMap((r) =>
    ((r.resourceLogs ?? []) as ReadonlyArray<OtlpResource>).flatMap((rl) =>
      (rl.scopeLogs ?? []).flatMap((sl) =>
        sl.logRecords.map((record) => ({ resource: plain(rl.resource.attributes), scope: sl.scope, record }))
      )
    )
  )

/** Every metric the collector exported, with its resource (as an object) and scope, in the order written. */
const metricsOf = (requests: ReadonlyArray<Collector.ExportedRequest>) =>
  requests.flatMap((r) =>
    ((r.resourceMetrics ?? []) as ReadonlyArray<OtlpResource>).flatMap((rm) =>
      (rm.scopeMetrics ?? []).flatMap((sm) =>
        sm.metrics.map((metric) => ({ resource: plain(rm.resource.attributes), scope: sm.scope, metric }))
      )
    )
  )

/** The data points of a metric, whatever its type. */
const pointsOf = (metric: OtlpMetric): ReadonlyArray<OtlpPoint> =>
  (metric.sum ?? metric.gauge ?? metric.histogram)!.dataPoints

/**
 * The metric without its data points' times, after checking them: wall-clock, within [from, to], start not after
 * the end. Everything else stays exactly as the collector wrote it.
 */
const withoutTimes = (metric: OtlpMetric, from: bigint, to: bigint): unknown => {
  const data = (metric.sum ?? metric.gauge ?? metric.histogram)!
  const dataPoints = data.dataPoints.map(({ startTimeUnixNano, timeUnixNano, ...rest }) => {
    const start = BigInt(startTimeUnixNano)
    const end = BigInt(timeUnixNano)
    assert.isTrue(from <= start && start <= end && end <= to, `${metric.name}: ${start}..${end} not in ${from}..${to}`)
    return rest
  })
  const type = metric.sum ? "sum" : metric.gauge ? "gauge" : "histogram"
  return { ...metric, [type]: { ...data, dataPoints } }
}

const wallNs = () => BigInt(Date.now()) * 1_000_000n

const AGGREGATION_TEMPORALITY_DELTA = 1
const AGGREGATION_TEMPORALITY_CUMULATIVE = 2

const scope = (probe: string) => ({ name: `probescope/${probe}`, version: ProcessResources.version })

const usersApi = {
  "service.name": "users-api",
  "process.pid": 4242,
  "process.executable.path": "/srv/bin/users-api",
  "process.executable.name": "users-api",
  "process.runtime.name": "go",
  "process.runtime.version": "1.26.0",
  "telemetry.distro.name": "probescope",
  "telemetry.distro.version": ProcessResources.version,
  "deployment.environment.name": "e2e"
}

describe("probe metrics and log records through a real OpenTelemetry Collector", () => {
  for (const protocol of ["http/protobuf", "http/json", "grpc"] as const) {
    it.live(`every instrument kind and log records over ${protocol}, as the collector received them`, () =>
      Effect.gen(function*() {
        const collector = yield* Collector.make()
        const before = wallNs()
        const telemetry = yield* Effect.scoped(Effect.gen(function*() {
          const { sink, telemetry } = yield* startTelemetry({
            OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
            OTEL_EXPORTER_OTLP_ENDPOINT: protocol === "grpc" ? collector.grpcEndpoint : collector.httpEndpoint,
            OTEL_TRACES_EXPORTER: "none",
            OTEL_RESOURCE_ATTRIBUTES: "deployment.environment.name=e2e",
            // One collection, at shutdown: one point per series.
            OTEL_METRIC_EXPORT_INTERVAL: "3600000",
            OTEL_BLRP_SCHEDULE_DELAY: "50"
          })
          yield* sink.measurements!(measurements)
          yield* sink.logs!([panic, recovered, started])
          return telemetry
        }))
        const after = wallNs()
        const got = yield* waitForExported(collector, (r) => logRecordsOf(r).length >= 3 && metricsOf(r).length >= 5)

        // The log records: the kernel times moved by the clock offset, the span context only on the one that had it.
        assert.deepStrictEqual(logRecordsOf(got), [
          {
            resource: usersApi,
            scope: scope("go_panic"),
            record: {
              timeUnixNano: String(OFFSET + panic.timeMonoNs),
              observedTimeUnixNano: String(OFFSET + panic.timeMonoNs),
              severityNumber: 17,
              severityText: "ERROR",
              body: { stringValue: "panic: boom" },
              attributes: kv({
                "exception.type": "string",
                "exception.message": "boom",
                "code.lineno": 42,
                "recovered": false
              }),
              flags: 1,
              traceId: TRACE,
              spanId: SPAN
            }
          },
          {
            resource: usersApi,
            scope: scope("go_panic"),
            record: {
              timeUnixNano: String(OFFSET + recovered.timeMonoNs),
              observedTimeUnixNano: String(OFFSET + recovered.timeMonoNs),
              severityNumber: 13,
              severityText: "WARN",
              body: { stringValue: "recovered: boom" },
              attributes: kv({ "exception.type": "string", "exception.message": "boom", "recovered": true }),
              flags: 1,
              traceId: TRACE,
              spanId: SPAN
            }
          },
          {
            resource: {
              ...usersApi,
              "service.name": "worker",
              "process.pid": 777,
              "process.executable.path": "/opt/worker",
              "process.executable.name": "worker",
              "process.runtime.version": "1.24.3"
            },
            scope: scope("go_log"),
            record: {
              timeUnixNano: String(OFFSET + started.timeMonoNs),
              observedTimeUnixNano: String(OFFSET + started.timeMonoNs),
              severityNumber: 9,
              severityText: "INFO",
              body: { stringValue: "worker started" },
              attributes: kv({ ratio: 0.5 })
            }
          }
        ])

        // Grouped as OTLP means: one ResourceLogs per process, one ScopeLogs per probe.
        const shape = got.flatMap((r) =>
          ((r.resourceLogs ?? []) as ReadonlyArray<OtlpResource>).map((rl) => [
            plain(rl.resource.attributes)["process.pid"],
            (rl.scopeLogs ?? []).map((sl) => sl.logRecords.length)
          ])
        )
        assert.deepStrictEqual(shape, [[4242, [2]], [777, [1]]])

        // The metrics: per process and probe, the host's under the agent's own resource; sums of integers as
        // integers, the rest as doubles; everything cumulative.
        const agent = {
          "deployment.environment.name": "e2e",
          "service.name": "probescope",
          "service.version": ProcessResources.version,
          "process.pid": process.pid,
          "process.runtime.name": "nodejs",
          "process.runtime.version": process.versions.node
        }
        const sorted = metricsOf(got)
          .sort((a, b) => a.metric.name.localeCompare(b.metric.name))
          .map((m) => ({ ...m, metric: withoutTimes(m.metric, before, after) }))
        assert.deepStrictEqual(sorted, [
          {
            resource: usersApi,
            scope: scope("nethttp_server"),
            metric: {
              name: "http.server.request.duration",
              description: "Duration of HTTP server requests.",
              unit: "s",
              histogram: {
                dataPoints: [{
                  attributes: kv({ route: "/a" }),
                  count: "2",
                  sum: 0.023,
                  bucketCounts: ["1", "0", "1", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0"],
                  explicitBounds: [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10],
                  min: 0.003,
                  max: 0.02
                }],
                aggregationTemporality: AGGREGATION_TEMPORALITY_CUMULATIVE
              }
            }
          },
          {
            resource: usersApi,
            scope: scope("shop"),
            metric: {
              name: "shop.load",
              description: "Share of the workers busy.",
              unit: "1",
              gauge: { dataPoints: [{ attributes: kv({ pool: "main" }), asDouble: 0.75 }] }
            }
          },
          {
            resource: usersApi,
            scope: scope("shop"),
            metric: {
              name: "shop.requests",
              description: "Requests served.",
              unit: "{request}",
              sum: {
                // One series: the two recordings wrote the same attributes in another order.
                dataPoints: [{ attributes: kv({ route: "/a", code: 200 }), asInt: "5" }],
                aggregationTemporality: AGGREGATION_TEMPORALITY_CUMULATIVE,
                isMonotonic: true
              }
            }
          },
          {
            resource: usersApi,
            scope: scope("shop"),
            metric: {
              name: "shop.requests.active",
              description: "Requests being served now.",
              unit: "{request}",
              // Not monotonic: OTLP/JSON leaves the false flag out.
              sum: { dataPoints: [{ asInt: "2" }], aggregationTemporality: AGGREGATION_TEMPORALITY_CUMULATIVE }
            }
          },
          {
            resource: agent,
            scope: scope("tcp_metrics"),
            metric: {
              name: "tcp.retransmits",
              description: "TCP retransmits.",
              unit: "{segment}",
              sum: {
                dataPoints: [{ attributes: kv({ "network.interface": "lo" }), asInt: "7" }],
                aggregationTemporality: AGGREGATION_TEMPORALITY_CUMULATIVE,
                isMonotonic: true
              }
            }
          }
        ])

        // The books: everything handed over was exported, nothing lost.
        const stats = yield* telemetry.stats
        assert.deepStrictEqual(
          [stats.measurements, stats.logRecords, stats.metrics[0]!.exported, stats.logs[0]!.exported, stats.lost],
          [measurements.length, 3, 5, 3, { spans: 0, metricPoints: 0, logRecords: 0, total: 0 }]
        )
        // Nothing more arrives (the file exporter writes about every second): that was all of it.
        yield* Effect.sleep(Duration.millis(1500))
        const all = yield* collector.exported
        assert.deepStrictEqual([logRecordsOf(all).length, metricsOf(all).length], [3, 5])
      }), 60_000)
  }

  for (const temporality of ["cumulative", "delta"] as const) {
    it.live(`${temporality}: collections arrive on OTEL_METRIC_EXPORT_INTERVAL while the agent runs`, () =>
      Effect.gen(function*() {
        const collector = yield* Collector.make()
        const { sink } = yield* startTelemetry({
          OTEL_EXPORTER_OTLP_ENDPOINT: collector.httpEndpoint,
          OTEL_TRACES_EXPORTER: "none",
          OTEL_LOGS_EXPORTER: "none",
          OTEL_METRIC_EXPORT_INTERVAL: "200",
          OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: temporality
        })
        const counted = (r: ReadonlyArray<Collector.ExportedRequest>) =>
          metricsOf(r).filter((m) => m.metric.name === "shop.requests").map((m) => pointsOf(m.metric)[0])
        yield* sink.measurements!([measurements[2]!, measurements[4]!])
        yield* waitForExported(collector, (r) => counted(r).length >= 1)
        yield* sink.measurements!([measurements[3]!])
        const last = temporality === "delta" ? "3" : "5"
        const got = yield* waitForExported(collector, (r) => counted(r).some((p) => p.asInt === last))

        const requests = metricsOf(got).filter((m) => m.metric.name === "shop.requests")
        const active = metricsOf(got).filter((m) => m.metric.name === "shop.requests.active")
        // The up-down counter is cumulative under either preference, exported at every collection from one start.
        assert.isTrue(active.length >= 2)
        for (const m of active) {
          assert.strictEqual(m.metric.sum!.aggregationTemporality, AGGREGATION_TEMPORALITY_CUMULATIVE)
          assert.strictEqual(pointsOf(m.metric)[0].asInt, "3")
          assert.strictEqual(pointsOf(m.metric)[0].startTimeUnixNano, pointsOf(active[0]!.metric)[0].startTimeUnixNano)
        }
        const points = counted(got)
        for (const m of requests) {
          assert.strictEqual(
            m.metric.sum!.aggregationTemporality,
            temporality === "delta" ? AGGREGATION_TEMPORALITY_DELTA : AGGREGATION_TEMPORALITY_CUMULATIVE
          )
        }
        if (temporality === "delta") {
          // Each recording once, in the interval it happened in; an interval without one exports nothing; the
          // intervals follow each other without overlapping.
          assert.deepStrictEqual(points.map((p) => p.asInt), ["2", "3"])
          assert.isTrue(BigInt(points[1].startTimeUnixNano) >= BigInt(points[0].timeUnixNano))
          assert.isTrue(BigInt(points[0].startTimeUnixNano) < BigInt(points[0].timeUnixNano))
        } else {
          // Every collection carries the total so far, from one start time.
          const values = points.map((p) => p.asInt)
          const firstFive = values.indexOf("5")
          assert.isTrue(firstFive >= 1)
          assert.deepStrictEqual(values, values.map((_, i) => i < firstFive ? "2" : "5"))
          for (const p of points) assert.strictEqual(p.startTimeUnixNano, points[0].startTimeUnixNano)
        }
      }), 60_000)
  }
})
