/**
 * The agent `probescope run` starts, as layers: discovery feeds target analysis, analysed processes feed the
 * Manager, the Manager's probes feed telemetry. Every kernel resource hangs off these layers' scopes, so an
 * interrupt (SIGINT/SIGTERM) detaches and closes everything, after which telemetry flushes.
 */
import * as fs from "node:fs"
import { Config, Duration, Effect, Layer, Stream } from "effect"
import * as Discovery from "../discovery/Discovery.ts"
import type { Selector } from "../discovery/Selector.ts"
import { matcher } from "../discovery/Selector.ts"
import { GoContext, NetHttpClient, NetHttpServer } from "../instrumentations/index.ts"
import * as BpfLive from "../kernel/BpfLive.ts"
import * as Manager from "../manager/Manager.ts"
import { TargetEvent, TargetSource } from "../manager/TargetEvent.ts"
import type { TargetEvent as TargetEventType } from "../manager/TargetEvent.ts"
import * as Manifest from "../probe/Manifest.ts"
import * as Probe from "../probe/Probe.ts"
import * as TracingConfig from "../probe/TracingConfig.ts"
import type { Target } from "../probe/Target.ts"
import type { AnalysisError, ProcessAnalysisError } from "../target/Errors.ts"
import * as GoBinary from "../target/GoBinary.ts"
import * as ProcessResources from "../telemetry/ProcessResources.ts"
import type * as SelfMetrics from "../telemetry/SelfMetrics.ts"
import * as Telemetry from "../telemetry/Telemetry.ts"
import { AgentConfigError, UnsupportedTarget } from "./Errors.ts"

/** The built-in probes' definitions, in dependency order (for inspect and for explicit-PID checks). */
export const builtins = [GoContext.GoContext, NetHttpServer.NetHttpServer, NetHttpClient.NetHttpClient] as const

/** The built-in probes as one layer (GoContext comes in through the instruments' dependency on its map). */
export const builtinProbes = Layer.mergeAll(NetHttpServer.NetHttpServer.layer, NetHttpClient.NetHttpClient.layer)

/** How long a process's resource outlives it: spans of its last requests may still be in flight to the exporter. */
const RESOURCE_GRACE = Duration.seconds(30)

/** Why no built-in instrument applies to a target (a daemon alone produces nothing), or undefined. */
const unsupported = (target: Target): string | undefined => {
  const reasons: Array<string> = []
  for (const def of builtins) {
    if (def.kind !== "instrument") continue
    const app = Manifest.check(def.name, def.manifest, target)
    if (app._tag === "Applies") return undefined
    if (app._tag === "NotApplicable") reasons.push(`${def.name}: ${app.reason}`)
  }
  return `${target.exe} (Go ${target.goVersion}) is not supported: ${reasons.join("; ")}`
}

/**
 * What the user named must be instrumentable — analysable Go that at least one built-in probe supports — or the run
 * fails up front with the reasons, rather than sitting idle.
 */
const checkExplicit = (pid: number) =>
  Effect.gen(function*() {
    const analysis = yield* GoBinary.TargetAnalysis
    const reason = unsupported(yield* analysis.analyzePid(pid))
    if (reason !== undefined) return yield* new UnsupportedTarget({ message: `pid ${pid}: ${reason}` })
  })

const checkExe = (path: string) =>
  Effect.gen(function*() {
    const analysis = yield* GoBinary.TargetAnalysis
    const binary = yield* analysis.analyzeFile(path)
    const reason = unsupported({ ...binary, pid: 0, exe: binary.path })
    if (reason !== undefined) return yield* new UnsupportedTarget({ message: reason })
  })

/**
 * What to instrument: explicit PIDs, executables (running and future processes), and/or every process whose
 * analysed binary satisfies `goPredicate` (e.g. every Go program: `() => true`).
 */
