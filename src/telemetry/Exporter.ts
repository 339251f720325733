/**
 * Span exporters the batcher drives: OTLP (http/protobuf, http/json, grpc) through the OpenTelemetry JS exporters,
 * the console (trees or JSON lines), and test doubles. An exporter exports one batch per call; retries, timeouts and
 * counting belong to the batcher.
 */
import { ExportResultCode } from "@opentelemetry/core"
import { OTLPTraceExporter as GrpcExporter } from "@opentelemetry/exporter-trace-otlp-grpc"
import { OTLPTraceExporter as JsonExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { OTLPTraceExporter as ProtoExporter } from "@opentelemetry/exporter-trace-otlp-proto"
import { createEmptyMetadata } from "@opentelemetry/otlp-grpc-exporter-base"
import type { ReadableSpan, SpanExporter as OtelSpanExporter } from "@opentelemetry/sdk-trace-base"
import { Effect, Schema } from "effect"
import { renderJsonLines, renderTrees } from "./internal/consoleTree.ts"
import type { ConsoleFormat, OtlpConfig } from "./TelemetryConfig.ts"

export type { ReadableSpan } from "@opentelemetry/sdk-trace-base"

/** One batch could not be exported (after the exporter's own handling); the batcher decides about retrying. */
export class ExportError extends Schema.TaggedError<ExportError>()("ExportError", {
  exporter: Schema.String,
  endpoint: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/** Something that ships batches of finished spans. */
export interface Exporter {
  /** "otlp", "console", ... (for status lines and errors). */
  readonly name: string
  /** URL, "stdout", ... */
  readonly endpoint: string
  readonly export: (spans: ReadonlyArray<ReadableSpan>) => Effect.Effect<void, ExportError>
  readonly shutdown: Effect.Effect<void>
}

const errorMessage = (e: unknown) => e instanceof Error ? e.message : String(e)

/** Wraps an OpenTelemetry JS `SpanExporter`. */
export const fromOtel = (name: string, endpoint: string, exporter: OtelSpanExporter): Exporter => ({
  name,
  endpoint,
  export: (spans) =>
    Effect.callback<void, ExportError>((resume) => {
      const fail = (error: unknown) =>
        resume(Effect.fail(
          new ExportError({
            exporter: name,
            endpoint,
            message: `export to ${endpoint} failed: ${errorMessage(error ?? "unknown error")}`,
            cause: error
          })
        ))
      try {
        exporter.export(spans as Array<ReadableSpan>, (result) => {
          if (result.code === ExportResultCode.SUCCESS) resume(Effect.void)
          else fail(result.error)
        })
      } catch (error) {
        // A throwing exporter must not kill the batcher's fiber: it is one more failed export.
        fail(error)
      }
    }),
  shutdown: Effect.promise(() => exporter.shutdown().catch(() => undefined))
})

/** An OTLP exporter for the configured protocol. */
export const otlp = (config: OtlpConfig): Exporter => {
  const base = { url: config.endpoint, timeoutMillis: config.timeoutMillis }
  switch (config.protocol) {
    case "grpc": {
      // The exporter's own grpc-js instance must build the Metadata: a second copy (e.g. under a test runner's
      // module loader) would not be recognised.
      const metadata = createEmptyMetadata()
      for (const [k, v] of Object.entries(config.headers)) metadata.set(k, v)
      return fromOtel("otlp", config.endpoint, new GrpcExporter({ ...base, metadata }))
    }
    case "http/json":
      return fromOtel("otlp", config.endpoint, new JsonExporter({ ...base, headers: { ...config.headers } }))
    case "http/protobuf":
      return fromOtel("otlp", config.endpoint, new ProtoExporter({ ...base, headers: { ...config.headers } }))
  }
}

/** Prints each batch as trees (or JSON lines) through `write` (stdout by default). Never fails. */
export const console = (
  format: ConsoleFormat,
  write: (text: string) => void = (text) => void process.stdout.write(text)
): Exporter => ({
  name: "console",
  endpoint: "stdout",
  export: (spans) =>
    Effect.sync(() => {
      const text = format === "jsonl" ? renderJsonLines(spans) : renderTrees(spans)
      if (text !== "") write(text)
    }),
  shutdown: Effect.void
})

/** Keeps every exported batch in memory (tests). */
export const memory = (): Exporter & { readonly batches: Array<ReadonlyArray<ReadableSpan>> } => {
  const batches: Array<ReadonlyArray<ReadableSpan>> = []
  return {
    name: "memory",
    endpoint: "memory",
    batches,
    export: (spans) => Effect.sync(() => void batches.push(spans)),
    shutdown: Effect.void
  }
}
