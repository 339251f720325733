/**
 * The synchronous aggregation behind SpanMetrics: cumulative explicit-bucket histograms of HTTP request durations,
 * one set per resource object. Plain maps and arrays instead of a MeterProvider per process: recording is one map
 * lookup and a few additions, and collection builds the sdk-metrics `ResourceMetrics` the OTLP exporters take.
 */
import type { Attributes, HrTime } from "@opentelemetry/api"
import { ValueType } from "@opentelemetry/api"
import type { Resource } from "@opentelemetry/resources"
import {
  AggregationTemporality,
  DataPointType,
  type HistogramMetricData,
  type ResourceMetrics
} from "@opentelemetry/sdk-metrics"
import type { SpanData } from "../../probe/Telemetry.ts"

/** The semconv's advised explicit bucket boundaries for HTTP durations, in seconds. */
export const BOUNDARIES: ReadonlyArray<number> = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10
]

export const SERVER_METRIC = "http.server.request.duration"
export const CLIENT_METRIC = "http.client.request.duration"

/** Attribute keys kept per metric, in key order. Everything else on the span (paths, URLs, peers) is dropped. */
export const SERVER_KEYS = [
  "http.request.method",
  "url.scheme",
  "http.route",
  "http.response.status_code",
  "network.protocol.version",
  "error.type"
] as const
export const CLIENT_KEYS = [
  "http.request.method",
  "server.address",
  "server.port",
  "http.response.status_code",
  "error.type"
] as const

/** Set on the one series that absorbs recordings past the cardinality limit (as the OTel SDK does). */
export const OVERFLOW_ATTRIBUTE = "otel.metric.overflow"

interface Series {
  readonly attributes: Attributes
  readonly counts: Array<number>
  count: number
  sum: number
  min: number
  max: number
}

/** One level per kept attribute, keyed by the span's value (undefined when absent); the last level holds Series. */
type Trie = Map<unknown, Trie | Series>

interface Instrument {
  readonly keys: ReadonlyArray<string>
  readonly root: Trie
  /** Every series in creation order (what collection exports). */
  readonly series: Array<Series>
  overflow: Series | undefined
}

interface ResourceState {
  readonly resource: Resource
  readonly startTime: HrTime
  readonly server: Instrument
  readonly client: Instrument
  /** Recordings since the last collection; 0 for a whole collection makes the state idle. */
  recorded: number
  idleCollections: number
}

/** Knobs for tests and embedders. */
export interface HistogramsOptions {
  /** Wall-clock now (start and end times of data points). */
  readonly now?: () => HrTime
  /** Series per metric per resource before the overflow series takes over (OTel SDK default: 2000). */
  readonly cardinalityLimit?: number
  /** Collections without a recording after which a resource (an exited process) is forgotten (default 10). */
  readonly evictAfterIdleCollections?: number
  /** The instrumentation scope of the exported metrics. */
  readonly scope: { readonly name: string; readonly version: string }
}

/** Aggregates spans; both methods are synchronous. */
export interface Histograms {
  /** Records one span if it is an HTTP SERVER or CLIENT span (it has `http.request.method`); ignores others. */
  readonly record: (span: SpanData, resource: Resource) => void
  /** Cumulative data for every resource that has any, then forgets resources idle for too long. */
  readonly collect: () => ReadonlyArray<ResourceMetrics>
}

const wallClock = (): HrTime => {
  const ms = Date.now()
  return [Math.floor(ms / 1000), (ms % 1000) * 1_000_000]
}

/** The index of the bucket `(b[i-1], b[i]]` that holds `v`; the last one is `(b[n-1], +inf)`. */
export const bucketIndex = (v: number): number => {
  let i = 0
  while (i < BOUNDARIES.length && v > BOUNDARIES[i]!) i++
  return i
}

const newSeries = (attributes: Attributes): Series => ({
  attributes,
  counts: new Array<number>(BOUNDARIES.length + 1).fill(0),
  count: 0,
  sum: 0,
  min: Infinity,
  max: -Infinity
})

const add = (s: Series, seconds: number) => {
  s.counts[bucketIndex(seconds)]!++
  s.count++
  s.sum += seconds
  if (seconds < s.min) s.min = seconds
  if (seconds > s.max) s.max = seconds
}

const attributesOf = (keys: ReadonlyArray<string>, a: SpanData["attributes"]): Attributes => {
  const out: Attributes = {}
  for (const k of keys) {
    const v = a[k]
    if (v !== undefined) out[k] = v as Attributes[string]
  }
  return out
}

