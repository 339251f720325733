/**
 * The telemetry layer: provides the probes' `TelemetrySink`. Spans and log records become OpenTelemetry spans and
 * log records (per-process resource, wall-clock times), each handed to one bounded batch pipeline per configured
 * exporter of its signal; measurements go into the metrics aggregation, collected and exported on an interval.
 */
import { Context, Effect, Layer, type Scope } from "effect"
import * as Ids from "../probe/Ids.ts"
import { type LogData, type Measurement, type SpanData, TelemetrySink } from "../probe/Telemetry.ts"
import type { BatcherStats } from "./Batcher.ts"
import * as Batcher from "./Batcher.ts"
import * as Exporter from "./Exporter.ts"
import * as Deadline from "./internal/deadline.ts"
import { toReadableSpan } from "./internal/readableSpan.ts"
import * as KernelClock from "./KernelClock.ts"
import * as Logs from "./Logs.ts"
import * as Metrics from "./Metrics.ts"
import * as OtlpExporter from "./OtlpExporter.ts"
import * as ProcessResources from "./ProcessResources.ts"
import * as SelfMetrics from "./SelfMetrics.ts"
import * as TelemetryConfig from "./TelemetryConfig.ts"

/** Data lost per signal: it will never reach the exporter it was meant for. */
export interface Lost {
  /** Span exports lost: invalid spans, plus dropped and failed spans summed over the span exporters. */
  readonly spans: number
  /** Metric data points dropped or failed, summed over the metrics exporters. */
  readonly metricPoints: number
  /** Log records dropped or failed, summed over the log exporters. */
  readonly logRecords: number
  /** `spans + metricPoints + logRecords`: non-zero means some telemetry did not arrive. */
  readonly total: number
}

/** Counters for `probescope run` status lines. */
export interface TelemetryStats {
  /** Spans handed to the sink. */
  readonly received: number
  /** Spans refused because an id was not lowercase hex of the right length (they would spoil a whole batch). */
  readonly invalid: number
  /** One entry per span exporter pipeline. */
  readonly exporters: ReadonlyArray<BatcherStats>
  /** One entry per metrics exporter (empty when metrics are off). */
  readonly metrics: ReadonlyArray<Metrics.MetricsExporterStats>
  /** Measurements handed to the sink. */
  readonly measurements: number
  /** Log records handed to the sink. */
  readonly logRecords: number
  /** One entry per log exporter pipeline (empty when logs are off). */
  readonly logs: ReadonlyArray<BatcherStats>
  readonly lost: Lost
}

/** Sums what was lost: invalid spans, and what every exporter dropped or failed to export. */
export const lostOf = (
  invalid: number,
  exporters: ReadonlyArray<Pick<BatcherStats, "dropped" | "failed">>,
  metrics: ReadonlyArray<Pick<Metrics.MetricsExporterStats, "dropped" | "failed">>,
  logs: ReadonlyArray<Pick<BatcherStats, "dropped" | "failed">> = []
): Lost => {
  const spans = exporters.reduce((n, e) => n + e.dropped + e.failed, invalid)
  const metricPoints = metrics.reduce((n, e) => n + e.dropped + e.failed, 0)
  const logRecords = logs.reduce((n, e) => n + e.dropped + e.failed, 0)
  return { spans, metricPoints, logRecords, total: spans + metricPoints + logRecords }
}

const failingSuffix = (e: { readonly failing: boolean; readonly lastError: BatcherStats["lastError"] }) =>
  e.failing && e.lastError._tag === "Some" ? ` (failing: ${e.lastError.value.message})` : ""

/**
 * One status line, e.g. `spans 120 · otlp http://c:4318/v1/traces: 118 exported, 0 queued, 2 dropped, 0 failed ·
 * metric points · otlp http://c:4318/v1/metrics: 40 exported, 0 dropped, 8 failed`, with the last export error
 * appended to an exporter while its exports are failing.
 */
