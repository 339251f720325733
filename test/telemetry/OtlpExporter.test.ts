/**
 * The direct OTLP exporter's transport against local servers: what it sends (URL, headers, body, gzip, keep-alive,
 * the gRPC framing and metadata) and how every failure becomes a typed `ExportError` — refused connection, HTTP 400
 * (permanent), 429/503 (retryable), gRPC statuses, no answer in time, interruption.
 */
import { assert, describe, it } from "@effect/vitest"
import { ValueType } from "@opentelemetry/api"
import { resourceFromAttributes } from "@opentelemetry/resources"
import { AggregationTemporality, DataPointType, type ResourceMetrics } from "@opentelemetry/sdk-metrics"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as http2 from "node:http2"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import type { TLSSocket } from "node:tls"
import * as zlib from "node:zlib"
import { ConfigProvider, Effect, Exit, Logger } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as Instruments from "../../src/probe/Instruments.ts"
import { type SpanData, TelemetrySink } from "../../src/probe/Telemetry.ts"
import * as Batcher from "../../src/telemetry/Batcher.ts"
import { ExportError } from "../../src/telemetry/Exporter.ts"
import * as Logs from "../../src/telemetry/Logs.ts"
import * as Metrics from "../../src/telemetry/Metrics.ts"
import * as OtlpExporter from "../../src/telemetry/OtlpExporter.ts"
import * as ProcessResources from "../../src/telemetry/ProcessResources.ts"
import * as Telemetry from "../../src/telemetry/Telemetry.ts"
import type * as TelemetryConfig from "../../src/telemetry/TelemetryConfig.ts"
import { TelemetryConfigError } from "../../src/telemetry/TelemetryConfig.ts"

import { decodeLogsRequest, decodeMetricsRequest, flatSpans } from "./otlp-proto/decode.ts"

const OFFSET = 1_700_000_000_000_000_000n
const counter = Instruments.counter("shop.requests", { unit: "{request}", description: "Requests served." })

const resource = resourceFromAttributes({ "service.name": "users-api", "process.pid": 4242 })
const span: SpanData = {
  pid: 4242,
  probe: "net/http.server",
  traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  spanId: "00f067aa0ba902b7",
  parentSpanId: "b7ad6b7169203331",
  parentIsRemote: true,
  traceFlags: 1,
  name: "GET /users/{id}",
  kind: "server",
  startMonoNs: 1_000_000_123n,
  endMonoNs: 1_012_345_678n,
  attributes: { "http.request.method": "GET", "http.response.status_code": 200 },
  status: { code: "unset" }
}
const items = [
  OtlpExporter.span(span, resource, OFFSET),
  OtlpExporter.span({ ...span, spanId: "1111111111111111", name: "SELECT" }, resource, OFFSET)
]

interface Received {
  readonly method: string
  readonly url: string
  readonly headers: http.IncomingHttpHeaders
  readonly body: Buffer
  readonly remotePort: number
}

