/**
 * The agent's user-space path per span, without the kernel and without the target: net/http server records pushed
 * into the fake kernel's ring in batches of 256 (the size of a busy drain), through the real Runner (decode in place,
 * the probe's signals, the batch handed to the sink synchronously) into the real telemetry pipeline (OTLP spans to a
 * local counting sink, the probes' metrics on), against floors measured in the same run: decode only, and the same
 * pipeline with OTEL_TRACES_EXPORTER=none and no metrics. CPU is the process's own (user + system), not wall time.
 *
 *   node_modules/.bin/node bench/pipeline.ts [spans per round, default 200000] [rounds, default 5]
 *
 * BENCH_MODES=<a;b> runs only the modes whose names contain one of these; BENCH_BEFORE=<a checkout of another
 * commit, or its bin/probescope> runs that checkout's probe (its Runner and net/http server signals) and telemetry
 * layer as one more mode per mode, in the same rounds, with the ratio per round.
 * BENCH_BATCH sets OTEL_BSP_MAX_EXPORT_BATCH_SIZE (default: the layer's own). BENCH_PIPELINE_JSON=<file> also writes
 * each mode's median µs per span there, as a JSON object (bench/footprint.ts reads it).
 *
 * No root needed. The sink is a child process, its CPU not counted.
 */
import { ConfigProvider, Effect, Fiber, Layer } from "effect"
import * as fs from "node:fs"
import * as NetHttpServerModule from "../src/instrumentations/NetHttpServer.ts"
import { FakeKernel } from "../src/kernel/BpfTest.ts"
import * as Binary from "../src/probe/Binary.ts"
import { batchDecoder } from "../src/probe/internal/runner.ts"
import * as ProbeTest from "../src/probe/ProbeTest.ts"
import { TelemetrySink } from "../src/probe/Telemetry.ts"
import * as Ids from "../src/probe/Ids.ts"
import * as Telemetry from "../src/telemetry/Telemetry.ts"
import { serverRecord } from "../test/instrumentations/fixtures.ts"
import * as Sink from "./internal/sink.ts"
import { beforeCheckout } from "./internal/before.ts"

const { NetHttpServer } = NetHttpServerModule

const BATCH = 256
/** A whole number of batches. */
const spansPerRound = Math.ceil(Number(process.argv[2] ?? 200_000) / BATCH) * BATCH
const rounds = Number(process.argv[3] ?? 5)

// Distinct records, as the ring hands them out: ids and paths vary, the pid is this process (a real resource).
const records = Array.from({ length: 4096 }, (_, i) =>
  Buffer.from(serverRecord({
    pid: process.pid,
    path: `/users/${i}`,
    traceId: Ids.fromHex((i + 1).toString(16).padStart(32, "a")),
    spanId: Ids.fromHex((i + 1).toString(16).padStart(16, "b")),
    startNs: 1_000_000_000n + BigInt(i) * 1000n,
    endNs: 1_000_500_000n + BigInt(i) * 1000n
  })))
const batches = Array.from({ length: records.length / BATCH }, (_, b) => records.slice(b * BATCH, (b + 1) * BATCH))

const cpuUs = () => {
  const c = process.cpuUsage()
  return c.user + c.system
}

/**
 * Spans waiting for export above which the producer pauses: the exporter's queue is bounded by bytes too (16 MiB, a
 * few tens of thousands of spans), and a producer that outruns a slow protocol would have it drop spans — measuring
 * less work, and failing the run's count.
 */
const BACKLOG = 4096

/**
 * µs of CPU per span pushing `spans` spans through the Runner into `sink`, pausing while `backlog` (spans waiting
 * for export) is above BACKLOG, then waiting for `settled`. A pause is a sleep: it costs no CPU.
 */
