/**
 * The export stage's CPU per span, the way the agent pays it today against the direct OTLP exporter: SpanData →
 * ReadableSpan (readableSpan.ts) → the OpenTelemetry JS SDK's serializer / OTLP exporter, versus SpanData →
 * `OtlpSpan` → our own encoder (src/telemetry/internal/otlp) / `OtlpExporter`. Batches of 512 realistic HTTP spans
 * (10 attributes, 8 processes, 2 probes). Encode only; encode + send to a sink in a child process (its CPU is not
 * counted) that decodes and counts the spans it got, over http/protobuf, http/json and grpc; and the whole stage as
 * the agent runs it, the conversion per span and a `Batcher` driving the exporter (the SDK side is `Exporter.otlp`;
 * the direct side is `OtlpExporter`'s encoding queue, as Telemetry.ts wires it). CPU is this process's `process.cpuUsage()` (user + system, every thread: GC, zlib,
 * libuv included). No kernel, no root. On a busy machine the figures swing: compare the two columns of one run.
 *
 *   node_modules/.bin/node bench/export.ts [batches per round, default 200]
 */
import { ProtobufTraceSerializer, JsonTraceSerializer } from "@opentelemetry/otlp-transformer"
import { resourceFromAttributes } from "@opentelemetry/resources"
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base"
import { Effect, Exit, Scope } from "effect"
import type { SpanData } from "../src/probe/Telemetry.ts"
import * as Batcher from "../src/telemetry/Batcher.ts"
import * as Exporter from "../src/telemetry/Exporter.ts"
import { makeTraceEncoder, type OtlpSpan } from "../src/telemetry/internal/otlp/traces.ts"
import { toReadableSpan } from "../src/telemetry/internal/readableSpan.ts"
import * as OtlpExporter from "../src/telemetry/OtlpExporter.ts"
import * as ProcessResources from "../src/telemetry/ProcessResources.ts"
import * as Sink from "./internal/sink.ts"

const BATCH = 512

// ---------------------------------------------------------------------------------------------------------------
// The bench.

const hex = (bytes: number) => {
  let s = ""
  for (let i = 0; i < bytes; i++) s += Math.floor(Math.random() * 256).toString(16).padStart(2, "0")
  return s
}

const PROCESSES = 8
const OFFSET = 1_700_000_000_000_000_000n

/** What the HTTP probes emit: server spans with a remote parent, client spans with a local one. */
const spans: ReadonlyArray<SpanData> = Array.from({ length: 4 * BATCH }, (_, i) => {
  const server = i % 3 !== 0
  const status = [200, 200, 200, 201, 404, 500][i % 6]!
  return {
    pid: 1000 + (i % PROCESSES),
    probe: server ? "nethttp_server" : "nethttp_client",
    traceId: hex(16),
    spanId: hex(8),
    parentSpanId: hex(8),
    parentIsRemote: server,
    traceFlags: 1,
    name: server ? `GET /api/r${i % 20}/{id}` : "GET",
    kind: server ? "server" : "client",
    startMonoNs: 1_000_000_000n + BigInt(i) * 1000n,
    endMonoNs: 1_000_000_000n + BigInt(i) * 1000n + BigInt(100_000 + i * 37),
    attributes: {
      "http.request.method": "GET",
      "url.path": `/api/r${i % 20}/${i}`,
      "url.scheme": "http",
      "http.route": `/api/r${i % 20}/{id}`,
      "http.response.status_code": status,
      "server.address": "localhost",
      "server.port": 8080,
      "network.peer.address": "127.0.0.1",
      "network.peer.port": 40000 + (i % 20000),
      "network.protocol.version": "1.1"
    },
    status: status >= 500 ? { code: "error", message: `HTTP ${status}` } : { code: "unset" }
  }
})

const resources = Array.from({ length: PROCESSES }, (_, i) =>
  resourceFromAttributes({
    "service.name": `svc-${i}`,
    "process.pid": 1000 + i,
    "process.executable.path": `/srv/bin/svc-${i}`,
    "process.executable.name": `svc-${i}`,
    "process.runtime.name": "go",
    "process.runtime.version": "1.26.0",
    "telemetry.distro.name": "probescope",
    "telemetry.distro.version": ProcessResources.version
  }))

