/**
 * What the HTTP probes share: the record head both net/http BPF programs write first (`struct ps_http_head` in
 * bpf/include/probescope/nethttp.h), the swiss-map offsets their header lookup needs, the OpenTelemetry HTTP
 * semantic-convention rules (method normalisation, host:port splitting, error status), and the HTTP duration
 * instruments every HTTP probe declares and records.
 */
import {
  HTTP_REQUEST_METHOD_VALUE_OTHER
} from "@opentelemetry/semantic-conventions"
import * as Binary from "../../probe/Binary.ts"
import * as Instruments from "../../probe/Instruments.ts"
import type { FieldSpec } from "../../probe/Manifest.ts"
import type { Emit, SpanInput } from "../../probe/Probe.ts"
import type { Attributes, AttributeValue, SpanKind } from "../../probe/Telemetry.ts"

// ---------------------------------------------------------------------------------------------------------------
// Record head: 56 bytes, identical in both probes' records
// ---------------------------------------------------------------------------------------------------------------

/** `struct ps_http_head`, field for field. Spread it first into a record layout. */
export const head = {
  startNs: Binary.u64,
  endNs: Binary.u64,
  traceId: Binary.bytes(16),
  spanId: Binary.bytes(8),
  parentSpanId: Binary.bytes(8),
  pid: Binary.u32,
  flags: Binary.u8,
  /** One of `Parent`. */
  parent: Binary.u8,
  /** HTTP status code; 0 when unknown (transport error, HTTP/2 server). */
  status: Binary.u16
} as const

/** `head.parent`: where the span's parent came from (PS_PARENT_* in nethttp.h). */
export const Parent = { none: 0, local: 1, remote: 2 } as const

/** What a record head gives every span built from it: identity, parent (by where it came from), times. */
export interface Head {
  readonly pid: number
  readonly traceId: Uint8Array
  readonly spanId: Uint8Array
  readonly parentSpanId: Uint8Array
  readonly parent: number
  readonly flags: number
  readonly startNs: bigint
  readonly endNs: bigint
}

/** A status without a message or code: one object for every span that has it (spans are read, never changed). */
export const UNSET: SpanInput["status"] = Object.freeze({ code: "unset" })

/**
 * The span of a record with a head (`Head`): one object literal per span, of one of two shapes (with and without a
 * parent). This runs for every span of the HTTP, gRPC, SQL and Redis probes: spreading a head object into the span,
 * as `spanHead` does, made two more objects per span and took V8's generic property-copy path (measured in
 * bench/pipeline.ts, docs/benchmarks.md "The span path (session 20)"). `parent` overrides the head's own (probes
 * whose records say only "local parent or none").
 */
export const headSpan = (
  r: Head,
  name: string,
  kind: SpanKind,
  attributes: Attributes,
  status: SpanInput["status"],
  parent: number = r.parent
): SpanInput =>
  parent === Parent.none
    ? {
      pid: r.pid,
      traceId: r.traceId,
      spanId: r.spanId,
      traceFlags: r.flags,
      startMonoNs: r.startNs,
      endMonoNs: r.endNs,
      name,
      kind,
      attributes,
      status
    }
    : {
      pid: r.pid,
      traceId: r.traceId,
      spanId: r.spanId,
      parentSpanId: r.parentSpanId,
      parentIsRemote: parent === Parent.remote,
      traceFlags: r.flags,
      startMonoNs: r.startNs,
      endMonoNs: r.endNs,
      name,
      kind,
      attributes,
      status
    }

/** The fields of the record head as an object to spread (for spans with more fields than `headSpan` takes). */
export const spanHead = (r: Head) => ({
  pid: r.pid,
  traceId: r.traceId,
  spanId: r.spanId,
  ...(r.parent === Parent.none ? {} : { parentSpanId: r.parentSpanId, parentIsRemote: r.parent === Parent.remote }),
  traceFlags: r.flags,
  startMonoNs: r.startNs,
  endMonoNs: r.endNs
})

/** W3C trace flag bit 0. */
export const FLAG_SAMPLED = 1

