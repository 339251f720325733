/**
 * RED metrics derived from the probes' spans: the stable OpenTelemetry HTTP duration histograms
 * (`http.server.request.duration`, `http.client.request.duration`, unit "s", the semconv's advised buckets), with
 * only the semconv's low-cardinality attributes, cumulative, one set per process resource (the very resource objects
 * the spans are exported under). Every `OTEL_METRIC_EXPORT_INTERVAL` and when the scope closes, everything is
 * collected and handed to the configured exporters (OTLP over http/protobuf, http/json or grpc; a console table).
 */
import type { Resource } from "@opentelemetry/resources"
import {
  DataPointType,
  type Histogram,
  type PushMetricExporter,
  type ResourceMetrics
} from "@opentelemetry/sdk-metrics"
import { Context, Duration, Effect, Fiber, Option } from "effect"
import type { SpanData } from "../probe/Telemetry.ts"
import { ExportError } from "./Exporter.ts"
import * as Deadline from "./internal/deadline.ts"
import * as LossReport from "./internal/lossReport.ts"
import * as OtelExport from "./internal/otelExport.ts"
import { deferredOtlp, exportWith } from "./internal/otelExport.ts"
import * as Histograms from "./internal/httpHistograms.ts"
import { version } from "./ProcessResources.ts"
import { DEFAULT_SHUTDOWN_TIMEOUT_MILLIS, type MetricsConfig, type OtlpConfig } from "./TelemetryConfig.ts"

export type { ResourceMetrics } from "@opentelemetry/sdk-metrics"

/** The semconv's advised explicit bucket boundaries for HTTP request durations, in seconds. */
export const BOUNDARIES = Histograms.BOUNDARIES
/** `http.server.request.duration`: recorded from SERVER spans. */
export const SERVER_METRIC = Histograms.SERVER_METRIC
/** `http.client.request.duration`: recorded from CLIENT spans. */
export const CLIENT_METRIC = Histograms.CLIENT_METRIC
/** The attributes the server metric keeps from a span (when present); no paths or peer addresses. */
export const SERVER_ATTRIBUTES: ReadonlyArray<string> = Histograms.SERVER_KEYS
/** The attributes the client metric keeps from a span (when present); no URLs or local ports. */
export const CLIENT_ATTRIBUTES: ReadonlyArray<string> = Histograms.CLIENT_KEYS
/** The instrumentation scope of the metrics. */
export const scope = { name: "probescope", version } as const

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
 * An OTLP metrics exporter for the configured protocol (`config.endpoint` is the metrics URL). As with spans, the
 * protocol's OpenTelemetry exporter is imported and built at the first export.
 */
export const otlp = (config: OtlpConfig): MetricsExporter => {
  const deferred = deferredOtlp<PushMetricExporter>("otlp", config, {
    grpc: () => import("@opentelemetry/exporter-metrics-otlp-grpc").then((m) => m.OTLPMetricExporter),
    json: () => import("@opentelemetry/exporter-metrics-otlp-http").then((m) => m.OTLPMetricExporter),
    proto: () => import("@opentelemetry/exporter-metrics-otlp-proto").then((m) => m.OTLPMetricExporter)
  })
  return {
    name: "otlp",
    endpoint: config.endpoint,
    export: (batch) =>
      Effect.flatMap(deferred.get, (exporter) =>
        Effect.forEach(
          batch,
          (metrics) => exportWith("metrics export", "otlp", config.endpoint, (done) => exporter.export(metrics, done)),
          { discard: true }
        )),
    shutdown: deferred.shutdown((exporter) => exporter.shutdown())
  }
}

const formatSeconds = (s: number) => s < 1 ? `${Math.round(s * 1000)}ms` : `${s}s`

