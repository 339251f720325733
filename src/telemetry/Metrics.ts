/**
 * The metrics the probes record into the instruments they declared (see `Probe.instrument({ instruments })`),
 * aggregated per process resource (the very resource objects the spans are exported under) and probe, cumulative or
 * delta as `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` says. Every `OTEL_METRIC_EXPORT_INTERVAL` and when
 * the scope closes, everything is collected and handed to the configured exporters (OTLP over http/protobuf,
 * http/json or grpc; a console table). Nothing here knows what a probe measures.
 */
import type { Resource } from "@opentelemetry/resources"
import {
  AggregationTemporality,
  DataPointType,
  type Histogram,
  type PushMetricExporter,
  type ResourceMetrics
} from "@opentelemetry/sdk-metrics"
import { Context, Duration, Effect, Fiber, Option } from "effect"
import type { Measurement } from "../probe/Telemetry.ts"
import { ExportError } from "./Exporter.ts"
import * as Aggregate from "./internal/aggregate.ts"
import * as Deadline from "./internal/deadline.ts"
import * as LossReport from "./internal/lossReport.ts"
import * as OtelExport from "./internal/otelExport.ts"
import { exportWith } from "./internal/otelExport.ts"
import * as Client from "./internal/otlp/client.ts"
import { makeMetricsEncoder } from "./internal/otlp/metrics.ts"
import { version } from "./ProcessResources.ts"
import { DEFAULT_SHUTDOWN_TIMEOUT_MILLIS, type MetricsConfig, type OtlpConfig } from "./TelemetryConfig.ts"

export type { ResourceMetrics } from "@opentelemetry/sdk-metrics"

export const OVERFLOW_ATTRIBUTE = Aggregate.OVERFLOW_ATTRIBUTE

/** The instrumentation scope of a probe's metrics (the same as its spans'). */
export const scopeOf = (probe: string) => ({ name: `probescope/${probe}`, version })

/** Something that ships one collection: cumulative data, one `ResourceMetrics` per process. */
export interface MetricsExporter {
  readonly name: string
  readonly endpoint: string
  readonly export: (batch: ReadonlyArray<ResourceMetrics>) => Effect.Effect<void, ExportError>
  readonly shutdown: Effect.Effect<void>
}

/** Wraps an OpenTelemetry JS `PushMetricExporter`: one export call per resource, in order. */
export const fromOtel = (name: string, endpoint: string, exporter: PushMetricExporter): MetricsExporter => ({
  name,
  endpoint,
  export: (batch) =>
    Effect.forEach(
      batch,
      (metrics) => exportWith("metrics export", name, endpoint, (done) => exporter.export(metrics, done)),
      { discard: true }
    ),
  shutdown: Effect.promise(() => exporter.shutdown().catch(() => undefined))
})

/**
 * The OTLP metrics exporter for the configured protocol (`config.endpoint` is the metrics URL for http, the server
 * for grpc): each collection encoded by this module's own encoder (internal/otlp/metrics.ts: protobuf for
 * http/protobuf and grpc, OTLP/JSON for http/json) into as few requests as the size bound allows, sent one after
 * the other over the span exporter's transport (internal/otlp/client.ts). None of the OpenTelemetry SDK's metrics
 * exporters, its transformer or protobufjs is loaded. Connects at the first export.
 */
export const otlp = (config: OtlpConfig): MetricsExporter => {
  const encoder = makeMetricsEncoder()
  const encode = config.protocol === "http/json" ? encoder.json : encoder.protobuf
  const client = Client.make(config, "metrics")
  return {
    name: "otlp",
    endpoint: config.endpoint,
    // One request per encoded part; `send` is called with the body alone (its second parameter is not an index).
    export: (batch) =>
      Effect.suspend(() => Effect.forEach(encode(batch), (body) => client.send(body), { discard: true })),
    shutdown: Effect.sync(client.close)
  }
}

const formatNumber = (v: number) => Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)))

/** "≤ 25" for the bucket that holds the median, "> 10" past the last bound (in the instrument's unit). */
const medianBucket = (boundaries: ReadonlyArray<number>, counts: ReadonlyArray<number>, total: number) => {
  const half = Math.ceil(total / 2)
  let seen = 0
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i]!
    if (seen >= half) {
      return i < boundaries.length ? `≤ ${formatNumber(boundaries[i]!)}` : `> ${formatNumber(boundaries.at(-1)!)}`
    }
  }
  return "-"
}

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()
  return `${[line(header), ...rows.map(line)].join("\n")}\n`
}