// ---------------------------------------------------------------------------------------------------------------
// Swiss-map offsets (http.Header is a map; Go >= 1.24)
// ---------------------------------------------------------------------------------------------------------------

/** `struct ps_swiss_offsets`: the head of both probes' per-target offsets. */
export const swissLayout = {
  mapDirPtr: Binary.u64n,
  mapDirLen: Binary.u64n,
  tableGroupsData: Binary.u64n,
  tableGroupsMask: Binary.u64n
} as const

/**
 * The runtime's map structs are in DWARF but seldom in a shipped table, so they are optional with fallbacks: the
 * values are identical in Go 1.24 through 1.27 on amd64 (checked against each release's DWARF).
 */
export const swissFields = {
  mapDirPtr: { type: "internal/runtime/maps.Map", field: "dirPtr", optional: true },
  mapDirLen: { type: "internal/runtime/maps.Map", field: "dirLen", optional: true },
  tableGroups: { type: "internal/runtime/maps.table", field: "groups", optional: true },
  groupsData: { type: "internal/runtime/maps.groupsReference", field: "data", optional: true },
  groupsLengthMask: { type: "internal/runtime/maps.groupsReference", field: "lengthMask", optional: true }
} as const satisfies Record<string, FieldSpec>

/** Resolve the swiss offsets, falling back to the Go 1.24-1.27 values. */
export const swissValue = (o: {
  readonly mapDirPtr: number | undefined
  readonly mapDirLen: number | undefined
  readonly tableGroups: number | undefined
  readonly groupsData: number | undefined
  readonly groupsLengthMask: number | undefined
}) => {
  const groups = o.tableGroups ?? 16
  return {
    mapDirPtr: o.mapDirPtr ?? 16,
    mapDirLen: o.mapDirLen ?? 24,
    tableGroupsData: groups + (o.groupsData ?? 0),
    tableGroupsMask: groups + (o.groupsLengthMask ?? 8)
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Same-host propagation: a TCP connection's addresses (`struct ps_tcp_offsets` in nethttp.h)
// ---------------------------------------------------------------------------------------------------------------

/**
 * The net package's chain from a `net.Conn` holding a `*net.TCPConn` to its addresses. All optional: when one is
 * unknown the probe still applies and only the connection-keyed propagation is off for that process.
 */
export const tcpFields = {
  tcpConnConn: { type: "net.TCPConn", field: "conn", optional: true },
  connFd: { type: "net.conn", field: "fd", optional: true },
  netFdFamily: { type: "net.netFD", field: "family", optional: true },
  netFdSotype: { type: "net.netFD", field: "sotype", optional: true },
  netFdLaddr: { type: "net.netFD", field: "laddr", optional: true },
  netFdRaddr: { type: "net.netFD", field: "raddr", optional: true },
  tcpAddrIp: { type: "net.TCPAddr", field: "IP", optional: true },
  tcpAddrPort: { type: "net.TCPAddr", field: "Port", optional: true }
} as const satisfies Record<string, FieldSpec>

/** `struct ps_tcp_offsets`, spread at the end of both probes' per-target offsets. */
export const tcpLayout = {
  tcpEnabled: Binary.member("tcp.enabled", Binary.u64n),
  tcpConnFd: Binary.member("tcp.tcpconn_fd", Binary.u64n),
  tcpNetFdFamily: Binary.member("tcp.netfd_family", Binary.u64n),
  tcpNetFdSotypeW: Binary.member("tcp.netfd_sotype_w", Binary.u64n),
  tcpNetFdLaddrW: Binary.member("tcp.netfd_laddr_w", Binary.u64n),
  tcpNetFdRaddrW: Binary.member("tcp.netfd_raddr_w", Binary.u64n),
  tcpAddrIp: Binary.member("tcp.tcpaddr_ip", Binary.u64n),
  tcpAddrPortW: Binary.member("tcp.tcpaddr_port_w", Binary.u64n)
} as const

/** Words of the netFD block (from `family`) and the TCPAddr block (from `IP`) the BPF side reads in one go. */
const NETFD_BLOCK_WORDS = 9
const TCPADDR_BLOCK_WORDS = 4

type Resolved<K extends string> = { readonly [k in K]: number | undefined }

/**
 * Resolve `struct ps_tcp_offsets`. `tcpEnabled` is 1 only when every offset (`extra` included: the probe's own hop
 * to the `net.Conn`) is known and the netFD and TCPAddr fields fall, word-aligned, inside the blocks the BPF side
 * reads (true of Go 1.22 through 1.27: family 56, sotype 64, laddr 96, raddr 112; IP 0, Port 24).
 */
export const tcpValue = (o: Resolved<keyof typeof tcpFields>, extra: ReadonlyArray<number | undefined> = []) => {
  const off = {
    tcpEnabled: 0,
    tcpConnFd: 0,
    tcpNetFdFamily: 0,
    tcpNetFdSotypeW: 0,
    tcpNetFdLaddrW: 0,
    tcpNetFdRaddrW: 0,
    tcpAddrIp: 0,
    tcpAddrPortW: 0
  }
  const known = [...Object.keys(tcpFields).map((k) => o[k as keyof typeof tcpFields]), ...extra]
  if (known.some((v) => v === undefined)) return off
  const word = (field: number, base: number, last: number): number | undefined => {
    const d = field - base
    return d > 0 && d % 8 === 0 && d / 8 <= last ? d / 8 : undefined
  }
  const sotype = word(o.netFdSotype!, o.netFdFamily!, NETFD_BLOCK_WORDS - 1)
  const laddr = word(o.netFdLaddr!, o.netFdFamily!, NETFD_BLOCK_WORDS - 2)
  const raddr = word(o.netFdRaddr!, o.netFdFamily!, NETFD_BLOCK_WORDS - 2)
  const port = word(o.tcpAddrPort!, o.tcpAddrIp!, TCPADDR_BLOCK_WORDS - 1)
  if (sotype === undefined || laddr === undefined || raddr === undefined || port === undefined || port < 3) {
    return off
  }
  return {
    tcpEnabled: 1,
    tcpConnFd: o.tcpConnConn! + o.connFd!,
    tcpNetFdFamily: o.netFdFamily!,
    tcpNetFdSotypeW: sotype,
    tcpNetFdLaddrW: laddr,
    tcpNetFdRaddrW: raddr,
    tcpAddrIp: o.tcpAddrIp!,
    tcpAddrPortW: port
  }
}

/** `struct ps_conn_key` (go_context.h): the key of go_context's `ps_conn_spans`, 40 bytes. */
export const ConnKey = Binary.struct({
  clientIp: Binary.bytes(16),
  serverIp: Binary.bytes(16),
  clientPort: Binary.u16,
  serverPort: Binary.u16,
  _pad: Binary.pad(4)
}, { struct: "ps_conn_key" })

/** `struct ps_span_ctx` (go_context.h): the value of `go_spans` and `ps_conn_spans`, 32 bytes. */
export const SpanCtx = Binary.struct({
  traceId: Binary.hex(16),
  spanId: Binary.hex(8),
  flags: Binary.u8,
  _pad: Binary.pad(7)
}, { struct: "ps_span_ctx" })

/**
 * An IP address as the BPF side keys it: 16 bytes, IPv4 as v4-mapped IPv6 (`::ffff:a.b.c.d`), so an AF_INET
 * client and a dual-stack server agree. Undefined for anything that is not an IPv4 or IPv6 literal (zones dropped).
 */
export const ipBytes = (ip: string): Uint8Array | undefined => {
  const out = new Uint8Array(16)
  const v4 = (s: string, at: number): boolean => {
    const parts = s.split(".")
    if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return false
    parts.forEach((p, i) => (out[at + i] = Number(p)))
    return true
  }
  if (!ip.includes(":")) {
    out[10] = 0xff
    out[11] = 0xff
    return v4(ip, 12) ? out : undefined
  }
  const bare = ip.split("%")[0]!
  const halves = bare.split("::")
  if (halves.length > 2) return undefined
  const words = (h: string): Array<string> => h === "" ? [] : h.split(":")
  const head = words(halves[0]!)
  const tail = halves.length === 2 ? words(halves[1]!) : []
  // A trailing dotted quad takes two words.
  const last = (halves.length === 2 ? tail : head).at(-1)
  const quad = last !== undefined && last.includes(".")
  const count = head.length + tail.length + (quad ? 1 : 0)
  if (halves.length === 1 ? count !== 8 : count > 7) return undefined
  const put = (ws: Array<string>, from: number): boolean => {
    for (let i = 0; i < ws.length; i++) {
      const w = ws[i]!
      if (w.includes(".")) {
        if (i !== ws.length - 1 || from + 2 * i !== 12 || !v4(w, 12)) return false
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(w)) return false
        const n = Number.parseInt(w, 16)
        out[from + 2 * i] = n >> 8
        out[from + 2 * i + 1] = n & 0xff
      }
    }
    return true
  }
  const tailStart = 16 - 2 * (tail.length + (quad && halves.length === 2 ? 1 : 0))
  return put(head, 0) && put(tail, tailStart) ? out : undefined
}

/**
 * The `ps_conn_spans` key of a connection from its two ends' "host:port" (as in `Request.RemoteAddr`): what both
 * BPF sides compute from the sockets' addresses. Undefined when either end is not an IP literal with a port.
 */
export const connKey = (client: string, server: string): Uint8Array | undefined => {
  const c = splitHostPort(client)
  const s = splitHostPort(server)
  const cip = ipBytes(c.host)
  const sip = ipBytes(s.host)
  if (cip === undefined || sip === undefined || c.port === undefined || s.port === undefined) return undefined
  return ConnKey.encode({ clientIp: cip, serverIp: sip, clientPort: c.port, serverPort: s.port })
}

// ---------------------------------------------------------------------------------------------------------------
// Semantic-convention helpers
// ---------------------------------------------------------------------------------------------------------------

/** The known methods' answers, made once: `normalizeMethod` runs for every HTTP span. */
const KNOWN_METHODS = new Map(
  ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"].map((m) =>
    [m, Object.freeze({ method: m })] as const
  )
)

