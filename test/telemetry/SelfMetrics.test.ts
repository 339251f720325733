import type { HrTime } from "@opentelemetry/api"
import { ValueType } from "@opentelemetry/api"
import {
  AggregationTemporality,
  DataPointType,
  type GaugeMetricData,
  type MetricData,
  type ResourceMetrics,
  type SumMetricData
} from "@opentelemetry/sdk-metrics"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Exit, Fiber, Layer, Logger, Option, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as Instruments from "../../src/probe/Instruments.ts"
import { type Measurement, type SpanData, TelemetrySink } from "../../src/probe/Telemetry.ts"
import * as Batcher from "../../src/telemetry/Batcher.ts"
import * as Exporter from "../../src/telemetry/Exporter.ts"
import * as KernelClock from "../../src/telemetry/KernelClock.ts"
import * as Metrics from "../../src/telemetry/Metrics.ts"
import * as ProcessResources from "../../src/telemetry/ProcessResources.ts"
import * as SelfMetrics from "../../src/telemetry/SelfMetrics.ts"
import * as Telemetry from "../../src/telemetry/Telemetry.ts"
import * as TelemetryConfig from "../../src/telemetry/TelemetryConfig.ts"

const REGISTERED: HrTime = [1_700_000_000, 0]
const COLLECTED: HrTime = [1_700_000_060, 500]

/** A registry whose first clock read (the registration) is REGISTERED and every later one COLLECTED. */
const registry = (options: SelfMetrics.Options = {}) => {
  let reads = 0
  return SelfMetrics.make({
    resource: SelfMetrics.agentResource({ "deployment.environment.name": "test" }),
    now: () => (reads++ === 0 ? REGISTERED : COLLECTED),
    ...options
  })
}

/** What a Manager-like layer would contribute: per-probe running totals and a gauge. */
const probeSamples = (
  records: bigint,
  dropped: number,
  targets: number
): ReadonlyArray<SelfMetrics.SelfMetricSample> => [
  {
    name: "probescope.probe.records",
    description: "Records read from the probe's ring buffer.",
    unit: "{record}",
    kind: "counter",
    value: records,
    attributes: { probe: "nethttp_server" }
  },
  {
    name: "probescope.probe.kernel.dropped",
    description: "Records the kernel could not submit.",
    unit: "{record}",
    kind: "counter",
    value: dropped,
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

const metricsOf = (rms: ReadonlyArray<ResourceMetrics>) =>
  rms.flatMap((rm) => rm.scopeMetrics.flatMap((s) => s.metrics))

const find = (rms: ReadonlyArray<ResourceMetrics>, name: string): MetricData => {
  const m = metricsOf(rms).find((x) => x.descriptor.name === name)
  assert.isDefined(m, name)
  return m!
}

/** Warning messages logged while running `effect`. */
const warningsOf = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const logger = Logger.make(({ logLevel, message }) => {
      if (logLevel === "Warn") lines.push(Array.isArray(message) ? message.join(" ") : String(message))
    })
    const value = yield* effect.pipe(Effect.provide(Logger.layer([logger])))
    return { value, lines }
  })

