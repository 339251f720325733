/**
 * The telemetry layer against a real OpenTelemetry Collector (test/collector/Collector.ts): spans and metrics exported
 * over each OTLP protocol pass through the collector and arrive unchanged at the test receiver behind it; spans sent
 * while the collector is down arrive once it is back, and a hung collector (accepts, never answers) cannot hold up
 * shutdown past its deadline. Every case checks the pipeline's books: sent = exported + dropped + failed.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Context, Duration, Effect, Layer, Schedule } from "effect"
import { beforeAll } from "vitest"
import * as Http from "../../src/instrumentations/internal/Http.ts"
import type { Measurement } from "../../src/probe/Telemetry.ts"
import { type SpanData, TelemetrySink } from "../../src/probe/Telemetry.ts"
import type { BatcherStats } from "../../src/telemetry/Batcher.ts"
import * as KernelClock from "../../src/telemetry/KernelClock.ts"
import * as ProcessResources from "../../src/telemetry/ProcessResources.ts"
import * as Telemetry from "../../src/telemetry/Telemetry.ts"
import * as TelemetryConfig from "../../src/telemetry/TelemetryConfig.ts"
import type * as Receiver from "../receiver/Receiver.ts"
import * as Collector from "./Collector.ts"
import { assertSpanAsSent } from "../receiver/expect.ts"

// The first build compiles the collector (minutes on a 2-core machine): outside every test's own timeout.
beforeAll(() => Effect.runPromise(Collector.build), 45 * 60_000)

const OFFSET = 1_700_000_000_000_000_000n
const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"

/** Four spans; `batch` varies the ids so that each batch of a test is told apart at the receiver. */
const spansOf = (batch: number): ReadonlyArray<SpanData> => {
  const id = (n: number) => `${batch.toString(16)}${n}`.padEnd(16, "a")
  return [
    {
      pid: 4242,
      probe: "net/http.server",
      traceId: TRACE,
      spanId: id(1),
      parentSpanId: "b7ad6b7169203331",
      parentIsRemote: true,
      traceFlags: 1,
      name: "GET /users/{id}",
      kind: "server",
      startMonoNs: 1_000_000_123n,
      endMonoNs: 1_012_345_678n,
      attributes: {
        "http.request.method": "GET",
        "http.route": "/users/{id}",
        "http.response.status_code": 200,
        "url.path": "/users/7"
      },
      status: { code: "unset" }
    },
    {
      pid: 4242,
      probe: "database/sql",
      traceId: TRACE,
      spanId: id(2),
      parentSpanId: id(1),
      traceFlags: 1,
      name: "SELECT users",
      kind: "client",
      startMonoNs: 1_001_000_000n,
      endMonoNs: 1_004_000_001n,
      attributes: { "db.system.name": "postgresql", "db.response.returned_rows": 1, "cached": false, "ratio": 0.5 },
      status: { code: "error", message: "connection reset" }
    },
    {
      pid: 4242,
      probe: "net/http.client",
      traceId: TRACE,
      spanId: id(3),
      parentSpanId: id(1),
      traceFlags: 1,
      name: "POST",
      kind: "client",
      startMonoNs: 1_005_000_000n,
      endMonoNs: 1_008_000_000n,
      attributes: {
        "http.request.method": "POST",
        "server.address": "backend",
        "server.port": 9090,
        "http.response.status_code": 201
      },
      status: { code: "unset" }
    },
    {
      pid: 777,
      probe: "kafka.producer",
      traceId: "0af7651916cd43dd8448eb211c80319c",
      spanId: id(4),
      traceFlags: 0,
      name: "publish",
      kind: "producer",
      startMonoNs: 5_000_000_000n,
      endMonoNs: 5_000_000_999n,
      attributes: { "tags": ["a", "b"] },
      status: { code: "ok" }
    }
  ]
}


const telemetryFor = (env: Record<string, string>, withMetrics = false) =>
  Layer.unwrap(
    Effect.map(
      Effect.all([TelemetryConfig.load, TelemetryConfig.loadMetrics]),
      ([config, metrics]) =>
        Telemetry.layerWith(config, { clock: KernelClock.layerFixed(OFFSET), ...(withMetrics ? { metrics } : {}) })
    )
  ).pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env))))

/** Builds the telemetry layer in the current scope with both processes registered. */
const startTelemetry = Effect.fnUntraced(function*(env: Record<string, string>, withMetrics = false) {
  const ctx = yield* Layer.build(telemetryFor(env, withMetrics))
  const r = Context.get(ctx, ProcessResources.ProcessResources)
  yield* r.register(4242, { exe: "/srv/bin/users-api", goVersion: "1.26.0" })
  yield* r.register(777, { exe: "/opt/worker", goVersion: "1.24.3", serviceName: "worker" })
  return { sink: Context.get(ctx, TelemetrySink), telemetry: Context.get(ctx, Telemetry.Telemetry) }
})

const sendAll = (sink: TelemetrySink["Service"], spans: ReadonlyArray<SpanData>) =>
  Effect.forEach(spans, (s) => sink.span(s), { discard: true })

