/**
 * Sending encoded OTLP requests of any signal: OTLP/HTTP with node:http(s) over a keep-alive agent, and OTLP/gRPC as
 * plain HTTP/2 with node:http2 (the unary `TraceService/Export` or `MetricsService/Export` call is one POST of a
 * length-prefixed protobuf message, answered with `grpc-status` in the trailers), so neither grpc-js nor protobufjs
 * is ever loaded. One request per call; the
 * caller (the batcher) decides about retrying, told by `OtlpFailure.retryable` which failures are worth it.
 *
 * Retryable, as the OTLP exporter specification lists them: HTTP 429, 502, 503, 504; gRPC CANCELLED,
 * DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS; and every failure to connect,
 * send or hear back in time. Anything else (a 400: the server will never take this batch) is permanent.
 */
import * as http from "node:http"
import * as http2 from "node:http2"
import * as https from "node:https"
import * as zlib from "node:zlib"
import { errorDetail, type PartialSuccess, partialSuccess, type Signal } from "./response.ts"

export type { Signal }

interface FailureOptions {
  readonly retryable: boolean
  readonly status?: number
  readonly grpcStatus?: number
  readonly timedOut?: boolean
  readonly cause?: unknown
}

/** Why one request failed. `retryable`: sending the same batch again may succeed. */
export class OtlpFailure extends Error {
  readonly retryable: boolean
  /** The HTTP status, when the server answered with one. */
  readonly status: number | undefined
  /** The gRPC status code, when the server answered with one. */
  readonly grpcStatus: number | undefined
  /** No answer within the request timeout. */
  readonly timedOut: boolean

  constructor(message: string, options: FailureOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = "OtlpFailure"
    this.retryable = options.retryable
    this.status = options.status
    this.grpcStatus = options.grpcStatus
    this.timedOut = options.timedOut === true
  }
}

export type SendResult =
  | { readonly ok: true; readonly partial: PartialSuccess | undefined }
  | { readonly ok: false; readonly failure: OtlpFailure }

/**
 * Sends one encoded request; calls `done` once; the returned function abandons the request (interruption). `written`,
 * if given, is called once the transport reads `body` no more (all of it handed to the socket, or to the compressor
 * that made the bytes sent instead); never, for a request cut off before that: the caller may then not reuse the
 * body's memory (internal/otlp/bodyPool.ts).
 */
export type Send = (body: Uint8Array, done: (result: SendResult) => void, written?: () => void) => () => void

export interface TransportOptions {
  /** What the requests carry: the gRPC method called, and how a partial success is read. */
  readonly signal: Signal
  /** http(s) URL: for HTTP the signal's URL (…/v1/traces, …/v1/metrics), for gRPC the server's address. */
  readonly endpoint: string
  readonly headers: Readonly<Record<string, string>>
  readonly timeoutMillis: number
  readonly gzip: boolean
  /** The request's User-Agent. */
  readonly userAgent: string
  /** For https: trusted roots instead of the system's, and a client certificate (PEM). */
  readonly tls?: Tls
}

/** TLS material (PEM), as `OTEL_EXPORTER_OTLP_CERTIFICATE`, `_CLIENT_CERTIFICATE` and `_CLIENT_KEY` name it. */
export interface Tls {
  readonly ca?: string | Uint8Array
  readonly cert?: string | Uint8Array
  readonly key?: string | Uint8Array
}

/** Only the fields set: `undefined` values would override Node's defaults (the system's roots). */
const tlsOptions = (tls: Tls | undefined) =>
  tls === undefined ? {} : Object.fromEntries(Object.entries(tls).filter(([, v]) => v !== undefined))

export interface Transport {
  readonly send: Send
  /** Closes idle connections; requests in flight are abandoned. */
  readonly close: () => void
}

