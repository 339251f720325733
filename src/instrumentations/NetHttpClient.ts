/**
 * net/http client: one CLIENT span per HTTP exchange a Go program makes through `net/http.Transport`, and W3C
 * `traceparent` propagation so the downstream service continues the trace.
 *
 * BPF side: bpf/nethttp_client.bpf.c. Why `(*Transport).roundTrip`: it runs once per exchange (each redirect hop of
 * `Client.Do` is its own span, as in otelhttp), on the caller's goroutine, and returns the `*Response` and `error` in
 * registers. Entry reads method and URL and takes the parent from the request's context (the nearest span
 * registered on Request.ctx's chain, e.g. a server span whose r.Context() a worker goroutine got), else from the
 * goroutine's active span (go_context; docs/context-propagation.md). Each RET reads the status code from the
 * returned *Response (RAX) and whether an error (RBX/RCX) came back.
 *
 * Same-host propagation (no write to the target, so it works under kernel lockdown): a uprobe on
 * `net/http.(*persistConn).roundTrip`, on the caller's goroutine once the connection is chosen and before the request
 * is written, publishes the span in go_context's `ps_conn_spans` under the connection's (client ip:port, server
 * ip:port); a server probe in another process on this host finds it by the same addresses. RET removes it.
 *
 * Header propagation: a uprobe on `net/http.Header.writeSubset` (which writes the request's headers into the
 * connection's `*bufio.Writer` on the writeLoop goroutine) appends `Traceparent: 00-<trace>-<span>-<flags>\r\n` to
 * the buffer with `bpf_probe_write_user`. Kernel lockdown forbids that helper; the probe then loads without that
 * program and says so once. Local spans stay correct, instrumented services on this host still continue the trace
 * through the connection map, and other downstream services start their own traces.
 *
 * Reading order: manifest -> per-target offsets -> record layout -> span building -> the probe.
 */
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_REQUEST_METHOD_ORIGINAL,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_NETWORK_LOCAL_PORT,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_URL_FULL,
  ERROR_TYPE_VALUE_OTHER
} from "@opentelemetry/semantic-conventions"
import { Effect, Layer } from "effect"
import * as Binary from "../probe/Binary.ts"
import * as Manifest from "../probe/Manifest.ts"
import * as Probe from "../probe/Probe.ts"
import type { AttributeValue } from "../probe/Telemetry.ts"
import * as GoContext from "./GoContext.ts"
import { goVersions } from "./GoContext.ts"
import * as Http from "./internal/Http.ts"
import * as Lockdown from "./internal/Lockdown.ts"

// ---------------------------------------------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------------------------------------------

/** The program that publishes the span under its TCP connection for servers on this host (no write to the target). */
export const PUBLISH_PROGRAM = "uprobe_persistConn_roundTrip"

/** The program that writes the traceparent header; left out when propagation is off or forbidden. */
export const INJECT_PROGRAM = "uprobe_writeSubset"

const fields = {
  requestMethod: { type: "net/http.Request", field: "Method" },
  requestUrl: { type: "net/http.Request", field: "URL" },
  requestHeader: { type: "net/http.Request", field: "Header" },
  urlScheme: { type: "net/url.URL", field: "Scheme" },
  urlHost: { type: "net/url.URL", field: "Host" },
  urlPath: { type: "net/url.URL", field: "Path" },
  urlRawQuery: { type: "net/url.URL", field: "RawQuery" },
  responseStatusCode: { type: "net/http.Response", field: "StatusCode" },
  // bufio.Writer has not changed shape since Go 1.0; the fallbacks are its buf and n offsets on amd64.
  bufioWriterBuf: { type: "bufio.Writer", field: "buf", optional: true },
  bufioWriterN: { type: "bufio.Writer", field: "n", optional: true },
  // Same-host propagation: the connection a request goes out on, and its TCP addresses (off when unknown).
  persistConnConn: { type: "net/http.persistConn", field: "conn", optional: true },
  // The parent: the span registered on the request's context chain (docs/context-propagation.md); off when unknown.
  requestCtx: { type: "net/http.Request", field: "ctx", optional: true },
  ...Http.tcpFields,
  ...Http.swissFields
} as const

