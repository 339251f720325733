/**
 * Span exporters the batcher drives: OTLP (http/protobuf, http/json, grpc) through the OpenTelemetry JS exporters,
 * the console (trees or JSON lines), and test doubles. An exporter exports one batch per call; retries, timeouts and
 * counting belong to the batcher.
 */
import type { ReadableSpan, SpanExporter as OtelSpanExporter } from "@opentelemetry/sdk-trace-base"
import { Effect } from "effect"
import { renderJsonLines, renderTrees } from "./internal/consoleTree.ts"
import { deferredOtlp, ExportError, exportWith } from "./internal/otelExport.ts"
import type { ConsoleFormat, OtlpConfig } from "./TelemetryConfig.ts"

export type { ReadableSpan } from "@opentelemetry/sdk-trace-base"
export { ExportError }

/** Something that ships batches of items: finished spans (the default), or log records. */
export interface Exporter<A = ReadableSpan> {
  /** "otlp", "console", ... (for status lines and errors). */
  readonly name: string
  /** URL, "stdout", ... */
  readonly endpoint: string
  readonly export: (items: ReadonlyArray<A>) => Effect.Effect<void, ExportError>
  readonly shutdown: Effect.Effect<void>
}

/** Wraps an OpenTelemetry JS `SpanExporter`. */
export const fromOtel = (name: string, endpoint: string, exporter: OtelSpanExporter): Exporter => ({
  name,
  endpoint,
  export: (spans) =>
    exportWith("export", name, endpoint, (done) => exporter.export(spans as Array<ReadableSpan>, done)),
  shutdown: Effect.promise(() => exporter.shutdown().catch(() => undefined))
})

/**
 * An OTLP exporter for the configured protocol. The protocol's OpenTelemetry exporter is imported and built at the
 * first export (see `ByProtocol`): a failure to load it is that export's `ExportError`.
 */
export const otlp = (config: OtlpConfig): Exporter => {
  const deferred = deferredOtlp<OtelSpanExporter>("otlp", config, {
    grpc: () => import("@opentelemetry/exporter-trace-otlp-grpc").then((m) => m.OTLPTraceExporter),
    json: () => import("@opentelemetry/exporter-trace-otlp-http").then((m) => m.OTLPTraceExporter),
    proto: () => import("@opentelemetry/exporter-trace-otlp-proto").then((m) => m.OTLPTraceExporter)
  })
  return {
    name: "otlp",
    endpoint: config.endpoint,
    export: (spans) =>
      Effect.flatMap(
        deferred.get,
        (exporter) =>
          exportWith("export", "otlp", config.endpoint, (done) => exporter.export(spans as Array<ReadableSpan>, done))
      ),
    shutdown: deferred.shutdown((exporter) => exporter.shutdown())
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
