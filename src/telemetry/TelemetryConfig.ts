/**
 * Export configuration from the OpenTelemetry SDK environment variables (`OTEL_*`), read through effect `Config` so
 * tests and embedders can swap the source with a `ConfigProvider`. Every bad value is a `TelemetryConfigError`
 * naming the variable.
 */
import { Config, Effect, Option, Schema } from "effect"
import type { Tls } from "./internal/otlp/transport.ts"

/** A configuration variable that is present but unusable. */
export class TelemetryConfigError extends Schema.TaggedError<TelemetryConfigError>()("TelemetryConfigError", {
  variable: Schema.String,
  message: Schema.String
}) {}

/** `OTEL_EXPORTER_OTLP_PROTOCOL` values. */
export const OtlpProtocol = Schema.Literals(["http/protobuf", "http/json", "grpc"])
export type OtlpProtocol = typeof OtlpProtocol.Type

/** `OTEL_TRACES_EXPORTER` list entries. */
export const ExporterName = Schema.Literals(["otlp", "console", "none"])
export type ExporterName = typeof ExporterName.Type

/** `PROBESCOPE_CONSOLE_FORMAT`: indented trees (default) or one JSON object per span. */
export const ConsoleFormat = Schema.Literals(["tree", "jsonl"])
export type ConsoleFormat = typeof ConsoleFormat.Type

/** Where and how OTLP is sent. */
export interface OtlpConfig {
  readonly protocol: OtlpProtocol
  /** Full URL: for http it ends in the signal's path (`/v1/traces`, `/v1/metrics`); for grpc the server address. */
  readonly endpoint: string
  readonly headers: Readonly<Record<string, string>>
  readonly timeoutMillis: number
  /**
   * Traces and metrics: `OTEL_EXPORTER_OTLP_(<SIGNAL>_)COMPRESSION` (`Telemetry.layer` reads it; absent: none).
   * The logs' OpenTelemetry exporter reads its own.
   */
  readonly compression?: "gzip" | "none"
  /**
   * Traces and metrics: the PEM files `OTEL_EXPORTER_OTLP_(<SIGNAL>_)CERTIFICATE`, `_CLIENT_CERTIFICATE`,
   * `_CLIENT_KEY` name (`Telemetry.layer` reads them).
   */
  readonly tls?: Tls
}

/** The batch span processor's knobs (`OTEL_BSP_*`) plus the retry policy for failed exports. */
export interface BatchConfig {
  readonly maxQueueSize: number
  readonly maxExportBatchSize: number
  readonly scheduleDelayMillis: number
  readonly exportTimeoutMillis: number
  /** Retries after the first failed attempt of one batch (`PROBESCOPE_EXPORT_RETRIES`, default 3). */
  readonly maxRetries: number
  /** First retry delay; doubles per retry (`PROBESCOPE_EXPORT_RETRY_DELAY`, ms, default 200). */
  readonly retryBaseMillis: number
}

/** Everything the telemetry layer reads from the environment. */
export interface TelemetryConfig {
  readonly serviceName: string | undefined
  readonly resourceAttributes: Readonly<Record<string, string>>
  /** Exporters to run; empty for `none`. */
  readonly exporters: ReadonlyArray<"otlp" | "console">
  readonly otlp: OtlpConfig
  readonly consoleFormat: ConsoleFormat
  readonly batch: BatchConfig
  /**
   * `PROBESCOPE_SHUTDOWN_TIMEOUT` (ms, default 5000): the one bound on everything telemetry does when it closes
   * (last metrics export, span queue drain, exporter shutdown). Whatever is not exported by then counts as failed.
   */
  readonly shutdownTimeoutMillis: number
}

