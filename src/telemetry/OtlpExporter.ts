/**
 * The direct OTLP span exporter: encodes the probes' spans into an OTLP `ExportTraceServiceRequest` itself
 * (internal/otlp/traces.ts: protobuf for http/protobuf and grpc, OTLP/JSON for http/json) and sends it itself
 * (internal/otlp/transport.ts: node:http(s) with a keep-alive agent, or HTTP/2 with the gRPC framing), so that the
 * export of a span costs an encode of its fields and nothing else: no OpenTelemetry SDK span, no hex parsed back, no
 * time converted twice, and none of the SDK exporters' modules (grpc-js, protobufjs, the transformer) loaded.
 *
 * gRPC is one unary call per batch over a kept HTTP/2 connection (node:http2): the OTLP/gRPC wire format is the same
 * protobuf request behind gRPC's 5-byte message prefix, answered by `grpc-status` in the trailers, so grpc-js brings
 * nothing the exporter needs. Headers become gRPC metadata; `OTEL_EXPORTER_OTLP_TIMEOUT` becomes `grpc-timeout`.
 *
 * Its items are `OtlpSpan`s (the `SpanData`, the resource of its process, the clock offset when it was accepted). The
 * telemetry layer hands them to the shared `Batcher` through `queue`, which encodes each one as it is offered, so the
 * batcher ships finished requests (`sendEncoded`); `export` encodes a whole batch at once. A failed request is an
 * `ExportError` whose cause is an `OtlpFailure`; `isRetryable` tells the batcher whether another attempt can help
 * (not after an HTTP 400). What the SDK exporters read from the environment themselves is read here by
 * `loadCompression` and `loadTls`.
 */
import { readFileSync } from "node:fs"
import { Config, Effect, Option } from "effect"
import type { BatchQueue } from "./Batcher.ts"
import type { SpanData } from "../probe/Telemetry.ts"
import { ExportError, type Exporter } from "./Exporter.ts"
import type { RequestBuilder } from "./internal/otlp/builder.ts"
import { makeTraceEncoder, type OtlpSpan, type ResourceLike } from "./internal/otlp/traces.ts"
import * as BodyPool from "./internal/otlp/bodyPool.ts"
import * as Client from "./internal/otlp/client.ts"
import { OtlpFailure, type Tls } from "./internal/otlp/transport.ts"
import * as ProcessResources from "./ProcessResources.ts"
import { type OtlpConfig, TelemetryConfigError } from "./TelemetryConfig.ts"

export type { OtlpSpan, ResourceLike, Tls }
export { OtlpFailure }

/** `OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION`. */
export type Compression = "gzip" | "none"

/** Where and how to send: the telemetry configuration's OTLP part, plus compression and TLS material. */
export interface OtlpExporterConfig extends OtlpConfig {
  /** Default "none". */
  readonly compression?: Compression
  /** The instrumentation scope's version (default: probescope's version). */
  readonly scopeVersion?: string
  /** For an https endpoint: roots to trust and a client certificate (see `loadTls`); default: the system's roots. */
  readonly tls?: Tls
}

/** One request's worth of spans, already encoded: what `OtlpExporter.queue` hands out. */
export interface EncodedBatch {
  readonly body: Uint8Array
  /** Spans in the request. */
  readonly count: number
  /** The pooled memory `body` is in (internal/otlp/bodyPool.ts), when it came from a queue. */
  readonly lease?: BodyPool.Lease
}

/** A span exporter that encodes and sends OTLP itself. */
export interface OtlpExporter extends Exporter<OtlpSpan> {
  /** The request body one batch becomes (protobuf, or JSON for http/json): for tests and benchmarks. */
  readonly encode: (items: ReadonlyArray<OtlpSpan>) => Uint8Array
  /**
   * A queue for the `Batcher` that encodes each span as it is offered (see internal/otlp/builder.ts), into requests
   * of at most `maxBatch` spans: what waits for export is bytes, not span objects, and a retry sends the same bytes.
   * A request's body is reused for a later one once the batcher is `done` with it and no attempt still sends it.
   */
  readonly queue: (maxBatch: number) => BatchQueue<OtlpSpan, EncodedBatch>
  /** Sends an encoded request, as `export` does after encoding (one attempt; an empty request sends nothing). */
  readonly sendEncoded: (batch: EncodedBatch) => Effect.Effect<void, ExportError>
}