/** An HTTP server on a free loopback port for the test's scope; `reply` answers each request. */
const httpServer = (reply: (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void) =>
  Effect.acquireRelease(
    Effect.callback<
      { readonly url: string; readonly port: number; readonly received: Array<Received>; readonly server: http.Server }
    >(
      (resume) => {
        const received: Array<Received> = []
        const server = http.createServer((req, res) => {
          const chunks: Array<Buffer> = []
          req.on("data", (c: Buffer) => chunks.push(c))
          req.on("end", () => {
            const body = Buffer.concat(chunks)
            received.push({
              method: req.method ?? "",
              url: req.url ?? "",
              headers: req.headers,
              body,
              remotePort: req.socket.remotePort ?? 0
            })
            reply(req, res, body)
          })
        })
        server.listen(0, "127.0.0.1", () => {
          const port = (server.address() as AddressInfo).port
          resume(Effect.succeed({ url: `http://127.0.0.1:${port}/v1/traces`, port, received, server }))
        })
      }
    ),
    ({ server }) =>
      Effect.promise(() =>
        new Promise<void>((done) => {
          server.closeAllConnections()
          server.close(() => done())
        })
      )
  )

/** A port nothing listens on (one a server just had). */
const closedPort = Effect.callback<number>((resume) => {
  const server = http.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

const exporterFor = (config: Partial<OtlpExporter.OtlpExporterConfig> & { readonly endpoint: string }) =>
  Effect.acquireRelease(
    Effect.sync(() =>
      OtlpExporter.make({
        protocol: "http/protobuf",
        headers: {},
        timeoutMillis: 2000,
        ...config
      })
    ),
    (e) => e.shutdown
  )

/** The export's failure (the test fails if it succeeded). */
const failureOf = (effect: Effect.Effect<void, ExportError>) =>
  Effect.flatMap(Effect.exit(effect), (exit) => {
    if (Exit.isSuccess(exit)) return Effect.die(new Error("expected the export to fail"))
    const error = exit.cause.reasons.find((r) => r._tag === "Fail")
    return error === undefined ? Effect.die(new Error(`not a failure: ${exit.cause}`)) : Effect.succeed(error.error)
  })

/** A `google.rpc.Status` with a message (field 2), as an OTLP/HTTP server sends with a 400. */
const rpcStatus = (message: string) => {
  const text = Buffer.from(message)
  return Buffer.concat([Buffer.from([0x08, 0x03, 0x12, text.length]), text])
}

/** `n` spans, each its own span id. */
const distinct = (n: number) =>
  Array.from({ length: n }, (_, i) =>
    OtlpExporter.span({ ...span, spanId: (i + 1).toString(16).padStart(16, "0") }, resource, OFFSET))

/** Whether two bodies are views of the same memory. */
const sameMemory = (a: Uint8Array, b: Uint8Array) => a.buffer === b.buffer && a.byteOffset === b.byteOffset

/**
 * Three requests of two spans through an exporter's encoding queue, as the Batcher sends them: the second is taken
 * once the first was sent and is done with, and must be in its memory; the third is taken while the second is still
 * held, and must not be. Returns the spans of each request, in order.
 */
const reuseRound = (exporter: OtlpExporter.OtlpExporter) =>
  Effect.gen(function*() {
    const spans = distinct(6)
    const queue = exporter.queue(2)
    for (const item of spans) queue.push(item)
    const first = queue.take(2)!
    yield* exporter.sendEncoded(first)
    queue.done!(first)
    const second = queue.take(2)!
    assert.isTrue(sameMemory(second.body, first.body), "the second request is written where the first was")
    const third = queue.take(2)!
    assert.isFalse(sameMemory(third.body, second.body), "not while the second is held")
    yield* exporter.sendEncoded(second)
    yield* exporter.sendEncoded(third)
    queue.done!(second)
    queue.done!(third)
    return [spans.slice(0, 2), spans.slice(2, 4), spans.slice(4)]
  })

describe("OtlpExporter over HTTP", () => {
  it.live("http/protobuf: POSTs the encoded batch with the configured headers over one kept-alive connection", () =>
    Effect.gen(function*() {
      const server = yield* httpServer((_req, res) => res.writeHead(200).end())
      const exporter = yield* exporterFor({ endpoint: server.url, headers: { "x-api-key": "s3cr3t", "x-a": "b c" } })
      yield* exporter.export(items)
      yield* exporter.export(items.slice(0, 1))
      assert.strictEqual(server.received.length, 2)
      const [first, second] = server.received
      assert.strictEqual(first!.method, "POST")
      assert.strictEqual(first!.url, "/v1/traces")
      assert.strictEqual(first!.headers["content-type"], "application/x-protobuf")
      assert.strictEqual(first!.headers["x-api-key"], "s3cr3t")
      assert.strictEqual(first!.headers["x-a"], "b c")
      assert.strictEqual(first!.headers["user-agent"], `probescope/${ProcessResources.version}`)
      assert.strictEqual(first!.headers["content-length"], String(first!.body.length))
      assert.isUndefined(first!.headers["content-encoding"])
      assert.isTrue(first!.body.equals(exporter.encode(items)))
      assert.deepStrictEqual(flatSpans(first!.body).map((s) => s.span["spanId"]), [span.spanId, "1111111111111111"])
      assert.strictEqual(first!.headers["connection"], "keep-alive")
      assert.strictEqual(second!.remotePort, first!.remotePort, "the second batch reused the connection")
    }))

  it.live("http/json: the OTLP/JSON body with its content type", () =>
    Effect.gen(function*() {
      const server = yield* httpServer((_req, res) =>
        res.writeHead(200, { "content-type": "application/json" }).end("{}")
      )
      const exporter = yield* exporterFor({ endpoint: server.url, protocol: "http/json" })
      yield* exporter.export(items)
      const got = server.received[0]!
      assert.strictEqual(got.headers["content-type"], "application/json")
      const json = JSON.parse(got.body.toString("utf8"))
      assert.deepStrictEqual(
        json.resourceSpans[0].scopeSpans[0].spans.map((s: any) => [s.spanId, s.startTimeUnixNano]),
        [[span.spanId, String(span.startMonoNs + OFFSET)], ["1111111111111111", String(span.startMonoNs + OFFSET)]]
      )
    }))

  it.live("gzip (OTEL_EXPORTER_OTLP_COMPRESSION=gzip): Content-Encoding gzip, the body compressed", () =>
    Effect.gen(function*() {
      const server = yield* httpServer((_req, res) => res.writeHead(200).end())
      const exporter = yield* exporterFor({ endpoint: server.url, compression: "gzip" })
      yield* exporter.export(items)
      const got = server.received[0]!
      assert.strictEqual(got.headers["content-encoding"], "gzip")
      assert.isTrue(zlib.gunzipSync(got.body).equals(exporter.encode(items)))
    }))

  it.live("an empty batch sends nothing", () =>
    Effect.gen(function*() {
      const server = yield* httpServer((_req, res) => res.writeHead(200).end())
      const exporter = yield* exporterFor({ endpoint: server.url })
      yield* exporter.export([])
      assert.strictEqual(server.received.length, 0)
    }))

  it.live("a 2xx with a partial success is a success (the server will not take those spans on a retry either)", () =>
    Effect.gen(function*() {
      const message = Buffer.from("2 spans too old")
      const partial = Buffer.concat([Buffer.from([0x08, 0x02, 0x12, message.length]), message])
      const reply = Buffer.concat([Buffer.from([0x0a, partial.length]), partial])
      const server = yield* httpServer((_req, res) =>
        res.writeHead(200, { "content-type": "application/x-protobuf" }).end(reply)
      )
      const exporter = yield* exporterFor({ endpoint: server.url })
      yield* exporter.export(items)
      assert.strictEqual(server.received.length, 1)
    }))

  it.live("collector down: ECONNREFUSED is a retryable ExportError naming the endpoint", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const endpoint = `http://127.0.0.1:${port}/v1/traces`
      const exporter = yield* exporterFor({ endpoint })
      const error = yield* failureOf(exporter.export(items))
      assert.strictEqual(error._tag, "ExportError")
      assert.strictEqual(error.exporter, "otlp")
      assert.strictEqual(error.endpoint, endpoint)
      assert.strictEqual(error.message, `export to ${endpoint} failed: connect ECONNREFUSED 127.0.0.1:${port}`)
      assert.isTrue(OtlpExporter.isRetryable(error))
    }))

  it.live("HTTP 400: a permanent failure with the server's Status message", () =>
    Effect.gen(function*() {
      const server = yield* httpServer((_req, res) =>
        res.writeHead(400, { "content-type": "application/x-protobuf" }).end(rpcStatus("invalid span id length"))
      )
      const exporter = yield* exporterFor({ endpoint: server.url })
      const error = yield* failureOf(exporter.export(items))
      assert.strictEqual(
        error.message,
        `export to ${server.url} failed: HTTP 400 Bad Request: invalid span id length (not retried)`
      )
      assert.isFalse(OtlpExporter.isRetryable(error))
      assert.instanceOf(error.cause, OtlpExporter.OtlpFailure)
      assert.strictEqual((error.cause as OtlpExporter.OtlpFailure).status, 400)
    }))

  it.live("HTTP 503 and 429 are retryable; 500 is not (OTLP/HTTP's list); a JSON error body gives its message", () =>
    Effect.gen(function*() {
      const statuses = [503, 429, 500]
      let n = 0
      const server = yield* httpServer((_req, res) =>
        res.writeHead(statuses[n++]!, { "content-type": "application/json" }).end(`{"code":14,"message":"busy"}`)
      )
      const exporter = yield* exporterFor({ endpoint: server.url, protocol: "http/json" })
      const unavailable = yield* failureOf(exporter.export(items))
      assert.strictEqual(unavailable.message, `export to ${server.url} failed: HTTP 503 Service Unavailable: busy`)
      assert.isTrue(OtlpExporter.isRetryable(unavailable))
      const tooMany = yield* failureOf(exporter.export(items))
      assert.strictEqual(tooMany.message, `export to ${server.url} failed: HTTP 429 Too Many Requests: busy`)
      assert.isTrue(OtlpExporter.isRetryable(tooMany))
      const internal = yield* failureOf(exporter.export(items))
      assert.strictEqual(
        internal.message,
        `export to ${server.url} failed: HTTP 500 Internal Server Error: busy (not retried)`
      )
      assert.isFalse(OtlpExporter.isRetryable(internal))
    }))

  it.live("no answer within the timeout: a retryable ExportError saying so", () =>
    Effect.gen(function*() {
      const server = yield* httpServer(() => {}) // accepts, reads, never answers
      const exporter = yield* exporterFor({ endpoint: server.url, timeoutMillis: 300 })
      const started = Date.now()
      const error = yield* failureOf(exporter.export(items))
      const elapsed = Date.now() - started
      assert.strictEqual(error.message, `export to ${server.url} timed out after 300 ms`)
      assert.isTrue(OtlpExporter.isRetryable(error))
      assert.isAtLeast(elapsed, 290)
      assert.isBelow(elapsed, 2000)
    }))

  it.live("a header Node refuses (OTEL_EXPORTER_OTLP_HEADERS) is a permanent ExportError, not a crash", () =>
    Effect.gen(function*() {
      const server = yield* httpServer((_req, res) => res.writeHead(200).end())
      const exporter = yield* exporterFor({ endpoint: server.url, headers: { "x-token": "line\nbreak" } })
      const error = yield* failureOf(exporter.export(items))
      assert.strictEqual(
        error.message,
        `export to ${server.url} failed: Invalid character in header content ["x-token"]`
      )
      assert.isFalse(OtlpExporter.isRetryable(error))
      assert.strictEqual(server.received.length, 0)
    }))

  it.live("interrupting an export abandons its request", () =>
    Effect.gen(function*() {
      let closed = 0
      const server = yield* httpServer((req) => req.socket.on("close", () => void closed++))
      const exporter = yield* exporterFor({ endpoint: server.url, timeoutMillis: 10_000 })
      const outcome = yield* exporter.export(items).pipe(Effect.timeoutOption("200 millis"))
      assert.strictEqual(outcome._tag, "None")
      yield* Effect.sleep("100 millis")
      assert.strictEqual(server.received.length, 1)
      assert.strictEqual(closed, 1, "the connection of the abandoned request was closed")
    }))

  it.live("driven by the Batcher: spans offered one by one arrive in one request, counted as exported", () =>
    Effect.gen(function*() {
      const server = yield* httpServer((_req, res) => res.writeHead(200).end())
      const exporter = yield* exporterFor({ endpoint: server.url })
      const batcher = yield* Batcher.make(exporter, {
        maxQueueSize: 100,
        maxExportBatchSize: 10,
        scheduleDelayMillis: 60_000,
        exportTimeoutMillis: 5000,
        maxRetries: 0,
        retryBaseMillis: 10
      })
      for (const item of items) batcher.offer(item)
      yield* batcher.flush
      const stats = yield* batcher.stats
      assert.strictEqual(stats.exported, 2)
      assert.strictEqual(server.received.length, 1)
      assert.strictEqual(flatSpans(server.received[0]!.body).length, 2)
    }))

  it.live("its encoding queue, driven by the Batcher: requests of at most the batch size, each the batch's encoding", () =>
    Effect.gen(function*() {
      let failFirst = true
      const server = yield* httpServer((_req, res) => {
        // The first request is refused once (retryable): the retry must send the same bytes.
        if (failFirst) {
          failFirst = false
          return res.writeHead(503).end()
        }
        res.writeHead(200).end()
      })
      const exporter = yield* exporterFor({ endpoint: server.url })
      // Two processes, interleaved: each request groups its spans by resource.
      const other = resourceFromAttributes({ "service.name": "worker", "process.pid": 7 })
      const many = Array.from({ length: 25 }, (_, i) =>
        OtlpExporter.span(
          { ...span, spanId: (i + 1).toString(16).padStart(16, "0"), pid: i % 2 },
          i % 2 === 0 ? resource : other,
          OFFSET
        ))
      const queue = exporter.queue(10)
      const batcher = yield* Batcher.makeWith(
        { name: "otlp", endpoint: server.url, export: exporter.sendEncoded, shutdown: exporter.shutdown },
        queue,
        {
          maxQueueSize: 100,
          maxExportBatchSize: 10,
          scheduleDelayMillis: 60_000,
          exportTimeoutMillis: 5000,
          maxRetries: 1,
          retryBaseMillis: 10
        }
      )
      for (const item of many) batcher.offer(item)
      assert.strictEqual(queue.size(), 25)
      // The worker ships the two full requests (with its retries; a flush would try once), then the flush the rest.
      const twoFull = Effect.suspend(function loop(): Effect.Effect<void> {
        return Effect.flatMap(batcher.stats, (st) =>
          st.exported >= 20 ? Effect.void : Effect.andThen(Effect.sleep("5 millis"), Effect.suspend(loop)))
      })
      yield* twoFull.pipe(Effect.timeout("5 seconds"))
      yield* batcher.flush
      const stats = yield* batcher.stats
      assert.deepStrictEqual([stats.exported, stats.failed, stats.failedAttempts, stats.queued], [25, 0, 1, 0])
      const bodies = server.received.map((r) => r.body)
      assert.strictEqual(bodies.length, 4, "three requests, the first one twice")
      assert.isTrue(bodies[0]!.equals(bodies[1]!), "the retry sent the same bytes")
      assert.isTrue(bodies[1]!.equals(exporter.encode(many.slice(0, 10))))
      assert.isTrue(bodies[2]!.equals(exporter.encode(many.slice(10, 20))))
      assert.isTrue(bodies[3]!.equals(exporter.encode(many.slice(20))))
    }))

  it.live("its encoding queue writes a request into the last one's memory once that was sent and is done with", () =>
    Effect.gen(function*() {
      const server = yield* httpServer((_req, res) => res.writeHead(200).end())
      for (const config of [{}, { protocol: "http/json" as const }, { compression: "gzip" as const }]) {
        const exporter = yield* exporterFor({ endpoint: server.url, ...config })
        const sent = yield* reuseRound(exporter)
        const bodies = server.received.splice(0).map((r) => config.compression ? zlib.gunzipSync(r.body) : r.body)
        assert.strictEqual(bodies.length, 3)
        // The first request's memory holds the second's bytes now: what the server got was read before that.
        for (let i = 0; i < 3; i++) assert.isTrue(bodies[i]!.equals(exporter.encode(sent[i]!)), `request ${i}`)
      }
    }))

  it.live("a request cut off before its body reached the socket keeps that memory out of reuse", () =>
    Effect.gen(function*() {
      const exporter = yield* exporterFor({ endpoint: `http://127.0.0.1:${yield* closedPort}/v1/traces` })
      const queue = exporter.queue(2)
      for (const item of distinct(4)) queue.push(item)
      const first = queue.take(2)!
      const error = yield* failureOf(exporter.sendEncoded(first))
      assert.match(error.message, /ECONNREFUSED/)
      // Whatever the request emits after its error (its close) has been emitted.
      yield* Effect.sleep("50 millis")
      queue.done!(first)
      assert.isFalse(sameMemory(queue.take(2)!.body, first.body), "a body never written is not handed out again")
    }))

  it("its encoding queue closes a request at MAX_REQUEST_BYTES, however few spans it holds", () => {
    const exporter = OtlpExporter.make({
      protocol: "http/protobuf",
      endpoint: "http://127.0.0.1:1/v1/traces",
      headers: {},
      timeoutMillis: 1000
    })
    const queue = exporter.queue(1000)
    // 100 KiB of attribute per span: a request reaches 2 MiB at its 21st span.
    const big = Array.from({ length: 30 }, (_, i) =>
      OtlpExporter.span(
        { ...span, spanId: (i + 1).toString(16).padStart(16, "0"), attributes: { "payload": "x".repeat(100 * 1024) } },
        resource,
        OFFSET
      ))
    for (const item of big.slice(0, 20)) queue.push(item)
    assert.isFalse(queue.full(1000), "20 spans: under both limits")
    queue.push(big[20]!)
    assert.isTrue(queue.full(1000), "past 2 MiB, the request is whole")
    for (const item of big.slice(21)) queue.push(item)
    const first = queue.take(1000)!
    assert.strictEqual(first.count, 21)
    assert.isAtLeast(first.body.length, OtlpExporter.MAX_REQUEST_BYTES)
    assert.isBelow(first.body.length, OtlpExporter.MAX_REQUEST_BYTES + 110 * 1024)
    assert.isTrue(Buffer.from(first.body).equals(exporter.encode(big.slice(0, 21))))
    assert.isFalse(queue.full(1000), "the other 9 spans are an open request")
    assert.strictEqual(queue.take(1000)!.count, 9)
  })

  it("its encoding queue holds at most MAX_QUEUE_BYTES of spans, and takes more once a request has left", () => {
    const exporter = OtlpExporter.make({
      protocol: "http/protobuf",
      endpoint: "http://127.0.0.1:1/v1/traces",
      headers: {},
      timeoutMillis: 1000
    })
    const queue = exporter.queue(1000)
    // 1 MiB of attribute per span: 16 fit, the 17th would pass 16 MiB.
    const huge = (i: number) =>
      OtlpExporter.span(
        { ...span, spanId: (i + 1).toString(16).padStart(16, "0"), attributes: { "payload": "x".repeat(1024 * 1024) } },
        resource,
        OFFSET
      )
    let taken = 0
    while (taken < 100 && queue.push(huge(taken))) taken++
    assert.strictEqual(taken, 16)
    assert.strictEqual(queue.size(), 16)
    assert.isFalse(queue.push(huge(99)), "still full")
    const first = queue.take(1000)!
    assert.strictEqual(first.count, 2, "requests close at 2 MiB")
    assert.isTrue(queue.push(huge(100)), "room again")
    assert.strictEqual(queue.size(), 15)
  })

  it("its encoding queue: clearing it forgets what waits and says how much that was", () => {
    const exporter = OtlpExporter.make({
      protocol: "http/json",
      endpoint: "http://127.0.0.1:1/v1/traces",
      headers: {},
      timeoutMillis: 1000
    })
    const queue = exporter.queue(2)
    for (const item of [...items, ...items]) queue.push(item)
    assert.strictEqual(queue.size(), 4)
    const first = queue.take(2)!
    assert.strictEqual(first.count, 2)
    assert.isTrue(Buffer.from(first.body).equals(exporter.encode(items)), "http/json: OTLP/JSON requests")
    assert.strictEqual(queue.clear(), 2)
    assert.strictEqual(queue.size(), 0)
    assert.isUndefined(queue.take(2))
  })
})

/** A plain-text HTTP/2 server answering gRPC calls with `answer`. */
const grpcServer = (
  answer: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, message: Buffer) => void
) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly endpoint: string; readonly server: http2.Http2Server; readonly calls: Array<any> }>(
      (resume) => {
        const calls: Array<{ headers: http2.IncomingHttpHeaders; frame: Buffer }> = []
        const server = http2.createServer()
        server.on("stream", (stream, headers) => {
          const chunks: Array<Buffer> = []
          stream.on("data", (c: Buffer) => chunks.push(c))
          stream.on("end", () => {
            const frame = Buffer.concat(chunks)
            calls.push({ headers, frame })
            answer(stream, headers, frame.subarray(5))
          })
        })
        server.listen(0, "127.0.0.1", () => {
          const port = (server.address() as AddressInfo).port
          resume(Effect.succeed({ endpoint: `http://127.0.0.1:${port}`, server, calls }))
        })
      }
    ),
    ({ server }) => Effect.promise(() => new Promise<void>((done) => server.close(() => done())))
  )

