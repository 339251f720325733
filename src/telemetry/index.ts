/**
 * probescope telemetry: SpanData → OpenTelemetry spans, per-process resources, OTEL_* configuration, bounded
 * batching, OTLP and console export, HTTP metrics derived from the spans, the agent's own metrics.
 */
export * as Batcher from "./Batcher.ts"
export * as Exporter from "./Exporter.ts"
export * as KernelClock from "./KernelClock.ts"
export * as ProcessResources from "./ProcessResources.ts"
export * as SelfMetrics from "./SelfMetrics.ts"
export * as SpanMetrics from "./SpanMetrics.ts"
export * as Telemetry from "./Telemetry.ts"
export * as TelemetryConfig from "./TelemetryConfig.ts"
