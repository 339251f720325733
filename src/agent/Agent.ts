/**
 * The agent as a library: discovery (a /proc scan plus exec/exit tracepoints), selection by pid, executable or a
 * predicate on the analysed binary, target analysis, per-process resources, the Manager over any probe layers
 * (built-in or your own), and telemetry — as one layer. `probescope run` is a thin shell over it.
 *
 * ```ts
 * const program = Effect.gen(function*() {
 *   const agent = yield* Agent.Agent
 *   const report = yield* agent.ready        // the processes selected at start are attached (or failed, and why)
 *   yield* Effect.never
 * }).pipe(
 *   Effect.provide(Agent.layer({ selection: { pids: [], exes: ["/srv/api"] }, probes: [...Agent.builtins, MyProbe] }))
 * )
 * ```
 *
 * Every kernel resource hangs off the layer's scope, so closing it (an interrupt, SIGINT through `runMain`) detaches
 * and closes everything, after which telemetry flushes. The layer logs to stderr, never to stdout (the console
 * exporter's): it installs `layerLogger` for itself.
 */
import { Context, Effect, Layer, Option } from "effect"
import type { Bpf } from "../kernel/Bpf.ts"
import * as BpfLive from "../kernel/BpfLive.ts"
import * as Discovery from "../discovery/Discovery.ts"
import * as Manager from "../manager/Manager.ts"
import * as TargetEvent from "../manager/TargetEvent.ts"
import * as Probe from "../probe/Probe.ts"
import type { ProbeBuildError } from "../probe/ProbeError.ts"
import * as ProbeRegistry from "../probe/ProbeRegistry.ts"
import * as TracingConfig from "../probe/TracingConfig.ts"
import * as GoBinary from "../target/GoBinary.ts"
import * as Telemetry from "../telemetry/Telemetry.ts"
import type { TelemetryConfigError } from "../telemetry/TelemetryConfig.ts"
import * as Driver from "./internal/driver.ts"
import * as Logging from "./internal/logging.ts"
import * as Modules from "./internal/modules.ts"
import * as Plan from "./internal/plan.ts"
import * as Probes from "./internal/probes.ts"
import * as Glob from "../discovery/Glob.ts"
import * as Selecting from "./internal/selection.ts"
import * as SelfMetrics from "./internal/selfMetrics.ts"
import * as Targets from "./internal/targets.ts"

export { AgentConfigError, ProbeModuleError, UnsupportedTarget } from "./internal/errors.ts"
export type { AttachedProcess, FailedProcess, ReadyReport, UnmatchedSelector } from "./internal/driver.ts"
export { SelectionError } from "./internal/selection.ts"
export type { Planned } from "./internal/plan.ts"
export type {
  AgentProbe,
  ProbeDefinition,
  ProbeInfo,
  ProbeLayer,
  ProbeRequirements,
  SymbolInfo
} from "./internal/probes.ts"
export type { Selection } from "./internal/targets.ts"

/** The running agent. */
export class Agent extends Context.Service<Agent, {
  /** Every probe it runs (dependencies included, in build order), as `describe` reports them. */
  readonly probes: ReadonlyArray<Probes.ProbeInfo>
  readonly selection: Targets.Selection
  /**
   * Completes once every process selected when the agent started has been attached (at least one instrument probe),
   * has failed (with the reason: not Go, unsupported, every attach failed) or has exited. Processes found later are
   * attached as they come and are not part of it.
   */
  readonly ready: Effect.Effect<Driver.ReadyReport>
}>()("probescope/agent/Agent") {}

/**
 * The built-in probes `run` uses by default (go_context, net/http server and client, grpc, database_sql, go_redis,
 * kafka_go, otel_trace, go_panic, openssl_http), in dependency order, with their attributes.
 */
export const builtins: ReadonlyArray<Probes.ProbeDefinition> = Probes.builtins

/** Built-ins used only when named (`tcp_metrics`, `tcp_context`): see `Probes.optionalBuiltins`. */
export const optionalBuiltins: ReadonlyArray<Probes.ProbeDefinition> = Probes.optionalBuiltins

/** A built-in, default or optional, by its name (e.g. `Agent.builtin("tcp_metrics")`), or undefined. */
export const builtin: (name: string) => Probes.ProbeDefinition | undefined = Probes.builtin