const grpcReply = (stream: http2.ServerHttp2Stream, status: number, message?: string) => {
  stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true })
  stream.on("wantTrailers", () =>
    stream.sendTrailers({
      "grpc-status": String(status),
      ...(message === undefined ? {} : { "grpc-message": encodeURIComponent(message) })
    }))
  // An empty ExportTraceServiceResponse: the 5-byte prefix and no bytes.
  stream.end(status === 0 ? Buffer.alloc(5) : undefined)
}

describe("OtlpExporter over gRPC (HTTP/2)", () => {
  it.live("one unary TraceService/Export call per batch: framed protobuf, metadata, deadline", () =>
    Effect.gen(function*() {
      const server = yield* grpcServer((stream) => grpcReply(stream, 0))
      const exporter = yield* exporterFor({
        endpoint: server.endpoint,
        protocol: "grpc",
        headers: { "X-Api-Key": "s3cr3t" },
        timeoutMillis: 1500
      })
      yield* exporter.export(items)
      yield* exporter.export(items.slice(1))
      assert.strictEqual(server.calls.length, 2)
      const { headers, frame } = server.calls[0]!
      assert.strictEqual(headers[":method"], "POST")
      assert.strictEqual(headers[":path"], "/opentelemetry.proto.collector.trace.v1.TraceService/Export")
      assert.strictEqual(headers["content-type"], "application/grpc")
      assert.strictEqual(headers["te"], "trailers")
      assert.strictEqual(headers["grpc-timeout"], "1500m")
      assert.strictEqual(headers["x-api-key"], "s3cr3t")
      assert.strictEqual(frame[0], 0, "not compressed")
      assert.strictEqual(frame.readUInt32BE(1), frame.length - 5)
      assert.isTrue(frame.subarray(5).equals(exporter.encode(items)))
      assert.deepStrictEqual(flatSpans(server.calls[1]!.frame.subarray(5)).map((s) => s.span["name"]), ["SELECT"])
    }))

  it.live("its encoding queue writes a request into the last one's memory once that was sent and is done with", () =>
    Effect.gen(function*() {
      const server = yield* grpcServer((stream) => grpcReply(stream, 0))
      for (const compression of ["none", "gzip"] as const) {
        const exporter = yield* exporterFor({ endpoint: server.endpoint, protocol: "grpc", compression })
        const sent = yield* reuseRound(exporter)
        const messages = server.calls.splice(0).map((c: { frame: Buffer }) =>
          compression === "gzip" ? zlib.gunzipSync(c.frame.subarray(5)) : c.frame.subarray(5))
        assert.strictEqual(messages.length, 3)
        for (let i = 0; i < 3; i++) assert.isTrue(messages[i]!.equals(exporter.encode(sent[i]!)), `call ${i}`)
      }
    }))

  it.live("gzip: grpc-encoding gzip and the compressed flag", () =>
    Effect.gen(function*() {
      const server = yield* grpcServer((stream) => grpcReply(stream, 0))
      const exporter = yield* exporterFor({ endpoint: server.endpoint, protocol: "grpc", compression: "gzip" })
      yield* exporter.export(items)
      const { headers, frame } = server.calls[0]!
      assert.strictEqual(headers["grpc-encoding"], "gzip")
      assert.strictEqual(frame[0], 1)
      assert.isTrue(zlib.gunzipSync(frame.subarray(5)).equals(exporter.encode(items)))
    }))

  it.live("UNAVAILABLE is retryable, INVALID_ARGUMENT permanent, each with the server's message", () =>
    Effect.gen(function*() {
      const replies: Array<readonly [number, string]> = [[14, "shutting down"], [3, "bad span: ü"]]
      let n = 0
      const server = yield* grpcServer((stream) => grpcReply(stream, ...replies[n++]!))
      const exporter = yield* exporterFor({ endpoint: server.endpoint, protocol: "grpc" })
      const unavailable = yield* failureOf(exporter.export(items))
      assert.strictEqual(
        unavailable.message,
        `export to ${server.endpoint} failed: gRPC UNAVAILABLE (14): shutting down`
      )
      assert.isTrue(OtlpExporter.isRetryable(unavailable))
      const invalid = yield* failureOf(exporter.export(items))
      assert.strictEqual(
        invalid.message,
        `export to ${server.endpoint} failed: gRPC INVALID_ARGUMENT (3): bad span: ü (not retried)`
      )
      assert.isFalse(OtlpExporter.isRetryable(invalid))
      assert.strictEqual((invalid.cause as OtlpExporter.OtlpFailure).grpcStatus, 3)
    }))

  it.live("collector down: ECONNREFUSED is a retryable ExportError; the next export connects anew", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const endpoint = `http://127.0.0.1:${port}`
      const exporter = yield* exporterFor({ endpoint, protocol: "grpc" })
      const error = yield* failureOf(exporter.export(items))
      assert.strictEqual(error.message, `export to ${endpoint} failed: connect ECONNREFUSED 127.0.0.1:${port}`)
      assert.isTrue(OtlpExporter.isRetryable(error))
      // Up on that port now: the exporter does not keep the failed connection.
      const server = yield* Effect.acquireRelease(
        Effect.callback<http2.Http2Server>((resume) => {
          const s = http2.createServer()
          s.on("stream", (stream) => {
            stream.on("data", () => {})
            stream.on("end", () => grpcReply(stream, 0))
          })
          s.listen(port, "127.0.0.1", () => resume(Effect.succeed(s)))
        }),
        (s) => Effect.promise(() => new Promise<void>((done) => s.close(() => done())))
      )
      assert.isTrue(server.listening)
      yield* exporter.export(items)
    }))

  it.live("no answer within the timeout: a retryable ExportError saying so", () =>
    Effect.gen(function*() {
      const server = yield* grpcServer(() => {})
      const exporter = yield* exporterFor({ endpoint: server.endpoint, protocol: "grpc", timeoutMillis: 300 })
      const error = yield* failureOf(exporter.export(items))
      assert.strictEqual(error.message, `export to ${server.endpoint} timed out after 300 ms`)
      assert.isTrue(OtlpExporter.isRetryable(error))
    }))
})

