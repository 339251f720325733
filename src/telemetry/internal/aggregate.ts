/**
 * The synchronous aggregation behind `Metrics`: whatever instruments the probes declared, per resource object (a
 * process, or the agent for host-wide measurements) and instrumentation scope (the probe), one series per attribute
 * set. Plain maps instead of a MeterProvider per process: recording is two map lookups and a few additions, and
 * collection builds the sdk-metrics `ResourceMetrics` the OTLP exporters take. Knows no instrument by name.
 */
import type { Attributes as OtelAttributes, HrTime } from "@opentelemetry/api"
import { ValueType } from "@opentelemetry/api"
import type { Resource } from "@opentelemetry/resources"
import {
  AggregationTemporality,
  DataPointType,
  type MetricData,
  type ResourceMetrics
} from "@opentelemetry/sdk-metrics"
import type { Attributes, Instrument, Measurement } from "../../probe/Telemetry.ts"
import type { TemporalityPreference } from "../TelemetryConfig.ts"

/** Set on the one series that absorbs recordings past the cardinality limit (as the OTel SDK does). */
export const OVERFLOW_ATTRIBUTE = "otel.metric.overflow"

interface Series {
  readonly attributes: Attributes
  /** Sum (counters), last value (gauges), or the histogram's sum. */
  value: number
  counts: Array<number> | undefined
  count: number
  min: number
  max: number
  /** Recorded into since the last collection (delta temporality exports only these). */
  touched: boolean
}

interface InstrumentState {
  readonly instrument: Instrument
  readonly delta: boolean
  /** Every series, by the attribute set's order-insensitive key (`seriesKey`). */
  readonly series: Map<string, Series>
  /**
   * The series by the attribute set as the probe wrote it, key then value, level by level: a probe writes its
   * attributes in one order, so a hit costs two map lookups per attribute and builds no string. A miss falls back
   * to `series` (another order of a known set) and remembers the path.
   */
  readonly paths: PathNode
  overflow: Series | undefined
  /**
   * The frozen attribute sets of scalar values recorded last (`RECENT_SETS`), and their series: a probe that shares
   * one frozen object per set (`Http.metricAttributes`) finds the series by a scan of a few identities. Frozen, a set
   * cannot have changed since; a set with an array value is not kept (freezing does not freeze the array).
   */
  readonly recentSets: Array<Attributes>
  readonly recentSeries: Array<Series>
  /** The slot of `recentSets` the next set takes (the oldest). */
  recentNext: number
  /** Every value recorded so far was an integer: sums are then exported as integers. */
  integers: boolean
  /** Start of the current delta interval (unused for cumulative). */
  intervalStart: HrTime
}

/**
 * A level of `InstrumentState.paths`: attribute key → value → next level; `series` where the set ends. The first key
 * seen at a level gets a field of its own (`key`, `values`): a probe writes the same keys in the same order, so a
 * step is one comparison of the key (the same string object, from the probe's code) and one map lookup by value.
 */
interface PathNode {
  key: string | undefined
  readonly values: Map<unknown, PathNode>
  /** Other keys at this level (another attribute set's shape). */
  other: Map<string, Map<unknown, PathNode>> | undefined
  series: Series | undefined
}

const newPath = (): PathNode => ({ key: undefined, values: new Map(), other: undefined, series: undefined })

/** The values map of `key` at `node`; with `create`, made when missing. */
const valuesAt = (node: PathNode, key: string, create: boolean): Map<unknown, PathNode> | undefined => {
  if (node.key === key) return node.values
  if (node.key === undefined) {
    if (!create) return undefined
    node.key = key
    return node.values
  }
  let values = node.other?.get(key)
  if (values === undefined && create) {
    values = new Map()
    ;(node.other ??= new Map()).set(key, values)
  }
  return values
}

interface ScopeState {
  readonly probe: string
  readonly instruments: Map<Instrument, InstrumentState>
}