/** Default of `PROBESCOPE_SHUTDOWN_TIMEOUT`. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MILLIS = 5000

const PositiveInt = Schema.NumberFromString.pipe(Schema.check(Schema.isInt(), Schema.isGreaterThan(0)))
const NonNegativeInt = Schema.NumberFromString.pipe(Schema.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0)))

const raw = (variable: string): Effect.Effect<string | undefined, TelemetryConfigError> =>
  Config.option(Config.String(variable)).pipe(
    Effect.map(Option.getOrUndefined),
    Effect.mapError((e) => new TelemetryConfigError({ variable, message: `${variable}: ${e.message}` }))
  )

/** `shown`: the value as the user wrote it, when `value` is a normalised form of it (the error quotes theirs). */
const decode = <T>(schema: Schema.Codec<T, string>, variable: string, value: string, shown = value) =>
  Schema.decodeUnknownEffect(schema)(value).pipe(
    Effect.mapError((e) =>
      new TelemetryConfigError({
        variable,
        message: `Invalid ${variable}=${JSON.stringify(shown)}: ${e.message.split("\n")[0]}`
      })
    )
  )

const optional = <T>(schema: Schema.Codec<T, string>, variable: string) =>
  Effect.flatMap(raw(variable), (value) => {
    const trimmed = value?.trim()
    return trimmed === undefined || trimmed === ""
      ? Effect.succeed(undefined)
      : decode(schema, variable, trimmed)
  })

const withDefault = <T>(schema: Schema.Codec<T, string>, variable: string, fallback: T) =>
  Effect.map(optional(schema, variable), (v) => v ?? fallback)

const decodeComponent = (variable: string, entry: string, part: string) => {
  try {
    return Effect.succeed(decodeURIComponent(part.trim()))
  } catch {
    return Effect.fail(
      new TelemetryConfigError({
        variable,
        message: `Invalid ${variable}: bad percent-encoding in ${JSON.stringify(entry.trim())}`
      })
    )
  }
}

/** Printable ASCII without space: what a key may hold (anything else must be percent-encoded). */
const KEY_CHARS = /^[\x21-\x7e]+$/
/** Printable ASCII (inner spaces are tolerated): anything else in a value must be percent-encoded. */
const VALUE_CHARS = /^[\x20-\x7e]*$/

/**
 * Parses a W3C-baggage-style `key=value,key2=value2` list with percent-encoded keys and values, as used by
 * `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_EXPORTER_OTLP_HEADERS`. Empty entries are skipped; surrounding spaces are
 * trimmed. An entry without a key, with a character that should have been percent-encoded, or with bad encoding is
 * an error naming the variable and the entry. With `strict` (resource attributes, as the OpenTelemetry JS SDK
 * does), a value may not contain a bare "=" either: `garbage==` is a typo, not the value "="; header values keep
 * theirs, since base64 tokens end in "=".
 */
export const parseKeyValueList = Effect.fnUntraced(function*(variable: string, value: string, strict = false) {
  const out: Record<string, string> = {}
  const invalid = (entry: string, why: string) =>
    new TelemetryConfigError({ variable, message: `Invalid ${variable}: entry ${JSON.stringify(entry)} ${why}` })
  for (const raw of value.split(",")) {
    const entry = raw.trim()
    if (entry === "") continue
    const eq = entry.indexOf("=")
    const rawKey = eq < 0 ? "" : entry.slice(0, eq).trim()
    const rawValue = entry.slice(eq + 1).trim()
    if (rawKey === "") return yield* invalid(entry, "is not key=value")
    if (strict && rawValue.includes("=")) {
      return yield* invalid(entry, `has more than one "=" (percent-encode "=" in a value as %3D)`)
    }
    if (!KEY_CHARS.test(rawKey)) return yield* invalid(entry, "has a key with spaces or non-ASCII characters")
    if (!VALUE_CHARS.test(rawValue)) {
      return yield* invalid(entry, "has control or non-ASCII characters in its value (percent-encode them)")
    }
    const key = yield* decodeComponent(variable, entry, rawKey)
    out[key] = yield* decodeComponent(variable, entry, rawValue)
  }
  return out as Readonly<Record<string, string>>
})

const keyValues = (variable: string, strict = false) =>
  Effect.flatMap(
    raw(variable),
    (value) => value === undefined ? Effect.succeed({}) : parseKeyValueList(variable, value, strict)
  )