const throughRunner = (
  sink: TelemetrySink["Service"],
  spans: number,
  settled: Effect.Effect<void>,
  backlog: Effect.Effect<number>
): Effect.Effect<number, never, FakeKernel | typeof NetHttpServer.tag.Service> =>
  Effect.gen(function*() {
    const kernel = yield* FakeKernel
    const probe = yield* NetHttpServer.tag
    const fiber = yield* Effect.forkChild(probe.runner.run.pipe(Effect.provideService(TelemetrySink, sink)))
    yield* Effect.yieldNow
    const before = (yield* probe.runner.stats).records
    const t0 = cpuUs()
    for (let n = 0; n < spans; n += BATCH) {
      yield* kernel.push("nethttp_server", batches[(n / BATCH) % batches.length]!)
      // Let the Runner take the batch, as the event loop would between drains.
      while ((yield* probe.runner.stats).records < before + n + BATCH) yield* Effect.yieldNow
      while ((yield* backlog) > BACKLOG) yield* Effect.sleep("1 millis")
    }
    yield* settled
    const us = (cpuUs() - t0) / spans
    yield* Fiber.interrupt(fiber)
    return us
  }) as never

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const main = Effect.gen(function*() {
  const sink = yield* Effect.promise(() => Sink.start())
  const env = (over: Record<string, string>) =>
    ConfigProvider.layer(ConfigProvider.fromUnknown({
      OTEL_SERVICE_NAME: "bench",
      OTEL_METRIC_EXPORT_INTERVAL: "1000",
      OTEL_BSP_SCHEDULE_DELAY: "1000",
      // Records come as fast as the CPU takes them here, not at a service's pace: a queue that holds a round keeps
      // the measure about CPU (the export batch stays 512 spans).
      OTEL_BSP_MAX_QUEUE_SIZE: String(spansPerRound),
      ...(process.env["BENCH_BATCH"] === undefined ? {} : { OTEL_BSP_MAX_EXPORT_BATCH_SIZE: process.env["BENCH_BATCH"] }),
      ...over
    }))
  const modes = {
    "export none, metrics off": env({ OTEL_TRACES_EXPORTER: "none", OTEL_METRICS_EXPORTER: "none" }),
    "OTLP http/protobuf, metrics on": env({
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_METRICS_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
      OTEL_EXPORTER_OTLP_ENDPOINT: sink.httpUrl
    }),
    "OTLP grpc, metrics on": env({
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_METRICS_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
      OTEL_EXPORTER_OTLP_ENDPOINT: sink.grpcUrl
    }),
    "OTLP http/json, metrics on": env({
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_METRICS_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_EXPORTER_OTLP_ENDPOINT: sink.httpUrl
    }),
    // The two halves of the export stage apart: the spans' export alone, the metrics alone.
    "OTLP http/protobuf, metrics off": env({
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_METRICS_EXPORTER: "none",
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
      OTEL_EXPORTER_OTLP_ENDPOINT: sink.httpUrl
    }),
    "export none, metrics on": env({
      OTEL_TRACES_EXPORTER: "none",
      OTEL_METRICS_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
      OTEL_EXPORTER_OTLP_ENDPOINT: sink.httpUrl
    })
  }
  // BENCH_MODES=<a;b>: only the modes whose names contain one of these (the floor always runs).
  const only = process.env["BENCH_MODES"]?.split(";").map((m) => m.trim()).filter((m) => m !== "")
  const chosen = Object.entries(modes).filter(([name]) => only === undefined || only.some((m) => name.includes(m)))
  // BENCH_BEFORE=<a checkout of another commit>: its probe and telemetry layer run each chosen mode too, in the same
  // rounds, over the same records (the services are found by their keys, which both checkouts share).
  const probeLayer = NetHttpServer.layer.pipe(Layer.provideMerge(ProbeTest.layer))
  const beforeDir = beforeCheckout("pipeline")
  const before = beforeDir === undefined ? undefined : yield* Effect.promise(async () => {
    const telemetry: typeof Telemetry = await import(`${beforeDir}/src/telemetry/Telemetry.ts`)
    const server: typeof NetHttpServerModule = await import(`${beforeDir}/src/instrumentations/NetHttpServer.ts`)
    const probeTest: typeof ProbeTest = await import(`${beforeDir}/src/probe/ProbeTest.ts`)
    return {
      telemetry: telemetry.layer,
      probe: server.NetHttpServer.layer.pipe(Layer.provideMerge(probeTest.layer)) as unknown as typeof probeLayer
    }
  })
  const selected: Array<
    readonly [string, (typeof chosen)[number][1], typeof Telemetry.layer, typeof probeLayer]
  > = []
  for (const [name, config] of chosen) {
    selected.push([name, config, Telemetry.layer, probeLayer])
    if (before !== undefined) selected.push([`${name} [before]`, config, before.telemetry, before.probe])
  }
  const results: Record<string, Array<number>> = { "decode only (floor)": [] }
  for (const [name] of selected) results[name] = []
  const decode = batchDecoder(Binary.schema(NetHttpServerModule.Record))
  for (let round = 0; round < rounds; round++) {
    // The floor: the decode alone, over the same records.
    const t0 = cpuUs()
    let sum = 0
    for (let n = 0; n < spansPerRound; n++) {
      const r = records[n % records.length]!
      const view = new DataView(r.buffer, r.byteOffset, r.byteLength)
      sum += (decode(view, r, 0, r.length) as { status: number }).status
    }
    results["decode only (floor)"]!.push((cpuUs() - t0) / spansPerRound + (sum === -1 ? 1 : 0))
    for (const [name, config, telemetryLayer, probe] of selected) {
      const us = yield* Effect.gen(function*() {
        // The real telemetry's sink, taken before the probe's test layer (which brings a capturing sink of its own).
        const telemetry = yield* Telemetry.Telemetry
        const live = yield* TelemetrySink
        const exported = name.startsWith("OTLP")
        const spans0 = exported ? yield* Effect.promise(() => sink.spans()) : 0
        const backlog = Effect.map(telemetry.stats, (s) => s.exporters.reduce((n, e) => n + e.queued, 0))
        const us = yield* throughRunner(live, spansPerRound, telemetry.flush, backlog).pipe(Effect.provide(probe))
        if (exported) {
          const got = (yield* Effect.promise(() => sink.spans())) - spans0
          if (got !== spansPerRound) {
            const stats = yield* telemetry.stats
            throw new Error(`${name}: the sink got ${got} of ${spansPerRound} spans: ${Telemetry.formatStats(stats)}`)
          }
        }
        return us
      }).pipe(
        Effect.provide(Layer.fresh(telemetryLayer).pipe(Layer.provide(config))),
        Effect.scoped
      )
      results[name]!.push(us)
    }
  }
  sink.stop()
  const floor = median(results["decode only (floor)"]!)
  const json = process.env["BENCH_PIPELINE_JSON"]
  if (json !== undefined && json !== "") {
    const medians = Object.fromEntries(Object.entries(results).map(([k, xs]) => [k, median(xs)]))
    fs.writeFileSync(json, JSON.stringify(medians))
  }
  console.log(`pipeline: ${rounds} rounds of ${spansPerRound} net/http server spans in batches of ${BATCH}, ` +
    `CPU µs per span (median; the sink's own CPU not counted)`)
  console.log(`${"mode".padEnd(43)} ${"µs/span".padStart(8)} ${"x decode".padStart(9)}  rounds`)
  for (const [name, xs] of Object.entries(results)) {
    // A [before] mode's ratio: this checkout's figure over the other's, per round, then the median.
    const before = results[`${name} [before]`]
    const ratio = before === undefined ? "" : `  after/before ${median(xs.map((x, i) => x / before[i]!)).toFixed(2)}x`
    console.log(`${name.padEnd(43)} ${median(xs).toFixed(2).padStart(8)} ${(median(xs) / floor).toFixed(1).padStart(9)}  ` +
      xs.map((x) => x.toFixed(2)).join(" ") + ratio)
  }
})

Effect.runPromise(main as Effect.Effect<void>).then(() => process.exit(0), (e) => {
  console.error(e)
  process.exit(1)
})
