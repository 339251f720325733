/**
 * What an instrument probe emits: spans, metric measurements and log records. A probe's Runner decodes kernel records
 * into these and hands each batch to the `TelemetrySink` the framework provides; the telemetry layer turns them into
 * OpenTelemetry data and exports them. Nothing here knows a protocol: the instruments a probe records into are
 * declared by the probe (`Probe.instrument({ instruments })`), so telemetry aggregates whatever it is given.
 */
import type { Effect } from "effect"
import { Context } from "effect"

export type SpanKind = "internal" | "server" | "client" | "producer" | "consumer"

export type AttributeValue = string | number | boolean | ReadonlyArray<string> | ReadonlyArray<number>

export type Attributes = Readonly<Record<string, AttributeValue>>

/** Something that happened during a span (e.g. the `exception` event). */
export interface SpanEvent {
  readonly name: string
  readonly timeMonoNs: bigint
  readonly attributes: Attributes
}

/**
 * A trace id (16 bytes) or span id (8 bytes): its bytes, as a probe copies them out of a kernel record
 * (`Binary.bytes(16)`), or the same as lowercase hex ("4bf92f35..."). Telemetry takes either; the bytes skip a
 * conversion each way on the agent's hot path. `Ids.hex` gives the hex of either.
 */
export type Id = Uint8Array | string

/** One finished span as a probe observed it. Times are kernel CLOCK_MONOTONIC nanoseconds. */
export interface SpanData {
  /** The process it happened in: selects the OpenTelemetry resource. */
  readonly pid: number
  /** Name of the probe that produced it (becomes the instrumentation scope). */
  readonly probe: string
  readonly traceId: Id
  readonly spanId: Id
  /** Absent (or empty) for a root span. */
  readonly parentSpanId?: Id
  /** True when the parent came from another process (an incoming traceparent). */
  readonly parentIsRemote?: boolean
  readonly traceFlags: number
  readonly name: string
  readonly kind: SpanKind
  readonly startMonoNs: bigint
  readonly endMonoNs: bigint
  readonly attributes: Attributes
  readonly status: { readonly code: "unset" | "ok" | "error"; readonly message?: string }
  readonly events?: ReadonlyArray<SpanEvent>
  /** Attributes (of the span and its events) and events the probe could not keep: OTLP's dropped counts. */
  readonly droppedAttributesCount?: number
  readonly droppedEventsCount?: number
}

/** Log severities, named as the OpenTelemetry log data model's ranges (TRACE 1, DEBUG 5, INFO 9, WARN 13, ...). */
export type Severity = "trace" | "debug" | "info" | "warn" | "error" | "fatal"

/** The `SeverityNumber` of the first level of each severity range. */
export const severityNumber: Readonly<Record<Severity, number>> = {
  trace: 1,
  debug: 5,
  info: 9,
  warn: 13,
  error: 17,
  fatal: 21
}

/** One log record (OpenTelemetry log data model); the ids tie it to the span that was active, when there was one. */
export interface LogData {
  /** The process it happened in: selects the OpenTelemetry resource. */
  readonly pid: number
  readonly probe: string
  /** When it happened, kernel CLOCK_MONOTONIC nanoseconds. */
  readonly timeMonoNs: bigint
  readonly severity: Severity
  readonly body: string
  readonly attributes: Attributes
  /** With `spanId`, when a span was active. */
  readonly traceId?: Id
  readonly spanId?: Id
  readonly traceFlags?: number
}

export type InstrumentKind = "counter" | "upDownCounter" | "histogram" | "gauge"

/**
 * A metric instrument a probe declares and records into. Semantics are OpenTelemetry's: a counter adds non-negative
 * increments (a monotonic sum), an up-down counter adds any increments, a histogram aggregates recorded values into
 * explicit buckets, a gauge keeps the last value per attribute set.
 */
export interface Instrument {
  readonly name: string
  readonly kind: InstrumentKind
  readonly unit: string
  readonly description: string
  /** Histograms only: explicit bucket boundaries (ascending). Default: OpenTelemetry's default boundaries. */
  readonly boundaries?: ReadonlyArray<number>
}

/** One recording into a declared instrument. */
export interface Measurement {
  /** The process it is about (selects the resource), or undefined for the host as a whole (the agent's resource). */
  readonly pid: number | undefined
  readonly probe: string
  readonly instrument: Instrument
  readonly value: number
  readonly attributes: Attributes
}

/** One ring-buffer batch's worth of signals. */
export interface Signals {
  readonly spans: ReadonlyArray<SpanData>
  readonly logs: ReadonlyArray<LogData>
  readonly measurements: ReadonlyArray<Measurement>
}

/** Where Runners send telemetry. Emitting never fails: the sink counts what it cannot keep. */
export class TelemetrySink extends Context.Service<TelemetrySink, {
  readonly span: (span: SpanData) => Effect.Effect<void>
  /**
   * Emit one ring-buffer batch's spans at once, as `span` would one by one. Optional: a sink without it gets `span`
   * per span; the live sink has it, so a busy Runner pays one effect per batch rather than one per span.
   */
  readonly spans?: (spans: ReadonlyArray<SpanData>) => Effect.Effect<void>
  /** Emit log records. A sink without it does not take logs (counted by the Runner as dropped). */
  readonly logs?: (logs: ReadonlyArray<LogData>) => Effect.Effect<void>
  /** Record measurements. A sink without it does not take metrics (counted by the Runner as dropped). */
  readonly measurements?: (measurements: ReadonlyArray<Measurement>) => Effect.Effect<void>
  /**
   * Take one batch's signals now, synchronously, as `spans`, `logs` and `measurements` would. Optional: with it, the
   * Runner hands each ring-buffer batch over from the drain itself, with no fiber, queue or effect per batch (the
   * agent's hot path); it must not block, wait or throw. A sink without it gets the effects above. The spans come as
   * the probe emitted them, and `probe` names the probe of them all (a batch is one probe's): the Runner does not
   * copy each span to add the name.
   */
  readonly emitUnsafe?: (
    spans: ReadonlyArray<Omit<SpanData, "probe">>,
    logs: ReadonlyArray<LogData>,
    measurements: ReadonlyArray<Measurement>,
    probe: string
  ) => void
}>()("probescope/probe/TelemetrySink") {}
