/**
 * HTTP/1.x over TLS through OpenSSL: one CLIENT or SERVER span per request/response exchange of any dynamically
 * linked program that uses libssl.so.3 (curl, Python's ssl module, nginx, ...), whatever its language.
 *
 * BPF side: bpf/openssl_http.bpf.c. Uprobes and uretprobes on SSL_write / SSL_read and their _ex variants see the
 * plaintext of every call. Per connection (process, SSL*), the BPF side recognises a request line, captures the
 * request's first 512 bytes (a head written or read over several calls is joined), and when the first final status
 * line comes back the other way it makes the span's ids (a server continues an incoming `traceparent`), decides
 * sampling and submits one record. The direction of the request tells the side: the process that writes it is the
 * client, the one that reads it the server. SSL_free forgets the connection.
 *
 * User space (here) parses the captured heads (internal/Http1.ts) and exports only the attributes the HTTP semantic
 * conventions name: no other header, no body byte, ever leaves the record.
 *
 * Limits: HTTP/1.x only (HTTP/2 over TLS is binary framing and is ignored); libssl.so.3 loaded as a shared library
 * (OpenSSL linked statically into a program, BoringSSL and other forks are not seen); a pipelined request (sent before
 * the previous response) gets no span of its own; a request whose response never comes gets no span, nor one whose
 * status line is read in pieces shorter than 12 bytes, or whose final status line follows an interim (1xx) head
 * longer than 256 bytes in the same read (the connection's next request is traced again).
 *
 * Reading order of this file: manifest -> per-target value -> record layout -> span building -> the probe.
 */
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_REQUEST_METHOD_ORIGINAL,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_URL_FULL,
  ATTR_URL_PATH,
  ATTR_URL_QUERY,
  ATTR_URL_SCHEME,
  ATTR_USER_AGENT_ORIGINAL
} from "@opentelemetry/semantic-conventions"
import * as Binary from "../probe/Binary.ts"
import * as Manifest from "../probe/Manifest.ts"
import * as Probe from "../probe/Probe.ts"
import type { AttributeValue } from "../probe/Telemetry.ts"
import * as Http from "./internal/Http.ts"
import * as Http1 from "./internal/Http1.ts"

// ---------------------------------------------------------------------------------------------------------------
// Manifest: libssl.so.3's plaintext read and write calls
// ---------------------------------------------------------------------------------------------------------------

/**
 * OpenSSL 3's libssl (its version is the newest `OPENSSL_x.y.z` symbol version it defines). SSL_write and SSL_read
 * are what most programs call (curl); the _ex variants are what others call (Python's ssl module); SSL_free only lets
 * the BPF side forget a connection early.
 */
export const manifest = Manifest.make({
  library: { sharedObject: "libssl.so.3", versions: ">=3.0.0 <4" },
  symbols: [
    { name: "SSL_write", entry: "uprobe_SSL_write", return: "uretprobe_SSL_write" },
    { name: "SSL_read", entry: "uprobe_SSL_read", return: "uretprobe_SSL_read" },
    { name: "SSL_write_ex", entry: "uprobe_SSL_write_ex", return: "uretprobe_SSL_write_ex", optional: true },
    { name: "SSL_read_ex", entry: "uprobe_SSL_read_ex", return: "uretprobe_SSL_read_ex", optional: true },
    { name: "SSL_free", entry: "uprobe_SSL_free", optional: true }
  ]
})

// ---------------------------------------------------------------------------------------------------------------
// Per-target value: `struct openssl_http_target`, written to ps_targets[pid] before attaching
// ---------------------------------------------------------------------------------------------------------------

/**
 * The links on libssl are shared by every process that maps the file, so the BPF side serves a process only when it
 * has an entry; there is nothing else to tell it per process.
 */
export const Target = Binary.struct({ enabled: Binary.u8 }, { struct: "openssl_http_target" })

// ---------------------------------------------------------------------------------------------------------------
// Record: `struct openssl_http_record` (checked against the object's BTF at load)
// ---------------------------------------------------------------------------------------------------------------

/** Bytes of the request and of the response a record carries (OSSL_REQ_CAP, OSSL_RESP_CAP). */
export const REQUEST_CAPTURE = 512
export const RESPONSE_CAPTURE = 64

/** `record.side`: which end of the connection the process is. */
export const Side = { client: 1, server: 2 } as const