/**
 * A short table of the histograms, one row per process and metric: recordings, the bucket that holds the median (in
 * the metric's unit), and recordings with an `error.type`. Empty when there are none.
 */
export const formatTable = (batch: ReadonlyArray<ResourceMetrics>): string => {
  // One row per process and metric, whichever probes recorded into it (e.g. nethttp_server and go_panic both
  // record http.server.request.duration, each under its own scope): a reader counts requests, not scopes.
  const rows = new Map<string, {
    readonly cells: ReadonlyArray<string>
    readonly unit: string
    boundaries: ReadonlyArray<number>
    counts: Array<number>
    total: number
    errors: number
  }>()
  for (const rm of batch) {
    const attrs = rm.resource.attributes
    for (const sm of rm.scopeMetrics) {
      for (const metric of sm.metrics) {
        if (metric.dataPointType !== DataPointType.HISTOGRAM) continue
        const cells = [String(attrs["service.name"] ?? ""), String(attrs["process.pid"] ?? ""), metric.descriptor.name]
        const key = cells.join("\u0000")
        let row = rows.get(key)
        if (row === undefined) {
          row = { cells, unit: metric.descriptor.unit, boundaries: [], counts: [], total: 0, errors: 0 }
          rows.set(key, row)
        }
        for (const dp of metric.dataPoints) {
          const h = dp.value as Histogram
          // Series with other boundaries than the row's first cannot share its buckets: the median is then "-".
          if (row.counts.length === 0) {
            row.boundaries = h.buckets.boundaries
            row.counts = new Array<number>(h.buckets.counts.length).fill(0)
          }
          if (h.buckets.counts.length === row.counts.length) {
            h.buckets.counts.forEach((c, i) => row!.counts[i] = row!.counts[i]! + c)
          }
          row.total += h.count
          if (dp.attributes["error.type"] !== undefined) row.errors += h.count
        }
      }
    }
  }
  if (rows.size === 0) return ""
  return table(
    ["service", "pid", "metric", "count", "p50", "errors"],
    [...rows.values()].map((r) => [
      ...r.cells,
      String(r.total),
      `${medianBucket(r.boundaries, r.counts, r.total)} ${r.unit}`.trimEnd(),
      String(r.errors)
    ])
  )
}

/**
 * A table of the sums and gauges in a collection (the probes' counters and gauges, the agent's own `probescope.*`
 * metrics), one row per series: metric, `counter`, `updowncounter` or `gauge`, its attributes as `k=v`, value. Empty
 * when there are none.
 */
export const formatSelfTable = (batch: ReadonlyArray<ResourceMetrics>): string => {
  const rows: Array<Array<string>> = []
  for (const rm of batch) {
    for (const sm of rm.scopeMetrics) {
      for (const metric of sm.metrics) {
        if (metric.dataPointType !== DataPointType.SUM && metric.dataPointType !== DataPointType.GAUGE) continue
        const kind = metric.dataPointType === DataPointType.GAUGE ?
          "gauge" :
          metric.isMonotonic ?
          "counter" :
          "updowncounter"
        for (const dp of metric.dataPoints) {
          const attributes = Object.entries(dp.attributes).map(([k, v]) => `${k}=${String(v)}`).join(" ")
          rows.push([metric.descriptor.name, kind, attributes, String(dp.value)])
        }
      }
    }
  }
  if (rows.length === 0) return ""
  return table(["metric", "kind", "attributes", "value"], rows)
}

/**
 * Prints each collection through `write` (stdout by default): the histograms as `formatTable`, then the sums and
 * gauges as `formatSelfTable`. Never fails.
 */
export const console = (
  write: (text: string) => void = (text) => void process.stdout.write(text)
): MetricsExporter => ({
  name: "console",
  endpoint: "stdout",
  export: (batch) =>
    Effect.sync(() => {
      const temporality = batch.some((rm) =>
          rm.scopeMetrics.some((sm) =>
            sm.metrics.some((m) =>
              m.dataPointType !== DataPointType.GAUGE && m.aggregationTemporality === AggregationTemporality.DELTA
            )
          )
        ) ?
        "delta" :
        "cumulative"
      const text = formatTable(batch)
      if (text !== "") write(`probescope histograms (${temporality})\n${text}`)
      const sums = formatSelfTable(batch)
      if (sums !== "") write(`probescope counters and gauges\n${sums}`)
    }),
  shutdown: Effect.void
})

