/**
 * gRPC (google.golang.org/grpc): one SERVER span per RPC a `grpc.Server` handles and one CLIENT span per RPC a
 * `grpc.ClientConn` makes, unary and streaming, plus the RPC call-duration histograms.
 *
 * BPF side: bpf/grpc.bpf.c (its header comment lists every uprobe and the registers it reads). In short:
 * - server: `(*Server).handleStream` (entry and RETs) brackets the RPC on its goroutine, for unary and streaming
 *   methods alike; `(*http2Server).writeStatus` gives the status code written and ends the span (the client has
 *   its answer from then on, and may end its own span before handleStream returns); the parent is the `traceparent`
 *   metadata the client sent (read from the decoded HEADERS in `(*http2Server).operateHeaders`), else the client
 *   span an instrumented process on this host published for the TCP connection (go_context's `ps_conn_spans`);
 *   the span is the goroutine's active context while the handler runs, and the stream's context (which the
 *   handler's ctx derives from) is registered as the span's in go_context's `ps_ctx_spans`.
 * - client: `newClientStream` (which `Invoke` and `NewStream` share) starts the span under the nearest span
 *   registered on its ctx's chain, else the goroutine's active span (docs/context-propagation.md);
 *   `(*clientStream).finish` ends it with the code of its error (io.EOF and nil: OK); `(*http2Client).NewStream`,
 *   `createHeaderFields` and `(*loopyWriter).writeHeader` publish it under (connection, stream id) for a server on
 *   this host (and under the connection alone, as a fallback).
 *
 * Semantic conventions: span names and attributes are the RPC conventions of semconv 1.37 (the version of
 * `@opentelemetry/semantic-conventions` this project pins: `rpc.system`, `rpc.service`, `rpc.method`,
 * `rpc.grpc.status_code`); the metrics take the current names, `rpc.server.call.duration` and
 * `rpc.client.call.duration` in seconds (the 1.37 names were `rpc.server.duration`/`rpc.client.duration` in ms).
 *
 * Reading order: manifest -> per-target offsets -> record layout -> span building -> the probe.
 */
import {
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT
} from "@opentelemetry/semantic-conventions"
import {
  ATTR_RPC_GRPC_STATUS_CODE,
  ATTR_RPC_METHOD,
  ATTR_RPC_SERVICE,
  ATTR_RPC_SYSTEM
} from "@opentelemetry/semantic-conventions/incubating"
import { Option } from "effect"
import * as Binary from "../probe/Binary.ts"
import * as Instruments from "../probe/Instruments.ts"
import * as Manifest from "../probe/Manifest.ts"
import * as Probe from "../probe/Probe.ts"
import type { Target } from "../probe/Target.ts"
import type { AttributeValue } from "../probe/Telemetry.ts"
import * as GoContext from "./GoContext.ts"
import { goVersions } from "./GoContext.ts"
import * as GoSymbols from "./internal/GoSymbols.ts"
import * as Http from "./internal/Http.ts"

// ---------------------------------------------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------------------------------------------

/** grpc-go releases whose functions and struct fields this probe was written and tested against. */
export const grpcVersions = ">=1.60.0 <1.86.0"

const grpc = "google.golang.org/grpc"
const transport = `${grpc}/internal/transport`

/**
 * Symbols the BPF side tells an error's dynamic type by (from the executable's symbol table): a *status.Error's itab
 * has this method first; io.EOF is the variable a stream's clean end returns.
 */
export const STATUS_ERROR_METHOD = `${grpc}/internal/status.(*Error).Error`
export const IO_EOF = "io.EOF"
/** The Error method of errors.New's values, io.EOF among them. */
export const ERROR_STRING_METHOD = "errors.(*errorString).Error"

