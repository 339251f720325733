/**
 * Test kit for probes and Manager compositions, with no root and no kernel: the fake kernel, fake targets, a target
 * source a test drives, a capturing TelemetrySink, and mock probes whose capabilities the test supplies.
 *
 * ```ts
 * layer(ProbeTest.layer)("my probe", (it) => {
 *   it.effect("emits a span per record", () =>
 *     Effect.gen(function*() {
 *       const kernel = yield* FakeKernel
 *       ...
 *     }))
 * })
 * ```
 */
import { Context, Effect, Layer, Option, Queue, Stream } from "effect"
import type { BpfMapError, BpfObject, Link, MapRef } from "../kernel/Bpf.ts"
import type { ProbeLoadError } from "./ProbeError.ts"
import * as BpfTest from "../kernel/BpfTest.ts"
import type { TargetEvent } from "../manager/TargetEvent.ts"
import { TargetSource } from "../manager/TargetEvent.ts"
import type { Attacher, Attachment, KernelStats, Loaded, Loader, Runner, RunnerStats } from "./Capabilities.ts"
import type { Manifest } from "./Manifest.ts"
import * as Ids from "./Ids.ts"
import * as ManifestM from "./Manifest.ts"
import type { AnyProbe, Definition, ProbeBase, ProbeId } from "./Probe.ts"
import * as Probe from "./Probe.ts"
import { ProbeAttachError } from "./ProbeError.ts"
import type {
  Language,
  Selection,
  SharedLibrary,
  Target,
  TargetField,
  TargetFunction,
  TargetSymbol
} from "./Target.ts"
import type { LogData, Measurement, Signals, SpanData } from "./Telemetry.ts"
import { TelemetrySink } from "./Telemetry.ts"
import * as TracingConfig from "./TracingConfig.ts"

// ---------------------------------------------------------------------------------------------------------------
// Fake targets
// ---------------------------------------------------------------------------------------------------------------

/** A function of a fake target: offsets default to a made-up layout. */
export interface FakeFunction {
  readonly entryOffset?: number
  readonly returnOffsets?: ReadonlyArray<number>
}

/** What a fake target is built from; everything has a default. */
export interface FakeTargetOptions {
  readonly pid?: number
  readonly exe?: string
  readonly goVersion?: string
  /** Module path to version ("std" defaults to the Go version). */
  readonly modules?: Readonly<Record<string, string>>
  /** Function name to offsets. */
  readonly functions?: Readonly<Record<string, FakeFunction>>
  /** "pkg.Type.Field" (the last dot splits type and field) to offset. */
  readonly fields?: Readonly<Record<string, number>>
  /** How widely the process was selected (see `Target.selection`); "process" when absent. */
  readonly selection?: Selection
  /** The executable's identity, which shared links are keyed by. */
  readonly file?: string
  /** "go" (default) or "native": a native target has no Go version, modules, functions or fields. */
  readonly language?: Language
  /** ELF symbols of the executable (`Target.symbol`): name to file offset, or the symbol's details. */
  readonly symbols?: Readonly<Record<string, number | FakeSymbol>>
  readonly stripped?: boolean
  /** A native target's executable language (`Target.native`); none by default. */
  readonly nativeLanguage?: "c" | "c++" | "rust" | "go"
  /** Shared libraries the process has mapped. */
  readonly libraries?: ReadonlyArray<FakeLibrary>
}

/** An ELF symbol of a fake file; the address defaults to the file offset plus 0x1000. */
export interface FakeSymbol {
  readonly fileOffset: number
  readonly kind?: "function" | "object"
  readonly address?: bigint
  readonly size?: number
  readonly version?: string
}

/** A shared library of a fake target; everything but the name has a default. */
export interface FakeLibrary {
  /** Basename, e.g. "libssl.so.3". */
  readonly name: string
  /** Default "/usr/lib/x86_64-linux-gnu/<name>". */
  readonly path?: string
  /** Identity ("device:inode"); default made from the name. */
  readonly file?: string
  readonly soname?: string
  readonly version?: string
  /** Load address; default 0x7f0000000000. */
  readonly base?: bigint
  readonly stripped?: boolean
  /** Symbol name to file offset, or the symbol's details. */
  readonly symbols?: Readonly<Record<string, number | FakeSymbol>>
}