describe("OtlpExporter.loadCompressionOf", () => {
  for (const signal of ["TRACES", "METRICS"] as const) {
    const load = (env: Record<string, string>) =>
      OtlpExporter.loadCompressionOf(signal).pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env))))

    it.effect(`${signal}: its variable first, then the generic one, default none; anything else is a typed error`, () =>
      Effect.gen(function*() {
        assert.strictEqual(yield* load({}), "none")
        assert.strictEqual(yield* load({ OTEL_EXPORTER_OTLP_COMPRESSION: "gzip" }), "gzip")
        assert.strictEqual(
          yield* load({ OTEL_EXPORTER_OTLP_COMPRESSION: "gzip", [`OTEL_EXPORTER_OTLP_${signal}_COMPRESSION`]: "none" }),
          "none"
        )
        // The other signal's variable is not this one's.
        const other = signal === "TRACES" ? "METRICS" : "TRACES"
        assert.strictEqual(yield* load({ [`OTEL_EXPORTER_OTLP_${other}_COMPRESSION`]: "gzip" }), "none")
        const error = yield* Effect.flip(load({ [`OTEL_EXPORTER_OTLP_${signal}_COMPRESSION`]: "zstd" }))
        assert.instanceOf(error, TelemetryConfigError)
        assert.strictEqual(error.variable, `OTEL_EXPORTER_OTLP_${signal}_COMPRESSION`)
        assert.strictEqual(
          error.message,
          `Invalid OTEL_EXPORTER_OTLP_${signal}_COMPRESSION="zstd": expected "gzip" or "none"`
        )
      }))
  }

  it.effect("loadCompression is the traces' one", () =>
    Effect.gen(function*() {
      const env = { OTEL_EXPORTER_OTLP_COMPRESSION: "none", OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: "gzip" }
      const value = yield* OtlpExporter.loadCompression.pipe(
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env)))
      )
      assert.strictEqual(value, "gzip")
    }))
})