/** handleStream and newClientStream bracket an RPC; the others are read within it (see bpf/grpc.bpf.c). */
const symbols = [
  { name: `${grpc}.(*Server).handleStream`, entry: "uprobe_handleStream", return: "uprobe_handleStream_ret" },
  // Exported (WriteStatus) before 1.69; a release has one or the other.
  { name: `${transport}.(*http2Server).writeStatus`, entry: "uprobe_writeStatus", optional: true },
  { name: `${transport}.(*http2Server).WriteStatus`, entry: "uprobe_writeStatus", optional: true },
  { name: `${transport}.(*http2Server).operateHeaders`, entry: "uprobe_operateHeaders", optional: true },
  { name: `${grpc}.newClientStream`, entry: "uprobe_newClientStream", return: "uprobe_newClientStream_ret" },
  { name: `${grpc}.(*clientStream).finish`, entry: "uprobe_clientStream_finish" },
  { name: `${transport}.(*http2Client).NewStream`, entry: "uprobe_http2Client_NewStream", optional: true },
  { name: `${transport}.(*http2Client).createHeaderFields`, return: "uprobe_createHeaderFields_ret", optional: true },
  { name: `${transport}.(*loopyWriter).writeHeader`, entry: "uprobe_loopy_writeHeader", optional: true }
] as const

/** Struct fields the BPF side reads (from the binary's DWARF: no shipped table covers grpc). */
const fields = {
  // handleStream's stream: a *ServerStream embedding the Stream (a pointer in 1.69–1.76, a value from 1.77); before
  // 1.69 there is no ServerStream and the argument is the *Stream.
  serverStreamStream: { type: `${transport}.ServerStream`, field: "Stream", optional: true },
  streamMethod: { type: `${transport}.Stream`, field: "method" },
  streamId: { type: `${transport}.Stream`, field: "id" },
  statusS: { type: `${grpc}/internal/status.Status`, field: "s" },
  spbCode: { type: "google.golang.org/genproto/googleapis/rpc/status.Status", field: "Code" },
  errorS: { type: `${grpc}/internal/status.Error`, field: "s" },
  ccAuthority: { type: `${grpc}.ClientConn`, field: "authority" },
  descServerStreams: { type: `${grpc}.StreamDesc`, field: "ServerStreams" },
  descClientStreams: { type: `${grpc}.StreamDesc`, field: "ClientStreams" },
  // Since 1.85 newClientStream returns the *clientStream wrapped; absent before.
  wrapperStream: { type: `${grpc}.clientStreamWrapper`, field: "ClientStream", optional: true },
  // Addresses and same-host linking: optional, off when unknown.
  serverConn: { type: `${transport}.http2Server`, field: "conn", optional: true },
  clientConn: { type: `${transport}.http2Client`, field: "conn", optional: true },
  // Incoming traceparent: optional, off when unknown.
  metaHeadersFrame: { type: "golang.org/x/net/http2.MetaHeadersFrame", field: "HeadersFrame", optional: true },
  metaFields: { type: "golang.org/x/net/http2.MetaHeadersFrame", field: "Fields", optional: true },
  headersFrameHeader: { type: "golang.org/x/net/http2.HeadersFrame", field: "FrameHeader", optional: true },
  frameStreamId: { type: "golang.org/x/net/http2.FrameHeader", field: "StreamID", optional: true },
  fieldValue: { type: "golang.org/x/net/http2/hpack.HeaderField", field: "Value", optional: true },
  // internal/abi.ITab.Fun (24 on amd64 since Go 1.22); optional: a runtime type seldom in a shipped table.
  itabFun: { type: "internal/abi.ITab", field: "Fun", optional: true },
  // The stream's context, registered as the server span's while it runs (docs/context-propagation.md).
  streamCtx: { type: `${transport}.Stream`, field: "ctx", optional: true },
  ...Http.tcpFields
} as const

/** What the gRPC probe attaches to. */
export const manifest = Manifest.make({
  library: { module: grpc, versions: grpcVersions },
  goVersions,
  symbols,
  fields
})

// ---------------------------------------------------------------------------------------------------------------
// Per-target offsets: `struct grpc_offsets`
// ---------------------------------------------------------------------------------------------------------------

/** `grpc_offsets.stream_embed`: how handleStream's argument holds the transport.Stream (bpf/grpc.bpf.c). */
export const StreamEmbed = { direct: 0, pointer: 1, value: 2 } as const