interface ResourceState {
  readonly resource: Resource
  readonly startTime: HrTime
  readonly scopes: Map<string, ScopeState>
  /** End of the last collection (the start until there is one): where a new delta instrument's interval starts. */
  collectedAt: HrTime
  /** Recordings since the last collection; 0 for whole collections makes the state idle. */
  recorded: number
  idleCollections: number
  /**
   * The instrument this resource was last recorded into, by probe: a batch's measurements come in runs of one probe's
   * instrument, and one ring's batch interleaves the processes of an executable, so the run is kept per resource.
   */
  lastProbe: string | undefined
  lastInstrument: Instrument | undefined
  lastIs: InstrumentState | undefined
}

/** Frozen attribute sets an instrument remembers with their series (`InstrumentState.recentSets`). */
const RECENT_SETS = 8

/** Knobs for tests and embedders. */
export interface AggregateOptions {
  /** Wall-clock now (start and end times of data points). */
  readonly now?: () => HrTime
  /** Series per instrument per resource before the overflow series takes over (OTel SDK default: 2000). */
  readonly cardinalityLimit?: number
  /** Collections without a recording after which a resource (an exited process) is forgotten (default 10). */
  readonly evictAfterIdleCollections?: number
  /** Which instruments export deltas (default cumulative). */
  readonly temporality?: TemporalityPreference
  /** Instrumentation scope of a probe's metrics. */
  readonly scope: (probe: string) => { readonly name: string; readonly version: string }
}

export interface Aggregate {
  readonly record: (measurement: Measurement, resource: Resource) => void
  /** The data of every resource that has any, then forgets resources idle for too long. */
  readonly collect: () => ReadonlyArray<ResourceMetrics>
}

const wallClock = (): HrTime => {
  const ms = Date.now()
  return [Math.floor(ms / 1000), (ms % 1000) * 1_000_000]
}

/** The index of the bucket `(b[i-1], b[i]]` that holds `v`; the last one is `(b[n-1], +inf)`. */
export const bucketIndex = (boundaries: ReadonlyArray<number>, v: number): number => {
  let i = 0
  while (i < boundaries.length && v > boundaries[i]!) i++
  return i
}

/** The separators of `seriesKey`: a string value holding one is JSON-escaped (rare), so it cannot fake a boundary. */
const SEPARATORS = /[\u0001\u0002]/

/**
 * A key for an attribute set that does not depend on the order the probe wrote the keys in. Values carry their
 * type so that 1 and "1" stay apart; strings get a prefix of their own, so that none (traced data: a route, a peer
 * name) can spell another type's key ("number:1"), nor, escaped, hold the separators and pass for more attributes.
 */
const seriesKey = (a: Attributes): string => {
  const keys = Object.keys(a)
  if (keys.length === 0) return ""
  if (keys.length > 1) keys.sort()
  let out = ""
  for (const k of keys) {
    const v = a[k]
    const value = typeof v !== "string" ?
      `${typeof v}:${JSON.stringify(v)}` :
      SEPARATORS.test(v) ?
      JSON.stringify(v) :
      `s${v}`
    out += `${k}\u0001${value}\u0002`
  }
  return out
}

/** Whether the preference makes this instrument kind export deltas (OTLP exporter spec). */
const isDelta = (kind: Instrument["kind"], preference: TemporalityPreference) =>
  preference !== "cumulative" && (kind === "counter" || kind === "histogram")

