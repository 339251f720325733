import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Layer } from "effect"
import { type SpanData, TelemetrySink } from "../../src/probe/Telemetry.ts"
import * as KernelClock from "../../src/telemetry/KernelClock.ts"
import * as ProcessResources from "../../src/telemetry/ProcessResources.ts"
import * as Telemetry from "../../src/telemetry/Telemetry.ts"
import * as TelemetryConfig from "../../src/telemetry/TelemetryConfig.ts"
import * as Receiver from "../receiver/Receiver.ts"

const BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]

let next = 1
const span = (
  pid: number,
  kind: "server" | "client",
  ms: number,
  attributes: SpanData["attributes"]
): SpanData => ({
  pid,
  probe: kind === "server" ? "nethttp_server" : "nethttp_client",
  traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  spanId: (next++).toString(16).padStart(16, "0"),
  traceFlags: 1,
  name: "GET",
  kind,
  startMonoNs: 1_000_000_000n,
  endMonoNs: 1_000_000_000n + BigInt(ms * 1_000_000),
  attributes,
  status: { code: "unset" }
})

const server = (pid: number, ms: number, status: number) =>
  span(pid, "server", ms, {
    "http.request.method": "GET",
    "url.path": `/users/${ms}`,
    "url.scheme": "http",
    "http.route": "/users/{id}",
    "http.response.status_code": status,
    "network.peer.port": 50000 + ms,
    "network.protocol.version": "1.1",
    ...(status >= 500 ? { "error.type": String(status) } : {})
  })

const client = (pid: number, ms: number) =>
  span(pid, "client", ms, {
    "http.request.method": "POST",
    "url.full": `http://backend:9090/items/${ms}`,
    "server.address": "backend",
    "server.port": 9090,
    "http.response.status_code": 201
  })

const spans: ReadonlyArray<SpanData> = [
  server(4242, 3, 200),
  server(4242, 20, 200),
  server(4242, 40, 200),
  server(4242, 900, 503),
  client(4242, 80),
  server(777, 7, 200)
]

const telemetryFor = (env: Record<string, string>) =>
  Layer.unwrap(
    Effect.map(
      Effect.all([TelemetryConfig.load, TelemetryConfig.loadMetrics]),
      ([config, metrics]) => Telemetry.layerWith(config, { clock: KernelClock.layerFixed(0n), metrics })
    )
  ).pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env))))

/** Emits every span, then closes the layer: the last metrics collection is exported on the way out. */
const emitAll = (env: Record<string, string>) =>
  Effect.scoped(
    Effect.gen(function*() {
      const ctx = yield* Layer.build(telemetryFor(env))
      const r = Context.get(ctx, ProcessResources.ProcessResources)
      yield* r.register(4242, { exe: "/srv/bin/users-api", goVersion: "1.26.0" })
      yield* r.register(777, { exe: "/opt/worker", goVersion: "1.24.3", serviceName: "worker" })
      yield* Context.get(ctx, TelemetrySink).spans!(spans)
    })
  )

const buckets = (...values: ReadonlyArray<number>) => {
  const counts = new Array<number>(BOUNDS.length + 1).fill(0)
  for (const v of values) {
    let i = 0
    while (i < BOUNDS.length && v > BOUNDS[i]!) i++
    counts[i]!++
  }
  return counts
}