const symbolTable = (symbols: Readonly<Record<string, number | FakeSymbol>> | undefined) => {
  const table = new Map<string, TargetSymbol>()
  for (const [name, s] of Object.entries(symbols ?? {})) {
    const spec: FakeSymbol = typeof s === "number" ? { fileOffset: s } : s
    table.set(name, {
      name,
      kind: spec.kind ?? "function",
      address: spec.address ?? BigInt(spec.fileOffset + 0x1000),
      size: spec.size ?? 16,
      fileOffset: spec.fileOffset,
      ...(spec.version === undefined ? {} : { version: spec.version })
    })
  }
  return (name: string) => Option.fromNullishOr(table.get(name))
}

/** Build a fake `SharedLibrary`. */
export const library = (options: FakeLibrary): SharedLibrary => {
  const path = options.path ?? `/usr/lib/x86_64-linux-gnu/${options.name}`
  return {
    path,
    mappedPath: path,
    file: options.file ?? `9:${[...options.name].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 1_000_000, 7)}`,
    name: options.name,
    soname: options.soname ?? options.name,
    version: options.version,
    base: options.base ?? 0x7f0000000000n,
    stripped: options.stripped ?? false,
    symbol: symbolTable(options.symbols)
  }
}

let nextFakeOffset = 0x10000