/** Retryable HTTP statuses (OTLP/HTTP). */
const RETRYABLE_HTTP = new Set([429, 502, 503, 504])
/** Retryable gRPC status codes (OTLP/gRPC). */
const RETRYABLE_GRPC = new Set([1, 4, 8, 10, 11, 14, 15])
const GRPC_CODES = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED"
]

/** Error bodies are read up to this much (a status message, not a page). */
const MAX_BODY = 64 * 1024

const errorMessage = (e: unknown) => e instanceof Error ? e.message : String(e)

const gzipped = (body: Uint8Array, then: (error: Error | null, out: Uint8Array) => void) =>
  // The thread pool compresses: the event loop (and the ring buffers' readers) go on meanwhile.
  zlib.gzip(body, (error, out) => then(error, out))

/** Settles once: the first of response, error, timeout or abandonment wins. */
const once = (done: (result: SendResult) => void) => {
  let settled = false
  return (result: SendResult) => {
    if (settled) return
    settled = true
    done(result)
  }
}

const failed = (message: string, options: FailureOptions): SendResult => ({
  ok: false,
  failure: new OtlpFailure(message, options)
})

const timedOut = (timeoutMillis: number) =>
  failed(`timed out after ${timeoutMillis} ms`, { retryable: true, timedOut: true })

/** OTLP/HTTP: POST the body (protobuf or JSON) to the signal's URL. */
export const httpTransport = (options: TransportOptions & { readonly contentType: string }): Transport => {
  const url = new URL(options.endpoint)
  const secure = url.protocol === "https:"
  // Keep-alive: one connection carries batch after batch (exports go one at a time; the second socket is for the
  // moment an abandoned request's socket is still being torn down).
  const agent = secure
    ? new https.Agent({ keepAlive: true, maxSockets: 2, ...tlsOptions(options.tls) })
    : new http.Agent({ keepAlive: true, maxSockets: 2 })
  const request = secure ? https.request : http.request
  const json = options.contentType === "application/json"
  const baseHeaders: Record<string, string> = {
    ...options.headers,
    "content-type": options.contentType,
    "user-agent": options.userAgent
  }
  if (options.gzip) baseHeaders["content-encoding"] = "gzip"

  const outcome = (res: http.IncomingMessage, reply: Buffer): SendResult => {
    const status = res.statusCode ?? 0
    if (status >= 200 && status < 300) return { ok: true, partial: partialSuccess(reply, json, options.signal) }
    const detail = errorDetail(reply, res.headers["content-type"])
    const retryable = RETRYABLE_HTTP.has(status)
    const what = `HTTP ${status} ${res.statusMessage ?? ""}`.trim()
    return failed(
      `${what}${detail === "" ? "" : `: ${detail}`}${retryable ? "" : " (not retried)"}`,
      { retryable, status }
    )
  }

  const post = (body: Uint8Array, settle: (result: SendResult) => void, written: (() => void) | undefined) => {
    const req = request(url, {
      method: "POST",
      agent,
      headers: { ...baseHeaders, "content-length": String(body.length) }
    })
    const timer = setTimeout(() => {
      settle(timedOut(options.timeoutMillis))
      req.destroy()
    }, options.timeoutMillis)
    req.on("error", (error) => {
      clearTimeout(timer)
      settle(failed(errorMessage(error), { retryable: true, cause: error }))
    })
    req.on("response", (res) => {
      const chunks: Array<Buffer> = []
      let size = 0
      res.on("data", (chunk: Buffer) => {
        if (size < MAX_BODY) chunks.push(chunk)
        size += chunk.length
      })
      res.on("error", (error) => {
        clearTimeout(timer)
        settle(failed(errorMessage(error), { retryable: true, cause: error }))
      })
      res.on("end", () => {
        clearTimeout(timer)
        const result = outcome(res, Buffer.concat(chunks))
        // Settled just after the request closes: Node returns a kept-alive socket to the agent's pool right after
        // emitting "close", and the caller may send the next batch at once (the batcher sends full batches back to
        // back): it must find that socket free rather than open another connection.
        req.once("close", () => queueMicrotask(() => settle(result)))
      })
    })
    // "finish": the last of the body went to the kernel (a write that failed or was cut off never emits it).
    if (written !== undefined) req.once("finish", written)
    req.end(body)
    return req
  }

  const send: Send = (body, done, written) => {
    const settle = once(done)
    let req: http.ClientRequest | undefined
    let abandoned = false
    const start = (payload: Uint8Array, payloadWritten: (() => void) | undefined) => {
      try {
        req = post(payload, settle, payloadWritten)
      } catch (error) {
        // Thrown before anything was sent: a header value Node refuses (a configuration problem), not the network.
        settle(failed(errorMessage(error), { retryable: false, cause: error }))
      }
    }
    if (options.gzip) {
      gzipped(body, (error, out) => {
        // The compressor is done with the body, whatever happens to the request now.
        written?.()
        if (abandoned) return
        if (error !== null) return settle(failed(`gzip: ${error.message}`, { retryable: false, cause: error }))
        start(out, undefined)
      })
    } else {
      start(body, written)
    }
    return () => {
      abandoned = true
      req?.destroy()
    }
  }

  return { send, close: () => agent.destroy() }
}