describe("OTLP metrics export to a real receiver", () => {
  for (const protocol of ["http/protobuf", "http/json", "grpc"] as const) {
    it.live(`exports the HTTP duration histograms per process over ${protocol}`, () =>
      Effect.gen(function*() {
        const receiver = yield* Receiver.make()
        const before = BigInt(Date.now()) * 1_000_000n
        yield* emitAll({
          OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
          OTEL_EXPORTER_OTLP_ENDPOINT: protocol === "grpc" ? receiver.grpcEndpoint : receiver.httpEndpoint,
          OTEL_EXPORTER_OTLP_METRICS_HEADERS: "x-probescope-test=metrics",
          OTEL_RESOURCE_ATTRIBUTES: "deployment.environment.name=e2e",
          OTEL_BSP_SCHEDULE_DELAY: "50",
          OTEL_METRIC_EXPORT_INTERVAL: "3600000"
        })
        const points = yield* receiver.waitForMetrics((p) => p.length >= 4)
        // The span stream holds spans only, all of them.
        const received = yield* receiver.waitFor(spans.length)
        assert.strictEqual(received.length, spans.length)
        assert.isTrue(received.every((s) => !("signal" in s)))

        assert.strictEqual(points.length, 4)
        for (const p of points) {
          assert.strictEqual(p.protocol, protocol)
          assert.deepStrictEqual(p.headers, { "x-probescope-test": "metrics" })
          assert.strictEqual(p.type, "histogram")
          assert.strictEqual(p.unit, "s")
          assert.strictEqual(p.temporality, "AGGREGATION_TEMPORALITY_CUMULATIVE")
          assert.deepStrictEqual(p.explicitBounds, BOUNDS)
          assert.deepStrictEqual(p.scope, { name: "probescope", version: ProcessResources.version })
          assert.isTrue(BigInt(p.startTimeUnixNano) >= before - 1_000_000_000n)
          assert.isTrue(BigInt(p.timeUnixNano) >= BigInt(p.startTimeUnixNano))
        }
        const users = points.filter((p) => p.resource["process.pid"] === 4242)
        const worker = points.filter((p) => p.resource["process.pid"] === 777)
        assert.deepStrictEqual(users[0]!.resource, {
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
        assert.strictEqual(worker[0]!.resource["service.name"], "worker")

        const pick = (
          list: typeof points,
          name: string,
          status: number
        ) => list.find((p) => p.name === name && p.attributes["http.response.status_code"] === status)!
        const ok = pick(users, "http.server.request.duration", 200)
        assert.deepStrictEqual(ok.attributes, {
          "http.request.method": "GET",
          "url.scheme": "http",
          "http.route": "/users/{id}",
          "http.response.status_code": 200,
          "network.protocol.version": "1.1"
        })
        assert.strictEqual(ok.count, 3)
        assert.closeTo(ok.sum!, 0.063, 1e-9)
        assert.strictEqual(ok.min, 0.003)
        assert.strictEqual(ok.max, 0.04)
        assert.deepStrictEqual(ok.bucketCounts, buckets(0.003, 0.02, 0.04))

        const failed = pick(users, "http.server.request.duration", 503)
        assert.strictEqual(failed.attributes["error.type"], "503")
        assert.strictEqual(failed.count, 1)
        assert.deepStrictEqual(failed.bucketCounts, buckets(0.9))

        const out = pick(users, "http.client.request.duration", 201)
        assert.deepStrictEqual(out.attributes, {
          "http.request.method": "POST",
          "server.address": "backend",
          "server.port": 9090,
          "http.response.status_code": 201
        })
        assert.strictEqual(out.count, 1)
        assert.strictEqual(out.sum, 0.08)
        assert.deepStrictEqual(out.bucketCounts, buckets(0.08))

        assert.strictEqual(worker.length, 1)
        assert.strictEqual(worker[0]!.name, "http.server.request.duration")
        assert.strictEqual(worker[0]!.count, 1)
        assert.deepStrictEqual(worker[0]!.bucketCounts, buckets(0.007))
      }))
  }

  it.live("OTEL_METRIC_EXPORT_INTERVAL: cumulative collections arrive on the interval while the agent runs", () =>
    Effect.gen(function*() {
      const receiver = yield* Receiver.make()
      const ctx = yield* Layer.build(telemetryFor({
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.httpEndpoint,
        OTEL_TRACES_EXPORTER: "none",
        OTEL_METRIC_EXPORT_INTERVAL: "100"
      }))
      const sink = Context.get(ctx, TelemetrySink)
      yield* sink.span(server(1, 3, 200))
      yield* receiver.waitForMetrics((p) => p.some((x) => x.count === 1))
      yield* sink.span(server(1, 4, 200))
      const points = yield* receiver.waitForMetrics((p) => p.some((x) => x.count === 2))
      const last = points.at(-1)!
      assert.strictEqual(last.count, 2)
      assert.strictEqual(last.startTimeUnixNano, points[0]!.startTimeUnixNano)
      assert.deepStrictEqual(last.bucketCounts, buckets(0.003, 0.004))
      assert.deepStrictEqual(yield* receiver.spans, [])
    }))
})
