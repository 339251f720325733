/**
 * net/http server: one SERVER span per request served by a Go `net/http.Server`.
 *
 * BPF side: bpf/nethttp_server.bpf.c. A uprobe at the entry of `net/http.serverHandler.ServeHTTP` (past the
 * stack-check prologue) reads the request and the incoming `traceparent` (from the `http.Header` swiss map), makes
 * the span's ids, decides sampling, and marks the span active on the goroutine (go_context's `go_spans`). A uprobe on
 * each RET reads the ServeMux pattern (set during routing) and the status the handler wrote, and submits one record.
 *
 * Without an incoming traceparent, entry looks the request's TCP connection up in go_context's `ps_conn_spans`: an
 * instrumented client on this host published its span there, so the server span continues that trace with the
 * client span as remote parent (`linked` in the record), with no header written (works under kernel lockdown).
 *
 * While the handler runs, the request's context (Request.ctx) is registered as the span's in go_context's
 * `ps_ctx_spans`, so client spans made under r.Context() on any goroutine (a worker pool fed over a channel) are its
 * children (docs/context-propagation.md).
 *
 * Reading order of this file: manifest -> per-target offsets -> record layout -> span building -> the probe.
 */
import {
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_REQUEST_METHOD_ORIGINAL,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_URL_PATH,
  ATTR_URL_SCHEME,
  ATTR_ERROR_TYPE
} from "@opentelemetry/semantic-conventions"
import * as Binary from "../probe/Binary.ts"
import * as Manifest from "../probe/Manifest.ts"
import * as Probe from "../probe/Probe.ts"
import type { AttributeValue } from "../probe/Telemetry.ts"
import * as GoContext from "./GoContext.ts"
import { goVersions } from "./GoContext.ts"
import * as Http from "./internal/Http.ts"

// ---------------------------------------------------------------------------------------------------------------
// Manifest: what is instrumented and which struct fields the BPF side reads
// ---------------------------------------------------------------------------------------------------------------

/** Symbols, supported Go versions and struct fields of the server probe. */
export const manifest = Manifest.make({
  library: { module: "std", package: "net/http", versions: goVersions },
  goVersions,
  symbols: [
    { name: "net/http.serverHandler.ServeHTTP", entry: "uprobe_ServeHTTP", return: "uprobe_ServeHTTP_ret" }
  ],
  fields: {
    requestMethod: { type: "net/http.Request", field: "Method" },
    requestUrl: { type: "net/http.Request", field: "URL" },
    requestProtoMajor: { type: "net/http.Request", field: "ProtoMajor" },
    requestProtoMinor: { type: "net/http.Request", field: "ProtoMinor" },
    requestHeader: { type: "net/http.Request", field: "Header" },
    requestHost: { type: "net/http.Request", field: "Host" },
    requestRemoteAddr: { type: "net/http.Request", field: "RemoteAddr" },
    // Only for url.scheme when the URL has none; optional because the shipped offsets table lacks it.
    requestTls: { type: "net/http.Request", field: "TLS", optional: true },
    requestPattern: { type: "net/http.Request", field: "Pattern" },
    urlScheme: { type: "net/url.URL", field: "Scheme" },
    urlPath: { type: "net/url.URL", field: "Path" },
    responseStatus: { type: "net/http.response", field: "status" },
    // Same-host propagation: the response's connection and its TCP addresses (optional: off when unknown).
    responseConn: { type: "net/http.response", field: "conn", optional: true },
    connRwc: { type: "net/http.conn", field: "rwc", optional: true },
    // Registered as the span's context while the handler runs (context parents, docs/context-propagation.md).
    requestCtx: { type: "net/http.Request", field: "ctx", optional: true },
    ...Http.tcpFields,
    ...Http.swissFields
  }
})

// ---------------------------------------------------------------------------------------------------------------
// Per-target offsets: `struct nethttp_server_offsets`, written to ps_targets[pid] before attaching
// ---------------------------------------------------------------------------------------------------------------

/** Layout of `struct nethttp_server_offsets`. */
export const Offsets = Binary.struct({
  ...Http.swissLayout,
  requestMethod: Binary.u64n,
  requestUrl: Binary.u64n,
  requestProtoMajor: Binary.u64n,
  requestProtoMinor: Binary.u64n,
  requestHeader: Binary.u64n,
  requestHost: Binary.u64n,
  requestRemoteAddr: Binary.u64n,
  requestTls: Binary.u64n,
  requestPattern: Binary.u64n,
  urlScheme: Binary.u64n,
  urlPath: Binary.u64n,
  responseStatus: Binary.u64n,
  responseConn: Binary.u64n,
  connRwc: Binary.u64n,
  requestCtx: Binary.u64n,
  ...Http.tcpLayout
}, { struct: "nethttp_server_offsets" })

// ---------------------------------------------------------------------------------------------------------------
// Record: `struct nethttp_server_record` (checked against the object's BTF at load)
// ---------------------------------------------------------------------------------------------------------------

