/**
 * The agent's own metrics (`probescope.*`): counters and gauges that layers above telemetry contribute as plain
 * samples, without telemetry knowing what they mean. A source is an Effect that returns its current samples; at
 * every metrics collection each registered source is read and the samples become one extra `ResourceMetrics` whose
 * resource is the agent itself (not a target process), exported with the HTTP metrics by the same exporters.
 */
import type { Attributes, HrTime } from "@opentelemetry/api"
import { ValueType } from "@opentelemetry/api"
import { type Resource, resourceFromAttributes } from "@opentelemetry/resources"
import {
  AggregationTemporality,
  type DataPoint,
  DataPointType,
  type GaugeMetricData,
  type ResourceMetrics,
  type SumMetricData
} from "@opentelemetry/sdk-metrics"
import { Cause, Duration, Effect, Exit, Option, Schema, type Scope } from "effect"
import { version } from "./ProcessResources.ts"

/** `counter`: a cumulative monotonic sum (the source returns the running total); `gauge`: the last value. */
export type SelfMetricKind = "counter" | "gauge"

/** Attributes of one sample; keep them low-cardinality (probe names, reasons), never pids or paths of targets. */
export type SelfMetricAttributes = Readonly<Record<string, string | number | boolean>>

/** One value of one series, as a source reports it at a collection. */
export interface SelfMetricSample {
  /** Dot-separated, e.g. `probescope.probe.records`; OpenTelemetry instrument-name syntax. */
  readonly name: string
  readonly description: string
  /** UCUM, e.g. `{record}`, `{span}`, `s`, `1`. */
  readonly unit: string
  readonly kind: SelfMetricKind
  /** A counter's running total (never negative), or a gauge's current value. A bigint is exported as a number. */
  readonly value: number | bigint
  readonly attributes: SelfMetricAttributes
}

/**
 * Returns the current samples. Read once per collection, concurrently with the other sources and bounded by a
 * timeout; a source that fails, dies or times out is skipped for that collection.
 */
export type SelfMetricSource = Effect.Effect<ReadonlyArray<SelfMetricSample>, unknown>

/** How a source is named in warnings. */
export interface RegisterOptions {
  readonly name?: string
}

/** A source failed, died, timed out or returned something that is not an array of samples. */
export class SelfMetricsSourceError extends Schema.TaggedError<SelfMetricsSourceError>()("SelfMetricsSourceError", {
  source: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/** The instrumentation scope of the self metrics (the HTTP metrics' scope too). */
export const scope = { name: "probescope", version } as const

/** Time a source may take per collection before it is skipped (a collection must not wait on a hung source). */
export const DEFAULT_SOURCE_TIMEOUT_MILLIS = 1000

/**
 * The agent's own resource attributes. `OTEL_RESOURCE_ATTRIBUTES` (host, deployment, ...) applies, but the agent's
 * identity wins: that variable (and `OTEL_SERVICE_NAME`) names the traced services, and the agent's metrics must not
 * look as if they came from one of them.
 */
export const agentAttributes = (
  resourceAttributes: Readonly<Record<string, string>>
): Record<string, string | number> => ({
  ...resourceAttributes,
  "service.name": "probescope",
  "service.version": version,
  "process.pid": process.pid,
  "process.runtime.name": "nodejs",
  "process.runtime.version": process.versions.node
})

/** The agent's own resource (see `agentAttributes`). */
export const agentResource = (resourceAttributes: Readonly<Record<string, string>>): Resource =>
  resourceFromAttributes(agentAttributes(resourceAttributes))

/** Knobs for the telemetry layer and tests. */
export interface Options {
  /** The resource of the exported `ResourceMetrics` (default: `agentResource({})`). */
  readonly resource?: Resource
  /** Wall-clock now (registration times are the counters' start times; collection times are the end times). */
  readonly now?: () => HrTime
  /** See `DEFAULT_SOURCE_TIMEOUT_MILLIS`. */
  readonly sourceTimeoutMillis?: number
}

/** The registered sources and their collection. */
export interface Registry {
  /**
   * Adds a source until the current scope closes. Then it is read right away (while the layer behind it is still
   * open) and once more at the next collection, so the final collection at close carries the totals of a source
   * whose layer closed before telemetry (the Manager's counters after its shutdown drained the rings). A counter
   * keeps the highest total read, and a source that cannot be read after its scope closed keeps its latest samples.
   */
  readonly register: (source: SelfMetricSource, options?: RegisterOptions) => Effect.Effect<void, never, Scope.Scope>
  /** Reads every source now: the samples that would be exported (valid, one per series), in source order. */
  readonly samples: Effect.Effect<ReadonlyArray<SelfMetricSample>>
  /** Reads every source now: one `ResourceMetrics` of sums and gauges, or none when there are no samples. */
  readonly collect: Effect.Effect<ReadonlyArray<ResourceMetrics>>
}

interface Entry {
  readonly name: string
  readonly source: SelfMetricSource
  readonly startTime: HrTime
  closed: boolean
  failing: boolean
  /** The valid samples of the last successful read, by series. */
  latest: Map<string, SelfMetricSample>
}

interface Accepted {
  readonly sample: SelfMetricSample
  readonly startTime: HrTime
}

/** Instrument-name syntax of the OpenTelemetry API. */
const NAME = /^[A-Za-z][A-Za-z0-9_.\-/]{0,254}$/

/** Warnings about bad samples are logged once per source, metric and problem; this bounds how many are remembered. */
const MAX_WARNED = 1000

const wallClock = (): HrTime => {
  const ms = Date.now()
  return [Math.floor(ms / 1000), (ms % 1000) * 1_000_000]
}

const validAttribute = (v: unknown) =>
  typeof v === "string" || typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v))