/** The duration measurement an HTTP probe records with each of its spans (spans no longer make metrics). */
const durationsOf = (spans: ReadonlyArray<SpanData>): ReadonlyArray<Measurement> =>
  spans.filter((s) => s.attributes["http.request.method"] !== undefined).map((s) => {
    const server = s.kind === "server"
    const keys = server ? Http.SERVER_METRIC_KEYS : Http.CLIENT_METRIC_KEYS
    return {
      pid: s.pid,
      probe: s.probe,
      instrument: server ? Http.serverDuration : Http.clientDuration,
      value: Number(s.endMonoNs - s.startMonoNs) / 1e9,
      attributes: Object.fromEntries(keys.flatMap((k) => s.attributes[k] === undefined ? [] : [[k, s.attributes[k]!]]))
    }
  })

/** Every span offered to a pipeline is accounted for exactly once (once nothing is queued or in flight). */
const assertBooksBalance = (e: BatcherStats) => {
  assert.strictEqual(e.queued, 0)
  assert.strictEqual(e.inFlight, 0)
  assert.strictEqual(e.sent, e.exported + e.dropped + e.failed)
}

/** The spans arrived exactly once each, as sent; the collector re-exports everything over OTLP/HTTP protobuf. */
const assertArrived = (received: ReadonlyArray<Receiver.ReceivedSpan>, spans: ReadonlyArray<SpanData>) => {
  assert.deepStrictEqual(received.map((r) => r.spanId).sort(), spans.map((s) => s.spanId).sort())
  for (const expected of spans) {
    const got = received.find((r) => r.spanId === expected.spanId)!
    // The collector re-exports over OTLP/HTTP protobuf and keeps the OTLP span flags.
    assertSpanAsSent(got, expected, { protocol: "http/protobuf", offsetNs: OFFSET })
  }
  const server = received.find((r) => r.spanId === spans[0]!.spanId)!
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
  const worker = received.find((r) => r.spanId === spans[3]!.spanId)!
  assert.strictEqual(worker.resource["service.name"], "worker")
  assert.strictEqual(worker.resource["process.pid"], 777)
}