describe("OtlpExporter over TLS", () => {
  // A server certificate for 127.0.0.1 and a client certificate, both self-signed (made by openssl for the suite).
  let dir = ""
  const pem = (name: string) => fs.readFileSync(path.join(dir, name))
  const selfSigned = (name: string, subject: string, extension: string) =>
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", subject, "-addext", extension,
      "-keyout", path.join(dir, `${name}-key.pem`), "-out", path.join(dir, `${name}.pem`)
    ], { stdio: "ignore" })
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "probescope-otlp-tls-"))
    selfSigned("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1")
    selfSigned("client", "/CN=probescope-agent", "extendedKeyUsage=clientAuth")
  })
  afterAll(() => {
    if (dir !== "") fs.rmSync(dir, { recursive: true, force: true })
  })

  /** Server options: its certificate, and a client certificate required (signed by the client's own). */
  const serverTls = () => ({
    cert: pem("server.pem"),
    key: pem("server-key.pem"),
    ca: pem("client.pem"),
    requestCert: true,
    rejectUnauthorized: true
  })
  const clientTls = () => ({ ca: pem("server.pem"), cert: pem("client.pem"), key: pem("client-key.pem") })

  const listen = <S extends https.Server | http2.Http2SecureServer>(server: S) =>
    Effect.acquireRelease(
      Effect.callback<number>((resume) => {
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as AddressInfo).port)))
      }),
      () => Effect.promise(() => new Promise<void>((done) => server.close(() => done())))
    )

  it.live("https: trusts the configured root, presents the client certificate; the system's roots refuse it", () =>
    Effect.gen(function*() {
      const clients: Array<string> = []
      const server = https.createServer(serverTls(), (req, res) => {
        clients.push((req.socket as TLSSocket).getPeerCertificate().subject.CN as string)
        req.resume()
        req.on("end", () => res.writeHead(200).end())
      })
      const port = yield* listen(server)
      const endpoint = `https://127.0.0.1:${port}/v1/traces`
      const exporter = yield* exporterFor({ endpoint, tls: clientTls() })
      yield* exporter.export(items)
      assert.deepStrictEqual(clients, ["probescope-agent"])

      const untrusting = yield* exporterFor({ endpoint })
      const error = yield* failureOf(untrusting.export(items))
      assert.match(error.message, new RegExp(`^export to ${endpoint} failed: self-signed certificate`))
      assert.deepStrictEqual(clients, ["probescope-agent"])
    }))

  it.live("grpc over TLS (h2): the same roots and client certificate", () =>
    Effect.gen(function*() {
      const clients: Array<string> = []
      const server = http2.createSecureServer(serverTls())
      server.on("stream", (stream) => {
        clients.push((stream.session!.socket as TLSSocket).getPeerCertificate().subject.CN as string)
        stream.on("data", () => {})
        stream.on("end", () => grpcReply(stream, 0))
      })
      const port = yield* listen(server)
      const exporter = yield* exporterFor({ endpoint: `https://127.0.0.1:${port}`, protocol: "grpc", tls: clientTls() })
      yield* exporter.export(items)
      assert.deepStrictEqual(clients, ["probescope-agent"])
    }))

  for (const signal of ["TRACES", "METRICS"] as const) {
    it.effect(`loadTlsOf(${signal}) reads the PEM files its variables name; an unreadable one is a typed error`, () =>
      Effect.gen(function*() {
        const load = (env: Record<string, string>) =>
          OtlpExporter.loadTlsOf(signal).pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env))))
        assert.isUndefined(yield* load({}))
        const tls = yield* load({
          OTEL_EXPORTER_OTLP_CERTIFICATE: path.join(dir, "client.pem"),
          [`OTEL_EXPORTER_OTLP_${signal}_CERTIFICATE`]: path.join(dir, "server.pem"),
          OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: path.join(dir, "client.pem"),
          OTEL_EXPORTER_OTLP_CLIENT_KEY: path.join(dir, "client-key.pem")
        })
        assert.deepStrictEqual(tls, clientTls())
        const variable = `OTEL_EXPORTER_OTLP_${signal}_CLIENT_KEY`
        const error = yield* Effect.flip(load({ [variable]: "/nonexistent/key.pem" }))
        assert.instanceOf(error, TelemetryConfigError)
        assert.strictEqual(error.variable, variable)
        assert.strictEqual(
          error.message,
          `${variable}: cannot read /nonexistent/key.pem: ENOENT: no such file or directory, open '/nonexistent/key.pem'`
        )
      }))
  }

  it.live("the metrics exporter over https: the roots and client certificate it is given", () =>
    Effect.gen(function*() {
      const clients: Array<string> = []
      const server = https.createServer(
        { key: pem("server-key.pem"), cert: pem("server.pem"), ca: pem("client.pem"), requestCert: true },
        (req, res) => {
          clients.push((req.socket as TLSSocket).getPeerCertificate().subject?.CN ?? "")
          req.resume()
          req.on("end", () => res.writeHead(200).end())
        }
      )
      const port = yield* listen(server)
      const exporter = yield* metricsExporterFor({ endpoint: `https://127.0.0.1:${port}/v1/metrics`, tls: clientTls() })
      yield* exporter.export(metricsBatch)
      assert.deepStrictEqual(clients, ["probescope-agent"])
    }))
})

