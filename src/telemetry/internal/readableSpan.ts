/**
 * SpanData → the `ReadableSpan` shape the OpenTelemetry JS exporters serialise, built directly so that our ids,
 * parent (with its remote flag), exact times, scope and per-process resource reach the wire unchanged.
 */
import { type Attributes, SpanKind, SpanStatusCode } from "@opentelemetry/api"
import type { Resource } from "@opentelemetry/resources"
import type { ReadableSpan } from "@opentelemetry/sdk-trace-base"
import * as Ids from "../../probe/Ids.ts"
import type { SpanData } from "../../probe/Telemetry.ts"
import { nsToHrTime } from "./clockMath.ts"
import { scopeOf } from "./scope.ts"

const kinds = {
  internal: SpanKind.INTERNAL,
  server: SpanKind.SERVER,
  client: SpanKind.CLIENT,
  producer: SpanKind.PRODUCER,
  consumer: SpanKind.CONSUMER
} as const

const statuses = { unset: SpanStatusCode.UNSET, ok: SpanStatusCode.OK, error: SpanStatusCode.ERROR } as const

/** Builds an exported span; `toEpochNs` maps the kernel monotonic times. */
export const toReadableSpan = (
  span: SpanData,
  resource: Resource,
  scopeVersion: string,
  toEpochNs: (monoNs: bigint) => bigint
): ReadableSpan => {
  const startNs = toEpochNs(span.startMonoNs)
  // A probe that saw the end before the start (clock or decode trouble) still yields a valid zero-length span.
  const endNs = span.endMonoNs >= span.startMonoNs ? toEpochNs(span.endMonoNs) : startNs
  const traceId = Ids.hex(span.traceId)
  const context = { traceId, spanId: Ids.hex(span.spanId), traceFlags: span.traceFlags, isRemote: false }
  const parentSpanContext = span.parentSpanId === undefined || Ids.isEmpty(span.parentSpanId)
    ? undefined
    : {
      traceId,
      spanId: Ids.hex(span.parentSpanId),
      traceFlags: span.traceFlags,
      isRemote: span.parentIsRemote === true
    }
  const status = span.status.message === undefined
    ? { code: statuses[span.status.code] }
    : { code: statuses[span.status.code], message: span.status.message }
  return {
    name: span.name,
    kind: kinds[span.kind],
    spanContext: () => context,
    ...(parentSpanContext === undefined ? {} : { parentSpanContext }),
    startTime: nsToHrTime(startNs),
    endTime: nsToHrTime(endNs),
    duration: nsToHrTime(endNs - startNs),
    status,
    attributes: { ...span.attributes } as Attributes,
    links: [],
    events: span.events === undefined ? [] : span.events.map((e) => ({
      name: e.name,
      time: nsToHrTime(toEpochNs(e.timeMonoNs)),
      attributes: { ...e.attributes } as Attributes,
      droppedAttributesCount: 0
    })),
    ended: true,
    resource,
    instrumentationScope: scopeOf(span.probe, scopeVersion),
    droppedAttributesCount: span.droppedAttributesCount ?? 0,
    droppedEventsCount: span.droppedEventsCount ?? 0,
    droppedLinksCount: 0
  }
}

/** Epoch ns of an HrTime (exact). */
export const hrTimeToNs = (t: readonly [number, number]): bigint => BigInt(t[0]) * 1_000_000_000n + BigInt(t[1])