export const formatStats = (stats: TelemetryStats): string =>
  [
    stats.invalid > 0 ? `spans ${stats.received} (${stats.invalid} invalid)` : `spans ${stats.received}`,
    // In flight only when there is some, so that the numbers on the line add up to what was sent.
    ...stats.exporters.map((e) =>
      `${e.exporter} ${e.endpoint}: ${e.exported} exported, ${e.queued} queued, ` +
      `${e.inFlight > 0 ? `${e.inFlight} in flight, ` : ""}${e.dropped} dropped, ${e.failed} failed${failingSuffix(e)}`
    ),
    ...(stats.metrics.length === 0 ? [] : ["metric points"]),
    ...stats.metrics.map((e) =>
      `${e.exporter} ${e.endpoint}: ${e.exported} exported, ${e.dropped} dropped, ${e.failed} failed${failingSuffix(e)}`
    ),
    ...(stats.logs.length === 0 ? [] : [`log records ${stats.logRecords}`]),
    ...stats.logs.map((e) =>
      `${e.exporter} ${e.endpoint}: ${e.exported} exported, ${e.queued} queued, ${e.dropped} dropped, ` +
      `${e.failed} failed${failingSuffix(e)}`
    )
  ].join(" · ")

/** Control and status of the running telemetry pipeline. */
export class Telemetry extends Context.Service<Telemetry, {
  readonly stats: Effect.Effect<TelemetryStats>
  /** Exports everything queued now. */
  readonly flush: Effect.Effect<void>
  /** `stats.lost.total`: how much data was lost so far (0: everything sent so far arrived or is still queued). */
  readonly lost: Effect.Effect<number>
  /**
   * Start the shutdown deadline's clock now: whoever begins a shutdown (a signal) calls it, so the bound covers the
   * whole stop — detaching, draining the rings, the last exports — and not only what telemetry does at the end.
   */
  readonly beginShutdown: Effect.Effect<void>
  /**
   * Contributes samples to the agent's own metrics (`probescope.*`) until the current scope closes: `source` is read
   * at every metrics collection, when the scope closes, and once more at the next collection (so the last one
   * carries its final totals; a counter keeps the highest total read, and a source that can no longer be read keeps
   * its latest samples). A source that fails, dies or takes longer than a second is skipped for that collection and
   * logged once. Nothing is read when metrics are off (`OTEL_METRICS_EXPORTER=none`).
   */
  readonly registerSelfMetrics: (
    source: SelfMetrics.SelfMetricSource,
    options?: SelfMetrics.RegisterOptions
  ) => Effect.Effect<void, never, Scope.Scope>
}>()("probescope/telemetry/Telemetry") {}

/** `signal` attribute of the export metrics. */
export type SelfMetricSignal = "spans" | "metric_points" | "log_records"

/**
 * The telemetry layer's own samples (see docs/telemetry.md): spans received and refused, and per exporter and signal
 * what was sent, exported, dropped (by reason), failed and is held now. For every exporter `sent = exported +
 * dropped + failed + queue.size`. Every series is reported from the start, zeros included, so rates need no gaps.
 */
export const selfMetricSamples = (stats: TelemetryStats): ReadonlyArray<SelfMetrics.SelfMetricSample> => {
  const samples: Array<SelfMetrics.SelfMetricSample> = []
  const counter = (name: string, description: string, unit: string, value: number, attributes = {}) =>
    samples.push({ name, description, unit, kind: "counter", value, attributes })
  counter("probescope.spans.received", "Spans handed to the telemetry sink by the probes.", "{span}", stats.received)
  counter(
    "probescope.spans.invalid",
    "Spans refused by the telemetry sink because a trace, span or parent id was malformed.",
    "{span}",
    stats.invalid
  )
  const perExporter = (
    signal: SelfMetricSignal,
    e: Metrics.MetricsExporterStats | BatcherStats,
    held: number,
    drops: ReadonlyArray<readonly [reason: string, count: number]>
  ) => {
    const attributes = { exporter: e.exporter, signal }
    counter(
      "probescope.export.sent",
      "Items (spans, metric data points) handed to an exporter: exported + dropped + failed + queue.size.",
      "{item}",
      e.sent,
      attributes
    )
    counter("probescope.export.exported", "Items the exporter confirmed.", "{item}", e.exported, attributes)
    for (const [reason, count] of drops) {
      counter(
        "probescope.export.dropped",
        "Items never queued for export (queue full, shutting down, previous export still running).",
        "{item}",
        count,
        { ...attributes, reason }
      )
    }
    counter(
      "probescope.export.failed",
      "Items queued but not exported: retries exhausted, export timed out, or cut off by the shutdown deadline.",
      "{item}",
      e.failed,
      attributes
    )
    samples.push({
      name: "probescope.export.queue.size",
      description: "Items held for an exporter now: queued plus being exported.",
      unit: "{item}",
      kind: "gauge",
      value: held,
      attributes
    })
  }
  for (const e of stats.exporters) {
    perExporter("spans", e, e.queued + e.inFlight, [
      ["queue_full", e.dropped - e.droppedShuttingDown],
      ["shutting_down", e.droppedShuttingDown]
    ])
  }
  for (const e of stats.metrics) perExporter("metric_points", e, e.inFlight, [["busy", e.dropped]])
  for (const e of stats.logs) {
    perExporter("log_records", e, e.queued + e.inFlight, [
      ["queue_full", e.dropped - e.droppedShuttingDown],
      ["shutting_down", e.droppedShuttingDown]
    ])
  }
  return samples
}