const batches = Array.from({ length: 4 }, (_, b) => spans.slice(b * BATCH, (b + 1) * BATCH))
const toEpochNs = (ns: bigint) => ns + OFFSET

/** What the agent does per span before the SDK exporter: build the ReadableSpan. */
const readable = (batch: ReadonlyArray<SpanData>): Array<ReadableSpan> =>
  batch.map((d) => toReadableSpan(d, resources[d.pid - 1000]!, ProcessResources.version, toEpochNs))

/** What the agent does per span before the direct exporter: the item. */
const direct = (batch: ReadonlyArray<SpanData>): Array<OtlpSpan> =>
  batch.map((d) => OtlpExporter.span(d, resources[d.pid - 1000]!, OFFSET))

const cpuMicros = () => {
  const u = process.cpuUsage()
  return u.user + u.system
}

const ROUNDS = 5

/** CPU µs per span: the median of ROUNDS rounds of `count` batches, after a warm-up round. */
const measure = async (count: number, run: (batch: ReadonlyArray<SpanData>) => unknown | Promise<unknown>) => {
  const samples: Array<number> = []
  for (let round = 0; round <= ROUNDS; round++) {
    const c0 = cpuMicros()
    for (let i = 0; i < count; i++) await run(batches[i & 3]!)
    const perSpan = (cpuMicros() - c0) / (count * BATCH)
    if (round > 0) samples.push(perSpan)
  }
  return samples.sort((a, b) => a - b)[Math.floor(samples.length / 2)]!
}

/** Fewer batches for the rows that send: a request's round trip takes wall time (not CPU) the encode rows do not. */
const sendBatches = (count: number) => Math.max(10, Math.floor(count / 4))

const sdkExport = (exporter: SpanExporter, spans: Array<ReadableSpan>) =>
  new Promise<void>((resolve, reject) =>
    exporter.export(spans, (r) => r.code === 0 ? resolve() : reject(r.error ?? new Error("export failed")))
  )