/**
 * The client manifest. It always lists the header writer; when propagation is off or forbidden the probe loads
 * without that program and the Attacher leaves the symbol out.
 */
export const manifest = Manifest.make({
  library: { module: "std", package: "net/http", versions: goVersions },
  goVersions,
  symbols: [
    { name: "net/http.(*Transport).roundTrip", entry: "uprobe_roundTrip", return: "uprobe_roundTrip_ret" },
    { name: "net/http.(*persistConn).roundTrip", entry: PUBLISH_PROGRAM, optional: true },
    { name: "net/http.Header.writeSubset", entry: INJECT_PROGRAM, optional: true }
  ],
  fields
})

// ---------------------------------------------------------------------------------------------------------------
// Per-target offsets: `struct nethttp_client_offsets`
// ---------------------------------------------------------------------------------------------------------------

/** Layout of `struct nethttp_client_offsets`. */
export const Offsets = Binary.struct({
  ...Http.swissLayout,
  requestMethod: Binary.u64n,
  requestUrl: Binary.u64n,
  requestHeader: Binary.u64n,
  urlScheme: Binary.u64n,
  urlHost: Binary.u64n,
  urlPath: Binary.u64n,
  urlRawQuery: Binary.u64n,
  responseStatusCode: Binary.u64n,
  bufioWriterBuf: Binary.u64n,
  bufioWriterN: Binary.u64n,
  persistConnConn: Binary.member("pconn_conn", Binary.u64n),
  requestCtx: Binary.u64n,
  ...Http.tcpLayout
}, { struct: "nethttp_client_offsets" })

// ---------------------------------------------------------------------------------------------------------------
// Record: `struct nethttp_client_record` (checked against the object's BTF at load)
// ---------------------------------------------------------------------------------------------------------------

/** Layout of `struct nethttp_client_record`. */
export const Record = Binary.struct({
  ...Http.head,
  hasError: Binary.bool,
  methodLen: Binary.u8,
  schemeLen: Binary.u8,
  hostLen: Binary.u8,
  pathLen: Binary.u16,
  queryLen: Binary.u16,
  /** The traceparent header was written into the outgoing request. */
  propagated: Binary.bool,
  /** The span was published under its TCP connection, for a server probe on this host (same-host propagation). */
  linked: Binary.bool,
  /** The connection's local port when linked, else 0. */
  localPort: Binary.u16,
  _pad: Binary.pad(4),
  method: Binary.string(16, "methodLen", { intern: true }),
  scheme: Binary.string(8, "schemeLen", { intern: true }),
  host: Binary.string(64, "hostLen", { intern: true }),
  path: Binary.string(128, "pathLen"),
  query: Binary.string(64, "queryLen")
}, { struct: "nethttp_client_record" })

/** A decoded client record. */
export type Record = ReturnType<typeof Record.decode>

// ---------------------------------------------------------------------------------------------------------------
// Span: stable OpenTelemetry HTTP client semantic conventions
// ---------------------------------------------------------------------------------------------------------------

/** A client's records repeat their host: parsed once per run of one value. */
const serverOf = Http.lastOne(Http.splitHostPort)

/** Build the CLIENT span of one record. 4xx and 5xx are errors; so is a transport error (no response). */
export const toSpan = (r: Record): Probe.SpanInput => {
  const { method, original } = Http.normalizeMethod(r.method)
  const server = serverOf(r.host)
  const port = server.port ?? Http.defaultPort(r.scheme)
  const attributes: globalThis.Record<string, AttributeValue> = {
    [ATTR_HTTP_REQUEST_METHOD]: method,
    [ATTR_URL_FULL]: `${r.scheme}://${r.host}${r.path}${r.query === "" ? "" : `?${r.query}`}`
  }
  if (original !== undefined) attributes[ATTR_HTTP_REQUEST_METHOD_ORIGINAL] = original
  if (server.host !== "") attributes[ATTR_SERVER_ADDRESS] = server.host
  if (port !== undefined) attributes[ATTR_SERVER_PORT] = port
  if (r.status !== 0) attributes[ATTR_HTTP_RESPONSE_STATUS_CODE] = r.status
  if (r.linked && r.localPort !== 0) attributes[ATTR_NETWORK_LOCAL_PORT] = r.localPort
  let status: Probe.SpanInput["status"] = Http.UNSET
  if (r.hasError) {
    // The Go error's dynamic type is not readable without the runtime's type tables: semconv's fallback value.
    attributes[ATTR_ERROR_TYPE] = ERROR_TYPE_VALUE_OTHER
    status = { code: "error", message: "transport error" }
  } else if (r.status >= 400) {
    attributes[ATTR_ERROR_TYPE] = String(r.status)
    status = { code: "error", message: `HTTP ${r.status}` }
  }
  return Http.headSpan(r, original === undefined ? method : "HTTP", "client", attributes, status)
}