/** Why a sample cannot be exported, or undefined when it can. Sources are other layers' code: checked at runtime. */
const problemOf = (s: SelfMetricSample): string | undefined => {
  if (typeof s !== "object" || s === null) return "not a sample object"
  if (typeof s.name !== "string" || !NAME.test(s.name)) return "the name is not a valid instrument name"
  if (s.kind !== "counter" && s.kind !== "gauge") return "the kind is neither \"counter\" nor \"gauge\""
  if (typeof s.unit !== "string" || typeof s.description !== "string") return "unit and description must be strings"
  if (typeof s.value === "bigint") {
    if (s.kind === "counter" && s.value < 0n) return "a counter cannot be negative"
  } else if (typeof s.value !== "number" || !Number.isFinite(s.value)) {
    return "the value is not a finite number or a bigint"
  } else if (s.kind === "counter" && s.value < 0) {
    return "a counter cannot be negative"
  }
  if (typeof s.attributes !== "object" || s.attributes === null) return "the attributes are not an object"
  for (const v of Object.values(s.attributes)) {
    if (!validAttribute(v)) return "an attribute value is not a string, finite number or boolean"
  }
  return undefined
}

/** The series' identity within its metric: its attribute set, in any key order. */
const seriesKey = (attributes: SelfMetricAttributes) =>
  JSON.stringify(Object.keys(attributes).sort().map((k) => [k, attributes[k]]))

interface Building {
  readonly first: SelfMetricSample
  readonly points: Array<DataPoint<number>>
  integer: boolean
}

const duplicateMessage = (entry: Entry, sample: SelfMetricSample, series: string) =>
  `self-metrics source ${entry.name}: sample ${sample.name} ${series} skipped: that series was already reported`

