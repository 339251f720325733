import { assert, describe, it } from "@effect/vitest"
import * as Net from "node:net"
import { ConfigProvider, Context, Effect, Exit, Layer, Scope } from "effect"
import * as Instruments from "../../src/probe/Instruments.ts"
import { type LogData, type SpanData, TelemetrySink } from "../../src/probe/Telemetry.ts"
import * as KernelClock from "../../src/telemetry/KernelClock.ts"
import * as Telemetry from "../../src/telemetry/Telemetry.ts"
import * as TelemetryConfig from "../../src/telemetry/TelemetryConfig.ts"

/**
 * A collector that accepts connections and never answers: the worst case for shutdown, since every request (and the
 * OpenTelemetry exporters' own shutdown, which waits for them) hangs until its own timeout.
 */
const blackhole = Effect.acquireRelease(
  Effect.callback<{ readonly server: Net.Server; readonly sockets: Set<Net.Socket>; readonly port: number }>(
    (resume) => {
      const sockets = new Set<Net.Socket>()
      const server = Net.createServer((socket) => {
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
        socket.on("error", () => undefined)
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({ server, sockets, port: (server.address() as Net.AddressInfo).port })))
    }
  ),
  ({ server, sockets }) =>
    Effect.callback<void>((resume) => {
      for (const s of sockets) s.destroy()
      server.close(() => resume(Effect.void))
    })
)

const httpSpan = (i: number): SpanData => ({
  pid: 4242,
  probe: "net/http.server",
  traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  spanId: (i + 1).toString(16).padStart(16, "0"),
  traceFlags: 1,
  name: "GET /",
  kind: "server",
  startMonoNs: 1_000_000_000n,
  endMonoNs: 1_002_000_000n,
  attributes: { "http.request.method": "GET", "http.route": "/", "http.response.status_code": 200 },
  status: { code: "unset" }
})

const requests = Instruments.counter("http.server.requests", { unit: "{request}", description: "Requests." })

const logRecord = (i: number): LogData => ({
  pid: 4242,
  probe: "go_panic",
  timeMonoNs: 1_000_000_000n + BigInt(i),
  severity: "error",
  body: `panic ${i}`,
  attributes: {}
})

describe("shutdown with a collector that never answers", () => {
  for (const protocol of ["http/protobuf", "grpc"] as const) {
    // Without the shutdown deadline, the 10-minute timeouts below would hold the close far past the test's timeout.
    it.live(`${protocol}: PROBESCOPE_SHUTDOWN_TIMEOUT bounds the close; everything unexported counts as failed`, () =>
      Effect.gen(function*() {
        const { port } = yield* blackhole
        const env = {
          OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
          OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
          OTEL_EXPORTER_OTLP_TIMEOUT: "600000",
          OTEL_BSP_EXPORT_TIMEOUT: "600000",
          OTEL_METRIC_EXPORT_TIMEOUT: "600000",
          OTEL_BSP_SCHEDULE_DELAY: "10",
          OTEL_BSP_MAX_QUEUE_SIZE: "100",
          OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "10",
          OTEL_BLRP_EXPORT_TIMEOUT: "600000",
          OTEL_BLRP_SCHEDULE_DELAY: "10",
          OTEL_BLRP_MAX_EXPORT_BATCH_SIZE: "5",
          PROBESCOPE_SHUTDOWN_TIMEOUT: "1000"
        }
        const layer = Layer.unwrap(
          Effect.map(
            Effect.all([TelemetryConfig.load, TelemetryConfig.loadMetrics, TelemetryConfig.loadLogs]),
            ([config, metrics, logs]) =>
              Telemetry.layerWith(config, { clock: KernelClock.layerFixed(0n), metrics, logs })
          )
        ).pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env))))
        const scope = yield* Scope.make()
        const ctx = yield* Layer.buildWithScope(layer, scope)
        const sink = Context.get(ctx, TelemetrySink)
        const telemetry = Context.get(ctx, Telemetry.Telemetry)
        for (let i = 0; i < 300; i++) yield* sink.span(httpSpan(i))
        // One series: one metric data point in the collection at close.
        yield* sink.measurements!([
          { pid: 4242, probe: "net/http.server", instrument: requests, value: 300, attributes: {} }
        ])
        yield* sink.logs!(Array.from({ length: 20 }, (_, i) => logRecord(i)))
        // Let the first batch go out and hang.
        yield* Effect.sleep("100 millis")
        yield* Scope.close(scope, Exit.void)
        const stats = yield* telemetry.stats
        const spans = stats.exporters[0]!
        assert.deepStrictEqual([spans.sent, spans.queued, spans.inFlight, spans.exported], [300, 0, 0, 0])
        assert.strictEqual(spans.sent, spans.dropped + spans.failed)
        assert.isAbove(spans.failed, 0)
        const points = stats.metrics[0]!
        assert.deepStrictEqual([points.sent, points.exported, points.failed, points.inFlight], [1, 0, 1, 0])
        const logs = stats.logs[0]!
        assert.deepStrictEqual([logs.sent, logs.queued, logs.inFlight, logs.exported], [20, 0, 0, 0])
        assert.strictEqual(logs.sent, logs.dropped + logs.failed)
        assert.isAbove(logs.failed, 0)
        assert.deepStrictEqual(stats.lost, { spans: 300, metricPoints: 1, logRecords: 20, total: 321 })
        assert.strictEqual(yield* telemetry.lost, 321)
      }), 60_000)
  }
})
