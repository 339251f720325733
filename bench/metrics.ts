/**
 * The hot-path cost of the probes' metrics: `Metrics.record` per measurement (into the HTTP server duration
 * histogram as the HTTP probes record it, a counter, a gauge; one process, and measurements spread over many
 * processes so the last-resource shortcut misses), the telemetry sink's per-measurement cost with metrics on and off
 * (the difference is the aggregation), and one collection's cost, cumulative and delta; then the OTLP encoding of
 * that collection: probescope's own encoder (protobuf, JSON) against the OpenTelemetry SDK's serializers (which the
 * metrics export used until session 20, one request per resource), the first call (module load and a cold JIT) and
 * the median of later ones, in the same run. No kernel, no root.
 *
 *   node_modules/.bin/node bench/metrics.ts [measurements, default 200000]
 */
import { ConfigProvider, Context, Effect, Layer } from "effect"
import {
  CLIENT_METRIC_KEYS,
  clientDuration,
  SERVER_METRIC_KEYS,
  serverDuration
} from "../src/instrumentations/internal/Http.ts"
import * as Instruments from "../src/probe/Instruments.ts"
import type { AttributeValue, Measurement } from "../src/probe/Telemetry.ts"
import { TelemetrySink } from "../src/probe/Telemetry.ts"
import * as KernelClock from "../src/telemetry/KernelClock.ts"
import { makeMetricsEncoder } from "../src/telemetry/internal/otlp/metrics.ts"
import * as Metrics from "../src/telemetry/Metrics.ts"
import * as ProcessResources from "../src/telemetry/ProcessResources.ts"
import * as Telemetry from "../src/telemetry/Telemetry.ts"
import * as TelemetryConfig from "../src/telemetry/TelemetryConfig.ts"

const count = Number(process.argv[2] ?? 200_000)
const rounds = 5
const PROCESSES = 50
const SIZE = 4096

const requests = Instruments.counter("bench.requests", { unit: "{request}", description: "Requests." })
const queue = Instruments.gauge("bench.queue.depth", { unit: "{item}", description: "Queue depth." })

/** The attributes an HTTP probe keeps for its duration metric (`emitWithDuration`): a fresh object per record. */
const keep = (keys: ReadonlyArray<string>, from: Record<string, AttributeValue>) => {
  const out: Record<string, AttributeValue> = {}
  for (const k of keys) if (from[k] !== undefined) out[k] = from[k]
  return out
}

/**
 * HTTP server and client durations as the net/http probes record them: 20 routes, a few statuses, 0.1 ms – 2 s;
 * then a counter and a gauge with one attribute each.
 */
const httpMeasurements: ReadonlyArray<Measurement> = Array.from({ length: SIZE }, (_, i) => {
  const server = i % 3 !== 0
  const status = [200, 200, 200, 201, 404, 500][i % 6]!
  const seconds = 0.0001 * Math.pow(20_000, (i % 97) / 96)
  const pid = 1000 + (i % PROCESSES)
  const attributes = server ?
    keep(SERVER_METRIC_KEYS, {
      "http.request.method": "GET",
      "url.scheme": "http",
      "http.route": `/api/r${i % 20}/{id}`,
      "http.response.status_code": status,
      "network.protocol.version": "1.1",
      ...(status >= 500 ? { "error.type": String(status) } : {})
    }) :
    keep(CLIENT_METRIC_KEYS, {
      "http.request.method": "GET",
      "server.address": `backend-${i % 4}`,
      "server.port": 9090,
      "http.response.status_code": status,
      ...(status >= 400 ? { "error.type": String(status) } : {})
    })
  return {
    pid,
    probe: server ? "nethttp_server" : "nethttp_client",
    instrument: server ? serverDuration : clientDuration,
    value: seconds,
    attributes
  }
})

const counterMeasurements: ReadonlyArray<Measurement> = Array.from({ length: SIZE }, (_, i) => ({
  pid: 1000 + (i % PROCESSES),
  probe: "bench",
  instrument: requests,
  value: 1,
  attributes: { "http.route": `/api/r${i % 20}/{id}` }
}))

const gaugeMeasurements: ReadonlyArray<Measurement> = Array.from({ length: SIZE }, (_, i) => ({
  pid: undefined,
  probe: "bench",
  instrument: queue,
  value: i % 100,
  attributes: { "network.interface": `eth${i % 4}` }
}))

/** ns per measurement: the median of `rounds` timed loops over `count` measurements (round 0 warms the JIT). */
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
  temporality: "cumulative",
  intervalMillis: 3_600_000,
  exportTimeoutMillis: 1000
}

const rows: Array<[string, number]> = []
const collections: Array<string> = []