/** A request method as semconv wants it: known methods as-is, anything else `_OTHER` plus the original. */
export const normalizeMethod = (raw: string): { readonly method: string; readonly original?: string } =>
  KNOWN_METHODS.get(raw) ?? { method: HTTP_REQUEST_METHOD_VALUE_OTHER, original: raw }

/**
 * `f` remembering its last argument and answer: for a field whose value repeats from span to span (a connection's
 * peer, a route), the answer is the same object without the work. Answers are shared, so callers must only read
 * them (the probes read `splitHostPort`'s host and port into attributes). One per call site: a site alternating two
 * fields (a server's host and its peer) would miss every time with one shared between them.
 */
export const lastOne = <A, B>(f: (a: A) => B): (a: A) => B => {
  let seen = false
  let lastIn: A | undefined
  let lastOut: B | undefined
  return (a) => {
    if (seen && a === lastIn) return lastOut as B
    lastOut = f(a)
    lastIn = a
    seen = true
    return lastOut
  }
}

/** Split "host:port", "[v6]:port", "host" or "v6" into host and (numeric) port. */
export const splitHostPort = (hostport: string): { readonly host: string; readonly port?: number } => {
  if (hostport.startsWith("[")) {
    const end = hostport.indexOf("]")
    if (end < 0) return { host: hostport }
    const host = hostport.slice(1, end)
    const rest = hostport.slice(end + 1)
    const port = rest.startsWith(":") ? parsePort(rest.slice(1)) : undefined
    return port === undefined ? { host } : { host, port }
  }
  const colon = hostport.lastIndexOf(":")
  // More than one colon and no brackets: a bare IPv6 address.
  if (colon < 0 || hostport.indexOf(":") !== colon) return { host: hostport }
  const port = parsePort(hostport.slice(colon + 1))
  const host = hostport.slice(0, colon)
  return port === undefined ? { host } : { host, port }
}