/** Build a `Target` with no process behind it. */
export const target = (options: FakeTargetOptions = {}): Target => {
  const pid = options.pid ?? 4242
  const goVersion = options.goVersion ?? "1.26.0"
  const modules = new Map<string, string>([["std", goVersion], ...Object.entries(options.modules ?? {})])
  const functions = new Map<string, TargetFunction>()
  for (const [name, f] of Object.entries(options.functions ?? {})) {
    const base = nextFakeOffset
    nextFakeOffset += 0x1000
    const entryOffset = f.entryOffset ?? base + 0x14
    functions.set(name, {
      name,
      address: BigInt(0x400000 + (f.entryOffset ?? base)),
      fileOffset: f.entryOffset === undefined ? base : f.entryOffset - 0x14,
      entryOffset,
      returnOffsets: f.returnOffsets ?? [base + 0x80]
    })
  }
  const fields = new Map<string, TargetField>(
    Object.entries(options.fields ?? {}).map(([k, offset]) => [k, { offset, source: "table" as const }])
  )
  const native = options.language === "native"
  return {
    pid,
    exe: options.exe ?? `/fake/bin/app-${pid}`,
    ...(options.selection === undefined ? {} : { selection: options.selection }),
    ...(options.file === undefined ? {} : { file: options.file }),
    language: native ? "native" : "go",
    goVersion: native ? "" : goVersion,
    modules: native ? new Map() : modules,
    function: (name) => native ? Option.none() : Option.fromNullishOr(functions.get(name)),
    field: (type, field) => native ? Option.none() : Option.fromNullishOr(fields.get(`${type}.${field}`)),
    symbol: symbolTable(options.symbols),
    stripped: options.stripped ?? false,
    ...(native && options.nativeLanguage !== undefined ? { native: { language: options.nativeLanguage } } : {}),
    libraries: (options.libraries ?? []).map(library)
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Capturing sink
// ---------------------------------------------------------------------------------------------------------------

/**
 * A span as the capturing sink keeps it: its ids as lowercase hex, whichever form the probe gave them in
 * (`Telemetry.Id`), so that a test compares them with strings.
 */
export type CapturedSpan = Omit<SpanData, "traceId" | "spanId" | "parentSpanId"> & {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
}

/** A log record as the capturing sink keeps it: its ids, when it has them, as lowercase hex. */
export type CapturedLog = Omit<LogData, "traceId" | "spanId"> & {
  readonly traceId?: string
  readonly spanId?: string
}

/** One record's signals (a probe's `signals(record)`) as the capturing sink would keep them: ids as hex. */
export const capturedSignals = (s: Signals): {
  readonly spans: ReadonlyArray<CapturedSpan>
  readonly logs: ReadonlyArray<CapturedLog>
  readonly measurements: ReadonlyArray<Measurement>
} => ({ spans: s.spans.map(capturedSpan), logs: s.logs.map(capturedLog), measurements: s.measurements })

/** Spans the capturing sink received. */
export class CapturedSpans extends Context.Service<CapturedSpans, {
  /** Every span received so far. */
  readonly all: Effect.Effect<ReadonlyArray<CapturedSpan>>
  /** Wait for the next `n` spans (not yet taken) and return them. */
  readonly take: (n: number) => Effect.Effect<ReadonlyArray<CapturedSpan>>
}>()("probescope/probe/ProbeTest/CapturedSpans") {}

/** Log records the capturing sink received. */
export class CapturedLogs extends Context.Service<CapturedLogs, {
  readonly all: Effect.Effect<ReadonlyArray<CapturedLog>>
  /** Wait for the next `n` log records (not yet taken) and return them. */
  readonly take: (n: number) => Effect.Effect<ReadonlyArray<CapturedLog>>
}>()("probescope/probe/ProbeTest/CapturedLogs") {}

/** A copy of the span with hex ids. */
export const capturedSpan = (s: SpanData): CapturedSpan => {
  const { parentSpanId, spanId, traceId, ...rest } = s
  return {
    ...rest,
    traceId: Ids.hex(traceId),
    spanId: Ids.hex(spanId),
    ...(parentSpanId === undefined ? {} : { parentSpanId: Ids.hex(parentSpanId) })
  }
}

/** A copy of the log record with hex ids. */
export const capturedLog = (l: LogData): CapturedLog => {
  const { spanId, traceId, ...rest } = l
  return {
    ...rest,
    ...(traceId === undefined ? {} : { traceId: Ids.hex(traceId) }),
    ...(spanId === undefined ? {} : { spanId: Ids.hex(spanId) })
  }
}

/** Measurements the capturing sink received. */
export class CapturedMeasurements extends Context.Service<CapturedMeasurements, {
  readonly all: Effect.Effect<ReadonlyArray<Measurement>>
  /** Wait for the next `n` measurements (not yet taken) and return them. */
  readonly take: (n: number) => Effect.Effect<ReadonlyArray<Measurement>>
}>()("probescope/probe/ProbeTest/CapturedMeasurements") {}

const capture = <I, A>(keep: (item: I) => A) =>
  Effect.map(Queue.unbounded<A>(), (queue) => {
    const all: Array<A> = []
    return {
      add: (items: ReadonlyArray<I>) =>
        Effect.sync(() => {
          for (const item of items) {
            const kept = keep(item)
            all.push(kept)
            Queue.offerUnsafe(queue, kept)
          }
        }),
      read: {
        all: Effect.sync((): ReadonlyArray<A> => [...all]),
        take: (n: number) =>
          Effect.gen(function*() {
            const out: Array<A> = []
            for (let i = 0; i < n; i++) out.push(yield* Queue.take(queue))
            return out as ReadonlyArray<A>
          })
      }
    }
  })

/**
 * A TelemetrySink that keeps every signal: `CapturedSpans`, `CapturedLogs` and `CapturedMeasurements` read them
 * (ids as lowercase hex).
 * It takes every kind, so a probe's undeclared recordings still fail in its Runner, not here.
 */
export const layerSink: Layer.Layer<TelemetrySink | CapturedSpans | CapturedLogs | CapturedMeasurements> = Layer
  .effectContext(
    Effect.gen(function*() {
      const spans = yield* capture(capturedSpan)
      const logs = yield* capture(capturedLog)
      const measurements = yield* capture((m: Measurement) => m)
      const sink = TelemetrySink.of({
        span: (span) => spans.add([span]),
        spans: spans.add,
        logs: logs.add,
        measurements: measurements.add
      })
      return Context.make(TelemetrySink, sink).pipe(
        Context.add(CapturedSpans, CapturedSpans.of(spans.read)),
        Context.add(CapturedLogs, CapturedLogs.of(logs.read)),
        Context.add(CapturedMeasurements, CapturedMeasurements.of(measurements.read))
      )
    })
  )

// ---------------------------------------------------------------------------------------------------------------
// Driven target source
// ---------------------------------------------------------------------------------------------------------------

/** Drive the TargetSource from a test. */
export class TestTargets extends Context.Service<TestTargets, {
  readonly start: (target: Target) => Effect.Effect<void>
  readonly exit: (pid: number) => Effect.Effect<void>
  readonly offer: (event: TargetEvent) => Effect.Effect<void>
}>()("probescope/probe/ProbeTest/TestTargets") {}

/** A TargetSource fed by `TestTargets`. */
export const layerTargets: Layer.Layer<TargetSource | TestTargets> = Layer.effectContext(
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<TargetEvent>()
    const offer = (event: TargetEvent) => Effect.asVoid(Queue.offer(queue, event))
    const control = TestTargets.of({
      offer,
      start: (target) => offer({ _tag: "Started", target }),
      exit: (pid) => offer({ _tag: "Exited", pid })
    })
    return Context.make(TargetSource, TargetSource.of({ events: Stream.fromQueue(queue) })).pipe(
      Context.add(TestTargets, control)
    )
  })
)

/** A TargetSource that emits the given events, then nothing. */
export const targetSource = (events: ReadonlyArray<TargetEvent>): Layer.Layer<TargetSource> =>
  Layer.succeed(TargetSource, TargetSource.of({ events: Stream.concat(Stream.fromIterable(events), Stream.never) }))