describe("SelfMetrics registry", () => {
  it.effect("a source's samples become one ResourceMetrics of the agent: counters are cumulative monotonic sums", () =>
    Effect.gen(function*() {
      const r = registry()
      let records = 41n
      yield* r.register(Effect.sync(() => probeSamples(++records, 3, 2)), { name: "manager" })
      const [rm, ...rest] = yield* r.collect
      assert.strictEqual(rest.length, 0)
      assert.deepStrictEqual(rm!.resource.attributes, {
        "deployment.environment.name": "test",
        "service.name": "probescope",
        "service.version": ProcessResources.version,
        "process.pid": process.pid,
        "process.runtime.name": "nodejs",
        "process.runtime.version": process.versions.node
      })
      assert.strictEqual(rm!.scopeMetrics.length, 1)
      assert.deepStrictEqual(rm!.scopeMetrics[0]!.scope, { name: "probescope", version: ProcessResources.version })

      const records1 = find([rm!], "probescope.probe.records") as SumMetricData
      assert.deepStrictEqual(records1, {
        descriptor: {
          name: "probescope.probe.records",
          description: "Records read from the probe's ring buffer.",
          unit: "{record}",
          valueType: ValueType.INT
        },
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.SUM,
        isMonotonic: true,
        dataPoints: [{
          startTime: REGISTERED,
          endTime: COLLECTED,
          attributes: { probe: "nethttp_server" },
          value: 42
        }]
      })
      const dropped = find([rm!], "probescope.probe.kernel.dropped") as SumMetricData
      assert.strictEqual(dropped.dataPointType, DataPointType.SUM)
      assert.deepStrictEqual(dropped.dataPoints.map((p) => p.value), [3])
      const targets = find([rm!], "probescope.targets") as GaugeMetricData
      assert.deepStrictEqual(targets, {
        descriptor: {
          name: "probescope.targets",
          description: "Processes attached to.",
          unit: "{process}",
          valueType: ValueType.INT
        },
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.GAUGE,
        dataPoints: [{ startTime: REGISTERED, endTime: COLLECTED, attributes: {}, value: 2 }]
      })

      // Read again at every collection: running totals, same start time.
      const again = find(yield* r.collect, "probescope.probe.records") as SumMetricData
      assert.deepStrictEqual(again.dataPoints.map((p) => [p.value, p.startTime]), [[43, REGISTERED]])
    }))

  it.effect("series of one metric from several sources share one metric; a fractional value makes it a double", () =>
    Effect.gen(function*() {
      const r = registry()
      const gauge = (value: number, probe: string): SelfMetrics.SelfMetricSample => ({
        name: "probescope.probe.lag",
        description: "Lag.",
        unit: "s",
        kind: "gauge",
        value,
        attributes: { probe }
      })
      yield* r.register(Effect.succeed([gauge(1, "a")]))
      yield* r.register(Effect.succeed([gauge(0.25, "b")]))
      const rms = yield* r.collect
      assert.strictEqual(metricsOf(rms).length, 1)
      const m = find(rms, "probescope.probe.lag")
      assert.strictEqual(m.descriptor.valueType, ValueType.DOUBLE)
      assert.deepStrictEqual(m.dataPoints.map((p) => [p.attributes, p.value]), [
        [{ probe: "a" }, 1],
        [{ probe: "b" }, 0.25]
      ])
    }))

  it.effect("no source, or no samples: nothing to export", () =>
    Effect.gen(function*() {
      const r = registry()
      assert.deepStrictEqual(yield* r.collect, [])
      yield* r.register(Effect.succeed([]))
      assert.deepStrictEqual(yield* r.collect, [])
    }))

  it.effect("when its scope closes a source is read at once and at the next collection, then forgotten", () =>
    Effect.gen(function*() {
      const r = registry()
      let records = 1n
      let reads = 0
      const scope = yield* Scope.make()
      yield* r.register(Effect.sync(() => (reads++, probeSamples(records, 0, 1))), { name: "manager" }).pipe(
        Scope.provide(scope)
      )
      yield* r.collect
      records = 7n
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(reads, 2, "read when its scope closed")
      // Its layer drained more after that: the next collection still reads it.
      records = 8n
      const last = find(yield* r.collect, "probescope.probe.records")
      assert.deepStrictEqual(last.dataPoints.map((p) => p.value), [8])
      assert.deepStrictEqual(yield* r.collect, [])
      assert.strictEqual(reads, 3)
    }))

  it.effect("after its scope closed, a source that fails or reports lower totals keeps what it had at the close", () =>
    Effect.gen(function*() {
      const r = registry()
      // What the Manager's kernel counters do once the BPF maps are gone: 0 (or an error).
      let state: "open" | "zeroed" | "gone" = "open"
      const source = Effect.suspend(() =>
        state === "gone"
          ? Effect.fail(new Error("map closed"))
          : Effect.succeed(state === "open" ? probeSamples(12n, 4, 2) : probeSamples(0n, 0, 0))
      )
      const zeroed = yield* Scope.make()
      yield* r.register(source, { name: "zeroed" }).pipe(Scope.provide(zeroed))
      yield* Scope.close(zeroed, Exit.void)
      state = "zeroed"
      const { value, lines } = yield* warningsOf(r.collect)
      // Counters keep their totals quietly (a closed source is expected to lose its data); the gauge is as read.
      assert.deepStrictEqual(lines, [])
      assert.deepStrictEqual(
        metricsOf(value).map((m) => [m.descriptor.name, m.dataPoints.map((p) => p.value)]),
        [["probescope.probe.records", [12]], ["probescope.probe.kernel.dropped", [4]], ["probescope.targets", [0]]]
      )

      state = "open"
      const gone = yield* Scope.make()
      yield* r.register(source, { name: "gone" }).pipe(Scope.provide(gone))
      yield* Scope.close(gone, Exit.void)
      state = "gone"
      const after = yield* warningsOf(r.collect)
      assert.deepStrictEqual(
        metricsOf(after.value).map((m) => [m.descriptor.name, m.dataPoints.map((p) => p.value)]),
        [["probescope.probe.records", [12]], ["probescope.probe.kernel.dropped", [4]], ["probescope.targets", [2]]]
      )
      assert.strictEqual(after.lines.length, 1)
      assert.match(after.lines[0]!, /^self-metrics source gone failed: .*map closed/s)
    }))

  it.effect("a running counter never goes back: the higher total is kept and the regression logged once", () =>
    Effect.gen(function*() {
      const r = registry()
      const totals = [5, 3, 2, 9]
      let i = 0
      yield* r.register(Effect.sync(() => probeSamples(0n, totals[i++]!, 1)), { name: "manager" })
      const values: Array<unknown> = []
      const lines: Array<string> = []
      for (let n = 0; n < totals.length; n++) {
        const out = yield* warningsOf(r.collect)
        values.push(find(out.value, "probescope.probe.kernel.dropped").dataPoints[0]!.value)
        lines.push(...out.lines)
      }
      assert.deepStrictEqual(values, [5, 5, 5, 9])
      assert.deepStrictEqual(lines, [
        "self-metrics source manager: counter probescope.probe.kernel.dropped [[\"probe\",\"nethttp_server\"]] went " +
        "back from 5 to 3; 5 kept"
      ])
    }))

  it.effect("a failing, dying or hung source is skipped and logged once; the others are exported", () =>
    Effect.gen(function*() {
      const r = registry({ sourceTimeoutMillis: 1000 })
      let broken = true
      yield* r.register(Effect.succeed(probeSamples(5n, 0, 1)), { name: "good" })
      yield* r.register(
        Effect.suspend(() =>
          broken ? Effect.fail(new Error("stats unavailable")) : Effect.succeed(probeSamples(1n, 0, 0))
        ),
        { name: "failing" }
      )
      yield* r.register(Effect.sync((): ReadonlyArray<SelfMetrics.SelfMetricSample> => {
        throw new Error("boom")
      }), { name: "throwing" })
      // Its registration ends by reading it once more (bounded by the timeout too): a scope of its own, closed below.
      const hungScope = yield* Scope.make()
      yield* r.register(Effect.never, { name: "hung" }).pipe(Scope.provide(hungScope))
      const notAnArray = "nope" as unknown as ReadonlyArray<SelfMetrics.SelfMetricSample>
      yield* r.register(Effect.succeed(notAnArray), { name: "odd" })

      const collectNow = Effect.gen(function*() {
        const fiber = yield* Effect.forkChild(r.collect)
        yield* TestClock.adjust("1 second")
        return yield* Fiber.join(fiber)
      })
      const first = yield* warningsOf(collectNow)
      const records = find(first.value, "probescope.probe.records")
      assert.deepStrictEqual(records.dataPoints.map((p) => p.value), [5])
      assert.strictEqual(first.lines.length, 4)
      assert.match(
        first.lines[0]!,
        /^self-metrics source failing failed: .*stats unavailable.*\(skipped until it succeeds again\)$/s
      )
      assert.match(first.lines[1]!, /^self-metrics source throwing failed: .*boom/s)
      assert.match(first.lines[2]!, /^self-metrics source hung timed out after 1000 ms/)
      assert.match(first.lines[3]!, /^self-metrics source odd returned string, not an array of samples/)

      // Still failing: no new warning. Recovered: its samples are back (its duplicate series are skipped).
      const second = yield* warningsOf(collectNow)
      assert.deepStrictEqual(second.lines, [])
      broken = false
      const third = yield* warningsOf(collectNow)
      assert.deepStrictEqual(find(third.value, "probescope.probe.records").dataPoints.map((p) => p.value), [5])
      assert.deepStrictEqual(third.lines, [
        "self-metrics source failing: sample probescope.probe.records [[\"probe\",\"nethttp_server\"]] skipped: " +
        "that series was already reported",
        "self-metrics source failing: sample probescope.probe.kernel.dropped [[\"probe\",\"nethttp_server\"]] " +
        "skipped: that series was already reported",
        "self-metrics source failing: sample probescope.targets [] skipped: that series was already reported"
      ])
      const closing = yield* Effect.forkChild(Scope.close(hungScope, Exit.void))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(closing)
    }))

  it.effect("invalid samples are skipped one by one and each problem is logged once", () =>
    Effect.gen(function*() {
      const r = registry()
      const ok: SelfMetrics.SelfMetricSample = {
        name: "probescope.ok",
        description: "",
        unit: "1",
        kind: "counter",
        value: 1,
        attributes: {}
      }
      yield* r.register(Effect.succeed([
        ok,
        { ...ok, name: "9lives" },
        { ...ok, name: "probescope.negative", value: -1 },
        { ...ok, name: "probescope.negative.big", value: -1n },
        { ...ok, name: "probescope.nan", kind: "gauge", value: Number.NaN },
        { ...ok, name: "probescope.kind", kind: "histogram" as "gauge" },
        { ...ok, name: "probescope.attr", attributes: { bad: [1] as unknown as string } },
        // Same name, another kind: the first sample defines the metric.
        { ...ok, kind: "gauge", attributes: { x: 1 } },
        { ...ok, name: "probescope.gauge.negative", kind: "gauge", value: -3 }
      ]), { name: "src" })
      const { value, lines } = yield* warningsOf(r.collect)
      assert.deepStrictEqual(
        metricsOf(value).map((m) => [m.descriptor.name, m.dataPoints.map((p) => p.value)]),
        [["probescope.ok", [1]], ["probescope.gauge.negative", [-3]]]
      )
      assert.deepStrictEqual(lines, [
        "self-metrics source src: sample \"9lives\" skipped: the name is not a valid instrument name",
        "self-metrics source src: sample \"probescope.negative\" skipped: a counter cannot be negative",
        "self-metrics source src: sample \"probescope.negative.big\" skipped: a counter cannot be negative",
        "self-metrics source src: sample \"probescope.nan\" skipped: the value is not a finite number or a bigint",
        "self-metrics source src: sample \"probescope.kind\" skipped: the kind is neither \"counter\" nor \"gauge\"",
        "self-metrics source src: sample \"probescope.attr\" skipped: an attribute value is not a string, finite " +
        "number or boolean",
        "self-metrics source src: sample probescope.ok skipped: it is a gauge in \"1\", but the metric is a counter " +
        "in \"1\""
      ])
      const again = yield* warningsOf(r.collect)
      assert.deepStrictEqual(again.lines, [])
    }))

  it.effect("the agent's identity wins over OTEL_RESOURCE_ATTRIBUTES, which name the traced services", () =>
    Effect.sync(() => {
      const attributes = SelfMetrics.agentAttributes({
        "service.name": "checkout",
        "service.version": "9.9.9",
        "host.name": "node-1"
      })
      assert.deepStrictEqual(attributes, {
        "service.name": "probescope",
        "service.version": ProcessResources.version,
        "host.name": "node-1",
        "process.pid": process.pid,
        "process.runtime.name": "nodejs",
        "process.runtime.version": process.versions.node
      })
    }))
})

