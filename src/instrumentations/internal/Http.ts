/**
 * What the net/http server and client probes share: the record head both BPF programs write first
 * (`struct ps_http_head` in bpf/include/probescope/nethttp.h), the swiss-map offsets their header lookup needs, and
 * the OpenTelemetry HTTP semantic-convention rules (method normalisation, host:port splitting, error status).
 */
import {
  HTTP_REQUEST_METHOD_VALUE_OTHER
} from "@opentelemetry/semantic-conventions"
import * as Binary from "../../probe/Binary.ts"
import type { FieldSpec } from "../../probe/Manifest.ts"

// ---------------------------------------------------------------------------------------------------------------
// Record head: 56 bytes, identical in both probes' records
// ---------------------------------------------------------------------------------------------------------------

/** `struct ps_http_head`, field for field. Spread it first into a record layout. */
export const head = {
  startNs: Binary.u64,
  endNs: Binary.u64,
  traceId: Binary.hex(16),
  spanId: Binary.hex(8),
  parentSpanId: Binary.hex(8),
  pid: Binary.u32,
  flags: Binary.u8,
  /** One of `Parent`. */
  parent: Binary.u8,
  /** HTTP status code; 0 when unknown (transport error, HTTP/2 server). */
  status: Binary.u16
} as const

/** `head.parent`: where the span's parent came from (PS_PARENT_* in nethttp.h). */
export const Parent = { none: 0, local: 1, remote: 2 } as const

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
// Semantic-convention helpers
// ---------------------------------------------------------------------------------------------------------------

const KNOWN_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"])

/** A request method as semconv wants it: known methods as-is, anything else `_OTHER` plus the original. */
export const normalizeMethod = (raw: string): { readonly method: string; readonly original?: string } =>
  KNOWN_METHODS.has(raw) ? { method: raw } : { method: HTTP_REQUEST_METHOD_VALUE_OTHER, original: raw }

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

const parsePort = (s: string): number | undefined => {
  if (!/^\d{1,5}$/.test(s)) return undefined
  const n = Number(s)
  return n > 0 && n <= 65535 ? n : undefined
}

/** The default port of a URL scheme, for `server.port` when the URL names none. */
export const defaultPort = (scheme: string): number | undefined =>
  scheme === "http" ? 80 : scheme === "https" ? 443 : undefined

/** "1.1", "2", "1.0" from Request.ProtoMajor/ProtoMinor (semconv drops a ".0" minor only for major >= 2). */
export const protocolVersion = (major: number, minor: number): string | undefined =>
  major === 0 ? undefined : major >= 2 && minor === 0 ? String(major) : `${major}.${minor}`

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
