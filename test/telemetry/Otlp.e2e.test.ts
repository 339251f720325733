import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Context, Duration, Effect, Layer, Option, Schedule, Stream } from "effect"
import * as Ids from "../../src/probe/Ids.ts"
import { type SpanData, TelemetrySink } from "../../src/probe/Telemetry.ts"
import * as KernelClock from "../../src/telemetry/KernelClock.ts"
import * as ProcessResources from "../../src/telemetry/ProcessResources.ts"
import * as Telemetry from "../../src/telemetry/Telemetry.ts"
import * as TelemetryConfig from "../../src/telemetry/TelemetryConfig.ts"
import * as Receiver from "../receiver/Receiver.ts"
import { assertSpanAsSent } from "../receiver/expect.ts"

const OFFSET = 1_700_000_000_000_000_000n
const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"

const spans: ReadonlyArray<SpanData> = [
  {
    pid: 4242,
    probe: "net/http.server",
    traceId: TRACE,
    spanId: "00f067aa0ba902b7",
    parentSpanId: "b7ad6b7169203331",
    parentIsRemote: true,
    traceFlags: 1,
    name: "GET /users/{id}",
    kind: "server",
    startMonoNs: 1_000_000_123n,
    endMonoNs: 1_012_345_678n,
    attributes: { "http.request.method": "GET", "http.response.status_code": 200, "url.path": "/users/7" },
    status: { code: "unset" }
  },
  {
    pid: 4242,
    probe: "database/sql",
    traceId: TRACE,
    spanId: "1111111111111111",
    parentSpanId: "00f067aa0ba902b7",
    traceFlags: 1,
    name: "SELECT users",
    kind: "client",
    startMonoNs: 1_001_000_000n,
    endMonoNs: 1_004_000_001n,
    attributes: { "db.system.name": "postgresql", "db.response.returned_rows": 1, "cached": false, "ratio": 0.5 },
    status: { code: "error", message: "connection reset" }
  },
  {
    pid: 777,
    probe: "net/http.client",
    traceId: "0af7651916cd43dd8448eb211c80319c",
    spanId: "2222222222222222",
    traceFlags: 0,
    name: "POST",
    kind: "producer",
    startMonoNs: 5_000_000_000n,
    endMonoNs: 5_000_000_999n,
    attributes: { "tags": ["a", "b"] },
    status: { code: "ok" }
  }
]


const telemetryFor = (env: Record<string, string>) =>
  Layer.unwrap(
    Effect.map(
      TelemetryConfig.load,
      (config) => Telemetry.layerWith(config, { clock: KernelClock.layerFixed(OFFSET) })
    )
  ).pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env))))

/** Runs the telemetry layer in its own scope: emitting, then closing it (which flushes). */
const emitAll = (env: Record<string, string>) =>
  Effect.scoped(
    Effect.gen(function*() {
      const ctx = yield* Layer.build(telemetryFor(env))
      const r = Context.get(ctx, ProcessResources.ProcessResources)
      yield* r.register(4242, { exe: "/srv/bin/users-api", goVersion: "1.26.0" })
      yield* r.register(777, { exe: "/opt/worker", goVersion: "1.24.3", serviceName: "worker" })
      const sink = Context.get(ctx, TelemetrySink)
      for (const s of spans) yield* sink.span(s)
      return Context.get(ctx, Telemetry.Telemetry)
    })
  )

const assertArrived = (received: ReadonlyArray<Receiver.ReceivedSpan>, protocol: Receiver.ReceivedSpan["protocol"]) => {
  assert.strictEqual(received.length, spans.length)
  for (const expected of spans) {
    const got = received.find((r) => r.spanId === Ids.hex(expected.spanId))
    assert.isDefined(got, Ids.hex(expected.spanId))
    if (got === undefined) continue
    assertSpanAsSent(got, expected, { protocol, offsetNs: OFFSET })
  }
  const server = received.find((r) => r.spanId === "00f067aa0ba902b7")!
  assert.deepStrictEqual(server.resource, {
    "service.name": "users-api",
    "process.pid": 4242,
    "process.executable.path": "/srv/bin/users-api",
    "process.executable.name": "users-api",
    "process.runtime.name": "go",
    "process.runtime.version": "1.26.0",
    "telemetry.distro.name": "probescope",
    "telemetry.distro.version": ProcessResources.version,
    "deployment.environment.name": "e2e"
  })
  const worker = received.find((r) => r.spanId === "2222222222222222")!
  assert.strictEqual(worker.resource["service.name"], "worker")
  assert.strictEqual(worker.resource["process.pid"], 777)
  assert.strictEqual(worker.resource["process.runtime.version"], "1.24.3")
}

