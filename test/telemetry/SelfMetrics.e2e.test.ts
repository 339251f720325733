import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Exit, Layer, Scope } from "effect"
import { serverDuration } from "../../src/instrumentations/internal/Http.ts"
import { type Measurement, type SpanData, TelemetrySink } from "../../src/probe/Telemetry.ts"
import * as ProcessResources from "../../src/telemetry/ProcessResources.ts"
import type * as SelfMetrics from "../../src/telemetry/SelfMetrics.ts"
import * as Telemetry from "../../src/telemetry/Telemetry.ts"
import * as Receiver from "../receiver/Receiver.ts"

const span = (spanId: string): SpanData => ({
  pid: 4242,
  probe: "nethttp_server",
  traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  spanId,
  traceFlags: 1,
  name: "GET /users/{id}",
  kind: "server",
  startMonoNs: 1_000_000_000n,
  endMonoNs: 1_003_000_000n,
  attributes: { "http.request.method": "GET", "http.route": "/users/{id}", "http.response.status_code": 200 },
  status: { code: "unset" }
})

/** What the server probe records with each of those spans: its duration into the probe's own histogram. */
const duration: Measurement = {
  pid: 4242,
  probe: "nethttp_server",
  instrument: serverDuration,
  value: 0.003,
  attributes: { "http.request.method": "GET", "http.route": "/users/{id}", "http.response.status_code": 200 }
}

/** What the agent registers for the Manager: per-probe running totals and a gauge. */
const managerSamples = (records: bigint, targets: number): ReadonlyArray<SelfMetrics.SelfMetricSample> => [
  {
    name: "probescope.probe.records",
    description: "Records read from the probe's ring buffer.",
    unit: "{record}",
    kind: "counter",
    value: records,
    attributes: { probe: "nethttp_server" }
  },
  {
    name: "probescope.targets",
    description: "Processes attached to.",
    unit: "{process}",
    kind: "gauge",
    value: targets,
    attributes: {}
  }
]