/** Layout of `struct nethttp_server_record`; strings are truncated to their capacity. */
export const Record = Binary.struct({
  ...Http.head,
  protoMajor: Binary.u8,
  protoMinor: Binary.u8,
  tls: Binary.bool,
  methodLen: Binary.u8,
  pathLen: Binary.u16,
  hostLen: Binary.u8,
  remoteLen: Binary.u8,
  patternLen: Binary.u16,
  schemeLen: Binary.u8,
  /** The parent came from ps_conn_spans (an instrumented client on this host), not from a traceparent header. */
  linked: Binary.bool,
  _pad: Binary.pad(4),
  method: Binary.string(16, "methodLen", { intern: true }),
  path: Binary.string(128, "pathLen"),
  host: Binary.string(64, "hostLen", { intern: true }),
  remote: Binary.string(64, "remoteLen"),
  pattern: Binary.string(128, "patternLen", { intern: true }),
  scheme: Binary.string(8, "schemeLen", { intern: true })
}, { struct: "nethttp_server_record" })

/** A decoded server record. */
export type Record = ReturnType<typeof Record.decode>

// ---------------------------------------------------------------------------------------------------------------
// Span: stable OpenTelemetry HTTP server semantic conventions
// ---------------------------------------------------------------------------------------------------------------

// A server's records repeat their pattern, host and (over a keep-alive connection) peer: each parsed once per run of
// one value (`Http.lastOne`), one cache per field.
const routeOf = Http.lastOne(Http.routeOfPattern)
const serverOf = Http.lastOne(Http.splitHostPort)
const peerOf = Http.lastOne(Http.splitHostPort)
let nameBase = ""
let nameRoute = ""
let name = ""
/**
 * "{method} {route}", made once per run of one pair: a string concatenated per span is also a rope the encoders
 * flatten again.
 */
const spanName = (base: string, route: string): string => {
  if (base !== nameBase || route !== nameRoute) {
    nameBase = base
    nameRoute = route
    name = `${base} ${route}`
  }
  return name
}

/** Build the SERVER span of one record. 5xx is an error; 4xx is not (the client's fault). */
export const toSpan = (r: Record): Probe.SpanInput => {
  const { method, original } = Http.normalizeMethod(r.method)
  const route = routeOf(r.pattern)
  const scheme = r.scheme !== "" ? r.scheme : r.tls ? "https" : "http"
  const server = serverOf(r.host)
  const peer = peerOf(r.remote)
  const version = Http.protocolVersion(r.protoMajor, r.protoMinor)
  const attributes: globalThis.Record<string, AttributeValue> = {
    [ATTR_HTTP_REQUEST_METHOD]: method,
    [ATTR_URL_PATH]: r.path,
    [ATTR_URL_SCHEME]: scheme
  }
  if (original !== undefined) attributes[ATTR_HTTP_REQUEST_METHOD_ORIGINAL] = original
  if (route !== undefined) attributes[ATTR_HTTP_ROUTE] = route
  if (r.status !== 0) attributes[ATTR_HTTP_RESPONSE_STATUS_CODE] = r.status
  if (server.host !== "") attributes[ATTR_SERVER_ADDRESS] = server.host
  if (server.port !== undefined) attributes[ATTR_SERVER_PORT] = server.port
  if (peer.host !== "") attributes[ATTR_NETWORK_PEER_ADDRESS] = peer.host
  if (peer.port !== undefined) attributes[ATTR_NETWORK_PEER_PORT] = peer.port
  if (version !== undefined) attributes[ATTR_NETWORK_PROTOCOL_VERSION] = version
  const failed = r.status >= 500
  if (failed) attributes[ATTR_ERROR_TYPE] = String(r.status)
  // semconv: "{method} {http.route}", or "HTTP" when the method is not a known one.
  const base = original === undefined ? method : "HTTP"
  return Http.headSpan(
    r,
    route === undefined ? base : spanName(base, route),
    "server",
    attributes,
    failed ? { code: "error", message: `HTTP ${r.status}` } : Http.UNSET
  )
}

// ---------------------------------------------------------------------------------------------------------------
// The probe
// ---------------------------------------------------------------------------------------------------------------

/** The net/http server instrument probe. Needs the GoContext daemon (its `go_spans` map). */
export const NetHttpServer = Probe.instrument({
  name: "nethttp_server",
  object: "nethttp_server",
  manifest,
  reuseMaps: GoContext.sharedMaps,
  // The go/panic probe ends the span of a request whose handler panicked (no RET runs): it reuses this map.
  shares: ["nethttp_server_inflight"],
  perTarget: {
    layout: Offsets,
    value: ({ offsets: o }) => ({
      ...Http.swissValue(o),
      requestMethod: o.requestMethod,
      requestUrl: o.requestUrl,
      requestProtoMajor: o.requestProtoMajor,
      requestProtoMinor: o.requestProtoMinor,
      requestHeader: o.requestHeader,
      requestHost: o.requestHost,
      requestRemoteAddr: o.requestRemoteAddr,
      // 0 tells the BPF side the offset is unknown (Method sits at 0, so TLS never does).
      requestTls: o.requestTls ?? 0,
      requestPattern: o.requestPattern,
      urlScheme: o.urlScheme,
      urlPath: o.urlPath,
      responseStatus: o.responseStatus,
      responseConn: o.responseConn ?? 0,
      connRwc: o.connRwc ?? 0,
      // 0: unknown, no context registered (Method sits at 0, so ctx never does).
      requestCtx: o.requestCtx ?? 0,
      ...Http.tcpValue(o, [o.responseConn, o.connRwc])
    })
  },
  record: Binary.schema(Record),
  instruments: { duration: Http.serverDuration },
  signals: (r, emit) => Http.emitWithDuration(emit, "duration", toSpan(r), Http.SERVER_METRIC_KEYS)
})