await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
  const resources = ProcessResources.make({ serviceName: undefined, attributes: {} })
  for (let p = 0; p < PROCESSES; p++) {
    yield* resources.register(1000 + p, { exe: `/srv/svc-${p}`, goVersion: "1.26.0" })
  }
  const agent = ProcessResources.make({ serviceName: "probescope", attributes: {} }).resourceFor(0)
  const resourceOf = (m: Measurement) => m.pid === undefined ? agent : resources.resourceFor(m.pid)
  const httpResources = httpMeasurements.map(resourceOf)
  const counterResources = counterMeasurements.map(resourceOf)

  // One process: every measurement of the run under the same resource.
  const single = resources.resourceFor(1000)
  const one = yield* Metrics.make(config, { exporters: [Metrics.memory()] })
  rows.push([
    "record, HTTP duration histogram, one process",
    time((i) => one.record(httpMeasurements[i & 4095]!, single))
  ])

  // Interleaved across 50 processes: a resource map lookup per measurement.
  const many = yield* Metrics.make(config, { exporters: [Metrics.memory()] })
  rows.push([
    `record, HTTP duration histogram, ${PROCESSES} processes`,
    time((i) => many.record(httpMeasurements[i & 4095]!, httpResources[i & 4095]!))
  ])
  rows.push([
    `record, counter (1 attribute), ${PROCESSES} processes`,
    time((i) => many.record(counterMeasurements[i & 4095]!, counterResources[i & 4095]!))
  ])
  rows.push([
    "record, gauge (1 attribute), agent resource",
    time((i) => many.record(gaugeMeasurements[i & 4095]!, agent))
  ])

  // The sink as a Runner calls it, batches of 64, traces exporter none: without and with metrics.
  const sinkCost = (metrics: TelemetryConfig.MetricsConfig | undefined) =>
    Effect.gen(function*() {
      const base = yield* TelemetryConfig.load.pipe(
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ OTEL_TRACES_EXPORTER: "none" })))
      )
      const ctx = yield* Layer.build(Telemetry.layerWith(base, {
        clock: KernelClock.layerFixed(0n),
        ...(metrics === undefined ? {} : { metrics, metricsOptions: { exporters: [Metrics.memory()] } })
      }))
      const r = Context.get(ctx, ProcessResources.ProcessResources)
      for (let p = 0; p < PROCESSES; p++) yield* r.register(1000 + p, { exe: `/srv/svc-${p}`, goVersion: "1.26.0" })
      const sink = Context.get(ctx, TelemetrySink)
      const batches = Array.from({ length: 64 }, (_, b) => httpMeasurements.slice(b * 64, b * 64 + 64))
      return time((i) => {
        if ((i & 63) === 0) Effect.runSync(sink.measurements!(batches[(i >> 6) & 63]!))
      })
    })
  const off = yield* sinkCost(undefined)
  const on = yield* sinkCost(config)
  rows.push(["sink, batch of 64, metrics off", off])
  rows.push(["sink, batch of 64, metrics on", on])

  // One collection of everything `many` holds, cumulative; then delta, after one round of recordings.
  let sample: ReadonlyArray<Metrics.ResourceMetrics> = []
  const collect = (temporality: TelemetryConfig.TemporalityPreference) =>
    Effect.gen(function*() {
      const out = Metrics.memory()
      const metrics = yield* Metrics.make({ ...config, temporality }, { exporters: [out] })
      for (let i = 0; i < SIZE; i++) {
        metrics.record(httpMeasurements[i]!, httpResources[i]!)
        metrics.record(counterMeasurements[i]!, counterResources[i]!)
        metrics.record(gaugeMeasurements[i]!, agent)
      }
      const t0 = process.hrtime.bigint()
      yield* metrics.flush
      const us = Number(process.hrtime.bigint() - t0) / 1000
      const points = Metrics.dataPoints(out.batches[0]!)
      if (temporality === "cumulative") sample = out.batches[0]!
      collections.push(
        `one ${temporality} collection (${out.batches[0]!.length} resources, ${points} series) to a memory ` +
          `exporter: ${us.toFixed(0)} µs (${(us * 1000 / points).toFixed(0)} ns/series)`
      )
    })
  yield* collect("cumulative")
  yield* collect("delta")

  // Encoding that cumulative collection: the first call in this process, then the median of 20.
  const encoders: Array<readonly [string, () => Promise<(batch: ReadonlyArray<Metrics.ResourceMetrics>) => unknown>]> =
    [
      ["probescope protobuf", async () => makeMetricsEncoder().protobuf],
      ["probescope JSON", async () => makeMetricsEncoder().json],
      ["SDK protobuf (per resource)", async () => {
        const { ProtobufMetricsSerializer } = await import("@opentelemetry/otlp-transformer")
        return (batch) => batch.map((rm) => ProtobufMetricsSerializer.serializeRequest(rm))
      }],
      ["SDK JSON (per resource)", async () => {
        const { JsonMetricsSerializer } = await import("@opentelemetry/otlp-transformer")
        return (batch) => batch.map((rm) => JsonMetricsSerializer.serializeRequest(rm))
      }]
    ]
  const encodings: Array<string> = []
  for (const [name, load] of encoders) {
    const t0 = performance.now()
    const encode = yield* Effect.promise(load)
    encode(sample)
    const first = performance.now() - t0
    const times: Array<number> = []
    for (let i = 0; i < 20; i++) {
      const t = performance.now()
      encode(sample)
      times.push(performance.now() - t)
    }
    times.sort((a, b) => a - b)
    encodings.push(`| ${name} | ${first.toFixed(1)} | ${times[10]!.toFixed(2)} |`)
  }

  console.log(
    `${count} measurements per round, ${rounds} rounds (median), ${PROCESSES} processes, Node ${process.version}`
  )
  console.log("| stage | ns/measurement | measurements/s |")
  console.log("|---|---:|---:|")
  for (const [name, ns] of rows) console.log(`| ${name} | ${ns.toFixed(1)} | ${(1e9 / ns / 1000).toFixed(0)} k |`)
  console.log(`| metrics overhead in the sink | ${(on - off).toFixed(1)} | |`)
  for (const line of collections) console.log(line)
  console.log(`\nOTLP encoding of the cumulative collection (${Metrics.dataPoints(sample)} series):`)
  console.log("| encoder | first call, ms (import included) | median of 20, ms |")
  console.log("|---|---:|---:|")
  for (const line of encodings) console.log(line)
})))