export interface Selection {
  readonly pids: ReadonlyArray<number>
  readonly exes: ReadonlyArray<string>
  readonly goPredicate?: (binary: GoBinary.GoBinary) => boolean
}

/** The executable's device and inode, which shared links are keyed by (any path to the file gives the same). */
const fileIdentity = (exe: string): { readonly file?: string } => {
  try {
    const st = fs.statSync(exe, { bigint: true })
    return { file: `${st.dev}:${st.ino}` }
  } catch {
    return {}
  }
}

/**
 * How long a file's shared links outlive its last process (`PROBESCOPE_LINK_GRACE_MS`, default 10000, 0 closes them
 * at once), so a restarted service is traced without re-attaching.
 */
const linkGrace = Config.String("PROBESCOPE_LINK_GRACE_MS").pipe(
  Config.option,
  Effect.mapError((e) => new AgentConfigError({ variable: "PROBESCOPE_LINK_GRACE_MS", message: e.message })),
  Effect.flatMap((value) => {
    if (value._tag === "None" || value.value.trim() === "") return Effect.succeed(Duration.seconds(10))
    const text = value.value.trim()
    return /^\d+$/.test(text) && Number(text) <= 3_600_000 ? Effect.succeed(Duration.millis(Number(text))) : Effect.fail(
      new AgentConfigError({
        variable: "PROBESCOPE_LINK_GRACE_MS",
        message: `Invalid PROBESCOPE_LINK_GRACE_MS=${JSON.stringify(value.value)}: expected whole milliseconds from 0 ` +
          `to 3600000`
      })
    )
  })
)

/** Discovery only sees paths; with a Go predicate every process passes it and analysis decides. */
const toSelector = (s: Selection): Selector =>
  s.goPredicate === undefined
    ? { pids: s.pids, exes: s.exes }
    : { pids: s.pids, exes: s.exes, predicate: (exe) => exe !== process.execPath }

/**
 * The Manager's target source: discovery's process events, each started process analysed into a `Target` and its
 * resource registered. A discovered process that cannot be analysed (not Go, too old) is logged and skipped.
 */
export const targetSource = (selection: Selection) =>
  Layer.effect(
    TargetSource,
    Effect.gen(function*() {
      const selector = toSelector(selection)
      const analysis = yield* GoBinary.TargetAnalysis
      const resources = yield* ProcessResources.ProcessResources
      const processes = yield* Discovery.subscribe(selector)
      const named = matcher({ pids: selection.pids, exes: selection.exes })
      const byExecutable = matcher({ pids: [], exes: selection.exes })
      const started = (pid: number, exe: string): Effect.Effect<TargetEventType | undefined> => {
        // What the user named deserves a warning when it cannot be instrumented; what a predicate swept in does not.
        const skip = (why: string) =>
          Effect.as(
            named(pid, exe) ? Effect.logWarning(`pid ${pid}: not instrumented: ${why}`) : Effect.logDebug(`pid ${pid}: ${why}`),
            undefined
          )
        return analysis.analyzePid(pid).pipe(
          Effect.flatMap((target) => {
            if (!named(pid, exe) && selection.goPredicate?.(target.binary) !== true) return skip("not selected")
            const reason = unsupported(target)
            // Selected by what it runs, every process of the file is wanted: links can be shared per file.
            const wide = byExecutable(pid, exe) || selection.goPredicate?.(target.binary) === true
            return reason === undefined
              ? Effect.as(
                resources.register(pid, { exe: target.exe, goVersion: target.goVersion }),
                TargetEvent.Started({
                  target: { ...target, selection: wide ? "executable" : "process", ...fileIdentity(target.exe) }
                })
              )
              : skip(reason)
          }),
          Effect.catch((e: ProcessAnalysisError) => skip(e.message))
        )
      }
      // The delayed unregistrations belong to the source's scope: the agent stopping cancels them.
      const scope = yield* Effect.scope
      const exited = (pid: number): Effect.Effect<TargetEventType> =>
        Effect.as(
          Effect.forkIn(Effect.delay(resources.unregister(pid), RESOURCE_GRACE), scope),
          TargetEvent.Exited({ pid })
        )
      const events = processes.pipe(
        Stream.mapEffect((e) => e._tag === "Started" ? started(e.pid, e.exe) : exited(e.pid)),
        Stream.filter((e): e is TargetEventType => e !== undefined)
      )
      return TargetSource.of({ events })
    })
  )