export const make = (options: AggregateOptions): Aggregate => {
  const now = options.now ?? wallClock
  const limit = options.cardinalityLimit ?? 2000
  const evictAfter = options.evictAfterIdleCollections ?? 10
  const preference = options.temporality ?? "cumulative"
  const states = new Map<Resource, ResourceState>()
  // Measurements arrive in runs from one process: remembering the last resource skips a lookup for most of them.
  let lastResource: Resource | undefined
  let lastState: ResourceState | undefined

  const stateFor = (resource: Resource): ResourceState => {
    if (resource === lastResource) return lastState!
    let state = states.get(resource)
    if (state === undefined) {
      const startTime = now()
      state = {
        resource,
        startTime,
        scopes: new Map(),
        collectedAt: startTime,
        recorded: 0,
        idleCollections: 0,
        lastProbe: undefined,
        lastInstrument: undefined,
        lastIs: undefined
      }
      states.set(resource, state)
    }
    lastResource = resource
    lastState = state
    return state
  }

  const instrumentFor = (state: ResourceState, probe: string, instrument: Instrument): InstrumentState => {
    if (state.lastInstrument === instrument && state.lastProbe === probe) return state.lastIs!
    const is = instrumentOf(state, probe, instrument)
    state.lastInstrument = instrument
    state.lastProbe = probe
    state.lastIs = is
    return is
  }

  const instrumentOf = (state: ResourceState, probe: string, instrument: Instrument): InstrumentState => {
    let scope = state.scopes.get(probe)
    if (scope === undefined) {
      scope = { probe, instruments: new Map() }
      state.scopes.set(probe, scope)
    }
    let is = scope.instruments.get(instrument)
    if (is === undefined) {
      is = {
        instrument,
        delta: isDelta(instrument.kind, preference),
        series: new Map(),
        paths: newPath(),
        overflow: undefined,
        recentSets: [],
        recentSeries: [],
        recentNext: 0,
        integers: true,
        // Not the resource's start: an instrument first recorded into after a collection would otherwise report
        // a first delta interval overlapping the ones already exported for this resource.
        intervalStart: state.collectedAt
      }
      scope.instruments.set(instrument, is)
    }
    return is
  }

  const newSeries = (is: InstrumentState, attributes: Attributes): Series => ({
    attributes,
    value: 0,
    counts: is.instrument.kind === "histogram" ?
      new Array<number>((is.instrument.boundaries?.length ?? 0) + 1).fill(0) :
      undefined,
    count: 0,
    min: Infinity,
    max: -Infinity,
    touched: false
  })

  /** The path of an attribute set as written; undefined for an array value (its identity is not its content). */
  const pathOf = (is: InstrumentState, attributes: Attributes): PathNode | undefined => {
    let node = is.paths
    for (const k in attributes) {
      const v = attributes[k]
      if (typeof v === "object") return undefined
      const values = valuesAt(node, k, true)!
      let child = values.get(v)
      if (child === undefined) {
        child = newPath()
        values.set(v, child)
      }
      node = child
    }
    return node
  }

  const seriesFor = (is: InstrumentState, attributes: Attributes): Series => {
    const recent = is.recentSets
    for (let i = 0; i < recent.length; i++) if (recent[i] === attributes) return is.recentSeries[i]!
    // Past the limit, an unknown set is not even remembered as a path: memory stays bounded whatever comes in.
    const full = is.series.size >= limit - 1
    const path = full ? findPath(is, attributes) : pathOf(is, attributes)
    const series = seriesAt(is, attributes, path, full)
    // A path exists only for a set of scalar values. The answer for the set stays the same until `reset`: series are
    // only added, and once full an instrument stays full (cumulative), or `reset` forgets this (delta).
    if (path !== undefined && Object.isFrozen(attributes)) {
      const slot = is.recentNext
      is.recentNext = (slot + 1) % RECENT_SETS
      recent[slot] = attributes
      is.recentSeries[slot] = series
    }
    return series
  }

  const seriesAt = (is: InstrumentState, attributes: Attributes, path: PathNode | undefined, full: boolean): Series => {
    if (path?.series !== undefined) return path.series
    const key = seriesKey(attributes)
    let series = is.series.get(key)
    if (series === undefined) {
      if (full) {
        // One slot stays for the overflow series, so the limit bounds what is exported.
        is.overflow ??= newSeries(is, { [OVERFLOW_ATTRIBUTE]: true })
        return is.overflow
      }
      series = newSeries(is, { ...attributes })
      is.series.set(key, series)
    }
    if (path !== undefined) path.series = series
    return series
  }

  /** `pathOf` without creating levels. */
  const findPath = (is: InstrumentState, attributes: Attributes): PathNode | undefined => {
    let node: PathNode | undefined = is.paths
    for (const k in attributes) {
      node = valuesAt(node, k, false)?.get(attributes[k])
      if (node === undefined) return undefined
    }
    return node
  }

  const record = (m: Measurement, resource: Resource) => {
    const state = stateFor(resource)
    state.recorded++
    const is = instrumentFor(state, m.probe, m.instrument)
    const s = seriesFor(is, m.attributes)
    const v = m.value
    if (is.integers && !Number.isInteger(v)) is.integers = false
    s.touched = true
    s.count++
    switch (m.instrument.kind) {
      case "counter":
      case "upDownCounter":
        s.value += v
        return
      case "gauge":
        s.value = v
        return
      case "histogram":
        s.counts![bucketIndex(m.instrument.boundaries ?? [], v)]!++
        s.value += v
        if (v < s.min) s.min = v
        if (v > s.max) s.max = v
    }
  }

  const dataOf = (is: InstrumentState, state: ResourceState, endTime: HrTime): MetricData | undefined => {
    const all = is.overflow === undefined ? [...is.series.values()] : [...is.series.values(), is.overflow]
    const points = is.delta ? all.filter((s) => s.touched) : all
    if (points.length === 0) return undefined
    const { instrument } = is
    const startTime = is.delta ? is.intervalStart : state.startTime
    const descriptor = {
      name: instrument.name,
      description: instrument.description,
      unit: instrument.unit,
      valueType: instrument.kind !== "histogram" && is.integers ? ValueType.INT : ValueType.DOUBLE
    }
    const temporality = is.delta ? AggregationTemporality.DELTA : AggregationTemporality.CUMULATIVE
    const attrs = (s: Series) => s.attributes as OtelAttributes
    switch (instrument.kind) {
      case "counter":
      case "upDownCounter":
        return {
          descriptor,
          aggregationTemporality: temporality,
          dataPointType: DataPointType.SUM,
          isMonotonic: instrument.kind === "counter",
          dataPoints: points.map((s) => ({ startTime, endTime, attributes: attrs(s), value: s.value }))
        }
      case "gauge":
        return {
          descriptor,
          aggregationTemporality: AggregationTemporality.CUMULATIVE,
          dataPointType: DataPointType.GAUGE,
          dataPoints: points.map((s) => ({ startTime, endTime, attributes: attrs(s), value: s.value }))
        }
      case "histogram":
        return {
          descriptor,
          aggregationTemporality: temporality,
          dataPointType: DataPointType.HISTOGRAM,
          dataPoints: points.map((s) => ({
            startTime,
            endTime,
            attributes: attrs(s),
            value: {
              buckets: { boundaries: [...(instrument.boundaries ?? [])], counts: [...s.counts!] },
              count: s.count,
              sum: s.value,
              min: s.min,
              max: s.max
            }
          }))
        }
    }
  }

  /**
   * After a collection: a delta instrument starts a fresh interval with no series at all (what they held is exported;
   * the cardinality limit then bounds the attribute sets of one interval, as in the OTel SDK, rather than every one
   * ever seen, which would send all new ones to the overflow series for good); a cumulative one keeps its series.
   */
  const reset = (is: InstrumentState, endTime: HrTime) => {
    if (is.delta) {
      is.series.clear()
      is.paths.key = undefined
      is.paths.values.clear()
      is.paths.other = undefined
      is.paths.series = undefined
      is.overflow = undefined
      is.recentSets.length = 0
      is.recentSeries.length = 0
      is.recentNext = 0
      is.intervalStart = endTime
      return
    }
    for (const s of is.series.values()) s.touched = false
    if (is.overflow !== undefined) is.overflow.touched = false
  }

  const collect = () => {
    const endTime = now()
    const out: Array<ResourceMetrics> = []
    for (const state of states.values()) {
      const scopeMetrics: Array<ResourceMetrics["scopeMetrics"][number]> = []
      for (const scope of state.scopes.values()) {
        const metrics: Array<MetricData> = []
        for (const is of scope.instruments.values()) {
          const data = dataOf(is, state, endTime)
          if (data !== undefined) metrics.push(data)
          reset(is, endTime)
        }
        if (metrics.length > 0) scopeMetrics.push({ scope: { ...options.scope(scope.probe) }, metrics })
      }
      if (scopeMetrics.length > 0) out.push({ resource: state.resource, scopeMetrics })
      state.collectedAt = endTime
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