// ---------------------------------------------------------------------------------------------------------------
// The probe
// ---------------------------------------------------------------------------------------------------------------

/** "auto": inject when the kernel permits bpf_probe_write_user; "on": always try; "off": never. */
export type Propagation = "auto" | "on" | "off"

/** Define the client probe with a propagation choice (`support` defaults to this machine's kernel). */
export const make = (options: {
  readonly propagation?: Propagation
  readonly support?: Lockdown.WriteUserSupport
} = {}) => {
  const propagation = options.propagation ?? "auto"
  // Decided when the probe's layer is built, not at import: the kernel's lockdown and this process's capabilities
  // are the running agent's (a start-up snapshot keeps nothing read at import).
  let decided: { readonly support: Lockdown.WriteUserSupport | undefined; readonly inject: boolean } | undefined
  const decide = () => {
    if (decided === undefined) {
      const support = propagation === "auto" ? options.support ?? Lockdown.writeUserSupport() : undefined
      decided = { support, inject: propagation === "on" || (support?.permitted ?? false) }
    }
    return decided
  }
  const definition = Probe.instrument({
    name: "nethttp_client",
    object: "nethttp_client",
    manifest,
    reuseMaps: GoContext.sharedMaps,
  uses: [GoContext.goroutines],
    disablePrograms: () => decide().inject ? [] : [INJECT_PROGRAM],
    perTarget: {
      layout: Offsets,
      value: ({ offsets: o }) => ({
        ...Http.swissValue(o),
        requestMethod: o.requestMethod,
        requestUrl: o.requestUrl,
        requestHeader: o.requestHeader,
        urlScheme: o.urlScheme,
        urlHost: o.urlHost,
        urlPath: o.urlPath,
        urlRawQuery: o.urlRawQuery,
        responseStatusCode: o.responseStatusCode,
        bufioWriterBuf: o.bufioWriterBuf ?? 16,
        bufioWriterN: o.bufioWriterN ?? 40,
        persistConnConn: o.persistConnConn ?? 0,
        // 0: unknown, the goroutine's span only (Method sits at 0, so ctx never does).
        requestCtx: o.requestCtx ?? 0,
        ...Http.tcpValue(o, [o.persistConnConn])
      })
    },
    record: Binary.schema(Record),
    instruments: { duration: Http.clientDuration },
    signals: (r, emit) => Http.emitWithDuration(emit, "duration", toSpan(r), Http.CLIENT_METRIC_KEYS)
  })
  // Said once, when the probe loads: spans stay correct, only cross-process linking is lost.
  const notice = Layer.effectDiscard(Effect.suspend(() => {
    const { support } = decide()
    return support === undefined || support.permitted ? Effect.void : Effect.logWarning(
      `probe nethttp_client: traceparent header injection disabled (${support.reason}: bpf_probe_write_user is ` +
        "forbidden); instrumented servers on this host still continue traces (connection map), others start their own"
    )
  }))
  return {
    ...definition,
    layer: Layer.merge(notice, definition.layer),
    layerWith: (config: {}) => Layer.merge(notice, definition.layerWith(config))
  }
}

/** The net/http client probe, propagating traceparent when this kernel allows it. Needs GoContext. */
export const NetHttpClient = make()
