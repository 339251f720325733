/**
 * What an instrument probe emits. A probe's Runner decodes kernel records into these and hands them to the
 * `TelemetrySink` the framework provides; the telemetry layer turns them into OpenTelemetry data and exports them.
 */
import type { Effect } from "effect"
import { Context } from "effect"

export type SpanKind = "internal" | "server" | "client" | "producer" | "consumer"

export type AttributeValue = string | number | boolean | ReadonlyArray<string> | ReadonlyArray<number>

/** One finished span as a probe observed it. IDs are lowercase hex; times are kernel CLOCK_MONOTONIC nanoseconds. */
export interface SpanData {
  /** The process it happened in: selects the OpenTelemetry resource. */
  readonly pid: number
  /** Name of the probe that produced it (becomes the instrumentation scope). */
  readonly probe: string
  readonly traceId: string
  readonly spanId: string
  /** Absent for a root span. */
  readonly parentSpanId?: string
  /** True when the parent came from another process (an incoming traceparent). */
  readonly parentIsRemote?: boolean
  readonly traceFlags: number
  readonly name: string
  readonly kind: SpanKind
  readonly startMonoNs: bigint
  readonly endMonoNs: bigint
  readonly attributes: Readonly<Record<string, AttributeValue>>
  readonly status: { readonly code: "unset" | "ok" | "error"; readonly message?: string }
}

/** Where Runners send telemetry. Emitting never fails: the sink counts what it cannot keep. */
export class TelemetrySink extends Context.Service<TelemetrySink, {
  readonly span: (span: SpanData) => Effect.Effect<void>
  /**
   * Emit one ring-buffer batch's spans at once, as `span` would one by one. Optional: a sink without it gets `span`
   * per span; the live sink has it, so a busy Runner pays one effect per batch rather than one per span.
   */
  readonly spans?: (spans: ReadonlyArray<SpanData>) => Effect.Effect<void>
}>()("probescope/probe/TelemetrySink") {}