/** Layout of `struct openssl_http_record`. */
export const Record = Binary.struct({
  startNs: Binary.u64,
  endNs: Binary.u64,
  traceId: Binary.bytes(16),
  spanId: Binary.bytes(8),
  parentSpanId: Binary.bytes(8),
  pid: Binary.u32,
  tid: Binary.u32,
  /** Bytes of the request seen before the response began; `requestLen` of them are in `request`. */
  requestSeen: Binary.u32,
  requestLen: Binary.u16,
  responseLen: Binary.u16,
  flags: Binary.u8,
  /** One of `Side`. */
  side: Binary.u8,
  /** `Http.Parent.none`, or `Http.Parent.remote` for an incoming traceparent. */
  parent: Binary.u8,
  _pad: Binary.pad(5),
  /** The request's first bytes: its head, then (when it is short) its body. Parsed here, never exported as such. */
  request: Binary.string(REQUEST_CAPTURE, "requestLen"),
  /** The response's first bytes: its status line. */
  response: Binary.string(RESPONSE_CAPTURE, "responseLen")
}, { struct: "openssl_http_record" })

/** A decoded record. */
export type Record = ReturnType<typeof Record.decode>

// ---------------------------------------------------------------------------------------------------------------
// Span: stable OpenTelemetry HTTP client and server semantic conventions
// ---------------------------------------------------------------------------------------------------------------

const SCHEME = "https"

/**
 * The span of one exchange, or undefined when the captured request is not HTTP/1 after all. The attributes come from
 * the request line, the Host and User-Agent headers and the status line, nothing else:
 * - CLIENT: `url.full`, `server.address` / `server.port` (Host, else 443); error from status 400.
 * - SERVER: `url.path`, `url.query`, `url.scheme`, `server.address` / `server.port` (Host), `user_agent.original`;
 *   error from status 500. No route is known, so the name is the method alone.
 * A request line cut by the capture leaves the URL attributes out rather than exporting a truncated URL.
 */
export const toSpan = (r: Record): Probe.SpanInput | undefined => {
  const request = Http1.parseRequestHead(r.request)
  if (request === undefined) return undefined
  const response = Http1.parseStatusLine(r.response)
  const status = response?.status ?? 0
  const client = r.side === Side.client
  const { method, original } = Http.normalizeMethod(request.method)
  const attributes: globalThis.Record<string, AttributeValue> = { [ATTR_HTTP_REQUEST_METHOD]: method }
  if (original !== undefined) attributes[ATTR_HTTP_REQUEST_METHOD_ORIGINAL] = original

  const authority = Http1.authorityOf(request)
  const server = authority === undefined ? undefined : Http.splitHostPort(authority)
  if (server !== undefined && server.host !== "") attributes[ATTR_SERVER_ADDRESS] = server.host
  const port = server?.port ?? (client && server !== undefined ? Http.defaultPort(SCHEME) : undefined)
  if (port !== undefined) attributes[ATTR_SERVER_PORT] = port

  if (client) {
    const full = request.target === undefined ? undefined : Http1.urlFull(SCHEME, authority, request.target)
    if (full !== undefined) attributes[ATTR_URL_FULL] = full
  } else {
    if (request.target !== undefined) {
      const { path, query } = Http1.splitTarget(request.target)
      attributes[ATTR_URL_PATH] = path
      if (query !== undefined) attributes[ATTR_URL_QUERY] = Http1.redactQuery(query)
    }
    attributes[ATTR_URL_SCHEME] = SCHEME
    const agent = Http1.header(request, "user-agent")
    if (agent !== undefined) attributes[ATTR_USER_AGENT_ORIGINAL] = agent
  }

  if (status !== 0) attributes[ATTR_HTTP_RESPONSE_STATUS_CODE] = status
  const version = request.version ?? response?.version
  if (version !== undefined) attributes[ATTR_NETWORK_PROTOCOL_VERSION] = version
  // A server's 4xx is the client's fault, not the server's: only 5xx is a server error.
  const failed = status >= (client ? 400 : 500)
  if (failed) attributes[ATTR_ERROR_TYPE] = String(status)
  return Http.headSpan(
    r,
    // semconv: "{method}" (no url.template / http.route is known), "HTTP" for a method that is not a known one.
    original === undefined ? method : "HTTP",
    client ? "client" : "server",
    attributes,
    failed ? { code: "error", message: `HTTP ${status}` } : Http.UNSET
  )
}

// ---------------------------------------------------------------------------------------------------------------
// The probe
// ---------------------------------------------------------------------------------------------------------------

/** The OpenSSL HTTP/1 instrument probe: applies to any process that maps libssl.so.3 (OpenSSL 3). */
export const OpenSslHttp = Probe.instrument({
  name: "openssl_http",
  object: "openssl_http",
  manifest,
  perTarget: { layout: Target, value: () => ({ enabled: 1 }) },
  record: Binary.schema(Record),
  // The HTTP duration histograms, as every HTTP probe records them: one per exchange, from its span.
  instruments: { server: Http.serverDuration, client: Http.clientDuration },
  signals: (r, emit) => {
    const span = toSpan(r)
    if (span === undefined) return
    if (span.kind === "server") Http.emitWithDuration(emit, "server", span, Http.SERVER_METRIC_KEYS)
    else Http.emitWithDuration(emit, "client", span, Http.CLIENT_METRIC_KEYS)
  }
})