/** The gRPC method each signal's OTLP/gRPC export calls. */
export const EXPORT_PATHS: Readonly<Record<Signal, string>> = {
  traces: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
  metrics: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
  logs: "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
}

/** Percent-decodes a grpc-message trailer (it is percent-encoded on the wire). */
const grpcMessage = (raw: unknown) => {
  if (typeof raw !== "string") return ""
  try {
    return decodeURIComponent(raw)
  } catch {
    return raw
  }
}

/**
 * OTLP/gRPC over one HTTP/2 connection, made at the first export and made again after it closes or fails. Each
 * export is one stream: the 5-byte gRPC prefix (compressed flag, big-endian length) and the protobuf request.
 */
export const grpcTransport = (options: TransportOptions): Transport => {
  const url = new URL(options.endpoint)
  const authority = url.origin
  let session: http2.ClientHttp2Session | undefined
  let inFlight = 0
  const metadata: Record<string, string> = {}
  // gRPC metadata keys are lowercase HTTP/2 headers.
  for (const [k, v] of Object.entries(options.headers)) metadata[k.toLowerCase()] = v

  const connect = () => {
    if (session !== undefined && !session.closed && !session.destroyed) return session
    const s = http2.connect(authority, url.protocol === "https:" ? tlsOptions(options.tls) : {})
    // A connection error also fails the streams on it (their own error events report it); this one only forgets
    // the session so that the next export connects anew.
    const forget = () => {
      if (session === s) session = undefined
    }
    s.on("error", forget)
    s.on("close", forget)
    s.on("goaway", forget)
    // Idle, the connection must not keep the process alive; `ref` while a stream is open.
    s.unref()
    session = s
    return s
  }

  const call = (
    message: Uint8Array,
    compressed: boolean,
    settle: (result: SendResult) => void,
    written: (() => void) | undefined
  ) => {
    const s = connect()
    inFlight++
    s.ref()
    const stream = s.request({
      ":method": "POST",
      ":path": EXPORT_PATHS[options.signal],
      ":scheme": url.protocol === "https:" ? "https" : "http",
      "content-type": "application/grpc",
      te: "trailers",
      "grpc-timeout": `${options.timeoutMillis}m`,
      "user-agent": options.userAgent,
      ...(options.gzip ? { "grpc-encoding": "gzip" } : {}),
      ...metadata
    })
    let httpStatus = 0
    let grpcStatus: number | undefined
    let grpcText = ""
    const finish = (result: SendResult) => {
      clearTimeout(timer)
      settle(result)
    }
    const timer = setTimeout(() => {
      finish(timedOut(options.timeoutMillis))
      stream.close(http2.constants.NGHTTP2_CANCEL)
    }, options.timeoutMillis)
    const status = (headers: http2.IncomingHttpHeaders) => {
      const raw = headers["grpc-status"]
      if (raw !== undefined) {
        grpcStatus = Number(raw)
        grpcText = grpcMessage(headers["grpc-message"])
      }
    }
    stream.on("response", (headers) => {
      httpStatus = Number(headers[":status"] ?? 0)
      // A trailers-only response carries the status in the headers.
      status(headers)
    })
    stream.on("trailers", status)
    // The response message (e.g. ExportTraceServiceResponse) matters only for partial success; drained, not kept.
    const chunks: Array<Buffer> = []
    let size = 0
    stream.on("data", (chunk: Buffer) => {
      if (size < MAX_BODY) chunks.push(chunk)
      size += chunk.length
    })
    stream.on("error", (error) => {
      // A stream that never started (the connection failed) is "canceled"; what matters is why.
      const why = (error as { code?: string }).code === "ERR_HTTP2_STREAM_CANCEL" && error.cause !== undefined
        ? error.cause
        : error
      finish(failed(errorMessage(why), { retryable: true, cause: error }))
    })
    stream.on("close", () => {
      inFlight--
      if (inFlight === 0 && session === s) s.unref()
      if (grpcStatus === 0) {
        const reply = Buffer.concat(chunks)
        // Skip the 5-byte message prefix; a compressed reply is not read (partial success is advisory).
        const partial = reply.length > 5 && reply[0] === 0
          ? partialSuccess(reply.subarray(5), false, options.signal)
          : undefined
        return finish({ ok: true, partial })
      }
      if (grpcStatus !== undefined) {
        const name = GRPC_CODES[grpcStatus] ?? String(grpcStatus)
        const retryable = RETRYABLE_GRPC.has(grpcStatus)
        return finish(failed(
          `gRPC ${name} (${grpcStatus})${grpcText === "" ? "" : `: ${grpcText}`}${retryable ? "" : " (not retried)"}`,
          { retryable, grpcStatus }
        ))
      }
      // No gRPC status at all: not a gRPC server, or the stream was cut.
      finish(failed(
        httpStatus === 0 ? "the stream closed without a response" : `HTTP ${httpStatus} without a gRPC status`,
        { retryable: httpStatus === 0 || RETRYABLE_HTTP.has(httpStatus), status: httpStatus }
      ))
    })
    // "finish": HTTP/2 sends the message's bytes from the buffer itself, and ends its writes once they are sent.
    if (written !== undefined) stream.once("finish", written)
    stream.write(prefixOf(message, compressed))
    stream.end(message)
    return stream
  }

  /** The gRPC message prefix: compressed flag, big-endian length (the message follows it, not copied after it). */
  const prefixOf = (message: Uint8Array, compressed: boolean) => {
    const prefix = Buffer.allocUnsafe(5)
    prefix[0] = compressed ? 1 : 0
    prefix.writeUInt32BE(message.length, 1)
    return prefix
  }

  const send: Send = (body, done, written) => {
    const settle = once(done)
    let stream: http2.ClientHttp2Stream | undefined
    let abandoned = false
    const start = (message: Uint8Array, compressed: boolean, messageWritten: (() => void) | undefined) => {
      try {
        stream = call(message, compressed, settle, messageWritten)
      } catch (error) {
        // Thrown before anything was sent: a metadata value HTTP/2 refuses (a configuration problem).
        settle(failed(errorMessage(error), { retryable: false, cause: error }))
      }
    }
    if (options.gzip) {
      gzipped(body, (error, out) => {
        written?.()
        if (abandoned) return
        if (error !== null) return settle(failed(`gzip: ${error.message}`, { retryable: false, cause: error }))
        start(out, true, undefined)
      })
    } else {
      start(body, false, written)
    }
    return () => {
      abandoned = true
      if (stream !== undefined && !stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL)
    }
  }

  return {
    send,
    close: () => {
      session?.close()
      session = undefined
    }
  }
}
