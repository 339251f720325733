/**
 * The typed `ExportError` and the time limit every exporter's attempt has; and for the OpenTelemetry JS exporters a
 * user may still wrap (`Exporter.fromOtel`, `Metrics.fromOtel`, `Exporter.otlp`), bridging their callback to an Effect
 * and importing (on first use) and building one for the configured OTLP protocol. probescope's own OTLP exporters
 * (internal/otlp/) use none of the latter.
 */
import { ExportResultCode } from "@opentelemetry/core"
import type { ExportResult } from "@opentelemetry/core"
import type { createEmptyMetadata } from "@opentelemetry/otlp-grpc-exporter-base"
import { Duration, Effect, Schema } from "effect"
import type { OtlpConfig } from "../TelemetryConfig.ts"

/** One batch could not be exported (after the exporter's own handling); the caller decides about retrying. */
export class ExportError extends Schema.TaggedError<ExportError>()("ExportError", {
  exporter: Schema.String,
  endpoint: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/**
 * One export attempt as both pipelines make it: the exporter called anew (so a retry does not replay an old call),
 * a defect turned into one failed export rather than the end of the pipeline, and a time limit.
 */
export const attempt = <E>(
  exporter: { readonly name: string; readonly endpoint: string },
  what: string,
  timeoutMillis: number,
  call: () => Effect.Effect<void, E>
): Effect.Effect<void, E | ExportError> =>
  Effect.suspend(call).pipe(
    Effect.catchDefect((defect) =>
      Effect.fail(
        new ExportError({
          exporter: exporter.name,
          endpoint: exporter.endpoint,
          message: `${what} to ${exporter.endpoint} crashed: ${String(defect)}`,
          cause: defect
        })
      )
    ),
    Effect.timeoutOrElse({
      duration: Duration.millis(timeoutMillis),
      orElse: () =>
        Effect.fail(
          new ExportError({
            exporter: exporter.name,
            endpoint: exporter.endpoint,
            message: `${what} to ${exporter.endpoint} timed out after ${timeoutMillis} ms`
          })
        )
    })
  )

const errorMessage = (e: unknown) => e instanceof Error ? e.message : String(e)

/** One `export(items, callback)` call of an OpenTelemetry JS exporter, as an Effect. */
export const exportWith = (
  what: string,
  name: string,
  endpoint: string,
  call: (done: (result: ExportResult) => void) => void
): Effect.Effect<void, ExportError> =>
  Effect.callback<void, ExportError>((resume) => {
    const fail = (error: unknown) =>
      resume(Effect.fail(
        new ExportError({
          exporter: name,
          endpoint,
          message: `${what} to ${endpoint} failed: ${errorMessage(error ?? "unknown error")}`,
          cause: error
        })
      ))
    try {
      call((result) => {
        if (result.code === ExportResultCode.SUCCESS) resume(Effect.void)
        else fail(result.error)
      })
    } catch (error) {
      // A throwing exporter must not kill the exporting fiber: it is one more failed export.
      fail(error)
    }
  })

/**
 * How to import the exporter class of one signal, by protocol. Each protocol's package (grpc-js, protobufjs, the
 * OTLP transformer: several hundred modules together) is imported only when a configuration names that protocol, and
 * then only at the first export, so none of it is on the way from launch to attached.
 */
export interface ByProtocol<E> {
  readonly grpc: () => Promise<new(options: GrpcOptions) => E>
  readonly json: () => Promise<new(options: HttpOptions) => E>
  readonly proto: () => Promise<new(options: HttpOptions) => E>
}

interface BaseOptions {
  readonly url: string
  readonly timeoutMillis: number
  readonly concurrencyLimit: number
}
type GrpcOptions = BaseOptions & { readonly metadata: ReturnType<typeof createEmptyMetadata> }
type HttpOptions = BaseOptions & { readonly headers: Record<string, string> }

/**
 * Requests one OpenTelemetry exporter may have in flight. We send one export at a time, but a request whose export
 * we stopped waiting for (our timeout, or interruption) keeps running, and its serialized batch in memory, until
 * the exporter's own request timeout: past this many, further exports fail at once ("Concurrent export limit
 * reached") instead of piling up copies of batches during an outage (the exporters' default is 30).
 */
export const CONCURRENCY_LIMIT = 2

/** An exporter of the configured protocol, endpoint, timeout and headers, its module imported first. */
export const otlpExporter = async <E>(config: OtlpConfig, classes: ByProtocol<E>): Promise<E> => {
  const base = { url: config.endpoint, timeoutMillis: config.timeoutMillis, concurrencyLimit: CONCURRENCY_LIMIT }
  switch (config.protocol) {
    case "grpc": {
      // The exporter's own grpc-js instance must build the Metadata: a second copy (e.g. under a test runner's
      // module loader) would not be recognised.
      const [Exporter, { createEmptyMetadata: emptyMetadata }] = await Promise.all([
        classes.grpc(),
        import("@opentelemetry/otlp-grpc-exporter-base")
      ])
      const metadata = emptyMetadata()
      for (const [k, v] of Object.entries(config.headers)) metadata.set(k, v)
      return new Exporter({ ...base, metadata })
    }
    case "http/json":
      return new (await classes.json())({ ...base, headers: { ...config.headers } })
    case "http/protobuf":
      return new (await classes.proto())({ ...base, headers: { ...config.headers } })
  }
}

/** An OpenTelemetry JS exporter built on first use, and what the pipelines need of it. */
export interface Deferred<E> {
  /** The exporter, imported and built by the first call; a failure (the module missing, a bad option) is an export
   * failure, and the next call tries again. */
  readonly get: Effect.Effect<E, ExportError>
  /** Shuts the exporter down if it was ever built (an exporter never used has nothing to flush or close). */
  readonly shutdown: (shutdown: (exporter: E) => Promise<void>) => Effect.Effect<void>
}

/** The configured OTLP exporter of one signal, imported and built at the first export. */
export const deferredOtlp = <E>(name: string, config: OtlpConfig, classes: ByProtocol<E>): Deferred<E> => {
  let built: Promise<E> | undefined
  let exporter: E | undefined
  const get = Effect.suspend(() => {
    if (exporter !== undefined) return Effect.succeed(exporter)
    built ??= otlpExporter(config, classes)
    const pending = built
    return Effect.tryPromise({
      try: () => pending,
      catch: (cause) => {
        if (built === pending) built = undefined
        return new ExportError({
          exporter: name,
          endpoint: config.endpoint,
          message: `loading the ${config.protocol} exporter for ${config.endpoint} failed: ${errorMessage(cause)}`,
          cause
        })
      }
    }).pipe(Effect.tap((e) => Effect.sync(() => void (exporter = e))))
  })
  return {
    get,
    shutdown: (shutdown) =>
      Effect.suspend(() => {
        const pending = built
        if (pending === undefined) return Effect.void
        return Effect.promise(() => pending.then(shutdown).catch(() => undefined))
      })
  }
}
