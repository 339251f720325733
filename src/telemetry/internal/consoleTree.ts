/**
 * Human-readable rendering of exported spans: one indented tree per trace, children under their parents.
 */
import { SpanKind, SpanStatusCode } from "@opentelemetry/api"
import type { ReadableSpan } from "@opentelemetry/sdk-trace-base"
import { hrTimeToNs } from "./readableSpan.ts"

const kindNames: Record<number, string> = {
  [SpanKind.INTERNAL]: "internal",
  [SpanKind.SERVER]: "server",
  [SpanKind.CLIENT]: "client",
  [SpanKind.PRODUCER]: "producer",
  [SpanKind.CONSUMER]: "consumer"
}

/** At most this many attributes per line; the rest are counted. */
const MAX_ATTRIBUTES = 6
const MAX_VALUE = 60

const formatValue = (v: unknown): string => {
  const s = typeof v === "string" ? (/[\s"=]/.test(v) || v === "" ? JSON.stringify(v) : v) : JSON.stringify(v)
  return s.length > MAX_VALUE ? `${s.slice(0, MAX_VALUE - 1)}…` : s
}

const formatStatus = (span: ReadableSpan) => {
  switch (span.status.code) {
    case SpanStatusCode.OK:
      return "OK"
    case SpanStatusCode.ERROR:
      return span.status.message ? `ERROR ${JSON.stringify(span.status.message)}` : "ERROR"
    default:
      return "UNSET"
  }
}

const formatAttributes = (span: ReadableSpan) => {
  const entries = Object.entries(span.attributes).filter(([, v]) => v !== undefined)
  const shown = entries.slice(0, MAX_ATTRIBUTES).map(([k, v]) => `${k}=${formatValue(v)}`)
  if (entries.length > MAX_ATTRIBUTES) shown.push(`+${entries.length - MAX_ATTRIBUTES} more`)
  return shown.join(" ")
}

const processLabel = (span: ReadableSpan) => {
  const attrs = span.resource.attributes
  return `${String(attrs["service.name"] ?? "unknown_service")} pid ${String(attrs["process.pid"] ?? "?")}`
}

const durationMs = (span: ReadableSpan) => (Number(hrTimeToNs(span.duration)) / 1e6).toFixed(3)

const startNs = (span: ReadableSpan) => hrTimeToNs(span.startTime)

const byStart = (a: ReadableSpan, b: ReadableSpan) => {
  const d = startNs(a) - startNs(b)
  return d < 0n ? -1 : d > 0n ? 1 : 0
}

const spanLine = (span: ReadableSpan, parent: ReadableSpan | undefined) => {
  const parts = [span.name, kindNames[span.kind] ?? "internal", `${durationMs(span)} ms`, formatStatus(span)]
  const attrs = formatAttributes(span)
  if (attrs !== "") parts.push(attrs)
  if (parent === undefined || parent.resource !== span.resource) parts.push(`(${processLabel(span)})`)
  const p = span.parentSpanContext
  if (p !== undefined && parent === undefined) {
    parts.push(p.isRemote ? `[remote parent ${p.spanId}]` : `[parent ${p.spanId} not shown]`)
  }
  return parts.join("  ")
}

/**
 * Renders spans as one tree per trace id (traces ordered by their first start, children by start). A span whose
 * parent is not among `spans` is shown as a root, marked with its parent id (and whether that parent is remote).
 */
export const renderTrees = (spans: ReadonlyArray<ReadableSpan>): string => {
  const traces = new Map<string, Array<ReadableSpan>>()
  for (const span of [...spans].sort(byStart)) {
    const traceId = span.spanContext().traceId
    let list = traces.get(traceId)
    if (list === undefined) traces.set(traceId, list = [])
    list.push(span)
  }
  const lines: Array<string> = []
  for (const [traceId, list] of traces) {
    const bySpanId = new Map(list.map((s) => [s.spanContext().spanId, s]))
    const children = new Map<string, Array<ReadableSpan>>()
    const roots: Array<ReadableSpan> = []
    for (const span of list) {
      const parentId = span.parentSpanContext?.spanId
      if (parentId !== undefined && parentId !== span.spanContext().spanId && bySpanId.has(parentId)) {
        let c = children.get(parentId)
        if (c === undefined) children.set(parentId, c = [])
        c.push(span)
      } else {
        roots.push(span)
      }
    }
    lines.push(`trace ${traceId}`)
    const visit = (span: ReadableSpan, parent: ReadableSpan | undefined, prefix: string, last: boolean) => {
      lines.push(`${prefix}${last ? "└─ " : "├─ "}${spanLine(span, parent)}`)
      const kids = children.get(span.spanContext().spanId) ?? []
      const childPrefix = prefix + (last ? "   " : "│  ")
      kids.forEach((kid, i) => visit(kid, span, childPrefix, i === kids.length - 1))
    }
    roots.forEach((root, i) => visit(root, undefined, "", i === roots.length - 1))
  }
  return lines.length === 0 ? "" : `${lines.join("\n")}\n`
}

/** One JSON object per span (times as decimal strings of epoch ns). */
export const renderJsonLines = (spans: ReadonlyArray<ReadableSpan>): string =>
  spans.map((span) => {
    const ctx = span.spanContext()
    return JSON.stringify({
      traceId: ctx.traceId,
      spanId: ctx.spanId,
      parentSpanId: span.parentSpanContext?.spanId,
      parentIsRemote: span.parentSpanContext?.isRemote,
      name: span.name,
      kind: kindNames[span.kind] ?? "internal",
      startTimeUnixNano: hrTimeToNs(span.startTime).toString(),
      endTimeUnixNano: hrTimeToNs(span.endTime).toString(),
      durationMs: Number(hrTimeToNs(span.duration)) / 1e6,
      status: { code: formatStatus(span).split(" ")[0], message: span.status.message },
      attributes: span.attributes,
      resource: span.resource.attributes,
      scope: span.instrumentationScope
    }) + "\n"
  }).join("")
