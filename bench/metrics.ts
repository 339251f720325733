/**
 * The hot-path cost of the span-derived HTTP metrics: `SpanMetrics.record` per span (one process, and spans spread
 * over many processes so the last-resource shortcut misses), the telemetry sink's per-span cost with metrics on and
 * off (traces exporter none, so the difference is the metrics), and one collection's cost. No kernel, no root.
 *
 *   node_modules/.bin/node bench/metrics.ts [spans, default 200000]
 */
import { ConfigProvider, Context, Effect, Layer } from "effect"
import type { SpanData } from "../src/probe/Telemetry.ts"
import { TelemetrySink } from "../src/probe/Telemetry.ts"
import * as KernelClock from "../src/telemetry/KernelClock.ts"
import * as ProcessResources from "../src/telemetry/ProcessResources.ts"
import * as SpanMetrics from "../src/telemetry/SpanMetrics.ts"
import * as Telemetry from "../src/telemetry/Telemetry.ts"
import * as TelemetryConfig from "../src/telemetry/TelemetryConfig.ts"

const count = Number(process.argv[2] ?? 200_000)
const rounds = 5
const PROCESSES = 50

const hex = (n: number, width: number) => n.toString(16).padStart(width, "0")

/** Server and client spans as the net/http probes emit them: 20 routes, a few statuses, durations 0.1 ms – 2 s. */
const spans: ReadonlyArray<SpanData> = Array.from({ length: 4096 }, (_, i) => {
  const server = i % 3 !== 0
  const status = [200, 200, 200, 201, 404, 500][i % 6]!
  const ns = BigInt(Math.round(100_000 * Math.pow(20_000, (i % 97) / 96)))
  return {
    pid: 1000 + (i % PROCESSES),
    probe: server ? "nethttp_server" : "nethttp_client",
    traceId: hex(i + 1, 32),
    spanId: hex(i + 1, 16),
    traceFlags: 1,
    name: "GET",
    kind: server ? "server" : "client",
    startMonoNs: 1_000_000_000n,
    endMonoNs: 1_000_000_000n + ns,
    attributes: server
      ? {
        "http.request.method": "GET",
        "url.path": `/api/r${i % 20}/${i}`,
        "url.scheme": "http",
        "http.route": `/api/r${i % 20}/{id}`,
        "http.response.status_code": status,
        "server.address": "localhost",
        "server.port": 8080,
        "network.peer.address": "127.0.0.1",
        "network.peer.port": 40000 + (i % 20000),
        "network.protocol.version": "1.1",
        ...(status >= 500 ? { "error.type": String(status) } : {})
      }
      : {
        "http.request.method": "GET",
        "url.full": `http://backend:9090/items/${i}`,
        "server.address": `backend-${i % 4}`,
        "server.port": 9090,
        "http.response.status_code": status,
        "network.local.port": 40000 + (i % 20000),
        ...(status >= 400 ? { "error.type": String(status) } : {})
      },
    status: { code: "unset" }
  }
})

/** ns per span: the median of `rounds` timed loops over `count` spans (round 0 warms the JIT). */
const time = (f: (i: number) => void): number => {
  const samples: Array<number> = []
  for (let round = 0; round <= rounds; round++) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < count; i++) f(i)
    const ns = Number(process.hrtime.bigint() - t0) / count
    if (round > 0) samples.push(ns)
  }
  return samples.sort((a, b) => a - b)[Math.floor(samples.length / 2)]!
}

const config: TelemetryConfig.MetricsConfig = {
  exporters: [],
  otlp: { protocol: "http/protobuf", endpoint: "http://127.0.0.1:1/v1/metrics", headers: {}, timeoutMillis: 1000 },
  intervalMillis: 3_600_000,
  exportTimeoutMillis: 1000
}

const rows: Array<[string, number]> = []

await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
  const resources = ProcessResources.make({ serviceName: undefined, attributes: {} })
  for (let p = 0; p < PROCESSES; p++) {
    yield* resources.register(1000 + p, { exe: `/srv/svc-${p}`, goVersion: "1.26.0" })
  }
  const resourceOf = spans.map((s) => resources.resourceFor(s.pid))

  // One process: every span of the run under the same resource.
  const one = yield* SpanMetrics.make(config, { exporters: [SpanMetrics.memory()] })
  const single = resources.resourceFor(1000)
  rows.push(["record, one process", time((i) => one.record(spans[i & 4095]!, single))])

  // Spans interleaved across 50 processes: a resource map lookup per span.
  const manyOut = SpanMetrics.memory()
  const many = yield* SpanMetrics.make(config, { exporters: [manyOut] })
  rows.push([`record, ${PROCESSES} processes`, time((i) => many.record(spans[i & 4095]!, resourceOf[i & 4095]!))])

  // The sink as the Runner calls it, batches of 64, traces exporter none: without and with metrics.
  const sinkCost = (metrics: TelemetryConfig.MetricsConfig | undefined) =>
    Effect.gen(function*() {
      const base = yield* TelemetryConfig.load.pipe(
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ OTEL_TRACES_EXPORTER: "none" })))
      )
      const ctx = yield* Layer.build(Telemetry.layerWith(base, {
        clock: KernelClock.layerFixed(0n),
        ...(metrics === undefined ? {} : { metrics, metricsOptions: { exporters: [SpanMetrics.memory()] } })
      }))
      const r = Context.get(ctx, ProcessResources.ProcessResources)
      for (let p = 0; p < PROCESSES; p++) yield* r.register(1000 + p, { exe: `/srv/svc-${p}`, goVersion: "1.26.0" })
      const sink = Context.get(ctx, TelemetrySink)
      const batches = Array.from({ length: 64 }, (_, b) => spans.slice(b * 64, b * 64 + 64))
      return time((i) => {
        if ((i & 63) === 0) Effect.runSync(sink.spans!(batches[(i >> 6) & 63]!))
      })
    })
  const off = yield* sinkCost(undefined)
  const on = yield* sinkCost(config)
  rows.push(["sink, batch of 64, metrics off", off])
  rows.push(["sink, batch of 64, metrics on", on])

  // One collection of everything `many` holds.
  const t0 = process.hrtime.bigint()
  yield* many.flush
  const collectUs = Number(process.hrtime.bigint() - t0) / 1000
  const points = manyOut.batches[0]!.reduce(
    (n, rm) => n + rm.scopeMetrics[0]!.metrics.reduce((m, metric) => m + metric.dataPoints.length, 0),
    0
  )

  console.log(`${count} spans per round, ${rounds} rounds (median), ${PROCESSES} processes, Node ${process.version}`)
  console.log("| stage | ns/span | spans/s |")
  console.log("|---|---:|---:|")
  for (const [name, ns] of rows) console.log(`| ${name} | ${ns.toFixed(1)} | ${(1e9 / ns / 1000).toFixed(0)} k |`)
  console.log(`| metrics overhead in the sink | ${(on - off).toFixed(1)} | |`)
  console.log(
    `one collection (${PROCESSES} processes, ${points} series) to a memory exporter: ${collectUs.toFixed(0)} µs`
  )
})))
