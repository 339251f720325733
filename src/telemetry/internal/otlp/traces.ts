/**
 * OTLP `ExportTraceServiceRequest` straight from the probes' `SpanData`, as protobuf (opentelemetry-proto
 * collector/trace/v1; protobuf.ts) or OTLP/JSON (json.ts), without building OpenTelemetry SDK spans first: ids go from
 * hex to bytes inside the output buffer, times are the kernel's bigint nanoseconds plus the clock offset, each
 * resource's and probe's encoded Resource and InstrumentationScope are made once and copied into every request after
 * that, and so are attribute names and the attribute values that repeat.
 *
 * Grouping follows the SDK's: one ResourceSpans per resource object (ProcessResources hands out one per process), one
 * ScopeSpans per probe within it, spans in the order given. The span flags carry the W3C trace flags in the low byte
 * plus 0x100 ("is-remote" known) and 0x200 (the parent is remote), as the OpenTelemetry JS SDK sets them.
 */
import type { OtlpSpan, ResourceLike } from "./fields.ts"
import * as Json from "./json.ts"
import * as Protobuf from "./protobuf.ts"
import { JsonWriter, ProtoWriter } from "./ProtoWriter.ts"

export type { OtlpSpan, ResourceLike } from "./fields.ts"
export { spanFlags } from "./fields.ts"

/** Spans grouped by resource object, then by probe, in the order they first appear. */
const group = (items: ReadonlyArray<OtlpSpan>) => {
  const groups = new Map<ResourceLike, Map<string, Array<OtlpSpan>>>()
  let lastResource: ResourceLike | undefined
  let lastProbe: string | undefined
  let last: Array<OtlpSpan> = []
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!
    // Runs of one process's spans from one probe are the common case: skip both lookups.
    if (item.resource !== lastResource || item.span.probe !== lastProbe) {
      lastResource = item.resource
      lastProbe = item.span.probe
      let byProbe = groups.get(item.resource)
      if (byProbe === undefined) {
        byProbe = new Map()
        groups.set(item.resource, byProbe)
      }
      let list = byProbe.get(lastProbe)
      if (list === undefined) {
        list = []
        byProbe.set(lastProbe, list)
      }
      last = list
    }
    last.push(item)
  }
  return groups
}

/** Encodes trace export requests; keeps the per-resource and per-probe caches and one reused buffer per encoding. */
export interface TraceEncoder {
  /** An `ExportTraceServiceRequest` in protobuf (empty for no spans). */
  readonly protobuf: (items: ReadonlyArray<OtlpSpan>) => Buffer
  /** The same request in OTLP/JSON (UTF-8). */
  readonly json: (items: ReadonlyArray<OtlpSpan>) => Buffer
}

/** Bytes made once per key: `make` runs at a key's first use. */
const memo = <K, V>(
  cache: { get(key: K): V | undefined; set(key: K, value: V): unknown },
  make: (key: K) => V
) =>
(key: K): V => {
  let value = cache.get(key)
  if (value === undefined) {
    value = make(key)
    cache.set(key, value)
  }
  return value
}

/** An encoder whose scopes are `probescope/<probe>` at `scopeVersion`. */
export const makeTraceEncoder = (scopeVersion: string): TraceEncoder => {
  // Resources by identity (a process registered again gets a new one; the old one can go); scopes by probe name.
  const resourceField = memo(new WeakMap<ResourceLike, Uint8Array>(), (r: ResourceLike) =>
    Protobuf.resourceField(r.attributes))
  const scopeField = memo(new Map<string, Uint8Array>(), (probe) =>
    Protobuf.scopeField(`probescope/${probe}`, scopeVersion))
  const resourceOpening = memo(new WeakMap<ResourceLike, Uint8Array>(), (r: ResourceLike) =>
    Json.resourceOpening(r.attributes))
  const scopeOpening = memo(new Map<string, Uint8Array>(), (probe) =>
    Json.scopeOpening(`probescope/${probe}`, scopeVersion))

  const w = new ProtoWriter()
  const protobuf = (items: ReadonlyArray<OtlpSpan>): Buffer => {
    w.reset()
    for (const [resource, byProbe] of group(items)) {
      w.byte(0x0a) // ExportTraceServiceRequest.resource_spans (1)
      const resourceSpans = w.begin(3)
      w.raw(resourceField(resource))
      for (const [probe, spans] of byProbe) {
        w.byte(0x12) // ResourceSpans.scope_spans (2)
        const scopeSpans = w.begin(3)
        w.raw(scopeField(probe))
        for (let i = 0; i < spans.length; i++) Protobuf.writeSpan(w, spans[i]!.span, spans[i]!.offsetNs)
        w.end(scopeSpans, 3)
      }
      w.end(resourceSpans, 3)
    }
    return w.finish()
  }

  const j = new JsonWriter()
  const json = (items: ReadonlyArray<OtlpSpan>): Buffer => {
    j.reset()
    j.ascii(`{"resourceSpans":[`)
    let firstResource = true
    for (const [resource, byProbe] of group(items)) {
      if (!firstResource) j.byte(0x2c)
      firstResource = false
      j.raw(resourceOpening(resource))
      let firstScope = true
      for (const [probe, spans] of byProbe) {
        if (!firstScope) j.byte(0x2c)
        firstScope = false
        j.raw(scopeOpening(probe))
        for (let i = 0; i < spans.length; i++) {
          if (i > 0) j.byte(0x2c)
          Json.writeSpan(j, spans[i]!.span, spans[i]!.offsetNs)
        }
        j.ascii("]}")
      }
      j.ascii("]}")
    }
    j.ascii("]}")
    return j.finish()
  }

  return { protobuf, json }
}
