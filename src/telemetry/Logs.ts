/**
 * Log records the probes emit (`LogData`) as OpenTelemetry log records: the exporters the logs pipeline drives (OTLP
 * over http/protobuf, http/json or grpc, encoded and sent by probescope itself; the console as one line per record;
 * test doubles), and the conversion to the `ReadableLogRecord` shape they take. Batching, retries and
 * accounting are the shared `Batcher`'s, as for spans.
 */
import type { Attributes as OtelAttributes } from "@opentelemetry/api"
import type { Resource } from "@opentelemetry/resources"
import type { ReadableLogRecord } from "@opentelemetry/sdk-logs"
import { Effect } from "effect"
import * as Ids from "../probe/Ids.ts"
import { type LogData, severityNumber } from "../probe/Telemetry.ts"
import type { Exporter } from "./Exporter.ts"
import { nsToHrTime } from "./internal/clockMath.ts"
import * as Client from "./internal/otlp/client.ts"
import { makeLogsEncoder } from "./internal/otlp/logs.ts"
import { scopeOf } from "./internal/scope.ts"
import type { OtlpConfig } from "./TelemetryConfig.ts"

export type { ReadableLogRecord } from "@opentelemetry/sdk-logs"

/** Something that ships batches of log records. */
export type LogExporter = Exporter<ReadableLogRecord>

const SEVERITY_TEXT = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO",
  warn: "WARN",
  error: "ERROR",
  fatal: "FATAL"
} as const

/**
 * Builds an exported log record. `toEpochNs` maps the kernel monotonic time; the observed time is the same moment (the
 * probe saw it happen). The ids become the record's span context only when both are present.
 */
export const toReadableLogRecord = (
  log: LogData,
  resource: Resource,
  scopeVersion: string,
  toEpochNs: (monoNs: bigint) => bigint
): ReadableLogRecord => {
  const time = nsToHrTime(toEpochNs(log.timeMonoNs))
  return {
    hrTime: time,
    hrTimeObserved: time,
    ...(log.traceId !== undefined && log.spanId !== undefined ?
      {
        spanContext: {
          traceId: Ids.hex(log.traceId),
          spanId: Ids.hex(log.spanId),
          traceFlags: log.traceFlags ?? 0
        }
      } :
      {}),
    severityNumber: severityNumber[log.severity],
    severityText: SEVERITY_TEXT[log.severity],
    body: log.body,
    resource,
    instrumentationScope: scopeOf(log.probe, scopeVersion),
    attributes: { ...log.attributes } as OtelAttributes,
    droppedAttributesCount: 0
  }
}

/**
 * The OTLP log exporter for the configured protocol (`config.endpoint` is the logs URL for http, the server for grpc):
 * each batch encoded by probescope's own encoder (internal/otlp/logs.ts) into one request, sent over the spans'
 * transport (internal/otlp/client.ts). None of the OpenTelemetry SDK's log exporters or protobufjs is loaded.
 * Connects at the first export.
 */
export const otlp = (config: OtlpConfig): LogExporter => {
  const encoder = makeLogsEncoder()
  const encode = config.protocol === "http/json" ? encoder.json : encoder.protobuf
  const client = Client.make(config, "logs")
  return {
    name: "otlp",
    endpoint: config.endpoint,
    export: (records) => records.length === 0 ? Effect.void : Effect.suspend(() => client.send(encode(records))),
    shutdown: Effect.sync(client.close)
  }
}

const hrToIso = (t: readonly [number, number]) =>
  new Date(t[0] * 1000 + Math.floor(t[1] / 1e6)).toISOString()

const attributeText = (attributes: OtelAttributes) =>
  Object.entries(attributes).map(([k, v]) => ` ${k}=${typeof v === "string" ? JSON.stringify(v) : String(v)}`).join(
    ""
  )

/**
 * One line per record: time, severity, service and pid, the body, its attributes, and the trace and span ids when
 * it happened inside a span, e.g.
 * `2026-11-26T13:20:00.123Z ERROR shop pid=4242 panic: boom exception.type="string" trace=4bf9…36 span=00f0…b7`.
 */
export const formatLine = (record: ReadableLogRecord): string => {
  const r = record.resource.attributes
  const service = String(r["service.name"] ?? "")
  const pid = r["process.pid"] === undefined ? "" : ` pid=${String(r["process.pid"])}`
  const ids = record.spanContext === undefined ?
    "" :
    ` trace=${record.spanContext.traceId} span=${record.spanContext.spanId}`
  const body = typeof record.body === "string" ? record.body : JSON.stringify(record.body ?? "")
  return `${hrToIso(record.hrTime)} ${record.severityText ?? ""} ${service}${pid} ${body}` +
    `${attributeText(record.attributes as OtelAttributes)}${ids}\n`
}

/** Prints each batch through `write` (stdout by default), one line per record. Never fails. */
export const console = (
  write: (text: string) => void = (text) => void process.stdout.write(text)
): LogExporter => ({
  name: "console",
  endpoint: "stdout",
  export: (records) =>
    Effect.sync(() => {
      if (records.length > 0) write(records.map(formatLine).join(""))
    }),
  shutdown: Effect.void
})

/** Keeps every exported batch in memory (tests). */
export const memory = (): LogExporter & { readonly batches: Array<ReadonlyArray<ReadableLogRecord>> } => {
  const batches: Array<ReadonlyArray<ReadableLogRecord>> = []
  return {
    name: "memory",
    endpoint: "memory",
    batches,
    export: (records) => Effect.sync(() => void batches.push(records)),
    shutdown: Effect.void
  }
}