const exporterList = Effect.fnUntraced(function*(variable = "OTEL_TRACES_EXPORTER") {
  const value = yield* raw(variable)
  if (value === undefined || value.trim() === "") return ["otlp"] as const
  const names = new Set<"otlp" | "console">()
  for (const part of value.split(",")) {
    if (part.trim() === "") continue
    const name = yield* decode(ExporterName, variable, part.trim())
    if (name !== "none") names.add(name)
  }
  return [...names]
})

const DEFAULT_HTTP = "http://localhost:4318"
const DEFAULT_GRPC = "http://localhost:4317"

/** The traces URL from the generic endpoint: per the spec, http appends `/v1/traces`; grpc uses it as-is. */
export const tracesEndpoint = (protocol: OtlpProtocol, generic: string | undefined, perSignal: string | undefined) => {
  if (perSignal !== undefined) return perSignal
  if (protocol === "grpc") return generic ?? DEFAULT_GRPC
  return `${(generic ?? DEFAULT_HTTP).replace(/\/+$/, "")}/v1/traces`
}

const endpointVar = (variable: string) =>
  Effect.flatMap(raw(variable), (value) => {
    const trimmed = value?.trim()
    if (trimmed === undefined || trimmed === "") return Effect.succeed(undefined)
    const scheme = URL.canParse(trimmed) ? new URL(trimmed).protocol : undefined
    return scheme === "http:" || scheme === "https:"
      ? Effect.succeed(trimmed)
      : Effect.fail(
        new TelemetryConfigError({
          variable,
          message: `Invalid ${variable}=${JSON.stringify(trimmed)}: not an http(s) URL`
        })
      )
  })

/** What a span pipeline holds by default: the spans wait encoded (~400 bytes each), so 8192 cost ~3 MiB. */
export const DEFAULT_SPAN_QUEUE_SIZE = 8192
/** The largest default batch: a request of ~0.8 MiB of typical spans, well under gRPC's usual 4 MiB limit. */
export const MAX_DEFAULT_BATCH_SIZE = 2048

/**
 * A batch processor's knobs: `OTEL_BSP_*` for spans, `OTEL_BLRP_*` for log records (same names after the prefix),
 * plus the shared retry policy. Unset, the batch size is a quarter of the queue, at most 2048: with the
 * specification's queue of 2048 that is its 512, and three more batches fit while one is on the wire.
 */
const batchConfig = Effect.fnUntraced(function*(prefix: "BSP" | "BLRP", defaultDelayMillis: number, defaultQueue: number) {
  const v = (name: string) => `OTEL_${prefix}_${name}`
  const maxQueueSize = yield* withDefault(PositiveInt, v("MAX_QUEUE_SIZE"), defaultQueue)
  const maxExportBatchSize = yield* withDefault(
    PositiveInt,
    v("MAX_EXPORT_BATCH_SIZE"),
    Math.max(1, Math.min(MAX_DEFAULT_BATCH_SIZE, Math.floor(maxQueueSize / 4)))
  )
  if (maxExportBatchSize > maxQueueSize) {
    return yield* new TelemetryConfigError({
      variable: v("MAX_EXPORT_BATCH_SIZE"),
      message: `Invalid ${v("MAX_EXPORT_BATCH_SIZE")}=${maxExportBatchSize}: ` +
        `must not exceed ${v("MAX_QUEUE_SIZE")} (${maxQueueSize})`
    })
  }
  return {
    maxQueueSize,
    maxExportBatchSize,
    scheduleDelayMillis: yield* withDefault(NonNegativeInt, v("SCHEDULE_DELAY"), defaultDelayMillis),
    exportTimeoutMillis: yield* withDefault(PositiveInt, v("EXPORT_TIMEOUT"), 30_000),
    maxRetries: yield* withDefault(NonNegativeInt, "PROBESCOPE_EXPORT_RETRIES", 3),
    retryBaseMillis: yield* withDefault(PositiveInt, "PROBESCOPE_EXPORT_RETRY_DELAY", 200)
  } satisfies BatchConfig
})

