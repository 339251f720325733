/**
 * The direct OTLP exporter (src/telemetry/OtlpExporter.ts) against a real OpenTelemetry Collector
 * (test/collector/Collector.ts): spans encoded by our own encoder and sent over http/protobuf, http/json and grpc
 * (plain, and gzip) are accepted by the collector and are what was sent — checked twice: at the test receiver behind
 * the collector (ids, times, flags, attributes, status, scope, resource against the probes' SpanData), and in the
 * collector's file export, span by span against our own OTLP/JSON of the same spans (events and array attributes
 * included). Then the failures, from the real thing: collector down (a retryable ECONNREFUSED, then delivery once it
 * is back on the same port) and a request the collector refuses (HTTP 400: permanent).
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Schedule } from "effect"
import { beforeAll } from "vitest"
import type { SpanData } from "../../src/probe/Telemetry.ts"
import type { ExportError } from "../../src/telemetry/Exporter.ts"
import * as OtlpExporter from "../../src/telemetry/OtlpExporter.ts"
import * as ProcessResources from "../../src/telemetry/ProcessResources.ts"
import * as Collector from "../collector/Collector.ts"
import { assertSpanAsSent } from "../receiver/expect.ts"

// The first build compiles the collector (minutes on a 2-core machine): outside every test's own timeout.
beforeAll(() => Effect.runPromise(Collector.build), 45 * 60_000)

const OFFSET = 1_700_000_000_000_000_000n
const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"

const resources = ProcessResources.make({
  serviceName: undefined,
  attributes: { "deployment.environment.name": "e2e" }
})
Effect.runSync(resources.register(4242, { exe: "/srv/bin/users-api", goVersion: "1.26.0" }))
Effect.runSync(resources.register(777, { exe: "/opt/worker", goVersion: "1.24.3", serviceName: "wörker" }))

/** Five spans over two processes and four probes; `batch` varies the ids so that each case is told apart. */
const spansOf = (batch: number): ReadonlyArray<SpanData> => {
  const id = (n: number) => `${batch.toString(16)}${n}`.padEnd(16, "a")
  return [
    {
      pid: 4242,
      probe: "net/http.server",
      traceId: TRACE,
      spanId: id(1),
      parentSpanId: "b7ad6b7169203331",
      parentIsRemote: true,
      traceFlags: 1,
      name: "GET /users/{id}",
      kind: "server",
      startMonoNs: 1_000_000_123n,
      endMonoNs: 1_012_345_678n,
      attributes: {
        "http.request.method": "GET",
        "http.route": "/users/{id}",
        "http.response.status_code": 200,
        "url.path": "/users/7",
        "long": "q".repeat(500)
      },
      status: { code: "unset" }
    },
    {
      pid: 4242,
      probe: "database/sql",
      traceId: TRACE,
      spanId: id(2),
      parentSpanId: id(1),
      traceFlags: 1,
      name: "SELECT users",
      kind: "client",
      startMonoNs: 1_001_000_000n,
      endMonoNs: 1_004_000_001n,
      attributes: { "db.system.name": "postgresql", "db.response.returned_rows": -1, "cached": false, "ratio": 0.5 },
      status: { code: "error", message: "connection reset ✗" },
      events: [
        { name: "exception", timeMonoNs: 1_003_000_000n, attributes: { "exception.message": "EOF", "attempt": 2 } },
        { name: "retry", timeMonoNs: 1_003_500_000n, attributes: {} }
      ]
    },
    {
      pid: 4242,
      probe: "net/http.server",
      traceId: TRACE,
      spanId: id(3),
      parentSpanId: id(1),
      traceFlags: 1,
      name: "internal",
      kind: "internal",
      startMonoNs: 1_005_000_000n,
      endMonoNs: 1_008_000_000n,
      attributes: {},
      status: { code: "ok" }
    },
    {
      pid: 777,
      probe: "kafka.producer",
      traceId: "0af7651916cd43dd8448eb211c80319c",
      spanId: id(4),
      traceFlags: 0,
      name: "publish 注文 📦",
      kind: "producer",
      startMonoNs: 5_000_000_000n,
      endMonoNs: 5_000_000_999n,
      attributes: { "tags": ["a", "b"], "partitions": [0, 3], "kafka.key": "ключ" },
      status: { code: "ok" }
    },
    {
      pid: 777,
      probe: "kafka.consumer",
      traceId: "0af7651916cd43dd8448eb211c80319c",
      spanId: id(5),
      parentSpanId: id(4),
      parentIsRemote: true,
      traceFlags: 1,
      name: "process",
      kind: "consumer",
      startMonoNs: 6_000_000_000n,
      endMonoNs: 6_100_000_000n,
      attributes: { "messaging.batch.message_count": 2 ** 40 },
      status: { code: "unset" }
    }
  ]
}