/** 1 to 5 decimal digits from 1 to 65535; digit by digit (this runs for every HTTP span). */
const parsePort = (s: string): number | undefined => {
  if (s.length === 0 || s.length > 5) return undefined
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const d = s.charCodeAt(i) - 48
    if (d < 0 || d > 9) return undefined
    n = n * 10 + d
  }
  return n > 0 && n <= 65535 ? n : undefined
}

/** The default port of a URL scheme, for `server.port` when the URL names none. */
export const defaultPort = (scheme: string): number | undefined =>
  scheme === "http" ? 80 : scheme === "https" ? 443 : undefined

const versionOf = (major: number, minor: number): string | undefined =>
  major === 0 ? undefined : major >= 2 && minor === 0 ? String(major) : `${major}.${minor}`

/**
 * The versions of majors 0-3 and minors 0-9, made once: a string made per span is one more allocation, and one more
 * string whose hash the encoders' value caches compute.
 */
const VERSIONS = Array.from({ length: 4 }, (_, major) => Array.from({ length: 10 }, (_, minor) => versionOf(major, minor)))

/** "1.1", "2", "1.0" from Request.ProtoMajor/ProtoMinor (semconv drops a ".0" minor only for major >= 2). */
export const protocolVersion = (major: number, minor: number): string | undefined =>
  major < 4 && minor < 10 ? VERSIONS[major]![minor] : versionOf(major, minor)

