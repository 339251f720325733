/**
 * OTLP `ExportTraceServiceRequest` straight from the probes' `SpanData`, as protobuf (opentelemetry-proto
 * collector/trace/v1; protobuf.ts) or OTLP/JSON (json.ts), without building OpenTelemetry SDK spans first: ids go from
 * hex to bytes inside the output buffer, times are the kernel's bigint nanoseconds plus the clock offset, each
 * resource's and probe's encoded Resource and InstrumentationScope are made once and copied into every request after
 * that, and so are attribute names and the attribute values that repeat. Spans are encoded one at a time into the
 * buffer of their group (builder.ts), so the exporter can encode each span as it is offered.
 *
 * Grouping follows the SDK's: one ResourceSpans per resource object (ProcessResources hands out one per process), one
 * ScopeSpans per probe within it, spans in the order given. The span flags carry the W3C trace flags in the low byte
 * plus 0x100 ("is-remote" known) and 0x200 (the parent is remote), as the OpenTelemetry JS SDK sets them.
 */
import * as Builder from "./builder.ts"
import type { OtlpSpan, ResourceLike } from "./fields.ts"
import * as Json from "./json.ts"
import * as Protobuf from "./protobuf.ts"
import { JsonWriter, ProtoWriter } from "./ProtoWriter.ts"

export type { OtlpSpan, ResourceLike } from "./fields.ts"
export { spanFlags } from "./fields.ts"

/** Encodes trace export requests; keeps the per-resource and per-probe caches and the group buffers for reuse. */
export interface TraceEncoder {
  /** An `ExportTraceServiceRequest` in protobuf (empty for no spans). */
  readonly protobuf: (items: ReadonlyArray<OtlpSpan>) => Buffer
  /** The same request in OTLP/JSON (UTF-8). */
  readonly json: (items: ReadonlyArray<OtlpSpan>) => Buffer
  /** A request built span by span (see builder.ts), in OTLP/JSON or protobuf; its group buffers are pooled. */
  readonly builder: (json: boolean) => Builder.RequestBuilder
}

/** A group's buffer to start with: it grows by doubling, and is reused by the next request. */
const GROUP_BUFFER_BYTES = 8 * 1024

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

  const protobufBuilder = Builder.builders<ProtoWriter>({
    newWriter: () => new ProtoWriter(GROUP_BUFFER_BYTES),
    writeSpan: (w, item) => Protobuf.writeSpan(w, item.span, item.offsetNs),
    assemble: Builder.protobufAssembler(resourceField, scopeField)
  })
  const jsonBuilder = Builder.builders<JsonWriter>({
    newWriter: () => new JsonWriter(GROUP_BUFFER_BYTES),
    writeSpan: (w, item, first) => {
      if (!first) w.byte(0x2c)
      Json.writeSpan(w, item.span, item.offsetNs)
    },
    assemble: Builder.jsonAssembler(resourceOpening, scopeOpening)
  })
  /** The whole batch at once: the same builder, filled and finished. */
  const encodeWith = (builder: Builder.RequestBuilder) => (items: ReadonlyArray<OtlpSpan>): Buffer => {
    for (let i = 0; i < items.length; i++) builder.add(items[i]!)
    return builder.finish()
  }

  return {
    protobuf: encodeWith(protobufBuilder()),
    json: encodeWith(jsonBuilder()),
    builder: (json) => json ? jsonBuilder() : protobufBuilder()
  }
}
