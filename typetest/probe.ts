/**
 * Type-level tests of the probe API: capability misuse is a compile error (checked by `tsc --noEmit -p .`).
 */
import { Effect, Layer, Schema } from "effect"
import type { Bpf } from "../src/kernel/Bpf.ts"
import * as Binary from "../src/probe/Binary.ts"
import * as Probe from "../src/probe/Probe.ts"
import type { ProbeRegistry } from "../src/probe/ProbeRegistry.ts"
import type { TracingConfig } from "../src/probe/TracingConfig.ts"

const Record = Binary.struct({ start: Binary.u64, end: Binary.u64, traceId: Binary.hex(16), spanId: Binary.hex(8) })

const Ctx = Probe.daemon({
  name: "typetest/ctx",
  object: Probe.objectFile("ctx"),
  manifest: { library: { module: "std" }, symbols: [{ name: "runtime.newproc1", entry: "uprobe_newproc1" }] },
  shares: ["go_spans"]
})

const Http = Probe.instrument({
  name: "typetest/http",
  object: Probe.objectFile("http"),
  manifest: {
    library: { module: "std", versions: ">=1.21" },
    symbols: [{ name: "net/http.serverHandler.ServeHTTP", entry: "uprobe_ServeHTTP", return: "uprobe_ServeHTTP_ret" }],
    fields: { method: { type: "net/http.Request", field: "Method" }, proto: { type: "net/http.Request", field: "Proto", optional: true } }
  },
  config: Schema.Struct({ maxBody: Schema.Number.pipe(Schema.withDecodingDefault(Effect.succeed(64))) }),
  reuseMaps: { go_spans: Ctx.map("go_spans") },
  perTarget: {
    layout: Binary.struct({ method: Binary.u64, proto: Binary.u64 }),
    value: ({ offsets }) => {
      const method: number = offsets.method
      // @ts-expect-error an optional field's offset may be undefined
      const proto: number = offsets.proto
      return { method: BigInt(method), proto: BigInt(proto ?? 0) }
    }
  },
  record: Binary.schema(Record),
  span: (r, { config }) => ({
    traceId: r.traceId,
    spanId: r.spanId,
    traceFlags: 1,
    name: `GET ${config.maxBody}`,
    kind: "server",
    startMonoNs: r.start,
    endMonoNs: r.end,
    attributes: {},
    status: { code: "unset" },
    pid: 0
  })
})

// @ts-expect-error a daemon probe only shares the maps it declares
Ctx.map("other")

Probe.daemon({
  name: "typetest/bad-daemon",
  object: Probe.objectFile("x"),
  manifest: {},
  // @ts-expect-error a daemon probe has no decoder: it emits no telemetry
  record: Binary.schema(Record)
})

// An instrument's layer needs TracingConfig; a daemon's does not.
export const daemonLayer: Layer.Layer<Probe.ProbeId<"typetest/ctx">, unknown, Bpf | ProbeRegistry> = Ctx.layer
// @ts-expect-error the instrument probe traces, so its layer requires TracingConfig
export const httpLayer: Layer.Layer<Probe.ProbeId<"typetest/http">, unknown, Bpf | ProbeRegistry> = Http.layer
export const httpLayerOk: Layer.Layer<Probe.ProbeId<"typetest/http">, unknown, Bpf | ProbeRegistry | TracingConfig> = Http.layer

export const handles = Effect.gen(function*() {
  const http = yield* Http.tag
  const ctx = yield* Ctx.tag
  yield* http.runner.run
  const sampler = http.tracing.sampler
  // @ts-expect-error a daemon probe has no Runner
  ctx.runner
  // @ts-expect-error a daemon probe is not handed tracing config
  ctx.tracing
  // @ts-expect-error config is typed by the probe's schema
  const s: string = http.config.maxBody
  yield* ctx.mapRef("go_spans")
  // @ts-expect-error only shared maps can be referenced
  yield* ctx.mapRef("events")
  return [sampler, s]
})

// The Manager's view: only an instrument probe, once narrowed, exposes a Runner.
export const managerView = (probe: Probe.AnyProbe) => {
  // @ts-expect-error not every registered probe can run
  probe.runner
  return Probe.isInstrument(probe) ? probe.runner.run : undefined
}