/**
 * One span for the direct exporter: `offsetNs` is `toEpochNs(0n)` of the kernel clock at the time. The probe is the
 * span's own, or given beside a span that has none (the Runner's batch path, `TelemetrySink.emitUnsafe`).
 */
export function span(data: SpanData, resource: ResourceLike, offsetNs: bigint): OtlpSpan
export function span(data: OtlpSpan["span"], resource: ResourceLike, offsetNs: bigint, probe: string): OtlpSpan
export function span(
  data: OtlpSpan["span"] & { readonly probe?: string },
  resource: ResourceLike,
  offsetNs: bigint,
  probe: string = data.probe!
): OtlpSpan {
  return { span: data, probe, resource, offsetNs }
}

/** Whether the batcher should try a failed export again: always, except for a permanent refusal (e.g. HTTP 400). */
export const isRetryable = (error: ExportError): boolean =>
  !(error.cause instanceof OtlpFailure) || error.cause.retryable


/**
 * A request stops taking spans past this many bytes, whatever the batch size: gRPC servers commonly refuse messages
 * over 4 MiB (the collector's default), and batches of 2048 spans with large attributes could reach that.
 */
export const MAX_REQUEST_BYTES = 2 * 1024 * 1024

/**
 * The encoded spans an OTLP queue holds at most, whatever `OTEL_BSP_MAX_QUEUE_SIZE` allows: 8192 typical spans take
 * ~3 MiB, but spans with large attributes must not make the queue's count bound a bound of hundreds of MiB. Past it,
 * spans are dropped as for a full queue.
 */
export const MAX_QUEUE_BYTES = 16 * 1024 * 1024

/** The OTLP exporter for `config.protocol`, sending to `config.endpoint` (for http, the full …/v1/traces URL). */
export const make = (config: OtlpExporterConfig): OtlpExporter => {
  const encoder = makeTraceEncoder(config.scopeVersion ?? ProcessResources.version)
  const json = config.protocol === "http/json"
  const encode = json ? encoder.json : encoder.protobuf
  // Connects at the first export: an agent configured for OTLP that never sees a span opens no connection.
  const client = Client.make(config, "traces")
  const send = client.send
  // Shared by the exporter's queues: one Batcher's, and a flush's beside it.
  const bodies = BodyPool.make()

  const queue = (maxBatch: number): BatchQueue<OtlpSpan, EncodedBatch> => {
    // Requests in the making, oldest first: each takes spans until it holds `maxBatch` or MAX_REQUEST_BYTES, then
    // the next one starts; all but the last are closed.
    let requests: Array<RequestBuilder> = []
    let size = 0
    // The bytes of the closed requests; the open one's are read from it.
    let closedBytes = 0
    const closed = (r: RequestBuilder) => r.count() >= maxBatch || r.bytes() >= MAX_REQUEST_BYTES
    return {
      size: () => size,
      full: () => requests.length > 1 || (requests.length === 1 && closed(requests[0]!)),
      push: (item) => {
        let tail = requests[requests.length - 1]
        if (tail !== undefined && closedBytes + tail.bytes() >= MAX_QUEUE_BYTES) return false
        if (tail === undefined || closed(tail)) {
          if (tail !== undefined) closedBytes += tail.bytes()
          tail = encoder.builder(json)
          requests.push(tail)
        }
        tail.add(item)
        size++
        return true
      },
      take: () => {
        const head = requests.shift()
        if (head === undefined) return undefined
        const count = head.count()
        size -= count
        // The head was closed unless it was the only one, the open request.
        if (requests.length > 0) closedBytes -= head.bytes()
        else closedBytes = 0
        // The builder sizes the request before laying it out, and asks for exactly that much memory once.
        const taken: { lease?: BodyPool.Lease } = {}
        const body = head.finish((size) => (taken.lease = bodies.alloc(size)).bytes)
        return { body, count, lease: taken.lease! }
      },
      sizeOf: (batch) => batch.count,
      done: (batch) => batch.lease?.release(),
      clear: () => {
        const n = size
        for (const r of requests) r.discard()
        requests = []
        size = 0
        closedBytes = 0
        return n
      }
    }
  }

  return {
    name: "otlp",
    endpoint: config.endpoint,
    encode,
    queue,
    // Each attempt holds the body until its bytes are written; a retry is a new attempt with a hold of its own.
    sendEncoded: (batch) =>
      batch.count === 0 ? Effect.void : Effect.suspend(() => send(batch.body, batch.lease?.hold())),
    export: (items) => items.length === 0 ? Effect.void : Effect.suspend(() => send(encode(items))),
    shutdown: Effect.sync(client.close)
  }
}

