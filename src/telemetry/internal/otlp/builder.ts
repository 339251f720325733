/**
 * An `ExportTraceServiceRequest` built span by span: each span is encoded when it is added, into the buffer of its
 * resource's and probe's group, and `finish` only lays the groups out behind their cached Resource and Scope bytes.
 *
 * Why encode early: a span kept as `SpanData` until its batch leaves (tens of milliseconds at 10k spans/s, seconds
 * at low rates) survives the young generation's collections with its attribute object, strings and bigints, and is
 * promoted and later marked; encoded at once, those die young and what waits for export is ~400 bytes per span in
 * a few reused buffers. The request bytes are the same as encoding the batch at once would make (the groups and
 * the spans within them in the order they first appear, as traces.ts groups them).
 */
import type { OtlpSpan, ResourceLike } from "./fields.ts"
import { type ProtoWriter, varintSize } from "./ProtoWriter.ts"

/** The spans of one resource and probe, encoded: the bytes that follow their ScopeSpans' scope field. */
interface Group {
  readonly probe: string
  readonly w: ProtoWriter
  count: number
}

interface ResourceGroup {
  readonly resource: ResourceLike
  readonly scopes: Array<Group>
  /** Bytes of the ResourceSpans' content (protobuf) or of its whole JSON object, set by `finish`. */
  size: number
}

/** What the two encodings differ in; the builder does the grouping and pooling. */
export interface Format<W extends ProtoWriter> {
  readonly newWriter: () => W
  /** Appends one span to a group's bytes; `first`: the group's first span (JSON puts a comma between spans). */
  readonly writeSpan: (w: W, item: OtlpSpan, first: boolean) => void
  /** Lays the groups out as one request, in a buffer of `alloc`'s (exactly the size asked for). */
  readonly assemble: (resources: Iterable<ResourceGroup>, alloc: (size: number) => Buffer) => Buffer
}

/** A request's buffer when the caller brings none: a new one. */
const fresh = (size: number): Buffer => Buffer.allocUnsafe(size)

export interface RequestBuilder {
  /** Spans added since the builder was last finished or discarded. */
  readonly count: () => number
  /** Their encoded bytes (the request is these plus its resource and scope fields). */
  readonly bytes: () => number
  /** Encodes one span into the request being built (nothing of the item is kept). */
  readonly add: (item: OtlpSpan) => void
  /**
   * The request of every span added (for none: empty protobuf, `{"resourceSpans":[]}`), written into `alloc(size)`
   * (default: a new buffer); the builder starts over.
   */
  readonly finish: (alloc?: (size: number) => Buffer) => Buffer
  /** Forgets every span added; the builder starts over, empty. */
  readonly discard: () => void
}

/**
 * The bytes of group buffers kept for reuse per encoding: about what a full default queue of spans takes (8192 spans
 * of ~400 bytes, with the slack of buffers that grow by doubling); past it, finished requests' buffers are let go.
 */
const POOL_BYTES = 8 * 1024 * 1024

/** Builders of one encoding sharing a pool of group buffers. */
export const builders = <W extends ProtoWriter>(format: Format<W>): () => RequestBuilder => {
  const pool: Array<W> = []
  let pooled = 0
  const take = (): W => {
    const w = pool.pop()
    if (w === undefined) return format.newWriter()
    pooled -= w.buf.length
    return w
  }
  const release = (w: W) => {
    if (pooled + w.buf.length <= POOL_BYTES) {
      w.reset()
      pool.push(w)
      pooled += w.buf.length
    }
  }
  return () => {
    const resources = new Map<ResourceLike, ResourceGroup>()
    let count = 0
    let bytes = 0
    // Runs of one process's spans from one probe are the common case: both lookups skipped.
    let lastResource: ResourceLike | undefined
    let lastProbe: string | undefined
    let last: Group | undefined

    const groupFor = (resource: ResourceLike, probe: string): Group => {
      let rg = resources.get(resource)
      if (rg === undefined) {
        rg = { resource, scopes: [], size: 0 }
        resources.set(resource, rg)
      }
      // A process's spans come from a few probes: a scan beats a map.
      const scopes = rg.scopes
      for (let i = 0; i < scopes.length; i++) if (scopes[i]!.probe === probe) return scopes[i]!
      const group: Group = { probe, w: take(), count: 0 }
      scopes.push(group)
      return group
    }

    const reset = () => {
      for (const rg of resources.values()) for (const g of rg.scopes) release(g.w as W)
      resources.clear()
      count = 0
      bytes = 0
      lastResource = undefined
      lastProbe = undefined
      last = undefined
    }

    return {
      count: () => count,
      bytes: () => bytes,
      add: (item) => {
        const probe = item.probe
        let group = last
        if (group === undefined || item.resource !== lastResource || probe !== lastProbe) {
          group = groupFor(item.resource, probe)
          lastResource = item.resource
          lastProbe = probe
          last = group
        }
        const w = group.w as W
        const mark = w.pos
        try {
          format.writeSpan(w, item, group.count === 0)
        } catch (e) {
          // Half a span would spoil the whole request: the group goes back to where it was.
          w.pos = mark
          throw e
        }
        group.count++
        count++
        bytes += w.pos - mark
      },
      finish: (alloc = fresh) => {
        const body = format.assemble(resources.values(), alloc)
        reset()
        return body
      },
      discard: reset
    }
  }
}

