/**
 * Type-level tests of the probe API: capability misuse is a compile error (checked by `tsc --noEmit -p .`).
 */
import { Effect, Layer, Schema } from "effect"
import type { Bpf } from "../src/kernel/Bpf.ts"
import * as Binary from "../src/probe/Binary.ts"
import * as Probe from "../src/probe/Probe.ts"
import * as Manager from "../src/manager/Manager.ts"
import type { TargetSource } from "../src/manager/TargetEvent.ts"
import type { DuplicateProbeError, ProbeConfigError, ProbeLoadError } from "../src/probe/ProbeError.ts"
import * as ProbeTest from "../src/probe/ProbeTest.ts"
import type { TelemetrySink } from "../src/probe/Telemetry.ts"
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

// An instrument's layer needs TracingConfig; a daemon's does not. Neither needs a registry: the Manager composes
// the probes in its context.
export const daemonLayer: Layer.Layer<Probe.ProbeId<"typetest/ctx">, unknown, Bpf> = Ctx.layer
// @ts-expect-error the instrument probe traces, so its layer requires TracingConfig
export const httpLayer: Layer.Layer<Probe.ProbeId<"typetest/http">, unknown, Bpf> = Http.layer
export const httpLayerOk: Layer.Layer<Probe.ProbeId<"typetest/http">, unknown, Bpf | TracingConfig> = Http.layer

// The Manager's build fails with the probes' errors or a DuplicateProbeError, nothing else; it needs no registry.
export const manager: Layer.Layer<
  Manager.Manager,
  ProbeConfigError | ProbeLoadError | DuplicateProbeError,
  Bpf | TracingConfig | TelemetrySink | TargetSource
> = Manager.layerWith(Layer.mergeAll(Http.layer, Ctx.layer))
// @ts-expect-error a duplicate name is a typed error of the build, not a warning: it is in the error channel
export const managerNoDuplicates: Layer.Layer<Manager.Manager, ProbeConfigError | ProbeLoadError, any> = manager

// A mock stands in for a probe under its own tag: it provides exactly that probe's service, needs nothing, and its
// config is typed by the probe's.
export const mockCtx: Layer.Layer<Probe.ProbeId<"typetest/ctx">> = ProbeTest.mock(Ctx)
export const mockHttp = ProbeTest.mock(Http, { config: { maxBody: 1 } })
// @ts-expect-error the mock's config has the probe's type
ProbeTest.mock(Http, { config: { maxBody: "x" } })
// @ts-expect-error a mock of one probe is not another's
export const mockWrong: Layer.Layer<Probe.ProbeId<"typetest/http">> = ProbeTest.mock(Ctx)
// A dependent given the mock no longer needs the dependency built: only what it needs itself.
export const httpOverMock: Layer.Layer<Probe.ProbeId<"typetest/http">, unknown, Bpf | TracingConfig> = Http.layer.pipe(
  Layer.provide(mockCtx)
)

// A layout names the C struct it mirrors and, per field, the member when it is not the field's snake_case name.
export const Named = Binary.struct({ start: Binary.member("head.start_ns", Binary.u64) }, { struct: "event" })
export const namedStart: bigint = Named.decode(new Uint8Array(8)).start
// @ts-expect-error a member name does not change the field's type
export const namedWrong: string = Named.decode(new Uint8Array(8)).start

// Probe.objectFile takes a name, a path or a file: URL.
export const objects: ReadonlyArray<string> = [
  Probe.objectFile("x"),
  Probe.objectFile("/abs/x.bpf.o"),
  Probe.objectFile(new URL("./x.bpf.o", import.meta.url))
]

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
