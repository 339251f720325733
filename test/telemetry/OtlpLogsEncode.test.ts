/**
 * The direct OTLP logs encoder (src/telemetry/internal/otlp/logs.ts) against the official protos and the
 * OpenTelemetry JS SDK: log records as the logs pipeline builds them (Logs.toReadableLogRecord), of two processes and
 * two probes, with and without a span, with bodies and attributes of every kind, encode to a request that decodes,
 * with opentelemetry-proto's own definitions, to exactly what the SDK's serializer writes for the same records; its
 * OTLP/JSON says the same as the SDK's JSON.
 */
import { assert, describe, it } from "@effect/vitest"
import { JsonLogsSerializer, ProtobufLogsSerializer } from "@opentelemetry/otlp-transformer"
import { resourceFromAttributes } from "@opentelemetry/resources"
import type { ReadableLogRecord } from "@opentelemetry/sdk-logs"
import type { LogData } from "../../src/probe/Telemetry.ts"
import { makeLogsEncoder } from "../../src/telemetry/internal/otlp/logs.ts"
import { toReadableLogRecord } from "../../src/telemetry/Logs.ts"
import { comparableJson, decodeLogsRequest } from "./otlp-proto/decode.ts"

const OFFSET = 1_700_000_000_000_000_000n
const toEpoch = (ns: bigint) => ns + OFFSET

const shop = resourceFromAttributes({ "service.name": "shop", "process.pid": 4242, "process.command_args": ["a", "b"] })
const worker = resourceFromAttributes({ "service.name": "wörker", "process.pid": 7 })

const panic: LogData = {
  pid: 4242,
  probe: "go_panic",
  timeMonoNs: 5_000_000_123n,
  severity: "fatal",
  body: "panic: boom ✓",
  attributes: { "exception.type": "string", "exception.message": "boom", "goroutine": 17, "recovered": false },
  traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  spanId: "00f067aa0ba902b7",
  traceFlags: 1
}

const { spanId: _s, traceFlags: _f, traceId: _t, ...outsideSpans } = panic

/** Records of two resources and, within the first, two scopes, in an interleaved order. */
const records: ReadonlyArray<ReadableLogRecord> = [
  toReadableLogRecord(panic, shop, "1.2.3", toEpoch),
  toReadableLogRecord(
    { ...outsideSpans, probe: "other", severity: "info", body: "no span", attributes: {} },
    shop,
    "1.2.3",
    toEpoch
  ),
  toReadableLogRecord(
    { ...panic, pid: 7, timeMonoNs: 6_000_000_000n, severity: "warn", traceFlags: 0 },
    worker,
    "1.2.3",
    toEpoch
  ),
  toReadableLogRecord(
    { ...panic, timeMonoNs: 7_000_000_000n, severity: "error", body: "again" },
    shop,
    "1.2.3",
    toEpoch
  )
]


describe("direct OTLP logs encoding", () => {
  const encoder = makeLogsEncoder()

  it("protobuf decodes with the official protos to exactly what the SDK's serializer writes", () => {
    const mine = decodeLogsRequest(encoder.protobuf(records))
    const sdk = decodeLogsRequest(ProtobufLogsSerializer.serializeRequest([...records])!)
    assert.deepStrictEqual(mine, sdk)
    // Not vacuous: grouped by resource, then scope; ids, severity and times where they belong.
    const rl = mine["resourceLogs"]
    assert.strictEqual(rl.length, 2)
    assert.deepStrictEqual(rl[0].scopeLogs.map((s: any) => [s.scope.name, s.logRecords.length]), [
      ["probescope/go_panic", 2],
      ["probescope/other", 1]
    ])
    const first = rl[0].scopeLogs[0].logRecords[0]
    assert.strictEqual(Buffer.from(first.traceId, "base64").toString("hex"), panic.traceId)
    assert.strictEqual(Buffer.from(first.spanId, "base64").toString("hex"), panic.spanId)
    assert.deepStrictEqual([first.severityNumber, first.severityText, first.flags], [21, "FATAL", 1])
    assert.strictEqual(first.timeUnixNano, String(toEpoch(panic.timeMonoNs)))
    assert.strictEqual(first.body.stringValue, "panic: boom ✓")
    const noSpan = rl[0].scopeLogs[1].logRecords[0]
    assert.deepStrictEqual([noSpan.traceId, noSpan.spanId, noSpan.flags], ["", "", 0])
  })

  it("OTLP/JSON says what the SDK's JSON says", () => {
    const mine = comparableJson(JSON.parse(encoder.json(records).toString("utf8")))
    const sdkJson = Buffer.from(JsonLogsSerializer.serializeRequest([...records])!).toString("utf8")
    const sdk = comparableJson(JSON.parse(sdkJson))
    assert.deepStrictEqual(mine, sdk)
    const record = (mine as any).resourceLogs[0].scopeLogs[0].logRecords[0]
    assert.strictEqual(record.traceId, panic.traceId)
  })

  it("an empty batch is a request with no resource", () => {
    assert.deepStrictEqual(decodeLogsRequest(encoder.protobuf([])), { resourceLogs: [] })
    assert.deepStrictEqual(JSON.parse(encoder.json([]).toString()), { resourceLogs: [] })
  })
})