/** A collection of two processes' metrics, as the metrics pipeline hands it to its exporters. */
const metricsBatch: ReadonlyArray<ResourceMetrics> = [100, 200].map((pid) => ({
  resource: resourceFromAttributes({ "service.name": `svc-${pid}`, "process.pid": pid }),
  scopeMetrics: [{
    scope: { name: "probescope/shop", version: "1.0.0" },
    metrics: [{
      descriptor: { name: "shop.requests", description: "Requests.", unit: "{request}", valueType: ValueType.INT },
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.SUM,
      isMonotonic: true,
      dataPoints: [{ startTime: [1_700_000_000, 0], endTime: [1_700_000_010, 0], attributes: { code: 200 }, value: pid }]
    }]
  }]
}))

/** A panic's log record, as the logs pipeline hands it to its exporters. */
const logRecord = Logs.toReadableLogRecord(
  {
    pid: 4242,
    probe: "go_panic",
    timeMonoNs: 5_000n,
    severity: "fatal",
    body: "panic: boom",
    attributes: { "exception.type": "string" },
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: "00f067aa0ba902b7",
    traceFlags: 1
  },
  resource,
  "1.0.0",
  (ns) => ns + OFFSET
)

/** What a metrics request says, decoded with the official protos: per resource its pid and its one value. */
const pointsOf = (body: Uint8Array) =>
  decodeMetricsRequest(body)["resourceMetrics"].map((rm: any) => [
    rm.resource.attributes.find((a: any) => a.key === "process.pid").value.intValue,
    rm.scopeMetrics[0].metrics[0].sum.dataPoints[0].asInt
  ])