describe("export through a real OpenTelemetry Collector", () => {
  for (const protocol of ["http/protobuf", "http/json", "grpc"] as const) {
    it.live(`spans and metrics over ${protocol} pass through the collector unchanged`, () =>
      Effect.gen(function*() {
        const collector = yield* Collector.make()
        assert.include(collector.version, "0.161.0")
        const spans = spansOf(1)
        const telemetry = yield* Effect.scoped(Effect.gen(function*() {
          const { sink, telemetry } = yield* startTelemetry({
            OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
            OTEL_EXPORTER_OTLP_ENDPOINT: protocol === "grpc" ? collector.grpcEndpoint : collector.httpEndpoint,
            OTEL_RESOURCE_ATTRIBUTES: "deployment.environment.name=e2e",
            OTEL_BSP_SCHEDULE_DELAY: "50",
            // One collection, at shutdown: the points to expect are then exactly one per series.
            OTEL_METRIC_EXPORT_INTERVAL: "3600000"
          }, true)
          yield* sendAll(sink, spans)
          yield* sink.measurements!(durationsOf(spans))
          return telemetry
        }))

        const received = yield* collector.receiver.waitFor(spans.length)
        assertArrived(received, spans)
        // Two HTTP series (the server and the HTTP client probes of pid 4242 record one each), each under its probe.
        const points = yield* collector.receiver.waitForMetrics((p) => p.length >= 2)
        assert.deepStrictEqual(
          points.map((p) => [p.name, p.count, p.resource["process.pid"], p.attributes["http.response.status_code"]])
            .sort(),
          [["http.client.request.duration", 1, 4242, 201], ["http.server.request.duration", 1, 4242, 200]]
        )
        for (const p of points) {
          assert.strictEqual(p.type, "histogram")
          assert.strictEqual(p.temporality, "AGGREGATION_TEMPORALITY_CUMULATIVE")
          const probe = p.name === "http.server.request.duration" ? "net/http.server" : "net/http.client"
          assert.deepStrictEqual(p.scope, { name: `probescope/${probe}`, version: ProcessResources.version })
        }

        const stats = yield* telemetry.stats
        const e = stats.exporters[0]!
        assertBooksBalance(e)
        assert.strictEqual(e.sent, spans.length)
        assert.strictEqual(e.exported, spans.length)
        const m = stats.metrics[0]!
        assert.strictEqual(m.sent, m.exported + m.dropped + m.failed + m.inFlight)
        assert.strictEqual(m.exported, points.length)
        assert.strictEqual(stats.lost.total, 0)
        // Nothing more trickles in: what the receiver holds is all that went through.
        yield* Effect.sleep(Duration.millis(300))
        assert.strictEqual((yield* collector.receiver.spans).length, spans.length)
        assert.strictEqual((yield* collector.receiver.metrics).length, points.length)
      }))
  }

  it.live("spans sent while the collector is down are retried and arrive once it is back on the same ports", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const { sink, telemetry } = yield* startTelemetry({
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.httpEndpoint,
        OTEL_EXPORTER_OTLP_TIMEOUT: "1000",
        OTEL_BSP_SCHEDULE_DELAY: "20",
        // 100 ms doubling, 8 retries: about 25 s of patience, far more than the outage below.
        PROBESCOPE_EXPORT_RETRIES: "8",
        PROBESCOPE_EXPORT_RETRY_DELAY: "100",
        OTEL_RESOURCE_ATTRIBUTES: "deployment.environment.name=e2e"
      })
      const before = spansOf(1)
      yield* sendAll(sink, before)
      yield* collector.receiver.waitFor(before.length)

      yield* collector.stop
      assert.strictEqual(yield* collector.state, "down")
      const during = spansOf(2)
      yield* sendAll(sink, during)
      // Down long enough for the first attempt and two retries (100 + 200 ms of backoff) to be refused.
      const down = yield* telemetry.stats.pipe(
        Effect.repeat({ until: (s) => s.exporters[0]!.failedAttempts >= 3, schedule: Schedule.spaced("20 millis") }),
        Effect.timeout(Duration.seconds(10))
      )
      assert.strictEqual(down.exporters[0]!.exported, before.length)
      assert.isTrue(down.exporters[0]!.failing)
      assert.strictEqual(down.exporters[0]!.lastError._tag, "Some")

      const restarted = Date.now()
      yield* collector.start
      assert.strictEqual(yield* collector.state, "up")
      const received = yield* collector.receiver.waitFor(before.length + during.length, Duration.seconds(30))
      // How long export took to resume, for the log: bounded by the retry backoff, not asserted to the millisecond.
      yield* Effect.logInfo(`export resumed ${Date.now() - restarted} ms after the collector came back`)
      assertArrived(received, [...before, ...during])

      const e = (yield* telemetry.stats).exporters[0]!
      assertBooksBalance(e)
      assert.strictEqual(e.sent, before.length + during.length)
      assert.strictEqual(e.exported, before.length + during.length)
      assert.strictEqual(e.dropped, 0)
      assert.strictEqual(e.failed, 0)
      assert.isFalse(e.failing)
    }), 120_000)

  for (const protocol of ["http/protobuf", "grpc"] as const) {
    it.live(`a hung collector (${protocol}) cannot hold shutdown past its deadline; the spans count as failed`, () =>
      Effect.gen(function*() {
        const collector = yield* Collector.make()
        yield* collector.blackHole
        assert.strictEqual(yield* collector.state, "black-hole")
        const spans = spansOf(3)
        const started = Date.now()
        const telemetry = yield* Effect.scoped(Effect.gen(function*() {
          const { sink, telemetry } = yield* startTelemetry({
            OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
            OTEL_EXPORTER_OTLP_ENDPOINT: protocol === "grpc" ? collector.grpcEndpoint : collector.httpEndpoint,
            OTEL_EXPORTER_OTLP_TIMEOUT: "400",
            // Nothing leaves before shutdown: the whole export happens against the deadline.
            OTEL_BSP_SCHEDULE_DELAY: "60000",
            PROBESCOPE_EXPORT_RETRIES: "1",
            PROBESCOPE_EXPORT_RETRY_DELAY: "50",
            PROBESCOPE_SHUTDOWN_TIMEOUT: "1500"
          })
          yield* sendAll(sink, spans)
          return telemetry
        }))
        const elapsed = Date.now() - started
        assert.isBelow(elapsed, 1500 + 1500, `shutdown took ${elapsed} ms against a 1500 ms deadline`)
        // The black hole really hung the export: a refused connection would have failed at once, not after the
        // 400 ms export timeout.
        assert.isAtLeast(elapsed, 400)

        const e = (yield* telemetry.stats).exporters[0]!
        assertBooksBalance(e)
        assert.strictEqual(e.sent, spans.length)
        assert.strictEqual(e.exported, 0)
        assert.strictEqual(e.failed + e.dropped, spans.length)
        const error = e.lastError._tag === "Some" ? e.lastError.value.message : ""
        assert.match(error, /timed out|DEADLINE_EXCEEDED/)
        yield* Effect.logInfo(`hung ${protocol} collector: shutdown in ${elapsed} ms, last error: ${error}`)
        assert.deepStrictEqual(yield* collector.receiver.spans, [])

        // Back from the black hole on the same ports, the collector delivers again.
        yield* collector.start
        const again = spansOf(4)
        yield* Effect.scoped(Effect.gen(function*() {
          const { sink } = yield* startTelemetry({
            OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
            OTEL_EXPORTER_OTLP_ENDPOINT: protocol === "grpc" ? collector.grpcEndpoint : collector.httpEndpoint,
            OTEL_RESOURCE_ATTRIBUTES: "deployment.environment.name=e2e",
            OTEL_BSP_SCHEDULE_DELAY: "20"
          })
          yield* sendAll(sink, again)
        }))
        assertArrived(yield* collector.receiver.waitFor(again.length), again)
      }), 60_000)
  }
})