/** Everything the telemetry layer provides. */
export type Services = TelemetrySink | Telemetry | ProcessResources.ProcessResources | KernelClock.KernelClock

/** Overrides for embedding and tests. */
export interface Options {
  /** Use these exporters instead of the ones `config.exporters` names. */
  readonly exporters?: ReadonlyArray<Exporter.Exporter>
  /** Where the console exporter writes (stdout by default). */
  readonly write?: (text: string) => void
  readonly clock?: Layer.Layer<KernelClock.KernelClock>
  /** Aggregate the probes' measurements and export them (`layer` passes `TelemetryConfig.loadMetrics`). */
  readonly metrics?: TelemetryConfig.MetricsConfig
  /** Overrides for the metrics (exporters, aggregation knobs); `write` above is their console too. */
  readonly metricsOptions?: Metrics.Options
  /** Export the probes' log records (`layer` passes `TelemetryConfig.loadLogs`); without it they are counted only. */
  readonly logs?: TelemetryConfig.LogsConfig
  /** Use these log exporters instead of the ones `logs.exporters` names. */
  readonly logExporters?: ReadonlyArray<Logs.LogExporter>
  /** Minimum time between two loss warnings of one exporter (default 5 s). */
  readonly reportIntervalMillis?: number
  /**
   * Also export the agent's own metrics (`probescope.*`, telemetry's export counters and every registered source)
   * with each metrics collection; needs `metrics`. `layer` turns this on.
   */
  readonly selfMetrics?: boolean
}

/** W3C-valid ids: right length, not all zero; an absent or empty parent is a root. */
const validIds = (d: Omit<SpanData, "probe">) =>
  Ids.isValid(d.traceId, 16, true) && Ids.isValid(d.spanId, 8, true) &&
  (Ids.isEmpty(d.parentSpanId) || Ids.isValid(d.parentSpanId, 8, false))

const validLogIds = (d: LogData) => Ids.isValid(d.traceId, 16, true) && Ids.isValid(d.spanId, 8, true)

const withoutIds = ({ spanId: _s, traceFlags: _f, traceId: _t, ...rest }: LogData): LogData => rest

/**
 * The part of `PROBESCOPE_SHUTDOWN_TIMEOUT` the last exports may use: a tenth of it (at most 500 ms) is kept for what
 * follows them (closing the BPF objects, the summary, the process's exit), so the whole stop fits in the bound when
 * the deadline started at the signal (`beginShutdown`).
 */
export const exportBudget = (shutdownTimeoutMillis: number): number =>
  shutdownTimeoutMillis - Math.min(500, Math.floor(shutdownTimeoutMillis / 10))

/** A span exporter and the items it takes: the OTLP one encodes SpanData itself, the others take ReadableSpans. */
type SpanExporter =
  | { readonly _tag: "direct"; readonly exporter: OtlpExporter.OtlpExporter }
  | { readonly _tag: "readable"; readonly exporter: Exporter.Exporter }

const exportersFor = (config: TelemetryConfig.TelemetryConfig, options: Options): ReadonlyArray<SpanExporter> =>
  options.exporters?.map((exporter) => ({ _tag: "readable", exporter })) ??
    config.exporters.map((name) =>
      name === "otlp"
        ? { _tag: "direct", exporter: OtlpExporter.make(config.otlp) }
        : { _tag: "readable", exporter: Exporter.console(config.consoleFormat, options.write) }
    )