const main = async () => {
  const count = Number(process.argv[2] ?? 200)
  const sink = await Sink.start()
  const sinkCount = sink.spans
  const httpUrl = `${sink.httpUrl}/v1/traces`
  const grpcUrl = sink.grpcUrl

  const encoder = makeTraceEncoder(ProcessResources.version)
  let bytes = 0
  const rows: Array<[string, number, number]> = []
  const row = async (
    name: string,
    sdk: (b: ReadonlyArray<SpanData>) => unknown,
    ours: (b: ReadonlyArray<SpanData>) => unknown,
    n = count
  ) => {
    rows.push([name, await measure(n, sdk), await measure(n, ours)])
  }

  await row(
    "encode http/protobuf",
    (b) => (bytes += ProtobufTraceSerializer.serializeRequest(readable(b))!.length),
    (b) => (bytes += encoder.protobuf(direct(b)).length)
  )
  await row(
    "encode http/json",
    (b) => (bytes += JsonTraceSerializer.serializeRequest(readable(b))!.length),
    (b) => (bytes += encoder.json(direct(b)).length)
  )

  const before = await sinkCount()
  let sent = 0
  const protocols = [
    ["http/protobuf", "@opentelemetry/exporter-trace-otlp-proto", httpUrl],
    ["http/json", "@opentelemetry/exporter-trace-otlp-http", httpUrl],
    ["grpc", "@opentelemetry/exporter-trace-otlp-grpc", grpcUrl]
  ] as const
  for (const [protocol, module, url] of protocols) {
    const { OTLPTraceExporter } = await import(module)
    const sdk: SpanExporter = new OTLPTraceExporter({ url, timeoutMillis: 10_000 })
    const ours = OtlpExporter.make({ protocol, endpoint: url, headers: {}, timeoutMillis: 10_000 })
    const n = sendBatches(count)
    await row(`encode + send ${protocol}`, async (b) => {
      sent += b.length
      await sdkExport(sdk, readable(b))
    }, async (b) => {
      sent += b.length
      await Effect.runPromise(ours.export(direct(b)))
    }, n)
    await sdk.shutdown()
    await Effect.runPromise(ours.shutdown)
  }
  // The whole export stage as the agent runs it: per span the conversion and the batcher's offer, per batch the
  // batcher's export (the SDK path through Exporter.otlp; the direct one encoding each span as it is offered).
  // Batches of 512 (the specification's default, and probescope's before) and of 2048 (its default now): spans are
  // offered 512 at a time either way, so both see the same traffic and only the requests differ.
  const PER_FLUSH = 4
  for (const protocol of ["http/protobuf", "grpc"] as const) {
    for (const batchSize of [BATCH, PER_FLUSH * BATCH]) {
      const url = protocol === "grpc" ? grpcUrl : httpUrl
      const config = { protocol, endpoint: url, headers: {}, timeoutMillis: 10_000 }
      const batchConfig = {
        maxQueueSize: 4 * PER_FLUSH * BATCH,
        maxExportBatchSize: batchSize,
        scheduleDelayMillis: 60_000,
        exportTimeoutMillis: 10_000,
        maxRetries: 0,
        retryBaseMillis: 10
      }
      const scope = Effect.runSync(Scope.make())
      const sdk = await Effect.runPromise(Scope.provide(Batcher.make(Exporter.otlp(config), batchConfig), scope))
      // As Telemetry.ts wires the direct exporter: its queue encodes each span as it is offered.
      const direct = OtlpExporter.make(config)
      const ours = await Effect.runPromise(
        Scope.provide(
          Batcher.makeWith(
            { name: direct.name, endpoint: direct.endpoint, export: direct.sendEncoded, shutdown: direct.shutdown },
            direct.queue(batchConfig.maxExportBatchSize),
            batchConfig
          ),
          scope
        )
      )
      // A flush per batch's worth of spans: one request each time, and never more than one in flight besides the
      // worker's (the SDK exporters refuse a third).
      const drive = <A>(batcher: Batcher.Batcher<A>, convert: (d: SpanData) => A) => {
        let calls = 0
        return async (b: ReadonlyArray<SpanData>) => {
          sent += b.length
          for (let i = 0; i < b.length; i++) batcher.offer(convert(b[i]!))
          if (++calls % (batchSize / BATCH) === 0) await Effect.runPromise(batcher.flush)
        }
      }
      await row(
        `batcher ${batchSize} + ${protocol}`,
        drive(sdk, (d) => toReadableSpan(d, resources[d.pid - 1000]!, ProcessResources.version, toEpochNs)),
        drive(ours, (d) => OtlpExporter.span(d, resources[d.pid - 1000]!, OFFSET)),
        Math.ceil(sendBatches(count) / PER_FLUSH) * PER_FLUSH
      )
      const stats = await Effect.runPromise(Effect.all([sdk.stats, ours.stats]))
      for (const st of stats) {
        if (st.exported !== st.sent) throw new Error(`${protocol}: ${JSON.stringify({ ...st, lastError: undefined })}`)
      }
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }

  const received = (await sinkCount()) - before
  sink.stop()

  console.log(
    `export: batches of ${BATCH} HTTP spans (10 attributes, ${PROCESSES} processes, 2 probes), CPU per span ` +
      `(median of ${ROUNDS} rounds; encode rows ${count} batches/round, send rows ${sendBatches(count)})`
  )
  const header = ["SDK µs/span".padStart(12), "direct µs/span".padStart(15), "SDK/direct".padStart(11)]
  console.log(`${"stage".padEnd(30)} ${header.join(" ")}`)
  for (const [name, sdk, ours] of rows) {
    console.log(
      `${name.padEnd(30)} ${sdk.toFixed(2).padStart(12)} ${ours.toFixed(2).padStart(15)} ${
        (sdk / ours).toFixed(1).padStart(10)
      }x`
    )
  }
  console.log(`sink: ${received} of ${sent} spans sent arrived and were counted`)
  if (received !== sent) {
    console.error(`export: the sink counted ${received} spans, ${sent} were sent`)
    process.exitCode = 1
  }
  if (bytes === 0.5) console.log("(unreachable: keeps the encodes from being optimised away)")
}

await main()