// ---------------------------------------------------------------------------------------------------------------
// Mock capabilities
// ---------------------------------------------------------------------------------------------------------------

/** A record of what mock probes did, in order: "attach <probe> <pid>", "detach <probe> <pid>", "run <probe>", ... */
export class MockLog extends Context.Service<MockLog, {
  readonly entries: Effect.Effect<ReadonlyArray<string>>
}>()("probescope/probe/ProbeTest/MockLog") {}

const mockLogState: Array<string> = []

/** The shared log of mock probes (cleared by `layerMockLog`). */
export const layerMockLog: Layer.Layer<MockLog> = Layer.sync(MockLog, () => {
  mockLogState.length = 0
  return MockLog.of({ entries: Effect.sync(() => [...mockLogState]) })
})

/** An Attacher that checks the manifest like the real one, then records attach/detach (or runs `onAttach`). */
export const mockAttacher = (
  name: string,
  manifest: Manifest,
  onAttach?: (target: Target) => Effect.Effect<void, ProbeAttachError>
): Attacher => ({
  applicability: (t) => ManifestM.check(name, manifest, t),
  attach: (t) =>
    Effect.gen(function*() {
      const app = ManifestM.check(name, manifest, t)
      if (app._tag !== "Applies") {
        return yield* new ProbeAttachError({
          probe: name,
          pid: t.pid,
          reason: "NotApplicable",
          message: app._tag === "Global" ? `probe ${name} is global` : app.reason
        })
      }
      if (onAttach !== undefined) yield* onAttach(t)
      yield* Effect.acquireRelease(
        Effect.sync(() => void mockLogState.push(`attach ${name} ${t.pid}`)),
        () => Effect.sync(() => void mockLogState.push(`detach ${name} ${t.pid}`))
      )
      const attachment: Attachment = {
        probe: name,
        pid: t.pid,
        symbols: app.symbols,
        missingOptional: app.missingOptional,
        links: [] as ReadonlyArray<Link>
      }
      return attachment
    })
})

/** A Runner that emits the given spans once, then waits until interrupted. */
export const mockRunner = (name: string, spans: ReadonlyArray<Omit<SpanData, "probe">> = []): Runner => {
  let records = 0
  return {
    run: Effect.gen(function*() {
      const sink = yield* TelemetrySink
      mockLogState.push(`run ${name}`)
      for (const s of spans) {
        records++
        yield* sink.span({ ...s, probe: name })
      }
      return yield* Effect.never
    }).pipe(Effect.onInterrupt(() => Effect.sync(() => void mockLogState.push(`stop ${name}`)))),
    stats: Effect.sync((): RunnerStats => ({
      records,
      decodeErrors: 0,
      skipped: 0,
      signalErrors: 0,
      unsupported: 0,
      consumerDropped: 0
    })),
    // Everything was emitted at start: nothing is left to read.
    stop: Effect.void
  }
}

/** What a mock probe is made of. */
export interface MockProbeOptions {
  readonly name: string
  readonly kind?: "instrument" | "daemon"
  readonly manifest: Manifest
  readonly attacher?: Attacher
  readonly runner?: Runner
  /** Probes whose maps it would reuse (see `ProbeBase.dependsOn`): attached before it, daemons only where it is. */
  readonly dependsOn?: ReadonlyArray<string>
}

const mockLink = (program: string) => Effect.succeed({ id: 0, program, description: "mock", kernelLinks: 0 })

const mockObject = (name: string): BpfObject => ({
  name,
  programs: [],
  maps: [],
  btf: () => Effect.succeed(Option.none()),
  lookup: () => Effect.succeed(Option.none()),
  update: () => Effect.void,
  delete: () => Effect.succeed(false),
  mapRef: (map) => Effect.succeed({ object: name, map, handle: undefined }),
  attachUprobe: (spec) => mockLink(spec.program),
  attachTracepoint: (spec) => mockLink(spec.program),
  attachCgroup: (spec) => mockLink(spec.program),
  ringBuffer: (map) =>
    Effect.succeed({
      map,
      records: Stream.never,
      forEachBatch: () => Effect.never,
      stats: Effect.succeed({ received: 0, dropped: 0, batches: 0 }),
      close: Effect.void
    })
})

const mockLoaded = (name: string): Loaded => ({ object: mockObject(name), constants: {}, reusedMaps: {}, layouts: [] })