/** The signals whose OTLP variables the direct exporters read, as the variables spell them. */
export type SignalVariables = "TRACES" | "METRICS" | "LOGS"

/** A variable of the signal, else its generic form: `OTEL_EXPORTER_OTLP_<SIGNAL>_X`, `OTEL_EXPORTER_OTLP_X`. */
const signalVariable = Effect.fnUntraced(function*(signal: SignalVariables, name: string) {
  for (const variable of [`OTEL_EXPORTER_OTLP_${signal}_${name}`, `OTEL_EXPORTER_OTLP_${name}`]) {
    const value = yield* Config.option(Config.String(variable)).pipe(
      Effect.map(Option.getOrUndefined),
      Effect.mapError((e) => new TelemetryConfigError({ variable, message: `${variable}: ${e.message}` }))
    )
    if (value !== undefined && value.trim() !== "") return { variable, value: value.trim() }
  }
  return undefined
})

/** The PEM file a variable names, read now: a file that cannot be read is a configuration error naming it. */
const pemFile = Effect.fnUntraced(function*(signal: SignalVariables, name: string) {
  const found = yield* signalVariable(signal, name)
  if (found === undefined) return undefined
  return yield* Effect.try({
    try: () => readFileSync(found.value),
    catch: (e) =>
      new TelemetryConfigError({
        variable: found.variable,
        message: `${found.variable}: cannot read ${found.value}: ${e instanceof Error ? e.message : String(e)}`
      })
  })
})

/**
 * TLS material for an https endpoint of one signal, as the OpenTelemetry JS exporters read it:
 * `OTEL_EXPORTER_OTLP_(<SIGNAL>_)CERTIFICATE` (roots to trust), `_CLIENT_CERTIFICATE` and `_CLIENT_KEY` (mutual
 * TLS), each the path of a PEM file. Undefined when none is set.
 */
export const loadTlsOf = (signal: SignalVariables): Effect.Effect<Tls | undefined, TelemetryConfigError> =>
  Effect.gen(function*() {
    const ca = yield* pemFile(signal, "CERTIFICATE")
    const cert = yield* pemFile(signal, "CLIENT_CERTIFICATE")
    const key = yield* pemFile(signal, "CLIENT_KEY")
    if (ca === undefined && cert === undefined && key === undefined) return undefined
    return {
      ...(ca === undefined ? {} : { ca }),
      ...(cert === undefined ? {} : { cert }),
      ...(key === undefined ? {} : { key })
    }
  })

/** The spans' TLS material: `loadTlsOf("TRACES")`. */
export const loadTls: Effect.Effect<Tls | undefined, TelemetryConfigError> = loadTlsOf("TRACES")

/**
 * `OTEL_EXPORTER_OTLP_<SIGNAL>_COMPRESSION`, else `OTEL_EXPORTER_OTLP_COMPRESSION`: "gzip" or "none" (the default).
 */
export const loadCompressionOf = (signal: SignalVariables): Effect.Effect<Compression, TelemetryConfigError> =>
  Effect.gen(function*() {
    const found = yield* signalVariable(signal, "COMPRESSION")
    if (found === undefined) return "none" as const
    const value = found.value.toLowerCase()
    if (value === "gzip" || value === "none") return value
    return yield* new TelemetryConfigError({
      variable: found.variable,
      message: `Invalid ${found.variable}=${JSON.stringify(found.value)}: expected "gzip" or "none"`
    })
  })

/** The spans' compression: `loadCompressionOf("TRACES")`. */
export const loadCompression: Effect.Effect<Compression, TelemetryConfigError> = loadCompressionOf("TRACES")