/** A registry with no sources. */
export const make = (options: Options = {}): Registry => {
  const now = options.now ?? wallClock
  const resource = options.resource ?? agentResource({})
  const timeout = Duration.millis(options.sourceTimeoutMillis ?? DEFAULT_SOURCE_TIMEOUT_MILLIS)
  const entries = new Set<Entry>()
  const warned = new Set<string>()
  let unnamed = 0

  /** The message the first time `key` comes up, then undefined: each problem is reported once. */
  const once = (key: string, message: string) => {
    if (warned.has(key) || warned.size >= MAX_WARNED) return undefined
    warned.add(key)
    return message
  }

  // Our own timeout error is already worded; anything else the source failed or died with is wrapped.
  const timedOut = (cause: Cause.Cause<unknown>) => {
    const error = Option.getOrUndefined(Cause.findErrorOption(cause))
    return error instanceof SelfMetricsSourceError ? error : undefined
  }

  // One warning when a source starts failing, none while it keeps failing, another if it fails again after
  // recovering: a broken source is visible without a line per collection. `samples` is undefined when it failed.
  const read = (entry: Entry) =>
    Effect.suspend(() => entry.source).pipe(
      Effect.timeoutOrElse({
        duration: timeout,
        orElse: () =>
          Effect.fail(
            new SelfMetricsSourceError({
              source: entry.name,
              message: `self-metrics source ${entry.name} timed out after ${Duration.toMillis(timeout)} ms`
            })
          )
      }),
      Effect.exit,
      Effect.map((exit): { readonly samples?: ReadonlyArray<SelfMetricSample>; readonly warning?: string } => {
        if (Exit.isSuccess(exit) && Array.isArray(exit.value)) {
          entry.failing = false
          return { samples: exit.value }
        }
        const error = Exit.isSuccess(exit)
          ? new SelfMetricsSourceError({
            source: entry.name,
            message: `self-metrics source ${entry.name} returned ${typeof exit.value}, not an array of samples`
          })
          : timedOut(exit.cause) ?? new SelfMetricsSourceError({
            source: entry.name,
            message: `self-metrics source ${entry.name} failed: ${Cause.pretty(exit.cause)}`,
            cause: Cause.squash(exit.cause)
          })
        const wasFailing = entry.failing
        entry.failing = true
        if (wasFailing) return {}
        return { warning: `${error.message} (skipped until it succeeds again)` }
      })
    )

  /**
   * Reads a source and keeps its valid samples as its latest. Within one registration a counter never goes back: a
   * lower total keeps the higher one (once its layer has closed, a source may no longer reach what it counted, e.g.
   * BPF maps, and report 0). A closed source that fails keeps its latest samples. Warnings are returned, not
   * logged, so that they come out in registration order however long each source took.
   */
  const refresh = (entry: Entry) =>
    Effect.map(read(entry), (result) => {
      const warnings: Array<string> = result.warning === undefined ? [] : [result.warning]
      const warn = (message: string | undefined) => void (message !== undefined && warnings.push(message))
      if (result.samples === undefined) return { samples: entry.closed ? [...entry.latest.values()] : [], warnings }
      const latest = new Map<string, SelfMetricSample>()
      for (const sample of result.samples) {
        const problem = problemOf(sample)
        if (problem !== undefined) {
          const name = typeof sample?.name === "string" ? sample.name : "?"
          warn(once(
            `${entry.name}\0${name}\0${problem}`,
            `self-metrics source ${entry.name}: sample ${JSON.stringify(name)} skipped: ${problem}`
          ))
          continue
        }
        const series = seriesKey(sample.attributes)
        const id = `${sample.name}\0${series}`
        if (latest.has(id)) {
          warn(once(`${entry.name}\0${sample.name}\0duplicate`, duplicateMessage(entry, sample, series)))
          continue
        }
        const before = entry.latest.get(id)
        if (sample.kind === "counter" && before?.kind === "counter" && before.value > sample.value) {
          if (!entry.closed) {
            warn(once(
              `${entry.name}\0${sample.name}\0backwards`,
              `self-metrics source ${entry.name}: counter ${sample.name} ${series} went back from ${before.value} ` +
                `to ${sample.value}; ${before.value} kept`
            ))
          }
          latest.set(id, before)
          continue
        }
        latest.set(id, sample)
      }
      entry.latest = latest
      return { samples: [...latest.values()], warnings }
    })

  const logAll = (warnings: ReadonlyArray<string>) =>
    Effect.forEach(warnings, (w) => Effect.logWarning(w), { discard: true })

  // Read once more when the registration ends, while the layer behind the source is still open (its resources are
  // released after its dependents'), so its latest totals are kept even if it cannot be read after that.
  const register = (source: SelfMetricSource, registerOptions: RegisterOptions = {}) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const entry: Entry = {
          name: registerOptions.name ?? `source ${++unnamed}`,
          source,
          startTime: now(),
          closed: false,
          failing: false,
          latest: new Map()
        }
        entries.add(entry)
        return entry
      }),
      (entry) =>
        refresh(entry).pipe(
          Effect.flatMap((r) => logAll(r.warnings)),
          Effect.ensuring(Effect.sync(() => void (entry.closed = true)))
        )
    ).pipe(Effect.asVoid)

  const gather = Effect.gen(function*() {
    const current = [...entries]
    // A closed source now has its last read.
    for (const e of current) if (e.closed) entries.delete(e)
    const results = yield* Effect.forEach(current, refresh, { concurrency: "unbounded" })
    yield* logAll(results.flatMap((r) => r.warnings))
    const accepted: Array<Accepted> = []
    const byName = new Map<
      string,
      { readonly kind: SelfMetricKind; readonly unit: string; readonly series: Set<string> }
    >()
    const warnings: Array<string> = []
    const warn = (message: string | undefined) => void (message !== undefined && warnings.push(message))
    for (let i = 0; i < current.length; i++) {
      const entry = current[i]!
      for (const sample of results[i]!.samples) {
        let metric = byName.get(sample.name)
        if (metric === undefined) {
          metric = { kind: sample.kind, unit: sample.unit, series: new Set() }
          byName.set(sample.name, metric)
        } else if (metric.kind !== sample.kind || metric.unit !== sample.unit) {
          // One metric has one kind and unit: the first sample of a collection defines them.
          warn(once(
            `${entry.name}\0${sample.name}\0conflict`,
            `self-metrics source ${entry.name}: sample ${sample.name} skipped: it is a ${sample.kind} in ` +
              `${JSON.stringify(sample.unit)}, but the metric is a ${metric.kind} in ${JSON.stringify(metric.unit)}`
          ))
          continue
        }
        // Two points of one series in one export would contradict each other: the first one wins.
        const series = seriesKey(sample.attributes)
        if (metric.series.has(series)) {
          warn(once(`${entry.name}\0${sample.name}\0duplicate`, duplicateMessage(entry, sample, series)))
          continue
        }
        metric.series.add(series)
        accepted.push({ sample, startTime: entry.startTime })
      }
    }
    yield* logAll(warnings)
    return accepted
  })

  const collect = Effect.map(gather, (accepted): ReadonlyArray<ResourceMetrics> => {
    if (accepted.length === 0) return []
    const endTime = now()
    const metrics = new Map<string, Building>()
    for (const { sample, startTime } of accepted) {
      let m = metrics.get(sample.name)
      if (m === undefined) {
        m = { first: sample, points: [], integer: true }
        metrics.set(sample.name, m)
      }
      if (typeof sample.value === "number" && !Number.isInteger(sample.value)) m.integer = false
      const attributes: Attributes = { ...sample.attributes }
      m.points.push({ startTime, endTime, attributes, value: Number(sample.value) })
    }
    const data = [...metrics.values()].map((m): SumMetricData | GaugeMetricData => {
      // Counts are integers (OTLP asInt); one fractional value makes the whole metric double.
      const descriptor = {
        name: m.first.name,
        description: m.first.description,
        unit: m.first.unit,
        valueType: m.integer ? ValueType.INT : ValueType.DOUBLE
      }
      return m.first.kind === "counter"
        ? {
          descriptor,
          aggregationTemporality: AggregationTemporality.CUMULATIVE,
          dataPointType: DataPointType.SUM,
          isMonotonic: true,
          dataPoints: m.points
        }
        : {
          descriptor,
          aggregationTemporality: AggregationTemporality.CUMULATIVE,
          dataPointType: DataPointType.GAUGE,
          dataPoints: m.points
        }
    })
    return [{ resource, scopeMetrics: [{ scope: { ...scope }, metrics: data }] }]
  })

  return {
    register,
    samples: Effect.map(gather, (accepted) => accepted.map((a) => a.sample)),
    collect
  }
}