/**
 * The route of a Go 1.22+ ServeMux pattern: "[METHOD ][HOST]/path" keeps "/path". An empty pattern (no route
 * matched, or a handler other than ServeMux) has no route.
 */
export const routeOfPattern = (pattern: string): string | undefined => {
  if (pattern === "") return undefined
  const space = pattern.indexOf(" ")
  const rest = space >= 0 ? pattern.slice(space + 1).trimStart() : pattern
  const slash = rest.indexOf("/")
  return slash >= 0 ? rest.slice(slash) : undefined
}

// ---------------------------------------------------------------------------------------------------------------
// Duration metrics (stable HTTP semantic conventions)
// ---------------------------------------------------------------------------------------------------------------

/** The semconv's advised explicit bucket boundaries for HTTP durations, in seconds. */
export const DURATION_BOUNDARIES: ReadonlyArray<number> = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10
]

/** `http.server.request.duration`: what every HTTP server probe declares. */
export const serverDuration = Instruments.histogram("http.server.request.duration", {
  unit: "s",
  description: "Duration of HTTP server requests.",
  boundaries: DURATION_BOUNDARIES
})

/** `http.client.request.duration`: what every HTTP client probe declares. */
export const clientDuration = Instruments.histogram("http.client.request.duration", {
  unit: "s",
  description: "Duration of HTTP client requests.",
  boundaries: DURATION_BOUNDARIES
})

/** The span attributes the server metric keeps (when present): no paths or peer addresses (cardinality). */
export const SERVER_METRIC_KEYS = [
  "http.request.method",
  "url.scheme",
  "http.route",
  "http.response.status_code",
  "network.protocol.version",
  "error.type"
] as const

/** The span attributes the client metric keeps (when present): no URLs or local ports. */
export const CLIENT_METRIC_KEYS = [
  "http.request.method",
  "server.address",
  "server.port",
  "http.response.status_code",
  "error.type"
] as const

/**
 * The metric attribute sets last built for one list of keys: a probe's records repeat a few sets (a service's routes
 * and status codes), so most spans find theirs here and share its frozen object.
 */
interface MetricSetCache {
  readonly keys: ReadonlyArray<string>
  /** Per set: the values it was built from, `undefined` where the span had none, in `keys`' order. */
  readonly values: Array<Array<AttributeValue | undefined>>
  readonly sets: Array<Attributes>
  /** The slot the next new set takes (the oldest). */
  next: number
  /** The current span's values, read once. */
  readonly scratch: Array<AttributeValue | undefined>
  /** Lookups and misses of the current trial window; while `bypass` > 0, that many spans skip the cache. */
  tried: number
  missed: number
  bypass: number
}

/** Sets kept per key list: enough for a service's common routes and codes, few enough to scan. */
const METRIC_SETS = 8

/**
 * A miss costs more than building the set did (the scan, freezing): when more than half of a trial window's spans
 * missed (more sets in play than the cache keeps), the next METRIC_SET_BYPASS spans build their sets unfrozen, as without the
 * cache, and then a window is tried again. Bounds the cost of a key list whose sets do not repeat.
 */
