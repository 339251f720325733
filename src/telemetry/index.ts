/**
 * probescope telemetry: the probes' signals → OpenTelemetry spans, log records and metrics (the instruments each
 * probe declares), per-process resources, OTEL_* configuration, bounded batching, OTLP and console export, the
 * agent's own metrics. Knows no protocol a probe observes.
 */
export * as Batcher from "./Batcher.ts"
export * as Exporter from "./Exporter.ts"
export * as KernelClock from "./KernelClock.ts"
export * as Logs from "./Logs.ts"
export * as Metrics from "./Metrics.ts"
export * as ProcessResources from "./ProcessResources.ts"
export * as SelfMetrics from "./SelfMetrics.ts"
export * as Telemetry from "./Telemetry.ts"
export * as TelemetryConfig from "./TelemetryConfig.ts"