/** How to build the agent. */
export interface Options {
  /** What to instrument. */
  readonly selection: Targets.Selection
  /** The probes to run: definitions or layers (default `builtins`). */
  readonly probes?: ReadonlyArray<Probes.AgentProbe>
  /** Probe-specific config by probe name (`Probe.ProbeSettings`), decoded by each probe's schema. */
  readonly settings?: Readonly<Record<string, unknown>>
  /** The kernel (default `BpfLive.layer`; `BpfTest.layer` runs the agent on the fake kernel). */
  readonly kernel?: Layer.Layer<Bpf>
  /**
   * What goes in each process's resource beyond the process, host and container: `commandArgs` adds
   * `process.command_args` (default: `PROBESCOPE_RESOURCE_COMMAND_ARGS`, else false — arguments can hold secrets).
   */
  readonly resource?: { readonly commandArgs?: boolean }
  /**
   * When the probes' objects go into the kernel (`Probe.LoadPolicy`): "onAttach" loads each probe when a process
   * first needs it; "eager" loads every probe at start. Default (`PROBESCOPE_PROBE_LOAD`, else): the built-ins on
   * attach, your own probes at start, so a probe you are writing that cannot load stops the start with its error.
   */
  readonly load?: "eager" | "onAttach"
  /** Telemetry (default `Telemetry.layer`, configured from `OTEL_*` through the current `ConfigProvider`). */
  readonly telemetry?: Layer.Layer<Telemetry.Services, TelemetryConfigError>
}

/**
 * The probes' descriptions, made before anything starts (the explicit targets are checked against them), and the
 * named executables that are Go, as analysed for that check.
 */
class Catalog extends Context.Service<Catalog, {
  readonly described: ReadonlyArray<Probes.ProbeInfo>
  readonly files: ReadonlyArray<GoBinary.GoBinary>
}>()("probescope/agent/Catalog") {}

/**
 * The whole agent: the kernel, analysis, telemetry, the sampler (`OTEL_TRACES_SAMPLER`), the given probes under the
 * Manager, discovery and the `Agent` service; also the Manager's counters as `probescope.probe.*` self metrics.
 *
 * Before telemetry starts — so a mistake fails at once, with nothing to flush and no exporter to wait for — the
 * probes are described (a bad setting fails here), each explicit pid and executable is checked to be Go that one of
 * the given instrument probes supports (`UnsupportedTarget` with each probe's reason), and
 * `PROBESCOPE_LINK_GRACE_MS` and `PROBESCOPE_PROBE_LOAD` are read (`AgentConfigError`).
 *
 * By default a built-in probe's object is loaded when a process first needs it (`Options.load`): the agent verifies
 * only what its targets use, and a built-in the kernel rejects is that process's attach failure (in `ready` too).
 * Other probes (yours) load at start. What the processes of a named executable (an `--exe` file, not a glob) need
 * is loaded once that check has analysed the file, while telemetry and the Manager are built: their first process
 * (or the ones running) then waits less, or not at all, for the verifier.
 */