export const METRIC_SET_TRIAL = 64
export const METRIC_SET_BYPASS = 1024

/** One cache per key list the probes pass (a handful): found by a scan of identities, cheaper than a map. */
const metricSets: Array<MetricSetCache> = []

/**
 * Key lists cached at most: the probes pass module constants, a handful. A caller making a new list per span would
 * otherwise add a cache per span; past this many, lists get no cache (their sets are built as without one).
 */
const METRIC_KEY_LISTS = 32

const metricSetCache = (keys: ReadonlyArray<string>): MetricSetCache | undefined => {
  for (let i = 0; i < metricSets.length; i++) if (metricSets[i]!.keys === keys) return metricSets[i]!
  if (metricSets.length >= METRIC_KEY_LISTS) return undefined
  const cache: MetricSetCache = {
    keys,
    values: [],
    sets: [],
    next: 0,
    scratch: new Array(keys.length).fill(undefined),
    tried: 0,
    missed: 0,
    bypass: 0
  }
  metricSets.push(cache)
  return cache
}

/**
 * The span's attributes under `keys` (those it has), as a frozen object: the object an earlier span of this key list
 * got when it had the same values (`METRIC_SETS` sets are kept). While a key list bypasses the cache, a new unfrozen
 * object, as before the cache. Frozen, one object is shared by every measurement of
 * the set, and the metrics aggregation finds its series by the object's identity (src/telemetry/internal/
 * aggregate.ts), where an object built per span cost an allocation, keyed stores, and a series lookup value by value.
 */
export const metricAttributes = (span: SpanInput, keys: ReadonlyArray<string>): Attributes => {
  const cache = metricSetCache(keys)
  if (cache === undefined) return setOf(keys, keys.map((k) => span.attributes[k]))
  const current = cache.scratch
  const attributes = span.attributes
  const n = keys.length
  for (let i = 0; i < n; i++) current[i] = attributes[keys[i]!]
  if (cache.bypass > 0) {
    cache.bypass--
    return setOf(keys, current)
  }
  const all = cache.values
  search: for (let s = 0; s < all.length; s++) {
    const values = all[s]!
    // Arrays are compared by identity: a new array is a new set (correct, merely not shared).
    for (let i = 0; i < n; i++) if (current[i] !== values[i]) continue search
    trial(cache, false)
    return cache.sets[s]!
  }
  trial(cache, true)
  const set = Object.freeze(setOf(keys, current))
  const slot = cache.next
  cache.next = (slot + 1) % METRIC_SETS
  all[slot] = current.slice()
  cache.sets[slot] = set
  return set
}

/** Counts a lookup into the trial window; a window of mostly misses starts a bypass. */
const trial = (cache: MetricSetCache, missed: boolean) => {
  if (missed) cache.missed++
  if (++cache.tried < METRIC_SET_TRIAL) return
  if (2 * cache.missed > METRIC_SET_TRIAL) cache.bypass = METRIC_SET_BYPASS
  cache.tried = 0
  cache.missed = 0
}

/** The attribute set of `values` (those defined), in `keys`' order. */
const setOf = (keys: ReadonlyArray<string>, values: ReadonlyArray<AttributeValue | undefined>): Attributes => {
  const out: Record<string, AttributeValue> = {}
  for (let i = 0; i < keys.length; i++) {
    const v = values[i]
    if (v !== undefined) out[keys[i]!] = v
  }
  return out
}

/**
 * Emit an HTTP span and record its duration into the probe's duration instrument (declared under `key`), with only
 * the metric's attributes (`metricAttributes`). The metric comes from the same record as the span, so both agree on
 * every request.
 */
export const emitWithDuration = <K extends string>(
  emit: Emit<K>,
  key: NoInfer<K>,
  span: SpanInput,
  keys: ReadonlyArray<string>
): void => {
  emit.span(span)
  const ns = span.endMonoNs - span.startMonoNs
  emit.metric(key, ns > 0n ? Number(ns) / 1e9 : 0, metricAttributes(span, keys), span.pid)
}