/** Keeps every collection in memory (tests). */
export const memory = (): MetricsExporter & { readonly batches: Array<ReadonlyArray<ResourceMetrics>> } => {
  const batches: Array<ReadonlyArray<ResourceMetrics>> = []
  return {
    name: "memory",
    endpoint: "memory",
    batches,
    export: (batch) => Effect.sync(() => void batches.push(batch)),
    shutdown: Effect.void
  }
}

/** What became of the data points sent to one metrics exporter. */
export interface MetricsExporterStats {
  readonly exporter: string
  readonly endpoint: string
  /** Data points handed to this exporter (one per series per collection): `exported + dropped + failed + inFlight`. */
  readonly sent: number
  /** Data points in an export that succeeded. */
  readonly exported: number
  /**
   * Data points of a collection skipped because the previous export to this exporter was still running: at most one
   * export per exporter is pending, so a slow collector cannot pile collections up in memory.
   */
  readonly dropped: number
  /** Data points in an export that failed, timed out, or was cut off by the shutdown deadline. */
  readonly failed: number
  /** Data points being exported now. */
  readonly inFlight: number
  /** Failed exports (one per collection). */
  readonly failedExports: number
  readonly lastError: Option.Option<ExportError>
  /** True while the most recent export failed. */
  readonly failing: boolean
}

/** Counters for status lines and tests. */
export interface MetricsStats {
  /** Measurements recorded. */
  readonly recorded: number
  readonly collections: number
  /** Failed exports (one per exporter and collection), all exporters together. */
  readonly failedExports: number
  readonly lastError: Option.Option<ExportError>
  /** One entry per exporter. */
  readonly exporters: ReadonlyArray<MetricsExporterStats>
}

/** The running metrics. `record` is synchronous and cheap: the telemetry sink calls it per measurement. */
export class Metrics extends Context.Service<Metrics, {
  readonly record: (measurement: Measurement, resource: Resource) => void
  /** Collects now and exports to every exporter. */
  readonly flush: Effect.Effect<void>
  readonly stats: Effect.Effect<MetricsStats>
  /**
   * Stops the interval, exports a last collection and shuts the exporters down, all within the deadline. Runs once
   * (later calls do nothing); closing the scope calls it too.
   */
  readonly close: Effect.Effect<void>
}>()("probescope/telemetry/Metrics") {}

/** Overrides for embedding and tests. */
export interface Options {
  /** Use these exporters instead of the ones `config.exporters` names. */
  readonly exporters?: ReadonlyArray<MetricsExporter>
  /** Where the console exporter writes (stdout by default). */
  readonly write?: (text: string) => void
  /** Aggregation knobs: wall clock, cardinality limit, idle eviction (temporality comes from the config). */
  readonly aggregation?: Omit<Aggregate.AggregateOptions, "scope" | "temporality">
  /** The shutdown deadline (shared with the span pipelines); default: its own of 5 s. */
  readonly deadline?: Deadline.Deadline
  /** Minimum time between two loss warnings per exporter (default 5 s). */
  readonly reportIntervalMillis?: number
  /**
   * More data to export with every collection, after the probes' metrics: the telemetry layer passes the agent's own
   * metrics (`SelfMetrics.Registry.collect`). It must not fail; it runs within the shutdown deadline at close.
   */
  readonly selfMetrics?: Effect.Effect<ReadonlyArray<ResourceMetrics>>
}

/** Data points in one collection. */
export const dataPoints = (batch: ReadonlyArray<ResourceMetrics>): number => {
  let n = 0
  for (const rm of batch) for (const sm of rm.scopeMetrics) for (const m of sm.metrics) n += m.dataPoints.length
  return n
}

/**
 * Starts the metrics pipeline in the current scope: a collection every `config.intervalMillis`, and a last one (then the
 * exporters' shutdown) when it closes. Failed exports are counted and logged (rate-limited); cumulative data means
 * the next collection carries everything again.
 */