export const Offsets = Binary.struct({
  streamEmbed: Binary.u64n,
  serverStreamStream: Binary.u64n,
  streamMethod: Binary.u64n,
  streamId: Binary.u64n,
  statusS: Binary.u64n,
  spbCode: Binary.u64n,
  errorS: Binary.u64n,
  ccAuthority: Binary.u64n,
  descServerStreams: Binary.u64n,
  descClientStreams: Binary.u64n,
  csWrapped: Binary.u64n,
  wrapperStream: Binary.u64n,
  serverConn: Binary.u64n,
  clientConn: Binary.u64n,
  metaHeaders: Binary.u64n,
  frameStreamId: Binary.u64n,
  metaFields: Binary.u64n,
  fieldValue: Binary.u64n,
  statusErrorFn: Binary.u64,
  ioEof: Binary.u64,
  errorStringFn: Binary.u64,
  itabFun: Binary.u64n,
  streamCtxData: Binary.u64n,
  ...Http.tcpLayout
}, { struct: "grpc_offsets" })

/** A symbol's run-time address (Go executables are not position-independent), 0 when absent. */
const symbolAddress = (target: Target, name: string): bigint =>
  Option.match(target.symbol(name), { onNone: () => 0n, onSome: (s) => s.address })

type Resolved = Manifest.Offsets<typeof fields>