/**
 * The whole agent for a selector: Bpf, analysis, discovery's watcher probe, telemetry from `OTEL_*`, the sampler
 * from `OTEL_TRACES_SAMPLER`, the built-in probes and the Manager.
 */
export const layer = (selection: Selection) => {
  const kernel = BpfLive.layer
  const analysis = GoBinary.layer
  // What the user named is checked before telemetry starts: a bad --pid or --exe fails at once, with nothing to
  // flush and no exporter to wait for.
  const checked = Layer.effectDiscard(Effect.all([
    Effect.forEach(selection.pids, checkExplicit, { discard: true }),
    Effect.forEach(selection.exes, checkExe, { discard: true })
  ])).pipe(Layer.provide(analysis))
  // Read before telemetry starts too, so a bad value fails at once.
  const grace = Layer.effect(Probe.LinkGrace, linkGrace)
  const base = Layer.mergeAll(analysis, Telemetry.layer, TracingConfig.layerConfig).pipe(
    Layer.provideMerge(kernel),
    Layer.provide(checked),
    Layer.provide(grace)
  )
  const source = targetSource(selection).pipe(Layer.provide(Discovery.layer), Layer.provide(base))
  const manager = Manager.layerWith(builtinProbes).pipe(Layer.provide(source), Layer.provide(grace))
  return Layer.merge(manager, selfMetrics.pipe(Layer.provide(manager))).pipe(Layer.provideMerge(base))
}

/**
 * The Manager's per-probe counters as the agent's own metrics (`probescope.probe.*`), read at every metrics
 * collection: what each probe read, skipped and lost, in the kernel and in user space, apart.
 */
const selfMetrics = Layer.effectDiscard(Effect.gen(function*() {
  const telemetry = yield* Telemetry.Telemetry
  const manager = yield* Manager.Manager
  yield* telemetry.registerSelfMetrics(
    Effect.map(manager.stats, (probes) =>
      probes.flatMap((p): ReadonlyArray<SelfMetrics.SelfMetricSample> => {
        const attributes = { probe: p.probe, "probe.kind": p.kind }
        const counter = (name: string, description: string, unit: string, value: number | bigint) =>
          ({ name, description, unit, kind: "counter" as const, value, attributes })
        return [
          counter("probescope.probe.records", "Records decoded into telemetry.", "{record}", p.records),
          counter("probescope.probe.decode_errors", "Records that could not be decoded.", "{record}", p.decodeErrors),
          counter("probescope.probe.skipped", "Records decoded and deliberately not emitted.", "{record}", p.skipped),
          counter(
            "probescope.probe.consumer.dropped",
            "Records the user-space consumer dropped (its buffer was full).",
            "{record}",
            p.consumerDropped
          ),
          counter("probescope.probe.kernel.submitted", "Records the BPF side submitted.", "{record}", p.kernelSubmitted),
          counter(
            "probescope.probe.kernel.dropped",
            "Records the BPF side could not fit in the ring buffer.",
            "{record}",
            p.kernelDropped
          ),
          counter("probescope.probe.attach.failures", "Attaches that failed.", "{failure}", p.attachFailures),
          {
            name: "probescope.probe.targets",
            description: "Processes the probe is attached to now.",
            unit: "{process}",
            kind: "gauge",
            value: p.targets,
            attributes
          }
        ]
      })
    ),
    { name: "manager" }
  )
}))

export type { AnalysisError }
