/**
 * One OTLP destination of one signal, as the direct exporters (spans, metrics) use it: the transport for the
 * configured protocol (built at the first request, so a configured exporter that never sends opens no connection),
 * and each request's outcome as an Effect: success, success with a warning when the server rejected part of it, or
 * an `ExportError` whose cause is the `OtlpFailure` (which says whether another attempt can help).
 */
import { Effect } from "effect"
import { version } from "../../ProcessResources.ts"
import type { OtlpConfig } from "../../TelemetryConfig.ts"
import { ExportError } from "../otelExport.ts"
import { grpcTransport, httpTransport, type Signal, type Transport } from "./transport.ts"

export interface Client {
  /**
   * Sends one encoded request (protobuf, or JSON for http/json): one attempt. `written` is called once the body's
   * bytes are read no more, never if the request is cut off before (see transport.ts's `Send`).
   */
  readonly send: (body: Uint8Array, written?: () => void) => Effect.Effect<void, ExportError>
  /** Closes the connection, if one was made. */
  readonly close: () => void
}

/** What the server's rejected count counts, for the warning. */
const ITEMS: Readonly<Record<Signal, string>> = { traces: "span(s)", metrics: "data point(s)", logs: "log record(s)" }

/** Every request's User-Agent. */
const userAgent = `probescope/${version}`

export const make = (config: OtlpConfig, signal: Signal): Client => {
  const options = {
    signal,
    endpoint: config.endpoint,
    headers: config.headers,
    timeoutMillis: config.timeoutMillis,
    gzip: config.compression === "gzip",
    userAgent,
    ...(config.tls === undefined ? {} : { tls: config.tls })
  }
  let transport: Transport | undefined
  const transportOf = () =>
    transport ??= config.protocol === "grpc"
      ? grpcTransport(options)
      : httpTransport({
        ...options,
        contentType: config.protocol === "http/json" ? "application/json" : "application/x-protobuf"
      })

  const send = (body: Uint8Array, written?: () => void) =>
    Effect.callback<void, ExportError>((resume) => {
      const abandon = transportOf().send(body, (result) => {
        if (result.ok) {
          const partial = result.partial
          resume(
            partial === undefined
              ? Effect.void
              : Effect.logWarning(
                `export to ${config.endpoint}: the server rejected ${partial.rejected} ${ITEMS[signal]}` +
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
      }, written)
      return Effect.sync(abandon)
    })

  return { send, close: () => transport?.close() }
}