export const layer = (options: Options) => {
  const probes = options.probes ?? builtins
  const settings = options.settings ?? {}
  const { selection } = options
  // The struct types the probes' manifests name go into each binary's first DWARF pass: a type read only on demand
  // costs a second pass over every struct of the file, on the event loop, the first time a process of it is seen.
  const types = new Set(
    probes.filter(Probes.isDefinition).flatMap((p) =>
      Object.values((p.manifest as { readonly fields?: Record<string, { readonly type: string }> }).fields ?? {})
        .map((f) => f.type)
    )
  )
  const analysis = GoBinary.layerWith({ types })
  const catalog = Layer.effect(
    Catalog,
    Effect.gen(function*() {
      yield* Selecting.validate(selection)
      // A glob names no file to check; what it finds is checked as it is found.
      const files = selection.exes.filter((exe) => !Glob.isGlob(exe))
      // The files' analyses start first: their reads and DWARF's inflating run on the thread pool while the main
      // thread describes the probes. The checks below join them (the analysis cache shares one in flight), so what
      // fails is reported in the same order as before: a bad setting, then a pid, then a file.
      const analyses = yield* GoBinary.TargetAnalysis
      yield* Effect.forkScoped(Effect.forEach(files, (exe) => Effect.ignore(analyses.analyzeFile(exe))), {
        startImmediately: true
      })
      const described = yield* Probes.describe(probes, settings)
      yield* Effect.forEach(selection.pids, (pid) => Targets.checkPid(described, pid), { discard: true })
      const checked = yield* Effect.forEach(files, (exe) => Targets.checkExe(described, exe))
      return { described, files: checked.flatMap((b) => Option.isSome(b) ? [b.value] : []) }
    })
  ).pipe(Layer.provide(analysis))
  const grace = Layer.effect(Probe.LinkGrace, Targets.linkGrace)
  const loadChoice = options.load !== undefined ? Effect.succeed(options.load) : Targets.loadPolicy
  const commandArgs = options.resource?.commandArgs !== undefined
    ? Effect.succeed(options.resource.commandArgs)
    : Targets.commandArgs
  const kernel = options.kernel ?? BpfLive.layer
  // Discovery's programs go through the verifier (a libuv thread, ~30 ms) while the main thread analyses the
  // `--exe` files for the catalog (~100 ms or more): built side by side, not one after the other. Its only
  // requirement is the kernel; the driver subscribes to it later, so nothing is read before the agent is built.
  const discovery = Discovery.layer.pipe(Layer.provide(kernel))
  // The probes need the kernel, the sampler and their settings, not telemetry: built (one instance, shared with the
  // Manager below by reference) once the catalog has checked the targets.
  const probeSet = Layer.unwrap(
    Effect.map(loadChoice, (choice) => Probes.combine(Probes.withLoadPolicy(probes, choice)))
  ).pipe(
    Layer.provide(Layer.mergeAll(grace, Probe.settings(settings), ProbeRegistry.layer, TracingConfig.layerConfig)),
    Layer.provide(kernel)
  )
  // The probes the named `--exe` files' processes need go into the kernel as soon as the catalog has analysed the
  // files: their verification (80–150 ms of libuv threads for the example service's three) overlaps building
  // telemetry, the Manager and the driver on the main thread, instead of starting after them. The driver's own
  // preload then finds them under way; failures stay the attaches' to report.
  const preloaded = Layer.effectDiscard(
    Effect.gen(function*() {
      const { files } = yield* Catalog
      if (files.length === 0) return
      const found = Probe.instancesIn(yield* Effect.context<never>())
      // Started at once, from the catalog's analyses (the analysis cache would answer only after a file stat): each
      // load's JavaScript part runs now and hands its object to the kernel before this layer's build returns. A
      // fiber forked the usual way would wait for the main thread, busy building the rest of the agent.
      yield* Effect.forkScoped(
        Effect.forEach(files, (b) => Manager.preloadProbes(found, { ...b, pid: 0, exe: b.path, libraries: [] }), {
          concurrency: "unbounded",
          discard: true
        }),
        { startImmediately: true }
      )
    })
  ).pipe(Layer.provide(probeSet), Layer.provide(catalog))
  const base = Layer.mergeAll(analysis, options.telemetry ?? Telemetry.layer, TracingConfig.layerConfig).pipe(
    Layer.provideMerge(kernel),
    Layer.provide(Layer.mergeAll(catalog, discovery, preloaded)),
    Layer.provide(Layer.merge(grace, Layer.effectDiscard(loadChoice)))
  )
  // Driven through `Manager.handle` (see internal/driver.ts): its own source stays empty.
  const manager = Manager.layer.pipe(
    Layer.provide(probeSet),
    Layer.provide(TargetEvent.layerEmpty),
    Layer.provide(base)
  )
  const agent = Layer.effect(
    Agent,
    Effect.gen(function*() {
      const { described } = yield* Catalog
      const loop = yield* Driver.make(selection, described, { commandArgs: yield* commandArgs })
      return Agent.of({ probes: described, selection, ready: loop.ready })
    })
  ).pipe(
    Layer.provide(discovery),
    Layer.provide(manager),
    Layer.provide(catalog),
    Layer.provide(base)
  )
  return Layer.mergeAll(agent, manager, SelfMetrics.layer.pipe(Layer.provide(manager))).pipe(
    Layer.provideMerge(base),
    Layer.provide(Logging.layer())
  )
}

/**
 * Every probe the given ones load (dependencies included, in build order) with what each declares: library,
 * version ranges, symbols and their programs, signals, attributes. Built on the fake kernel: no privileges needed.
 */
export const describe: (
  probes: ReadonlyArray<Probes.AgentProbe>,
  settings?: Readonly<Record<string, unknown>>
) => Effect.Effect<ReadonlyArray<Probes.ProbeInfo>, ProbeBuildError> = Probes.describe

/**
 * Loads a probe module (`.js`, `.mjs`, or `.ts` when this Node strips types): every probe of its default export and
 * of its `probe` / `probes` exports — definitions, arrays of them, or layers. A module that cannot be loaded or
 * exports nothing usable is a `ProbeModuleError` naming it and why.
 */
export const loadProbeModule = Modules.load

/** Whether a value is a probe definition or a probe layer. */
export const isAgentProbe = Probes.isAgentProbe

/** The stderr logger the agent uses (Effect's pretty console format, the message last on its first line). */
export const logger = Logging.stderr

/** Replaces Effect's default (stdout) logger with `logger` and sends the console loggers to stderr. */
export const layerLogger: Layer.Layer<never> = Logging.layer()

/**
 * The first selector that can never match (a port out of range, a relative glob, a container id that is not hex,
 * a relative cgroup path) as a `SelectionError` naming it; `layer` checks this first.
 */
export const validateSelection = Selecting.validate

/**
 * How `run` would treat one running process: the selectors that pick it (or none), and whether the given probes
 * attach to it, with the reason when not. Reads /proc and analyses the executable; loads nothing.
 */
export const explain = Plan.explain

/** Every running process some selector picks, each with `explain`'s answer: what `run` would attach now. */
export const plan = Plan.plan