describe("the agent's own metrics at a real receiver", () => {
  it.live("Telemetry.layer exports probescope.* sums and gauges under the agent's resource over http/protobuf", () =>
    Effect.gen(function*() {
      const receiver = yield* Receiver.make()
      let records = 7n
      const firstCollection = yield* Effect.scoped(Effect.gen(function*() {
        const ctx = yield* Layer.build(Telemetry.layer)
        const telemetry = Context.get(ctx, Telemetry.Telemetry)
        yield* Context.get(ctx, ProcessResources.ProcessResources).register(4242, {
          exe: "/srv/bin/users-api",
          goVersion: "1.26.0"
        })
        // The manager's source lives in a scope that closes before telemetry's, as the agent's layers do.
        const managerScope = yield* Scope.make()
        yield* telemetry.registerSelfMetrics(Effect.sync(() => managerSamples(records, 2)), { name: "manager" })
          .pipe(Scope.provide(managerScope))
        yield* Context.get(ctx, TelemetrySink).spans!([span("00f067aa0ba902b7"), span("00f067aa0ba902b8")])
        yield* Context.get(ctx, TelemetrySink).measurements!([duration, duration])
        // Exports the spans, then one metrics collection: the spans are counted as exported in it.
        yield* telemetry.flush
        const points = (yield* telemetry.stats).metrics[0]!.exported
        records = 9n
        yield* Scope.close(managerScope, Exit.void)
        return points
      })).pipe(
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({
          OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.httpEndpoint,
          OTEL_RESOURCE_ATTRIBUTES: "deployment.environment.name=e2e,service.name=shop",
          OTEL_BSP_SCHEDULE_DELAY: "3600000",
          OTEL_METRIC_EXPORT_INTERVAL: "3600000"
        })))
      )

      // Two collections: the flush, and the last one when the layer closed.
      const all = yield* receiver.waitForMetrics((ps) =>
        ps.filter((p) => p.name === "probescope.probe.records").length >= 2
      )
      const own = all.filter((p) => p.name.startsWith("probescope."))
      assert.isAbove(firstCollection, 0)
      const first = own.slice(0, own.length / 2)
      const last = own.slice(own.length / 2)
      for (const p of own) {
        assert.strictEqual(p.protocol, "http/protobuf")
        assert.deepStrictEqual(p.resource, {
          "deployment.environment.name": "e2e",
          "service.name": "probescope",
          "service.version": ProcessResources.version,
          "process.pid": process.pid,
          "process.runtime.name": "nodejs",
          "process.runtime.version": process.versions.node
        })
        assert.deepStrictEqual(p.scope, { name: "probescope", version: ProcessResources.version })
        assert.isTrue(BigInt(p.timeUnixNano) >= BigInt(p.startTimeUnixNano), p.name)
      }
      // The HTTP histogram of the traced process stays under its own resource.
      const histogram = all.find((p) => p.name === "http.server.request.duration")!
      assert.strictEqual(histogram.resource["service.name"], "shop")
      assert.strictEqual(histogram.resource["process.pid"], 4242)
      assert.deepStrictEqual(histogram.scope, { name: "probescope/nethttp_server", version: ProcessResources.version })
      assert.strictEqual(histogram.count, 2)

      const pick = (points: typeof own, name: string, attributes: Record<string, unknown>) => {
        const found = points.filter((p) =>
          p.name === name && Object.keys(p.attributes).length === Object.keys(attributes).length &&
          Object.entries(attributes).every(([k, v]) => p.attributes[k] === v)
        )
        assert.strictEqual(found.length, 1, `${name} ${JSON.stringify(attributes)}`)
        return found[0]!
      }
      const records1 = pick(first, "probescope.probe.records", { probe: "nethttp_server" })
      assert.deepStrictEqual(
        [records1.type, records1.temporality, records1.unit, records1.description, records1.value],
        ["sum", "AGGREGATION_TEMPORALITY_CUMULATIVE", "{record}", "Records read from the probe's ring buffer.", 7]
      )
      const targets = pick(first, "probescope.targets", {})
      assert.deepStrictEqual([targets.type, targets.unit, targets.value], ["gauge", "{process}", 2])

      const spans = { exporter: "otlp", signal: "spans" }
      const metricPoints = { exporter: "otlp", signal: "metric_points" }
      const logRecords = { exporter: "otlp", signal: "log_records" }
      const value = (points: typeof own, name: string, attributes: Record<string, unknown>) =>
        pick(points, name, attributes).value
      assert.deepStrictEqual(
        [
          value(first, "probescope.spans.received", {}),
          value(first, "probescope.spans.invalid", {}),
          value(first, "probescope.export.sent", spans),
          value(first, "probescope.export.exported", spans),
          value(first, "probescope.export.dropped", { ...spans, reason: "queue_full" }),
          value(first, "probescope.export.dropped", { ...spans, reason: "shutting_down" }),
          value(first, "probescope.export.failed", spans),
          value(first, "probescope.export.queue.size", spans),
          value(first, "probescope.export.sent", metricPoints),
          value(first, "probescope.export.dropped", { ...metricPoints, reason: "busy" }),
          // The logs pipeline (OTEL_LOGS_EXPORTER defaults to otlp) reports from the start, zeros included.
          value(first, "probescope.export.sent", logRecords),
          value(first, "probescope.export.queue.size", logRecords)
        ],
        [2, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0]
      )
      assert.strictEqual(pick(first, "probescope.export.sent", spans).unit, "{item}")
      assert.strictEqual(pick(first, "probescope.export.queue.size", spans).type, "gauge")

      // The last collection: the manager's final total (read after its scope closed), and the first collection's
      // data points counted as sent and exported, as many as the receiver got.
      assert.strictEqual(value(last, "probescope.probe.records", { probe: "nethttp_server" }), 9)
      // Both collections hold the same series: one histogram, then the agent's own.
      assert.strictEqual(all.length, 2 * (1 + first.length))
      assert.strictEqual(all.length / 2, firstCollection)
      assert.strictEqual(value(last, "probescope.export.sent", metricPoints), firstCollection)
      assert.strictEqual(value(last, "probescope.export.exported", metricPoints), firstCollection)
    }))
})
