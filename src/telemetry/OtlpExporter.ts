/**
 * The direct OTLP span exporter: encodes the probes' spans into an OTLP `ExportTraceServiceRequest` itself
 * (internal/otlp/traces.ts: protobuf for http/protobuf and grpc, OTLP/JSON for http/json) and sends it itself
 * (internal/otlp/transport.ts: node:http(s) with a keep-alive agent, or HTTP/2 with the gRPC framing), so that the
 * export of a span costs an encode of its fields and nothing else: no OpenTelemetry SDK span, no hex parsed back, no
 * time converted twice, and none of the SDK exporters' modules (grpc-js, protobufjs, the transformer) loaded.
 *
 * Its items are `OtlpSpan`s (the `SpanData`, the resource of its process, the clock offset when it was accepted),
 * batched by the shared `Batcher` like any exporter's. A failed request is an `ExportError` whose cause is an
 * `OtlpFailure`; `isRetryable` tells the batcher whether another attempt can help (not after an HTTP 400).
 */
import { Config, Effect, Option } from "effect"
import { ExportError, type Exporter } from "./Exporter.ts"
import { makeTraceEncoder, type OtlpSpan, type ResourceLike } from "./internal/otlp/traces.ts"
import { grpcTransport, httpTransport, OtlpFailure, type Transport } from "./internal/otlp/transport.ts"
import * as ProcessResources from "./ProcessResources.ts"
import { type OtlpConfig, TelemetryConfigError } from "./TelemetryConfig.ts"

export type { OtlpSpan, ResourceLike }
export { OtlpFailure }

/** `OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION`. */
export type Compression = "gzip" | "none"

/** Where and how to send: the telemetry configuration's OTLP part, plus compression. */
export interface OtlpExporterConfig extends OtlpConfig {
  /** Default "none". */
  readonly compression?: Compression
  /** The instrumentation scope's version (default: probescope's version). */
  readonly scopeVersion?: string
}

/** A span exporter that encodes and sends OTLP itself. */
export interface OtlpExporter extends Exporter<OtlpSpan> {
  /** The request body one batch becomes (protobuf, or JSON for http/json): for tests and benchmarks. */
  readonly encode: (items: ReadonlyArray<OtlpSpan>) => Uint8Array
}

/** One span for the direct exporter: `offsetNs` is `toEpochNs(0n)` of the kernel clock at the time. */
export const span = (
  data: OtlpSpan["span"],
  resource: ResourceLike,
  offsetNs: bigint
): OtlpSpan => ({ span: data, resource, offsetNs })

/** Whether the batcher should try a failed export again: always, except for a permanent refusal (e.g. HTTP 400). */
export const isRetryable = (error: ExportError): boolean =>
  !(error.cause instanceof OtlpFailure) || error.cause.retryable

const userAgent = `probescope/${ProcessResources.version}`

/** The OTLP exporter for `config.protocol`, sending to `config.endpoint` (for http, the full …/v1/traces URL). */
export const make = (config: OtlpExporterConfig): OtlpExporter => {
  const encoder = makeTraceEncoder(config.scopeVersion ?? ProcessResources.version)
  const options = {
    endpoint: config.endpoint,
    headers: config.headers,
    timeoutMillis: config.timeoutMillis,
    gzip: config.compression === "gzip",
    userAgent
  }
  const json = config.protocol === "http/json"
  const encode = json ? encoder.json : encoder.protobuf
  // Built at the first export: an agent configured for OTLP that never sees a span opens no connection.
  let transport: Transport | undefined
  const transportOf = () =>
    transport ??= config.protocol === "grpc"
      ? grpcTransport(options)
      : httpTransport({ ...options, contentType: json ? "application/json" : "application/x-protobuf" })

  const send = (body: Uint8Array) =>
    Effect.callback<void, ExportError>((resume) => {
      const abandon = transportOf().send(body, (result) => {
        if (result.ok) {
          const partial = result.partial
          resume(
            partial === undefined
              ? Effect.void
              : Effect.logWarning(
                `export to ${config.endpoint}: the server rejected ${partial.rejected} span(s)` +
                  (partial.message === "" ? "" : `: ${partial.message}`)
              )
          )
          return
        }
        const failure = result.failure
        resume(Effect.fail(
          new ExportError({
            exporter: "otlp",
            endpoint: config.endpoint,
            message: `export to ${config.endpoint} ${failure.timedOut ? "" : "failed: "}${failure.message}`,
            cause: failure
          })
        ))
      })
      return Effect.sync(abandon)
    })

  return {
    name: "otlp",
    endpoint: config.endpoint,
    encode,
    export: (items) => items.length === 0 ? Effect.void : Effect.suspend(() => send(encode(items))),
    shutdown: Effect.sync(() => transport?.close())
  }
}

const COMPRESSION_VARIABLES = ["OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"] as const

/** `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`, else `OTEL_EXPORTER_OTLP_COMPRESSION`: "gzip" or "none" (the default). */
export const loadCompression: Effect.Effect<Compression, TelemetryConfigError> = Effect.gen(function*() {
  for (const variable of COMPRESSION_VARIABLES) {
    const value = yield* Config.option(Config.String(variable)).pipe(
      Effect.map(Option.getOrUndefined),
      Effect.mapError((e) => new TelemetryConfigError({ variable, message: `${variable}: ${e.message}` }))
    )
    const trimmed = value?.trim().toLowerCase()
    if (trimmed === undefined || trimmed === "") continue
    if (trimmed === "gzip" || trimmed === "none") return trimmed
    return yield* new TelemetryConfigError({
      variable,
      message: `Invalid ${variable}=${JSON.stringify(value)}: expected "gzip" or "none"`
    })
  }
  return "none" as const
})