/** Writes the canonical varint of `n` at `p`; returns the position after it. */
const putVarint = (out: Uint8Array, p: number, n: number): number => {
  while (n >= 0x80) {
    out[p++] = (n & 0x7f) | 0x80
    n >>>= 7
  }
  out[p++] = n
  return p
}

/**
 * The protobuf layout: `resourceField` and `scopeField` give a resource's and a probe's encoded field 1 (tag and
 * length included). Sizes are summed first, so the request is written once, into a buffer of its exact size.
 */
export const protobufAssembler = (
  resourceField: (r: ResourceLike) => Uint8Array,
  scopeField: (probe: string) => Uint8Array
) =>
(resources: Iterable<ResourceGroup>, alloc: (size: number) => Buffer): Buffer => {
  const list = Array.from(resources)
  let total = 0
  for (const rg of list) {
    let size = resourceField(rg.resource).length
    for (const g of rg.scopes) {
      const scopeSpans = scopeField(g.probe).length + g.w.pos
      size += 1 + varintSize(scopeSpans) + scopeSpans
    }
    rg.size = size
    total += 1 + varintSize(size) + size
  }
  const out = alloc(total)
  let p = 0
  for (const rg of list) {
    out[p++] = 0x0a // ExportTraceServiceRequest.resource_spans (1)
    p = putVarint(out, p, rg.size)
    const resource = resourceField(rg.resource)
    out.set(resource, p)
    p += resource.length
    for (const g of rg.scopes) {
      const scope = scopeField(g.probe)
      out[p++] = 0x12 // ResourceSpans.scope_spans (2)
      p = putVarint(out, p, scope.length + g.w.pos)
      out.set(scope, p)
      p += scope.length
      out.set(g.w.buf.subarray(0, g.w.pos), p)
      p += g.w.pos
    }
  }
  return out
}

const REQUEST_OPEN = Buffer.from(`{"resourceSpans":[`)
const CLOSE = Buffer.from("]}")

/**
 * The OTLP/JSON layout: `resourceOpening` is `{"resource":{...},"scopeSpans":[`, `scopeOpening` is
 * `{"scope":{...},"spans":[`; each closes with `]}`, and siblings are separated by commas.
 */
export const jsonAssembler = (
  resourceOpening: (r: ResourceLike) => Uint8Array,
  scopeOpening: (probe: string) => Uint8Array
) =>
(resources: Iterable<ResourceGroup>, alloc: (size: number) => Buffer): Buffer => {
  const list = Array.from(resources)
  let total = REQUEST_OPEN.length + CLOSE.length + Math.max(0, list.length - 1)
  for (const rg of list) {
    let size = resourceOpening(rg.resource).length + CLOSE.length + rg.scopes.length - 1
    for (const g of rg.scopes) size += scopeOpening(g.probe).length + g.w.pos + CLOSE.length
    rg.size = size
    total += size
  }
  const out = alloc(total)
  let p = 0
  const put = (bytes: Uint8Array) => {
    out.set(bytes, p)
    p += bytes.length
  }
  put(REQUEST_OPEN)
  for (let i = 0; i < list.length; i++) {
    const rg = list[i]!
    if (i > 0) out[p++] = 0x2c
    put(resourceOpening(rg.resource))
    for (let j = 0; j < rg.scopes.length; j++) {
      const g = rg.scopes[j]!
      if (j > 0) out[p++] = 0x2c
      put(scopeOpening(g.probe))
      put(g.w.buf.subarray(0, g.w.pos))
      put(CLOSE)
    }
    put(CLOSE)
  }
  put(CLOSE)
  return out
}