const pipeline = (config: TelemetryConfig.TelemetryConfig, options: Options) =>
  Layer.effectContext(
    Effect.gen(function*() {
      const clock = yield* KernelClock.KernelClock
      const resources = yield* ProcessResources.ProcessResources
      // One deadline for the whole shutdown: every pipeline's last export and exporter shutdown share it.
      const deadline = Deadline.make(exportBudget(config.shutdownTimeoutMillis))
      const pipelineOptions = {
        deadline,
        ...(options.reportIntervalMillis === undefined ? {} : { reportIntervalMillis: options.reportIntervalMillis })
      }
      // In configuration order (the stats list them so); each span goes to each in the form it takes.
      const batchers: Array<Pick<Batcher.Batcher<unknown>, "stats" | "flush" | "close">> = []
      const direct: Array<Batcher.Batcher<OtlpExporter.OtlpSpan>> = []
      const readable: Array<Batcher.Batcher<Exporter.ReadableSpan>> = []
      for (const e of exportersFor(config, options)) {
        if (e._tag === "direct") {
          // Spans are encoded as they are offered; the batcher ships the requests its queue hands out.
          const otlp = e.exporter
          const b = yield* Batcher.makeWith(
            { name: otlp.name, endpoint: otlp.endpoint, export: otlp.sendEncoded, shutdown: otlp.shutdown },
            otlp.queue(config.batch.maxExportBatchSize),
            config.batch,
            pipelineOptions
          )
          direct.push(b)
          batchers.push(b)
        } else {
          const b = yield* Batcher.make(e.exporter, config.batch, pipelineOptions)
          readable.push(b)
          batchers.push(b)
        }
      }
      // OTEL_METRICS_EXPORTER=none (and no override): skip even the per-span resource lookup.
      const metricsConfig = options.metrics !== undefined &&
          (options.metrics.exporters.length > 0 || options.metricsOptions?.exporters !== undefined)
        ? options.metrics
        : undefined
      // The agent's own resource: its self metrics, and measurements no process can be named for (pid undefined).
      const agentResource = SelfMetrics.agentResource(config.resourceAttributes)
      const registry = SelfMetrics.make({ resource: agentResource })
      const selfMetricsOn = metricsConfig !== undefined && options.selfMetrics === true
      const metrics = metricsConfig === undefined
        ? undefined
        : yield* Metrics.make(metricsConfig, {
          ...(options.write === undefined ? {} : { write: options.write }),
          ...pipelineOptions,
          ...(selfMetricsOn ? { selfMetrics: registry.collect } : {}),
          ...options.metricsOptions
        })
      const logsConfig = options.logs
      const logBatchers = logsConfig === undefined ? [] : yield* Effect.forEach(
        options.logExporters ??
          logsConfig.exporters.map((name) =>
            name === "otlp" ? Logs.otlp(logsConfig.otlp) : Logs.console(options.write)
          ),
        (e) => Batcher.make(e, logsConfig.batch, { ...pipelineOptions, signal: "log records" })
      )
      let received = 0
      let invalid = 0
      let measurements = 0
      let logRecords = 0
      const stats = Effect.gen(function*() {
        const exporters = yield* Effect.forEach(batchers, (b) => b.stats)
        const metricsStats = metrics === undefined ? [] : (yield* metrics.stats).exporters
        const logs = yield* Effect.forEach(logBatchers, (b) => b.stats)
        return {
          received,
          invalid,
          exporters,
          metrics: metricsStats,
          measurements,
          logRecords,
          logs,
          lost: lostOf(invalid, exporters, metricsStats, logs)
        } satisfies TelemetryStats
      })
      // With self metrics off, nothing would ever read (or drop) a registered source: do not keep them.
      const registerSelfMetrics: Telemetry["Service"]["registerSelfMetrics"] = selfMetricsOn
        ? registry.register
        : () => Effect.void
      yield* registerSelfMetrics(Effect.map(stats, selfMetricSamples), { name: "telemetry" })
      // Registered last, so it runs first when the layer closes: the last metrics export and the span queues'
      // drains run side by side against the one deadline, rather than one after the other with a timeout each.
      // Asking for the time left starts the deadline's clock: from here on, all of it is shared.
      yield* Effect.addFinalizer(() =>
        deadline.remaining.pipe(
          Effect.andThen(Effect.all(
            [
              metrics === undefined ? Effect.void : metrics.close,
              ...batchers.map((b) => b.close),
              ...logBatchers.map((b) => b.close)
            ],
            { concurrency: "unbounded", discard: true }
          ))
        )
      )
      // `offsetNs`: the clock's offset (epoch = monotonic + offset), read once per batch of spans. `probe`: the
      // span's own, or the one the Runner names beside a batch of spans that have none (`emitUnsafe`).
      const accept = (data: Omit<SpanData, "probe">, offsetNs: bigint, probe: string) => {
        received++
        if (!validIds(data)) {
          invalid++
          return
        }
        if (direct.length > 0) {
          const item = OtlpExporter.span(data, resources.resourceFor(data.pid), offsetNs, probe)
          for (const b of direct) b.offer(item)
        }
        if (readable.length > 0) {
          // The SDK exporters' span form holds the probe's scope: a span without the name gets a copy with it.
          const full = (data as Partial<SpanData>).probe === probe ? data as SpanData : { ...data, probe }
          const span = toReadableSpan(full, resources.resourceFor(data.pid), ProcessResources.version, clock.toEpochNs)
          for (const b of readable) b.offer(span)
        }
      }
      const acceptLog = (data: LogData) => {
        logRecords++
        if (logBatchers.length === 0) return
        // Ids that are not W3C-valid would spoil the batch: the record is kept, without its span context.
        const ids = data.traceId === undefined || validLogIds(data) ? data : withoutIds(data)
        const record = Logs.toReadableLogRecord(
          ids,
          resources.resourceFor(data.pid),
          ProcessResources.version,
          clock.toEpochNs
        )
        for (const b of logBatchers) b.offer(record)
      }
      const acceptMeasurement = (m: Measurement) => {
        measurements++
        if (metrics === undefined) return
        metrics.record(m, m.pid === undefined ? agentResource : resources.resourceFor(m.pid))
      }
      const sink = TelemetrySink.of({
        span: (data) => Effect.sync(() => accept(data, clock.toEpochNs(0n), data.probe)),
        spans: (batch) =>
          Effect.sync(() => {
            const offsetNs = clock.toEpochNs(0n)
            for (let i = 0; i < batch.length; i++) accept(batch[i]!, offsetNs, batch[i]!.probe)
          }),
        logs: (batch) =>
          Effect.sync(() => {
            for (let i = 0; i < batch.length; i++) acceptLog(batch[i]!)
          }),
        measurements: (batch) =>
          Effect.sync(() => {
            for (let i = 0; i < batch.length; i++) acceptMeasurement(batch[i]!)
          }),
        emitUnsafe: (spans, logs, measurements, probe) => {
          if (spans.length > 0) {
            const offsetNs = clock.toEpochNs(0n)
            for (let i = 0; i < spans.length; i++) accept(spans[i]!, offsetNs, probe)
          }
          for (let i = 0; i < logs.length; i++) acceptLog(logs[i]!)
          for (let i = 0; i < measurements.length; i++) acceptMeasurement(measurements[i]!)
        }
      })
      const telemetry = Telemetry.of({
        stats,
        registerSelfMetrics,
        lost: Effect.map(stats, (s) => s.lost.total),
        beginShutdown: Effect.asVoid(deadline.remaining),
        flush: Effect.forEach([...batchers, ...logBatchers], (b) => b.flush, { discard: true }).pipe(
          Effect.andThen(metrics === undefined ? Effect.void : metrics.flush)
        )
      })
      return Context.make(TelemetrySink, sink).pipe(Context.add(Telemetry, telemetry))
    })
  )