/** The capabilities a mock stands in with; anything not given is a mock that records what it did in the MockLog. */
export interface MockCapabilities<Config = unknown> {
  readonly attacher?: Attacher
  /** Instruments only: a Runner emitting nothing by default. */
  readonly runner?: Runner
  /** What its Loader loads (a mock object by default); give `loader` instead to mock the loading itself. */
  readonly loaded?: Loaded
  readonly loader?: Loader
  readonly config?: Config
  /**
   * The maps it shares. By default a reference the fake kernel turns into an in-memory map shared by every object
   * that reuses it (named "<probe>/<map>" in the Load events).
   */
  readonly mapRef?: (map: string) => Effect.Effect<MapRef, BpfMapError | ProbeLoadError>
  readonly kernelStats?: Effect.Effect<KernelStats, BpfMapError>
}

const mockValue = (
  name: string,
  kind: "instrument" | "daemon",
  manifest: Manifest,
  dependsOn: ReadonlyArray<string>,
  capabilities: MockCapabilities,
  uses: ReadonlyArray<{ readonly probe: string; readonly feature: string }> = []
): AnyProbe => {
  const base = {
    name,
    manifest,
    config: capabilities.config ?? {},
    dependsOn,
    uses,
    loader: capabilities.loader ?? {
      load: Effect.succeed(capabilities.loaded ?? mockLoaded(name)),
      status: Effect.succeed("loaded" as const)
    },
    attacher: capabilities.attacher ?? mockAttacher(name, manifest),
    mapRef: capabilities.mapRef ?? ((map: string) => Effect.succeed({ object: name, map, handle: undefined })),
    kernelStats: capabilities.kernelStats ?? Effect.succeed({ submitted: 0n, dropped: 0n })
  }
  return kind === "instrument" ?
    {
      ...base,
      kind,
      runner: capabilities.runner ?? mockRunner(name),
      tracing: { sampler: TracingConfig.defaultSampler }
    } :
    { ...base, kind }
}

/** Loading and closing a mock, recorded in the MockLog as "load <name>" / "close <name>". */
const recordLifetime = (name: string) =>
  Effect.acquireRelease(
    Effect.sync(() => void mockLogState.push(`load ${name}`)),
    () => Effect.sync(() => void mockLogState.push(`close ${name}`))
  )

/**
 * A probe with mock capabilities and no definition (no kernel), composed like a real one: for testing Manager
 * compositions and failure isolation. Loading and closing are recorded in the MockLog as "load <name>" /
 * "close <name>".
 */
export const mockProbe = (options: MockProbeOptions): Layer.Layer<never> =>
  Layer.effectContext(Effect.gen(function*() {
    yield* recordLifetime(options.name)
    const probe = mockValue(options.name, options.kind ?? "instrument", options.manifest, options.dependsOn ?? [], {
      ...(options.attacher === undefined ? {} : { attacher: options.attacher }),
      ...(options.runner === undefined ? {} : { runner: options.runner })
    })
    const tag = Context.Service<ProbeId<string>, AnyProbe>(`probescope/probe/mock/${options.name}`)
    return Probe.probeContext(tag, probe)
  })) as Layer.Layer<never>

/**
 * A probe's capabilities mocked under its own tag: whatever needs `definition.tag` gets the mock instead of a loaded
 * object, so a probe that depends on it (reuses its maps) is tested against a mocked dependency:
 *
 * ```ts
 * const Server = NetHttpServer.layer.pipe(Layer.provideMerge(ProbeTest.mock(GoContext)))
 * ```
 *
 * The Manager composes it like the real probe (same name, kind, manifest and dependencies). Unless given, its
 * Attacher checks the manifest and records "attach <name> <pid>" / "detach <name> <pid>" in the MockLog, and its
 * shared maps are in-memory maps of the fake kernel.
 */
export const mock = <Name extends string, Handle extends ProbeBase<Name, any, any>>(
  definition: Definition<Name, Handle, any, any, any>,
  capabilities: MockCapabilities<Handle["config"]> = {}
): Layer.Layer<ProbeId<Name>> =>
  Layer.effectContext(Effect.gen(function*() {
    yield* recordLifetime(definition.name)
    return Probe.probeContext(
      definition.tag,
      mockValue(
        definition.name,
        definition.kind,
        definition.manifest,
        definition.dependsOn,
        capabilities,
        definition.uses
      )
    )
  }))

// ---------------------------------------------------------------------------------------------------------------
// Everything at once
// ---------------------------------------------------------------------------------------------------------------

/**
 * Fake kernel (`Bpf` + `FakeKernel`), always-on `TracingConfig`, the capturing sink and a driven target source:
 * everything a probe layer and `Manager.layer` need.
 */
export const layer = Layer.mergeAll(
  BpfTest.layer,
  TracingConfig.layer({ root: "always_on", ratio: 1, parentBased: true }),
  layerSink,
  layerTargets,
  layerMockLog
)