/** Reads the whole telemetry configuration from the current `ConfigProvider` (the environment by default). */
export const load: Effect.Effect<TelemetryConfig, TelemetryConfigError> = Effect.gen(function*() {
  const serviceName = (yield* raw("OTEL_SERVICE_NAME"))?.trim() || undefined
  const resourceAttributes = yield* keyValues("OTEL_RESOURCE_ATTRIBUTES", true)
  const exporters = yield* exporterList()

  const protocol = (yield* optional(OtlpProtocol, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")) ??
    (yield* withDefault(OtlpProtocol, "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))
  const endpoint = tracesEndpoint(
    protocol,
    yield* endpointVar("OTEL_EXPORTER_OTLP_ENDPOINT"),
    yield* endpointVar("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
  )
  const headers = {
    ...(yield* keyValues("OTEL_EXPORTER_OTLP_HEADERS")),
    ...(yield* keyValues("OTEL_EXPORTER_OTLP_TRACES_HEADERS"))
  }
  const timeoutMillis = (yield* optional(PositiveInt, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")) ??
    (yield* withDefault(PositiveInt, "OTEL_EXPORTER_OTLP_TIMEOUT", 10_000))

  // Spans: a larger queue than the specification's 2048, so that batches of 2048 (a quarter of the export requests
  // of 512 would make) leave room for more while one is on the wire; log records keep its defaults.
  const batch = yield* batchConfig("BSP", 5000, DEFAULT_SPAN_QUEUE_SIZE)
  const consoleFormat = yield* withDefault(ConsoleFormat, "PROBESCOPE_CONSOLE_FORMAT", "tree")
  const shutdownTimeoutMillis = yield* withDefault(
    PositiveInt,
    "PROBESCOPE_SHUTDOWN_TIMEOUT",
    DEFAULT_SHUTDOWN_TIMEOUT_MILLIS
  )
  return {
    serviceName,
    resourceAttributes,
    exporters,
    otlp: { protocol, endpoint, headers, timeoutMillis },
    consoleFormat,
    batch,
    shutdownTimeoutMillis
  } satisfies TelemetryConfig
})

/** What the metrics pipeline (`Metrics`) reads from the environment. */
export interface MetricsConfig {
  /** `OTEL_METRICS_EXPORTER` (a list like the traces one): exporters to run; empty for `none`. */
  readonly exporters: ReadonlyArray<"otlp" | "console">
  /** For http the endpoint ends in `/v1/metrics`; headers and request timeout as for traces, per-signal first. */
  readonly otlp: OtlpConfig
  /** Which instruments export deltas (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`, default cumulative). */
  readonly temporality?: TemporalityPreference
  /** `OTEL_METRIC_EXPORT_INTERVAL`: ms between collections (default 60000). */
  readonly intervalMillis: number
  /** `OTEL_METRIC_EXPORT_TIMEOUT`: ms one collection's export may take (default 30000). */
  readonly exportTimeoutMillis: number
}

/** The metrics URL from the generic endpoint: per the spec, http appends `/v1/metrics`; grpc uses it as-is. */
export const metricsEndpoint = (protocol: OtlpProtocol, generic: string | undefined, perSignal: string | undefined) => {
  if (perSignal !== undefined) return perSignal
  if (protocol === "grpc") return generic ?? DEFAULT_GRPC
  return `${(generic ?? DEFAULT_HTTP).replace(/\/+$/, "")}/v1/metrics`
}

/**
 * `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`, as the OTLP exporter spec defines it: `cumulative` (every
 * instrument cumulative), `delta` (counters and histograms delta, up-down counters cumulative) or `lowmemory` (the
 * same for synchronous instruments, which are all a probe records into). Case-insensitive.
 */
export const TemporalityPreference = Schema.Literals(["cumulative", "delta", "lowmemory"])
export type TemporalityPreference = typeof TemporalityPreference.Type

/** Reads the metrics configuration from the current `ConfigProvider`. */
export const loadMetrics: Effect.Effect<MetricsConfig, TelemetryConfigError> = Effect.gen(function*() {
  const exporters = yield* exporterList("OTEL_METRICS_EXPORTER")
  const protocol = (yield* optional(OtlpProtocol, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")) ??
    (yield* withDefault(OtlpProtocol, "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))
  const endpoint = metricsEndpoint(
    protocol,
    yield* endpointVar("OTEL_EXPORTER_OTLP_ENDPOINT"),
    yield* endpointVar("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
  )
  const headers = {
    ...(yield* keyValues("OTEL_EXPORTER_OTLP_HEADERS")),
    ...(yield* keyValues("OTEL_EXPORTER_OTLP_METRICS_HEADERS"))
  }
  const timeoutMillis = (yield* optional(PositiveInt, "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT")) ??
    (yield* withDefault(PositiveInt, "OTEL_EXPORTER_OTLP_TIMEOUT", 10_000))
  const preference = (yield* raw("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"))?.trim()
  const temporality = preference === undefined || preference === "" ?
    "cumulative" :
    yield* decode(
      TemporalityPreference,
      "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
      preference.toLowerCase(),
      preference
    )
  return {
    exporters,
    otlp: { protocol, endpoint, headers, timeoutMillis },
    temporality,
    intervalMillis: yield* withDefault(PositiveInt, "OTEL_METRIC_EXPORT_INTERVAL", 60_000),
    exportTimeoutMillis: yield* withDefault(PositiveInt, "OTEL_METRIC_EXPORT_TIMEOUT", 30_000)
  } satisfies MetricsConfig
})

/** What the log records pipeline reads from the environment. */
export interface LogsConfig {
  /** `OTEL_LOGS_EXPORTER` (a list like the traces one): exporters to run; empty for `none`. */
  readonly exporters: ReadonlyArray<"otlp" | "console">
  /** For http the endpoint ends in `/v1/logs`; headers and request timeout as for traces, per-signal first. */
  readonly otlp: OtlpConfig
  /** `OTEL_BLRP_*`: the batch log record processor's knobs (schedule delay default 1000 ms). */
  readonly batch: BatchConfig
}

/** The logs URL from the generic endpoint: per the spec, http appends `/v1/logs`; grpc uses it as-is. */
export const logsEndpoint = (protocol: OtlpProtocol, generic: string | undefined, perSignal: string | undefined) => {
  if (perSignal !== undefined) return perSignal
  if (protocol === "grpc") return generic ?? DEFAULT_GRPC
  return `${(generic ?? DEFAULT_HTTP).replace(/\/+$/, "")}/v1/logs`
}

/** Reads the logs configuration from the current `ConfigProvider`. */
export const loadLogs: Effect.Effect<LogsConfig, TelemetryConfigError> = Effect.gen(function*() {
  const exporters = yield* exporterList("OTEL_LOGS_EXPORTER")
  const protocol = (yield* optional(OtlpProtocol, "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL")) ??
    (yield* withDefault(OtlpProtocol, "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))
  const endpoint = logsEndpoint(
    protocol,
    yield* endpointVar("OTEL_EXPORTER_OTLP_ENDPOINT"),
    yield* endpointVar("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
  )
  const headers = {
    ...(yield* keyValues("OTEL_EXPORTER_OTLP_HEADERS")),
    ...(yield* keyValues("OTEL_EXPORTER_OTLP_LOGS_HEADERS"))
  }
  const timeoutMillis = (yield* optional(PositiveInt, "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT")) ??
    (yield* withDefault(PositiveInt, "OTEL_EXPORTER_OTLP_TIMEOUT", 10_000))
  return {
    exporters,
    otlp: { protocol, endpoint, headers, timeoutMillis },
    batch: yield* batchConfig("BLRP", 1000, 2048)
  } satisfies LogsConfig
})