/** The telemetry layer for an explicit configuration. */
export const layerWith = (
  config: TelemetryConfig.TelemetryConfig,
  options: Options = {}
): Layer.Layer<Services> =>
  pipeline(config, options).pipe(
    Layer.provideMerge(
      Layer.merge(
        options.clock ?? KernelClock.layer,
        ProcessResources.layerWith({ serviceName: config.serviceName, attributes: config.resourceAttributes })
      )
    )
  )

/**
 * The telemetry layer configured from the `OTEL_*` variables of the current `ConfigProvider`: spans
 * (`OTEL_TRACES_EXPORTER`), the probes' metrics plus the agent's own (`OTEL_METRICS_EXPORTER`) and the probes' log
 * records (`OTEL_LOGS_EXPORTER`), each OTLP by default.
 */
export const layer: Layer.Layer<Services, TelemetryConfig.TelemetryConfigError> = Layer.unwrap(
  Effect.map(
    Effect.all([
      TelemetryConfig.load,
      TelemetryConfig.loadMetrics,
      TelemetryConfig.loadLogs,
      OtlpExporter.loadCompressionOf("TRACES"),
      OtlpExporter.loadTlsOf("TRACES"),
      OtlpExporter.loadCompressionOf("METRICS"),
      OtlpExporter.loadTlsOf("METRICS"),
      OtlpExporter.loadCompressionOf("LOGS"),
      OtlpExporter.loadTlsOf("LOGS")
    ]),
    ([config, metrics, logs, compression, tls, metricsCompression, metricsTls, logsCompression, logsTls]) =>
      layerWith(
        { ...config, otlp: { ...config.otlp, compression, ...(tls === undefined ? {} : { tls }) } },
        {
          metrics: {
            ...metrics,
            otlp: {
              ...metrics.otlp,
              compression: metricsCompression,
              ...(metricsTls === undefined ? {} : { tls: metricsTls })
            }
          },
          logs: {
            ...logs,
            otlp: { ...logs.otlp, compression: logsCompression, ...(logsTls === undefined ? {} : { tls: logsTls }) }
          },
          selfMetrics: true
        }
      )
  )
)