const baseConfig = Effect.runSync(
  TelemetryConfig.load.pipe(
    Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({
      OTEL_RESOURCE_ATTRIBUTES: "deployment.environment.name=test,service.name=checkout"
    })))
  )
)

const metricsConfig: TelemetryConfig.MetricsConfig = {
  exporters: ["otlp"],
  otlp: { protocol: "http/protobuf", endpoint: "http://127.0.0.1:1/v1/metrics", headers: {}, timeoutMillis: 1000 },
  intervalMillis: 3_600_000,
  exportTimeoutMillis: 1000
}

const httpServer: SpanData = {
  pid: 31337,
  probe: "nethttp_server",
  traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  spanId: "00f067aa0ba902b7",
  traceFlags: 1,
  name: "GET /",
  kind: "server",
  startMonoNs: 5_000_000_000n,
  endMonoNs: 5_002_000_000n,
  attributes: { "http.request.method": "GET", "http.route": "/", "http.response.status_code": 200 },
  status: { code: "unset" }
}

/** What the server probe records for `httpServer`: its duration into the probe's histogram. */
const duration: Measurement = {
  pid: 31337,
  probe: "nethttp_server",
  instrument: Instruments.histogram("http.server.request.duration", { unit: "s", description: "Duration." }),
  value: 0.002,
  attributes: { "http.request.method": "GET", "http.route": "/", "http.response.status_code": 200 }
}