/** The per-target value; the traceparent lookup is off (metaFields 0) unless all its offsets are known. */
export const offsetsValue = (target: Target, o: Resolved): ReturnType<typeof Offsets.decode> => {
  const tpKnown = o.metaHeadersFrame !== undefined && o.metaFields !== undefined &&
    o.headersFrameHeader !== undefined && o.frameStreamId !== undefined && o.fieldValue !== undefined
  // ServerStream embeds *Stream from 1.69 and Stream from 1.77 (the offset alone does not tell them apart).
  const release = target.modules.get(grpc)
  const embed = o.serverStreamStream === undefined ?
    StreamEmbed.direct :
    release !== undefined && Manifest.versionSatisfies(release, "<1.77.0") ?
    StreamEmbed.pointer :
    StreamEmbed.value
  return {
    streamEmbed: embed,
    serverStreamStream: o.serverStreamStream ?? 0,
    streamMethod: o.streamMethod,
    streamId: o.streamId,
    statusS: o.statusS,
    spbCode: o.spbCode,
    errorS: o.errorS,
    ccAuthority: o.ccAuthority,
    descServerStreams: o.descServerStreams,
    descClientStreams: o.descClientStreams,
    csWrapped: o.wrapperStream === undefined ? 0 : 1,
    wrapperStream: o.wrapperStream ?? 0,
    serverConn: o.serverConn ?? 0,
    clientConn: o.clientConn ?? 0,
    metaHeaders: tpKnown ? o.metaHeadersFrame! : 0,
    frameStreamId: tpKnown ? o.headersFrameHeader! + o.frameStreamId! : 0,
    metaFields: tpKnown ? o.metaFields! : 0,
    fieldValue: tpKnown ? o.fieldValue! : 0,
    statusErrorFn: symbolAddress(target, STATUS_ERROR_METHOD),
    ioEof: symbolAddress(target, IO_EOF),
    // A function: found in a stripped binary too (its pclntab), where io.EOF, a variable, is not.
    errorStringFn: symbolAddress(target, ERROR_STRING_METHOD),
    itabFun: o.itabFun ?? 24,
    // Where the interface's data word is (+8): never 0, so 0 says unknown (ctx is Stream's first field).
    streamCtxData: o.streamCtx === undefined ? 0 : o.streamCtx + 8,
    ...Http.tcpValue(o, [o.serverConn, o.clientConn])
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Record: `struct grpc_record` (checked against the object's BTF at load)
// ---------------------------------------------------------------------------------------------------------------

/** `grpc_record.kind` */
export const Kind = { server: 1, client: 2 } as const

export const Record = Binary.struct({
  ...Http.head,
  kind: Binary.u8,
  /** head.status holds the gRPC status code (server: a status was written; client: the call ended). */
  statusKnown: Binary.bool,
  /** Server: the parent came from ps_conn_spans. Client: the span was published there. */
  linked: Binary.bool,
  streaming: Binary.bool,
  hasAddrs: Binary.bool,
  methodLen: Binary.u8,
  authorityLen: Binary.u8,
  /** Server: the parent was matched by connection and stream id (exact), not as the connection's latest call. */
  linkExact: Binary.bool,
  localPort: Binary.u16,
  peerPort: Binary.u16,
  /** Client: the method's length when the kernel could not read it (then at `methodAt`). */
  methodColdLen: Binary.u8,
  /** Client: where an itab keeps its first method, with `codeItabAt`. */
  codeFunOff: Binary.u8,
  _pad2: Binary.pad(2),
  localIp: Binary.bytes(16),
  peerIp: Binary.bytes(16),
  /** Client: the method name (a constant of the generated code) when its page was not mapped yet, else 0. */
  methodAt: Binary.u64,
  /**
   * Client: the error whose type the kernel could not tell (its itab or io.EOF's text on a page not mapped yet; else
   * 0), its data word, and the methods that tell a *status.Error (`status` then holds its code) and an errors.New
   * error (on a stripped binary: io.EOF when its text is "EOF"). `readCold` decides.
   */
  codeItabAt: Binary.u64,
  codeData: Binary.u64,
  codeStatusFn: Binary.u64,
  codeStringFn: Binary.u64,
  method: Binary.string(128, "methodLen", { intern: true }),
  authority: Binary.string(64, "authorityLen", { intern: true })
}, { struct: "grpc_record" })

export type Record = ReturnType<typeof Record.decode>

/** codes.Unknown: what status.Code gives any error that is not a *status.Error. */
const UNKNOWN = 2

/**
 * The record with what the kernel could not read decided from the process (GoSymbols): the client's method (a
 * constant of the generated code) and its error's code (the itab's first method tells a *status.Error or, on a
 * stripped binary, an errors.New error whose text may be "EOF"). The record itself when nothing was missing.
 */
export const readCold = (r: Record): Record => {
  if (r.methodAt === 0n && r.codeItabAt === 0n) return r
  const method = r.methodAt === 0n ? r.method : GoSymbols.bytesAt(r.pid, r.methodAt, r.methodColdLen)
  if (r.codeItabAt === 0n) return { ...r, method }
  const read = GoSymbols.int64At(r.pid, r.codeItabAt + BigInt(r.codeFunOff))
  const fun = read === undefined ? undefined : BigInt.asUintN(64, read)
  const eof = fun !== undefined && r.codeStringFn !== 0n && fun === r.codeStringFn &&
    GoSymbols.goStringAt(r.pid, r.codeData, 4) === "EOF"
  const status = eof ? 0 : fun !== undefined && r.codeStatusFn !== 0n && fun === r.codeStatusFn ? r.status : UNKNOWN
  return { ...r, method, status }
}

// ---------------------------------------------------------------------------------------------------------------
// Span: OpenTelemetry RPC (gRPC) semantic conventions
// ---------------------------------------------------------------------------------------------------------------

/** gRPC status code names (google.golang.org/grpc/codes), for the span status message. */
export const CODE_NAMES = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
  "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"
] as const

/** The codes the conventions make a SERVER span's error (the others are the client's doing). */
export const SERVER_ERROR_CODES: ReadonlySet<number> = new Set([2, 4, 12, 13, 14, 15])

/** "/pkg.Service/Method" split; a name without the expected shape is kept whole as the method. */
export const splitMethod = (full: string): { readonly service?: string; readonly method: string } => {
  const name = full.startsWith("/") ? full.slice(1) : full
  const slash = name.lastIndexOf("/")
  return slash > 0 ? { service: name.slice(0, slash), method: name.slice(slash + 1) } : { method: name }
}

/** 16 bytes (IPv4 as v4-mapped IPv6) as text: dotted quad for IPv4, RFC 5952 form otherwise. */
export const formatIp = (b: Uint8Array): string => {
  const v4mapped = b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff
  if (v4mapped) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`
  const words = Array.from({ length: 8 }, (_, i) => (b[2 * i]! << 8) | b[2 * i + 1]!)
  // The longest run (>= 2) of zero words becomes "::".
  let best = -1, bestLen = 0
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && words[j] === 0) j++
    if (j - i > bestLen && j - i >= 2) [best, bestLen] = [i, j - i]
    i = j
  }
  const hex = (ws: Array<number>) => ws.map((w) => w.toString(16)).join(":")
  return best < 0 ? hex(words) : `${hex(words.slice(0, best))}::${hex(words.slice(best + bestLen))}`
}

/** Build the span of one record. */
export const toSpan = (record: Record): Probe.SpanInput => {
  const r = readCold(record)
  const server = r.kind === Kind.server
  const { service, method } = splitMethod(r.method)
  const attributes: globalThis.Record<string, AttributeValue> = {
    [ATTR_RPC_SYSTEM]: "grpc",
    [ATTR_RPC_METHOD]: method
  }
  if (service !== undefined) attributes[ATTR_RPC_SERVICE] = service
  if (r.statusKnown) attributes[ATTR_RPC_GRPC_STATUS_CODE] = r.status
  if (server) {
    if (r.hasAddrs) {
      attributes[ATTR_SERVER_ADDRESS] = formatIp(r.localIp)
      attributes[ATTR_SERVER_PORT] = r.localPort
      attributes[ATTR_NETWORK_PEER_ADDRESS] = formatIp(r.peerIp)
      attributes[ATTR_NETWORK_PEER_PORT] = r.peerPort
    }
  } else {
    // server.address is the name the caller dialled (the ClientConn's authority), as the conventions ask.
    const authority = Http.splitHostPort(r.authority)
    if (authority.host !== "") attributes[ATTR_SERVER_ADDRESS] = authority.host
    const port = authority.port ?? (r.hasAddrs ? r.peerPort : undefined)
    if (port !== undefined) attributes[ATTR_SERVER_PORT] = port
    if (r.hasAddrs) {
      attributes[ATTR_NETWORK_PEER_ADDRESS] = formatIp(r.peerIp)
      attributes[ATTR_NETWORK_PEER_PORT] = r.peerPort
    }
  }
  const failed = r.statusKnown && r.status !== 0 && (!server || SERVER_ERROR_CODES.has(r.status))
  return Http.headSpan(
    r,
    service === undefined ? method : `${service}/${method}`,
    server ? "server" : "client",
    attributes,
    failed ? { code: "error", message: CODE_NAMES[r.status] ?? `code ${r.status}` } : Http.UNSET
  )
}

// ---------------------------------------------------------------------------------------------------------------
// Metrics: RPC call durations
// ---------------------------------------------------------------------------------------------------------------

export const serverDuration = Instruments.histogram("rpc.server.call.duration", {
  unit: "s",
  description: "Measures the duration of inbound remote procedure calls.",
  boundaries: Http.DURATION_BOUNDARIES
})

export const clientDuration = Instruments.histogram("rpc.client.call.duration", {
  unit: "s",
  description: "Measures the duration of outbound remote procedure calls.",
  boundaries: Http.DURATION_BOUNDARIES
})

/** Span attributes the metrics keep: no peer addresses (cardinality). */
export const SERVER_METRIC_KEYS = [ATTR_RPC_SYSTEM, ATTR_RPC_SERVICE, ATTR_RPC_METHOD, ATTR_RPC_GRPC_STATUS_CODE]
export const CLIENT_METRIC_KEYS = [...SERVER_METRIC_KEYS, ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT]

// ---------------------------------------------------------------------------------------------------------------
// The probe
// ---------------------------------------------------------------------------------------------------------------

/** The gRPC probe (server and client). Needs GoContext. */
export const Grpc = Probe.instrument({
  name: "grpc",
  object: "grpc",
  manifest,
  reuseMaps: GoContext.sharedMaps,
  uses: [GoContext.goroutines],
  perTarget: {
    layout: Offsets,
    value: ({ target, offsets }) => offsetsValue(target, offsets)
  },
  record: Binary.schema(Record),
  instruments: { server: serverDuration, client: clientDuration },
  signals: (r, emit) =>
    r.kind === Kind.server
      ? Http.emitWithDuration(emit, "server", toSpan(r), SERVER_METRIC_KEYS)
      : Http.emitWithDuration(emit, "client", toSpan(r), CLIENT_METRIC_KEYS)
})