/** What `layerTest` captured. */
export class TelemetryCapture extends Context.Service<TelemetryCapture, {
  /** Every SpanData handed to the sink, in order. */
  readonly spans: Effect.Effect<ReadonlyArray<SpanData>>
  /** The same spans as they would be exported (resource attached, times converted). */
  readonly exported: Effect.Effect<ReadonlyArray<Exporter.ReadableSpan>>
  /** Every log record handed to the sink, in order. */
  readonly logs: Effect.Effect<ReadonlyArray<LogData>>
  /** Every measurement handed to the sink, in order. */
  readonly measurements: Effect.Effect<ReadonlyArray<Measurement>>
  /** Reads every source registered with `registerSelfMetrics` now: the samples that would be exported. */
  readonly selfMetrics: Effect.Effect<ReadonlyArray<SelfMetrics.SelfMetricSample>>
}>()("probescope/telemetry/TelemetryCapture") {}

/**
 * In-memory telemetry for tests: nothing is exported; spans are converted synchronously (clock offset 0 unless
 * `offsetNs` is given) and captured, as are log records and measurements.
 */
export const layerTest = (offsetNs = 0n): Layer.Layer<Services | TelemetryCapture> =>
  Layer.effectContext(
    Effect.gen(function*() {
      const clock = yield* KernelClock.KernelClock
      const resources = yield* ProcessResources.ProcessResources
      const spans: Array<SpanData> = []
      const exported: Array<Exporter.ReadableSpan> = []
      const capture = (data: SpanData) => {
        spans.push(data)
        exported.push(toReadableSpan(data, resources.resourceFor(data.pid), ProcessResources.version, clock.toEpochNs))
      }
      const logs: Array<LogData> = []
      const measurements: Array<Measurement> = []
      const sink = TelemetrySink.of({
        span: (data) => Effect.sync(() => capture(data)),
        spans: (batch) => Effect.sync(() => batch.forEach(capture)),
        logs: (batch) => Effect.sync(() => void logs.push(...batch)),
        measurements: (batch) => Effect.sync(() => void measurements.push(...batch))
      })
      const stats = Effect.sync((): TelemetryStats => ({
        received: spans.length,
        invalid: 0,
        exporters: [],
        metrics: [],
        measurements: measurements.length,
        logRecords: logs.length,
        logs: [],
        lost: lostOf(0, [], [])
      }))
      const registry = SelfMetrics.make()
      return Context.make(TelemetrySink, sink).pipe(
        Context.add(
          Telemetry,
          Telemetry.of({
            stats,
            flush: Effect.void,
            lost: Effect.succeed(0),
            beginShutdown: Effect.void,
            registerSelfMetrics: registry.register
          })
        ),
        Context.add(TelemetryCapture, TelemetryCapture.of({
          spans: Effect.sync(() => [...spans]),
          exported: Effect.sync(() => [...exported]),
          logs: Effect.sync(() => [...logs]),
          measurements: Effect.sync(() => [...measurements]),
          selfMetrics: registry.samples
        }))
      )
    })
  ).pipe(
    Layer.provideMerge(
      Layer.merge(
        KernelClock.layerFixed(offsetNs),
        ProcessResources.layerWith({ serviceName: undefined, attributes: {} })
      )
    )
  )