const itemsOf = (spans: ReadonlyArray<SpanData>) =>
  spans.map((s) => OtlpExporter.span(s, resources.resourceFor(s.pid), OFFSET))

const endpointOf = (collector: Collector.Collector, protocol: OtlpExporter.OtlpExporterConfig["protocol"]) =>
  protocol === "grpc" ? collector.grpcEndpoint : `${collector.httpEndpoint}/v1/traces`

const exporterFor = (config: Partial<OtlpExporter.OtlpExporterConfig> & { readonly endpoint: string }) =>
  Effect.acquireRelease(
    Effect.sync(() => OtlpExporter.make({ protocol: "http/protobuf", headers: {}, timeoutMillis: 5000, ...config })),
    (e) => e.shutdown
  )

interface JsonSpan {
  readonly spanId: string
  readonly [field: string]: unknown
}
interface JsonResourceSpans {
  readonly resource: unknown
  readonly scopeSpans: ReadonlyArray<{ readonly scope: unknown; readonly spans: ReadonlyArray<JsonSpan> }>
}

/** Every span of OTLP/JSON requests with its resource and scope, keyed by span id. */
const spansById = (requests: ReadonlyArray<{ readonly resourceSpans?: ReadonlyArray<unknown> }>) => {
  const out = new Map<string, { resource: unknown; scope: unknown; span: JsonSpan }>()
  for (const r of requests) {
    for (const rs of (r.resourceSpans ?? []) as ReadonlyArray<JsonResourceSpans>) {
      for (const ss of rs.scopeSpans) {
        for (const span of ss.spans) out.set(span.spanId, { resource: rs.resource, scope: ss.scope, span })
      }
    }
  }
  return out
}

/** OTLP/JSON in one comparable form: proto3 defaults (0, "", [], {}) dropped, int64 as strings. */
const normalize = (value: unknown, key = ""): unknown => {
  if (["intValue", "startTimeUnixNano", "endTimeUnixNano", "timeUnixNano"].includes(key)) return String(value)
  if (Array.isArray(value)) return value.map((v) => normalize(v))
  if (typeof value === "object" && value !== null) {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) {
      const n = normalize(v, k)
      const empty = (Array.isArray(n) && n.length === 0) ||
        (typeof n === "object" && n !== null && !Array.isArray(n) && Object.keys(n).length === 0 && k !== "value")
      if (n === undefined || n === null || empty || (n === 0 && k !== "intValue" && k !== "doubleValue")) continue
      if (n === "" && k !== "stringValue") continue
      out[k] = n
    }
    return out
  }
  return value
}

/** Polls the collector's file export until it holds `n` spans. */
const waitForExported = (collector: Collector.Collector, n: number) =>
  collector.exported.pipe(
    Effect.map(spansById),
    Effect.repeat({ until: (got) => got.size >= n, schedule: Schedule.spaced(Duration.millis(100)) }),
    Effect.timeoutOrElse({
      duration: Duration.seconds(15),
      orElse: () =>
        Effect.flatMap(
          collector.exported,
          (got) => Effect.die(new Error(`the collector exported ${JSON.stringify(got)}`))
        )
    })
  )