/** Every self-metric data point of a collection as `[name, attributes, value]`, in export order. */
const selfPoints = (batch: ReadonlyArray<ResourceMetrics>) =>
  batch
    .filter((rm) => rm.resource.attributes["service.name"] === "probescope")
    .flatMap((rm) => metricsOf([rm]))
    .flatMap((m) => m.dataPoints.map((p) => [m.descriptor.name, p.attributes, p.value] as const))

/** The export counters telemetry reports for one exporter and signal, in the order it reports them. */
const exportPoints = (
  exporter: string,
  signal: Telemetry.SelfMetricSignal,
  v: { sent: number; exported: number; dropped: ReadonlyArray<readonly [string, number]>; failed: number; held: number }
) => {
  const a = { exporter, signal }
  return [
    ["probescope.export.sent", a, v.sent],
    ["probescope.export.exported", a, v.exported],
    ...v.dropped.map(([reason, n]) => ["probescope.export.dropped", { ...a, reason }, n] as const),
    ["probescope.export.failed", a, v.failed],
    ["probescope.export.queue.size", a, v.held]
  ] as const
}

describe("Telemetry self metrics", () => {
  const build = (options: Partial<Telemetry.Options>) =>
    Effect.gen(function*() {
      const spans = Exporter.memory()
      const metrics = Metrics.memory()
      const scope = yield* Scope.make()
      const ctx = yield* Layer.buildWithScope(
        Telemetry.layerWith(baseConfig, {
          exporters: [spans],
          clock: KernelClock.layerFixed(0n),
          metrics: metricsConfig,
          metricsOptions: { exporters: [metrics] },
          ...options
        }),
        scope
      )
      return {
        spans,
        metrics,
        scope,
        sink: Context.get(ctx, TelemetrySink),
        telemetry: Context.get(ctx, Telemetry.Telemetry)
      }
    })

  it.effect("each collection carries the export counters and registered sources under the agent's resource", () =>
    Effect.gen(function*() {
      const { metrics, scope, sink, telemetry } = yield* build({ selfMetrics: true })
      let records = 10n
      yield* telemetry.registerSelfMetrics(Effect.sync(() => probeSamples(records, 2, 1)), { name: "manager" })
      yield* sink.span(httpServer)
      yield* sink.span({ ...httpServer, spanId: "1111111111111111" })
      yield* sink.span({ ...httpServer, traceId: "nope" })
      yield* sink.measurements!([duration, duration])
      yield* telemetry.flush

      const first = metrics.batches[0]!
      // The probes' metrics of the traced process first, then the agent's own metrics.
      assert.deepStrictEqual(first.map((rm) => rm.resource.attributes["service.name"]), ["checkout", "probescope"])
      const own = first[1]!
      assert.deepStrictEqual(own.resource.attributes, {
        "deployment.environment.name": "test",
        "service.name": "probescope",
        "service.version": ProcessResources.version,
        "process.pid": process.pid,
        "process.runtime.name": "nodejs",
        "process.runtime.version": process.versions.node
      })
      assert.deepStrictEqual(own.scopeMetrics.map((s) => s.scope), [
        { name: "probescope", version: ProcessResources.version }
      ])
      const kinds = new Map(metricsOf([own]).map((m) => [m.descriptor.name, [m.dataPointType, m.descriptor.unit]]))
      assert.deepStrictEqual([...kinds], [
        ["probescope.spans.received", [DataPointType.SUM, "{span}"]],
        ["probescope.spans.invalid", [DataPointType.SUM, "{span}"]],
        ["probescope.export.sent", [DataPointType.SUM, "{item}"]],
        ["probescope.export.exported", [DataPointType.SUM, "{item}"]],
        ["probescope.export.dropped", [DataPointType.SUM, "{item}"]],
        ["probescope.export.failed", [DataPointType.SUM, "{item}"]],
        ["probescope.export.queue.size", [DataPointType.GAUGE, "{item}"]],
        ["probescope.probe.records", [DataPointType.SUM, "{record}"]],
        ["probescope.probe.kernel.dropped", [DataPointType.SUM, "{record}"]],
        ["probescope.targets", [DataPointType.GAUGE, "{process}"]]
      ])
      for (const m of metricsOf([own])) {
        if (m.dataPointType === DataPointType.SUM) assert.isTrue(m.isMonotonic, m.descriptor.name)
      }

      // Points are grouped by metric, in the order each metric first appears.
      // Stable: within one metric, the order the series were reported in.
      const byName = (points: ReadonlyArray<ReadonlyArray<unknown>>) =>
        [...points].sort((a, b) => String(a[0]).localeCompare(String(b[0])))
      const expected = (metricPointsSent: number, metricPointsExported: number, manager: bigint) => [
        ["probescope.spans.received", {}, 3],
        ["probescope.spans.invalid", {}, 1],
        ...exportPoints("memory", "spans", {
          sent: 2,
          exported: 2,
          dropped: [["queue_full", 0], ["shutting_down", 0]],
          failed: 0,
          held: 0
        }),
        ...exportPoints("memory", "metric_points", {
          sent: metricPointsSent,
          exported: metricPointsExported,
          dropped: [["busy", 0]],
          failed: 0,
          held: 0
        }),
        ["probescope.probe.records", { probe: "nethttp_server" }, Number(manager)],
        ["probescope.probe.kernel.dropped", { probe: "nethttp_server" }, 2],
        ["probescope.targets", {}, 1]
      ]
      // The spans were exported before the collection; no metric point had been sent yet.
      assert.deepStrictEqual(byName(selfPoints(first)), byName(expected(0, 0, 10n)))

      // The next collection counts the data points of the first one: one histogram series and the self metrics.
      const firstPoints = Metrics.dataPoints(first)
      assert.strictEqual(firstPoints, 1 + selfPoints(first).length)
      records = 11n
      yield* telemetry.flush
      assert.deepStrictEqual(byName(selfPoints(metrics.batches[1]!)), byName(expected(firstPoints, firstPoints, 11n)))

      // The last collection at close carries them too.
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(metrics.batches.length, 3)
      assert.deepStrictEqual(
        byName(selfPoints(metrics.batches[2]!)),
        byName(expected(firstPoints * 2, firstPoints * 2, 11n))
      )
    }))

  it.effect("off unless asked for (layerWith) and with OTEL_METRICS_EXPORTER=none: sources are never read", () =>
    Effect.gen(function*() {
      let reads = 0
      const source = Effect.sync(() => (reads++, probeSamples(1n, 0, 0)))
      const off = yield* build({})
      yield* off.telemetry.registerSelfMetrics(source)
      yield* off.sink.span(httpServer)
      yield* off.sink.measurements!([duration])
      yield* off.telemetry.flush
      yield* Scope.close(off.scope, Exit.void)
      assert.deepStrictEqual(off.metrics.batches.map((b) => selfPoints(b).length), [0, 0])

      const none = yield* build({ selfMetrics: true, metrics: { ...metricsConfig, exporters: [] }, metricsOptions: {} })
      yield* none.telemetry.registerSelfMetrics(source)
      yield* none.telemetry.flush
      yield* Scope.close(none.scope, Exit.void)
      assert.strictEqual(reads, 0)

      // Telemetry.layer reads OTEL_METRICS_EXPORTER=none the same way.
      yield* Effect.scoped(Effect.gen(function*() {
        const ctx = yield* Layer.build(Telemetry.layer)
        const telemetry = Context.get(ctx, Telemetry.Telemetry)
        yield* telemetry.registerSelfMetrics(source)
        yield* telemetry.flush
      })).pipe(
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({
          OTEL_TRACES_EXPORTER: "none",
          OTEL_METRICS_EXPORTER: "none"
        })))
      )
      assert.strictEqual(reads, 0)
    }))

  it.effect("a failing source never breaks the export of the others", () =>
    Effect.gen(function*() {
      const { metrics, scope, telemetry } = yield* build({ selfMetrics: true })
      yield* telemetry.registerSelfMetrics(Effect.die("broken"), { name: "broken" })
      yield* telemetry.registerSelfMetrics(Effect.succeed(probeSamples(4n, 0, 1)), { name: "manager" })
      yield* telemetry.flush
      const points = selfPoints(metrics.batches[0]!)
      assert.deepStrictEqual(points.find((p) => p[0] === "probescope.probe.records"), [
        "probescope.probe.records",
        { probe: "nethttp_server" },
        4
      ])
      assert.isDefined(points.find((p) => p[0] === "probescope.export.sent"))
      yield* Scope.close(scope, Exit.void)
      const stats = yield* telemetry.stats
      assert.deepStrictEqual(stats.metrics.map((m) => [m.failed, m.dropped]), [[0, 0]])
    }))

  it("selfMetricSamples: drop reasons per signal, queue size is queued plus in flight", () => {
    const spans: Batcher.BatcherStats = {
      exporter: "otlp",
      endpoint: "http://c:4318/v1/traces",
      sent: 100,
      accepted: 90,
      queued: 5,
      inFlight: 10,
      exported: 60,
      dropped: 10,
      droppedShuttingDown: 3,
      failed: 15,
      failedAttempts: 4,
      lastError: Option.none(),
      failing: false
    }
    const points: Metrics.MetricsExporterStats = {
      exporter: "otlp",
      endpoint: "http://c:4318/v1/metrics",
      sent: 50,
      exported: 20,
      dropped: 10,
      failed: 12,
      inFlight: 8,
      failedExports: 2,
      lastError: Option.none(),
      failing: true
    }
    const samples = Telemetry.selfMetricSamples({
      received: 101,
      invalid: 1,
      exporters: [spans],
      metrics: [points],
      measurements: 0,
      logRecords: 0,
      logs: [],
      lost: Telemetry.lostOf(1, [spans], [points])
    })
    assert.deepStrictEqual(samples.map((s) => [s.name, s.kind, s.attributes, s.value]), [
      ["probescope.spans.received", "counter", {}, 101],
      ["probescope.spans.invalid", "counter", {}, 1],
      ...exportPoints("otlp", "spans", {
        sent: 100,
        exported: 60,
        dropped: [["queue_full", 7], ["shutting_down", 3]],
        failed: 15,
        held: 15
      }).map(([n, a, v]) => [n, n.endsWith("queue.size") ? "gauge" : "counter", a, v]),
      ...exportPoints("otlp", "metric_points", {
        sent: 50,
        exported: 20,
        dropped: [["busy", 10]],
        failed: 12,
        held: 8
      }).map(([n, a, v]) => [n, n.endsWith("queue.size") ? "gauge" : "counter", a, v])
    ])
    // The books balance per exporter: sent = exported + dropped + failed + queue.size.
    for (const signal of ["spans", "metric_points"]) {
      const sum = (name: string) =>
        samples
          .filter((s) => s.name === name && s.attributes.signal === signal)
          .reduce((n, s) => n + Number(s.value), 0)
      assert.strictEqual(
        sum("probescope.export.sent"),
        sum("probescope.export.exported") + sum("probescope.export.dropped") + sum("probescope.export.failed") +
          sum("probescope.export.queue.size"),
        signal
      )
    }
  })

  it.effect("console: the agent's metrics print in the counters and gauges table", () =>
    Effect.gen(function*() {
      const out: Array<string> = []
      const r = registry()
      yield* r.register(Effect.succeed(probeSamples(42n, 0, 3)))
      yield* Metrics.console((t) => out.push(t)).export(yield* r.collect)
      assert.deepStrictEqual(out, [
        "probescope counters and gauges\n" +
        "metric                           kind     attributes            value\n" +
        "probescope.probe.records         counter  probe=nethttp_server  42\n" +
        "probescope.probe.kernel.dropped  counter  probe=nethttp_server  0\n" +
        "probescope.targets               gauge                          3\n"
      ])
    }))

  it.effect("layerTest: TelemetryCapture.selfMetrics reads the registered sources", () =>
    Effect.gen(function*() {
      const telemetry = yield* Telemetry.Telemetry
      const capture = yield* Telemetry.TelemetryCapture
      yield* telemetry.registerSelfMetrics(Effect.succeed(probeSamples(3n, 1, 1)))
      assert.deepStrictEqual(
        (yield* capture.selfMetrics).map((s) => [s.name, s.value]),
        [["probescope.probe.records", 3n], ["probescope.probe.kernel.dropped", 1], ["probescope.targets", 1]]
      )
    }).pipe(Effect.provide(Telemetry.layerTest())))
})