/** "≤ 25ms" for the bucket that holds the median, "> 10s" past the last bound. */
const medianBucket = (counts: ReadonlyArray<number>, total: number) => {
  const half = Math.ceil(total / 2)
  let seen = 0
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i]!
    if (seen >= half) {
      return i < BOUNDARIES.length ? `≤ ${formatSeconds(BOUNDARIES[i]!)}` : `> ${formatSeconds(BOUNDARIES.at(-1)!)}`
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
 * A short table, one row per process and HTTP metric: requests, the bucket that holds the median, and requests with
 * an `error.type`. Empty when nothing was recorded. Sums and gauges (the agent's own metrics) are left out.
 */
export const formatTable = (batch: ReadonlyArray<ResourceMetrics>): string => {
  const rows: Array<Array<string>> = []
  for (const rm of batch) {
    const attrs = rm.resource.attributes
    for (const sm of rm.scopeMetrics) {
      for (const metric of sm.metrics) {
        if (metric.dataPointType !== DataPointType.HISTOGRAM) continue
        const counts = new Array<number>(BOUNDARIES.length + 1).fill(0)
        let total = 0
        let errors = 0
        for (const dp of metric.dataPoints) {
          const h = dp.value as Histogram
          total += h.count
          h.buckets.counts.forEach((c, i) => counts[i] += c)
          if (dp.attributes["error.type"] !== undefined) errors += h.count
        }
        rows.push([
          String(attrs["service.name"] ?? ""),
          String(attrs["process.pid"] ?? ""),
          metric.descriptor.name,
          String(total),
          medianBucket(counts, total),
          String(errors)
        ])
      }
    }
  }
  if (rows.length === 0) return ""
  return table(["service", "pid", "metric", "requests", "p50", "errors"], rows)
}

/**
 * A table of the sums and gauges in a collection (the agent's own `probescope.*` metrics), one row per series:
 * metric, `counter` or `gauge`, its attributes as `k=v`, value. Empty when there are none.
 */
export const formatSelfTable = (batch: ReadonlyArray<ResourceMetrics>): string => {
  const rows: Array<Array<string>> = []
  for (const rm of batch) {
    for (const sm of rm.scopeMetrics) {
      for (const metric of sm.metrics) {
        if (metric.dataPointType !== DataPointType.SUM && metric.dataPointType !== DataPointType.GAUGE) continue
        const kind = metric.dataPointType === DataPointType.SUM ? "counter" : "gauge"
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
 * Prints each collection through `write` (stdout by default): the HTTP metrics as `formatTable`, then the agent's
 * own metrics as `formatSelfTable`. Never fails.
 */
export const console = (
  write: (text: string) => void = (text) => void process.stdout.write(text)
): MetricsExporter => ({
  name: "console",
  endpoint: "stdout",
  export: (batch) =>
    Effect.sync(() => {
      const text = formatTable(batch)
      if (text !== "") write(`probescope HTTP metrics (cumulative)\n${text}`)
      const own = formatSelfTable(batch)
      if (own !== "") write(`probescope agent metrics\n${own}`)
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
export interface SpanMetricsStats {
  /** Spans offered to `record` (HTTP or not). */
  readonly recorded: number
  readonly collections: number
  /** Failed exports (one per exporter and collection), all exporters together. */
  readonly failedExports: number
  readonly lastError: Option.Option<ExportError>
  /** One entry per exporter. */
  readonly exporters: ReadonlyArray<MetricsExporterStats>
}

/** The running span metrics. `record` is synchronous and cheap: the telemetry sink calls it per span. */
export class SpanMetrics extends Context.Service<SpanMetrics, {
  readonly record: (span: SpanData, resource: Resource) => void
  /** Collects now and exports to every exporter. */
  readonly flush: Effect.Effect<void>
  readonly stats: Effect.Effect<SpanMetricsStats>
  /**
   * Stops the interval, exports a last collection and shuts the exporters down, all within the deadline. Runs once
   * (later calls do nothing); closing the scope calls it too.
   */
  readonly close: Effect.Effect<void>
}>()("probescope/telemetry/SpanMetrics") {}

/** Overrides for embedding and tests. */
export interface Options {
  /** Use these exporters instead of the ones `config.exporters` names. */
  readonly exporters?: ReadonlyArray<MetricsExporter>
  /** Where the console exporter writes (stdout by default). */
  readonly write?: (text: string) => void
  /** Aggregation knobs: wall clock, cardinality limit, idle eviction. */
  readonly histograms?: Omit<Histograms.HistogramsOptions, "scope">
  /** The shutdown deadline (shared with the span pipelines); default: its own of 5 s. */
  readonly deadline?: Deadline.Deadline
  /** Minimum time between two loss warnings per exporter (default 5 s). */
  readonly reportIntervalMillis?: number
  /**
   * More data to export with every collection, after the histograms: the telemetry layer passes the agent's own
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
 * Starts span metrics in the current scope: a collection every `config.intervalMillis`, and a last one (then the
 * exporters' shutdown) when it closes. Failed exports are counted and logged (rate-limited); cumulative data means
 * the next collection carries everything again.
 */
export const make = Effect.fnUntraced(function*(config: MetricsConfig, options: Options = {}) {
  const histograms = Histograms.make({ ...options.histograms, scope })
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

  const exportTo = (pipe: (typeof pipes)[number], batch: ReadonlyArray<ResourceMetrics>, points: number) =>
    Effect.suspend(() => {
      const state = pipe.state
      const exporter = state.exporter
      state.sent += points
      // One pending export per exporter: the collection is cumulative, so skipping it loses nothing the next
      // successful one does not carry, and keeps a hung collector from holding one collection per interval.
      if (state.inFlight > 0) {
        state.dropped += points
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
          }
        }),
        // Cut off by the shutdown deadline (or by `close` stopping the interval): never confirmed, so failed.
        Effect.onInterrupt(() => Effect.sync(() => void (state.failed += points))),
        Effect.ensuring(Effect.sync(() => void (state.inFlight = 0)))
      )
    })

  const flush = Effect.gen(function*() {
    const histogramData = histograms.collect()
    collections++
    const own = options.selfMetrics === undefined ? [] : yield* options.selfMetrics
    const batch = own.length === 0 ? histogramData : [...histogramData, ...own]
    if (batch.length === 0) return
    const points = dataPoints(batch)
    yield* Effect.forEach(pipes, (p) => exportTo(p, batch, points), { concurrency: "unbounded", discard: true })
  })

  const interval = Effect.sleep(Duration.millis(config.intervalMillis)).pipe(
    Effect.andThen(flush),
    Effect.forever
  )
  const loop = exporters.length > 0 ? yield* Effect.forkScoped(interval) : undefined
  const reportEvery = options.reportIntervalMillis ?? LossReport.DEFAULT_INTERVAL_MILLIS
  const reporters = yield* Effect.forEach(pipes, (p) => LossReport.schedule(p.losses, reportEvery))

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
      yield* Effect.forEach(reporters, Fiber.interrupt, { discard: true })
      yield* Effect.forEach(pipes, (p) => p.losses.summary, { discard: true })
    })
  })
  yield* Effect.addFinalizer(() => close)

  return SpanMetrics.of({
    record: exporters.length === 0
      ? () => void recorded++
      : (span, resource) => {
        recorded++
        histograms.record(span, resource)
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