/** What arrived behind the collector and what the collector wrote are exactly what was sent. */
const assertDelivered = Effect.fnUntraced(function*(
  collector: Collector.Collector,
  spans: ReadonlyArray<SpanData>
) {
  const received = yield* collector.receiver.waitFor(spans.length)
  assert.deepStrictEqual(received.map((r) => r.spanId).sort(), spans.map((s) => s.spanId).sort())
  for (const expected of spans) {
    const got = received.find((r) => r.spanId === expected.spanId)!
    const options = { protocol: "http/protobuf", offsetNs: OFFSET } as const
    // The collector re-exports to the receiver over OTLP/HTTP protobuf, keeping the span flags. expect.ts names the
    // kinds the HTTP tests use: the other two are checked here, the rest of the span by it.
    if (expected.kind === "internal" || expected.kind === "consumer") {
      assert.strictEqual(got.kind, expected.kind === "internal" ? "SPAN_KIND_INTERNAL" : "SPAN_KIND_CONSUMER")
      assertSpanAsSent({ ...got, kind: "SPAN_KIND_SERVER" }, { ...expected, kind: "server" }, options)
    } else {
      assertSpanAsSent(got, expected, options)
    }
  }
  assert.deepStrictEqual(received.find((r) => r.spanId === spans[0]!.spanId)!.resource, {
    "service.name": "users-api",
    "process.pid": 4242,
    "process.executable.path": "/srv/bin/users-api",
    "process.executable.name": "users-api",
    "process.runtime.name": "go",
    "process.runtime.version": "1.26.0",
    "telemetry.distro.name": "probescope",
    "telemetry.distro.version": ProcessResources.version,
    "deployment.environment.name": "e2e"
  })
  assert.strictEqual(received.find((r) => r.spanId === spans[3]!.spanId)!.resource["service.name"], "wörker")

  // Everything else (events, arrays, int64 beyond 2^32), as the collector itself wrote it, against our own JSON.
  const written = yield* waitForExported(collector, spans.length)
  const ours = spansById([JSON.parse(OtlpExporter.make({
    protocol: "http/json",
    endpoint: "http://127.0.0.1:9/unused",
    headers: {},
    timeoutMillis: 1
  }).encode(itemsOf(spans)).toString())])
  assert.strictEqual(written.size, spans.length)
  for (const [spanId, sent] of ours) {
    const got = written.get(spanId)
    assert.isDefined(got, spanId)
    assert.deepStrictEqual(normalize(got), normalize(sent), spanId)
  }
})

describe("direct OTLP export through a real OpenTelemetry Collector", () => {
  const cases = [
    ["http/protobuf", "none"],
    ["http/json", "none"],
    ["grpc", "none"],
    ["http/protobuf", "gzip"],
    ["grpc", "gzip"]
  ] as const
  cases.forEach(([protocol, compression], n) => {
    it.live(`${protocol}${compression === "gzip" ? " + gzip" : ""}: the collector gets exactly what was sent`, () =>
      Effect.gen(function*() {
        const collector = yield* Collector.make()
        const exporter = yield* exporterFor({ protocol, compression, endpoint: endpointOf(collector, protocol) })
        const spans = spansOf(n + 1)
        // Two requests: the second over the connection the first one opened.
        yield* exporter.export(itemsOf(spans.slice(0, 2)))
        yield* exporter.export(itemsOf(spans.slice(2)))
        yield* assertDelivered(collector, spans)
      }), 60_000)
  })

  it.live("collector down: a retryable ExportError (ECONNREFUSED); back on the same port, the same batch arrives", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const endpoint = endpointOf(collector, "http/protobuf")
      const exporter = yield* exporterFor({ endpoint })
      const spans = spansOf(9)
      yield* collector.stop
      const exit = yield* Effect.exit(exporter.export(itemsOf(spans)))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail")?.error : undefined
      assert.isDefined(error)
      assert.strictEqual(error!._tag, "ExportError")
      assert.strictEqual(
        error!.message,
        `export to ${endpoint} failed: connect ECONNREFUSED 127.0.0.1:${collector.httpPort}`
      )
      assert.isTrue(OtlpExporter.isRetryable(error as ExportError))
      yield* collector.start
      yield* exporter.export(itemsOf(spans))
      yield* assertDelivered(collector, spans)
    }), 60_000)

  it.live("a request the collector refuses (unparseable OTLP/JSON ids) is an HTTP 400: permanent, with a reason", () =>
    Effect.gen(function*() {
      const collector = yield* Collector.make()
      const endpoint = endpointOf(collector, "http/json")
      const exporter = yield* exporterFor({ protocol: "http/json", endpoint })
      // The telemetry layer never lets such an id through; here it stands in for any request the server rejects.
      const bad = { ...spansOf(10)[0]!, traceId: "z".repeat(32) }
      const exit = yield* Effect.exit(exporter.export(itemsOf([bad])))
      const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail")?.error : undefined
      assert.isDefined(error)
      const refused = new RegExp(`^export to ${endpoint} failed: HTTP 400 Bad Request: .+ \\(not retried\\)$`)
      assert.match(error!.message, refused)
      assert.isFalse(OtlpExporter.isRetryable(error as ExportError))
      // The collector took nothing from it, and still takes a good request.
      const good = spansOf(11)
      yield* exporter.export(itemsOf(good))
      yield* assertDelivered(collector, good)
    }), 60_000)
})