describe("OTLP export to a real receiver", () => {
  for (const protocol of ["http/protobuf", "http/json", "grpc"] as const) {
    it.live(`exports exactly what the probes saw over ${protocol}`, () =>
      Effect.gen(function*() {
        const receiver = yield* Receiver.make()
        const telemetry = yield* emitAll({
          OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
          OTEL_EXPORTER_OTLP_ENDPOINT: protocol === "grpc" ? receiver.grpcEndpoint : receiver.httpEndpoint,
          OTEL_EXPORTER_OTLP_HEADERS: "x-probescope-test=a%20b",
          OTEL_RESOURCE_ATTRIBUTES: "deployment.environment.name=e2e",
          OTEL_BSP_SCHEDULE_DELAY: "50"
        })
        const received = yield* receiver.waitFor(spans.length)
        assertArrived(received, protocol)
        assert.deepStrictEqual(received[0]!.headers, { "x-probescope-test": "a b" })
        const streamed = yield* receiver.stream.pipe(Stream.take(spans.length), Stream.runCollect)
        assert.deepStrictEqual(Array.from(streamed), received)
        const stats = yield* telemetry.stats
        assert.strictEqual(stats.received, 3)
        assert.strictEqual(stats.exporters[0]!.exported, 3)
        assert.strictEqual(stats.exporters[0]!.failed, 0)
      }))
  }

  it.live("counts a down exporter as a typed error, keeps running, and delivers once the receiver is back", () =>
    Effect.gen(function*() {
      // Learn two free ports, then take the receiver down.
      const first = yield* Receiver.make()
      const { httpPort, grpcPort, httpEndpoint } = first
      yield* first.stop
      const ctx = yield* Layer.build(telemetryFor({
        OTEL_EXPORTER_OTLP_ENDPOINT: httpEndpoint,
        OTEL_EXPORTER_OTLP_TIMEOUT: "500",
        OTEL_BSP_SCHEDULE_DELAY: "20",
        PROBESCOPE_EXPORT_RETRIES: "8",
        PROBESCOPE_EXPORT_RETRY_DELAY: "100"
      }))
      const sink = Context.get(ctx, TelemetrySink)
      const telemetry = Context.get(ctx, Telemetry.Telemetry)
      for (const s of spans) yield* sink.span(s)
      const down = yield* telemetry.stats.pipe(
        Effect.repeat({ until: (s) => s.exporters[0]!.failedAttempts >= 1, schedule: Schedule.spaced("20 millis") }),
        Effect.timeout(Duration.seconds(10))
      )
      const error = Option.getOrThrow(down.exporters[0]!.lastError)
      assert.strictEqual(error._tag, "ExportError")
      assert.strictEqual(error.endpoint, `${httpEndpoint}/v1/traces`)
      assert.include(error.message, `${httpEndpoint}/v1/traces`)
      assert.strictEqual(down.exporters[0]!.exported, 0)

      const back = yield* Receiver.make({ httpPort, grpcPort })
      const received = yield* back.waitFor(spans.length, Duration.seconds(20))
      assert.deepStrictEqual(received.map((r) => r.spanId).sort(), spans.map((s) => s.spanId).sort())
      const after = yield* telemetry.stats
      assert.strictEqual(after.exporters[0]!.exported, 3)
      assert.strictEqual(after.exporters[0]!.failed, 0)
    }), 60_000)

  it.live("gives up after the retries: spans counted as failed with a typed error, the pipeline keeps running", () =>
    Effect.gen(function*() {
      const gone = yield* Receiver.make()
      const endpoint = gone.httpEndpoint
      yield* gone.stop
      const ctx = yield* Layer.build(telemetryFor({
        OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
        OTEL_EXPORTER_OTLP_TIMEOUT: "300",
        OTEL_BSP_SCHEDULE_DELAY: "10",
        PROBESCOPE_EXPORT_RETRIES: "1",
        PROBESCOPE_EXPORT_RETRY_DELAY: "10"
      }))
      const sink = Context.get(ctx, TelemetrySink)
      const telemetry = Context.get(ctx, Telemetry.Telemetry)
      for (const s of spans) yield* sink.span(s)
      const stats = yield* telemetry.stats.pipe(
        Effect.repeat({ until: (s) => s.exporters[0]!.failed >= 3, schedule: Schedule.spaced("20 millis") }),
        Effect.timeout(Duration.seconds(10))
      )
      const e = stats.exporters[0]!
      assert.strictEqual(e.exported, 0)
      assert.strictEqual(e.failed, 3)
      // One attempt plus one retry, for the one batch.
      assert.strictEqual(e.failedAttempts, 2)
      const error = Option.getOrThrow(e.lastError)
      assert.strictEqual(error._tag, "ExportError")
      assert.strictEqual(
        error.message,
        `export to ${endpoint}/v1/traces failed: connect ECONNREFUSED ${endpoint.slice(7)}`
      )
      // Still accepting spans afterwards.
      yield* sink.span(spans[0]!)
      assert.strictEqual((yield* telemetry.stats).exporters[0]!.accepted, 4)
    }), 60_000)
})