export const make = Effect.fnUntraced(function*(config: MetricsConfig, options: Options = {}) {
  const aggregate = Aggregate.make({
    ...options.aggregation,
    scope: scopeOf,
    ...(config.temporality === undefined ? {} : { temporality: config.temporality })
  })
  const exporters = options.exporters ?? config.exporters.map((name) =>
    name === "otlp" ? otlp(config.otlp) : console(options.write)
  )
  const deadline = options.deadline ?? Deadline.make(DEFAULT_SHUTDOWN_TIMEOUT_MILLIS)
  let recorded = 0
  let collections = 0
  let closing = false

  const pipes = exporters.map((exporter) => {
    const state = {
      exporter,
      sent: 0,
      exported: 0,
      dropped: 0,
      failed: 0,
      inFlight: 0,
      failedExports: 0,
      lastError: Option.none<ExportError>(),
      failing: false
    }
    const losses = LossReport.make({
      signal: "metric data points",
      exporter: exporter.name,
      endpoint: exporter.endpoint,
      dropReason: "previous export still running",
      read: () => state
    })
    return { state, losses }
  })
  let lastError = Option.none<ExportError>()
  const reportEvery = options.reportIntervalMillis ?? LossReport.DEFAULT_INTERVAL_MILLIS
  // Armed by the first loss since its last warning, as the span batchers': no timer while nothing is lost.
  const reporters = yield* Effect.forEach(pipes, (p) => LossReport.whenLost(p.losses, reportEvery))
  const lost = (pipe: (typeof pipes)[number]) => reporters[pipes.indexOf(pipe)]!.lost()

  const exportTo = (pipe: (typeof pipes)[number], batch: ReadonlyArray<ResourceMetrics>, points: number) =>
    Effect.suspend(() => {
      const state = pipe.state
      const exporter = state.exporter
      state.sent += points
      // One pending export per exporter: the collection is cumulative, so skipping it loses nothing the next
      // successful one does not carry, and keeps a hung collector from holding one collection per interval.
      if (state.inFlight > 0) {
        state.dropped += points
        lost(pipe)
        return Effect.void
      }
      state.inFlight = points
      return OtelExport.attempt(exporter, "metrics export", config.exportTimeoutMillis, () => exporter.export(batch)).pipe(
        Effect.match({
          onSuccess: () => {
            state.exported += points
            state.failing = false
          },
          onFailure: (error) => {
            state.failed += points
            state.failedExports++
            state.failing = true
            state.lastError = Option.some(error)
            lastError = state.lastError
            lost(pipe)
          }
        }),
        // Cut off by the shutdown deadline (or by `close` stopping the interval): never confirmed, so failed.
        Effect.onInterrupt(() =>
          Effect.sync(() => {
            state.failed += points
            lost(pipe)
          })
        ),
        Effect.ensuring(Effect.sync(() => void (state.inFlight = 0)))
      )
    })

  const flush = Effect.gen(function*() {
    const probeData = aggregate.collect()
    collections++
    const own = options.selfMetrics === undefined ? [] : yield* options.selfMetrics
    const batch = own.length === 0 ? probeData : [...probeData, ...own]
    if (batch.length === 0) return
    const points = dataPoints(batch)
    yield* Effect.forEach(pipes, (p) => exportTo(p, batch, points), { concurrency: "unbounded", discard: true })
  })

  const interval = Effect.sleep(Duration.millis(config.intervalMillis)).pipe(
    Effect.andThen(flush),
    Effect.forever
  )
  const loop = exporters.length > 0 ? yield* Effect.forkScoped(interval) : undefined

  // The interval stops first so the last collection is complete and is the only export in flight; then it and the
  // exporters' shutdown (which waits for their requests) share what is left of the deadline.
  const close = Effect.suspend(() => {
    if (closing) return Effect.void
    closing = true
    return Effect.gen(function*() {
      if (loop !== undefined) yield* Fiber.interrupt(loop)
      const done = yield* Deadline.within(deadline, flush)
      if (Option.isNone(done)) {
        yield* Effect.logWarning(
          `shutdown deadline (${deadline.totalMillis} ms) cut off the last metrics export`
        )
      }
      yield* Deadline.within(deadline, Effect.forEach(exporters, (e) => e.shutdown, { concurrency: "unbounded" }))
      yield* Effect.forEach(reporters, (r) => Fiber.interrupt(r.fiber), { discard: true })
      yield* Effect.forEach(pipes, (p) => p.losses.summary, { discard: true })
    })
  })
  yield* Effect.addFinalizer(() => close)

  return Metrics.of({
    record: exporters.length === 0
      ? () => void recorded++
      : (measurement, resource) => {
        recorded++
        aggregate.record(measurement, resource)
      },
    flush,
    stats: Effect.sync(() => ({
      recorded,
      collections,
      failedExports: pipes.reduce((n, p) => n + p.state.failedExports, 0),
      lastError,
      exporters: pipes.map(({ state: { exporter, ...counts } }) => ({
        exporter: exporter.name,
        endpoint: exporter.endpoint,
        ...counts
      }))
    })),
    close
  })
})