const metricsExporterFor = (config: Partial<TelemetryConfig.OtlpConfig> & { readonly endpoint: string }) =>
  Effect.acquireRelease(
    Effect.sync(() => Metrics.otlp({ protocol: "http/protobuf", headers: {}, timeoutMillis: 2000, ...config })),
    (e) => e.shutdown
  )

describe("the OTLP metrics and logs exporters, over the same transport", () => {
  it.live("http/protobuf: one POST per collection to the metrics URL, every resource in it", () =>
    Effect.gen(function*() {
      const server = yield* httpServer((_req, res) => res.writeHead(200).end())
      const endpoint = server.url.replace("/v1/traces", "/v1/metrics")
      const exporter = yield* metricsExporterFor({ endpoint, headers: { "X-Api-Key": "k" } })
      yield* exporter.export(metricsBatch)
      assert.strictEqual(server.received.length, 1)
      const { url, headers, body } = server.received[0]!
      assert.strictEqual(url, "/v1/metrics")
      assert.strictEqual(headers["content-type"], "application/x-protobuf")
      assert.strictEqual(headers["x-api-key"], "k")
      assert.match(headers["user-agent"] ?? "", /^probescope\//)
      assert.deepStrictEqual(pointsOf(body), [["100", "100"], ["200", "200"]])
    }))

  it.live("http/json: OTLP/JSON; a partial success is a success with a warning counting data points", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        if (logLevel === "Warn") lines.push(Array.isArray(message) ? message.join(" ") : String(message))
      })
      const reply = JSON.stringify({ partialSuccess: { rejectedDataPoints: 3, errorMessage: "too old" } })
      const server = yield* httpServer((_req, res) =>
        res.writeHead(200, { "content-type": "application/json" }).end(reply)
      )
      const endpoint = server.url.replace("/v1/traces", "/v1/metrics")
      const exporter = yield* metricsExporterFor({ endpoint, protocol: "http/json" })
      yield* exporter.export(metricsBatch).pipe(Effect.provide(Logger.layer([logger])))
      const { headers, body } = server.received[0]!
      assert.strictEqual(headers["content-type"], "application/json")
      const json = JSON.parse(body.toString("utf8"))
      assert.deepStrictEqual(
        json.resourceMetrics.map((rm: any) => rm.scopeMetrics[0].metrics[0].sum.dataPoints[0].asInt),
        ["100", "200"]
      )
      assert.deepStrictEqual(lines, [`export to ${endpoint}: the server rejected 3 data point(s): too old`])
    }))

  it.live("HTTP 400: a permanent ExportError with the server's message; the collector down: a retryable one", () =>
    Effect.gen(function*() {
      const server = yield* httpServer((_req, res) =>
        res.writeHead(400, { "content-type": "application/x-protobuf" }).end(rpcStatus("bad metric"))
      )
      const endpoint = server.url.replace("/v1/traces", "/v1/metrics")
      const exporter = yield* metricsExporterFor({ endpoint })
      const error = yield* failureOf(exporter.export(metricsBatch))
      assert.instanceOf(error, ExportError)
      assert.strictEqual(error.message, `export to ${endpoint} failed: HTTP 400 Bad Request: bad metric (not retried)`)
      assert.isFalse(OtlpExporter.isRetryable(error))
      const port = yield* closedPort
      const down = `http://127.0.0.1:${port}/v1/metrics`
      const refused = yield* failureOf((yield* metricsExporterFor({ endpoint: down })).export(metricsBatch))
      assert.strictEqual(refused.message, `export to ${down} failed: connect ECONNREFUSED 127.0.0.1:${port}`)
      assert.isTrue(OtlpExporter.isRetryable(refused))
    }))

  it.live("grpc: the MetricsService/Export call, gzip-compressed when configured", () =>
    Effect.gen(function*() {
      const server = yield* grpcServer((stream) => grpcReply(stream, 0))
      const exporter = yield* metricsExporterFor({ endpoint: server.endpoint, protocol: "grpc", compression: "gzip" })
      yield* exporter.export(metricsBatch)
      assert.strictEqual(server.calls.length, 1)
      const { headers, frame } = server.calls[0]!
      assert.strictEqual(headers[":path"], "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export")
      assert.strictEqual(headers["grpc-encoding"], "gzip")
      assert.strictEqual(frame[0], 1)
      assert.deepStrictEqual(pointsOf(zlib.gunzipSync(frame.subarray(5))), [["100", "100"], ["200", "200"]])
    }))

  it.live("Telemetry.layer gives the metrics exporter the METRICS compression variable, not the traces' one", () =>
    Effect.gen(function*() {
      const server = yield* httpServer((_req, res) => res.writeHead(200).end())
      const endpoint = server.url.replace("/v1/traces", "/v1/metrics")
      const env = {
        OTEL_TRACES_EXPORTER: "none",
        OTEL_LOGS_EXPORTER: "none",
        OTEL_METRICS_EXPORTER: "otlp",
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: endpoint,
        OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: "none",
        OTEL_EXPORTER_OTLP_METRICS_COMPRESSION: "gzip"
      }
      yield* Effect.scoped(
        Effect.gen(function*() {
          const sink = yield* TelemetrySink
          yield* sink.measurements!([{ pid: undefined, probe: "shop", instrument: counter, value: 5, attributes: {} }])
        }).pipe(
          Effect.provide(Telemetry.layer),
          Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env)))
        )
      )
      // The scope's close exported the last collection (the agent's own metrics beside the probe's).
      assert.isAbove(server.received.length, 0)
      const { headers, body } = server.received[0]!
      assert.strictEqual(headers["content-encoding"], "gzip")
      const names = decodeMetricsRequest(zlib.gunzipSync(body))["resourceMetrics"].flatMap((rm: any) =>
        rm.scopeMetrics.flatMap((sm: any) => sm.metrics.map((m: any) => m.name))
      )
      assert.include(names, "shop.requests")
    }))

  it.live("logs: one POST per batch to the logs URL (http/protobuf), the LogsService/Export call (grpc)", () =>
    Effect.gen(function*() {
      const server = yield* httpServer((_req, res) => res.writeHead(200).end())
      const endpoint = server.url.replace("/v1/traces", "/v1/logs")
      const http1 = Logs.otlp({ protocol: "http/protobuf", endpoint, headers: {}, timeoutMillis: 2000 })
      yield* http1.export([logRecord])
      yield* http1.shutdown
      const { url, headers, body } = server.received[0]!
      assert.strictEqual(url, "/v1/logs")
      assert.strictEqual(headers["content-type"], "application/x-protobuf")
      const sent = decodeLogsRequest(body)["resourceLogs"][0].scopeLogs[0].logRecords[0]
      assert.deepStrictEqual([sent.body.stringValue, sent.severityText], ["panic: boom", "FATAL"])
      const grpc = yield* grpcServer((stream) => grpcReply(stream, 0))
      const exporter = Logs.otlp({ protocol: "grpc", endpoint: grpc.endpoint, headers: {}, timeoutMillis: 2000 })
      yield* exporter.export([logRecord])
      yield* exporter.shutdown
      assert.strictEqual(grpc.calls[0]!.headers[":path"], "/opentelemetry.proto.collector.logs.v1.LogsService/Export")
      assert.strictEqual(
        decodeLogsRequest(grpc.calls[0]!.frame.subarray(5))["resourceLogs"][0].scopeLogs[0].logRecords.length,
        1
      )
    }))

  it.live("logs: a partial success (OTLP/JSON) is a success with a warning counting log records", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        if (logLevel === "Warn") lines.push(Array.isArray(message) ? message.join(" ") : String(message))
      })
      const reply = JSON.stringify({ partialSuccess: { rejectedLogRecords: 1, errorMessage: "too big" } })
      const server = yield* httpServer((_req, res) =>
        res.writeHead(200, { "content-type": "application/json" }).end(reply)
      )
      const endpoint = server.url.replace("/v1/traces", "/v1/logs")
      const exporter = Logs.otlp({ protocol: "http/json", endpoint, headers: {}, timeoutMillis: 2000 })
      yield* exporter.export([logRecord]).pipe(Effect.provide(Logger.layer([logger])))
      yield* exporter.shutdown
      assert.strictEqual(server.received[0]!.headers["content-type"], "application/json")
      assert.deepStrictEqual(lines, [`export to ${endpoint}: the server rejected 1 log record(s): too big`])
    }))

  it.live("Telemetry.layer gives the logs exporter the LOGS compression variable", () =>
    Effect.gen(function*() {
      const server = yield* httpServer((_req, res) => res.writeHead(200).end())
      const endpoint = server.url.replace("/v1/traces", "/v1/logs")
      const env = {
        OTEL_TRACES_EXPORTER: "none",
        OTEL_METRICS_EXPORTER: "none",
        OTEL_LOGS_EXPORTER: "otlp",
        OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: endpoint,
        OTEL_EXPORTER_OTLP_LOGS_COMPRESSION: "gzip"
      }
      yield* Effect.scoped(
        Effect.gen(function*() {
          const sink = yield* TelemetrySink
          yield* sink.logs!([{
            pid: 4242,
            probe: "go_panic",
            timeMonoNs: 1_000n,
            severity: "error",
            body: "panic: boom",
            attributes: {}
          }])
        }).pipe(
          Effect.provide(Telemetry.layer),
          Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env)))
        )
      )
      assert.strictEqual(server.received.length, 1)
      const { headers, body } = server.received[0]!
      assert.strictEqual(headers["content-encoding"], "gzip")
      const sent = decodeLogsRequest(zlib.gunzipSync(body))["resourceLogs"][0].scopeLogs[0].logRecords[0]
      assert.strictEqual(sent.body.stringValue, "panic: boom")
    }))
})