const newInstrument = (keys: ReadonlyArray<string>): Instrument => ({
  keys,
  root: new Map(),
  series: [],
  overflow: undefined
})

const metricData = (
  name: string,
  description: string,
  instrument: Instrument,
  startTime: HrTime,
  endTime: HrTime
): HistogramMetricData => {
  const all = instrument.overflow === undefined ? instrument.series : [...instrument.series, instrument.overflow]
  return {
    descriptor: { name, description, unit: "s", valueType: ValueType.DOUBLE },
    aggregationTemporality: AggregationTemporality.CUMULATIVE,
    dataPointType: DataPointType.HISTOGRAM,
    dataPoints: all.map((s) => ({
      startTime,
      endTime,
      attributes: s.attributes,
      value: {
        buckets: { boundaries: [...BOUNDARIES], counts: [...s.counts] },
        count: s.count,
        sum: s.sum,
        min: s.min,
        max: s.max
      }
    }))
  }
}

const size = (i: Instrument) => i.series.length + (i.overflow === undefined ? 0 : 1)

/** A fresh aggregation. */
export const make = (options: HistogramsOptions): Histograms => {
  const now = options.now ?? wallClock
  const limit = options.cardinalityLimit ?? 2000
  const evictAfter = options.evictAfterIdleCollections ?? 10
  const states = new Map<Resource, ResourceState>()
  // Spans arrive in runs from one process: remembering the last resource skips the map lookup for most of them.
  let lastResource: Resource | undefined
  let lastState: ResourceState | undefined

  const stateFor = (resource: Resource): ResourceState => {
    if (resource === lastResource) return lastState!
    let state = states.get(resource)
    if (state === undefined) {
      state = {
        resource,
        startTime: now(),
        server: newInstrument(SERVER_KEYS),
        client: newInstrument(CLIENT_KEYS),
        recorded: 0,
        idleCollections: 0
      }
      states.set(resource, state)
    }
    lastResource = resource
    lastState = state
    return state
  }

  // A trie of Maps keyed by the attribute values themselves: no key string to build and hash per span.
  const seriesFor = (instrument: Instrument, a: SpanData["attributes"]): Series => {
    const keys = instrument.keys
    const last = keys.length - 1
    let node = instrument.root
    for (let i = 0; i < last; i++) {
      const v = a[keys[i]!]
      let next = node.get(v) as Trie | undefined
      if (next === undefined) {
        next = new Map()
        node.set(v, next)
      }
      node = next
    }
    const v = a[keys[last]!]
    const s = node.get(v) as Series | undefined
    if (s !== undefined) return s
    if (instrument.series.length >= limit - 1) {
      // One slot stays for the overflow series, so the limit bounds what is exported.
      instrument.overflow ??= newSeries({ [OVERFLOW_ATTRIBUTE]: true })
      return instrument.overflow
    }
    const created = newSeries(attributesOf(keys, a))
    node.set(v, created)
    instrument.series.push(created)
    return created
  }

  const record = (span: SpanData, resource: Resource) => {
    const kind = span.kind
    if (kind !== "server" && kind !== "client") return
    const a = span.attributes
    if (a["http.request.method"] === undefined) return
    const ns = span.endMonoNs - span.startMonoNs
    const seconds = ns > 0n ? Number(ns) / 1e9 : 0
    const state = stateFor(resource)
    state.recorded++
    add(seriesFor(kind === "server" ? state.server : state.client, a), seconds)
  }

  const collect = () => {
    const endTime = now()
    const out: Array<ResourceMetrics> = []
    for (const state of states.values()) {
      const metrics: Array<HistogramMetricData> = []
      if (size(state.server) > 0) {
        metrics.push(
          metricData(SERVER_METRIC, "Duration of HTTP server requests.", state.server, state.startTime, endTime)
        )
      }
      if (size(state.client) > 0) {
        metrics.push(
          metricData(CLIENT_METRIC, "Duration of HTTP client requests.", state.client, state.startTime, endTime)
        )
      }
      if (metrics.length > 0) {
        out.push({ resource: state.resource, scopeMetrics: [{ scope: { ...options.scope }, metrics }] })
      }
      if (state.recorded === 0) state.idleCollections++
      else state.idleCollections = 0
      state.recorded = 0
      if (state.idleCollections >= evictAfter) {
        states.delete(state.resource)
        if (lastResource === state.resource) lastResource = lastState = undefined
      }
    }
    return out
  }

  return { record, collect }
}
