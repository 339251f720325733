/**
 * The Manager composes what the probe layers registered with a stream of target events: for each process it attaches
 * every probe whose manifest matches (recording why the others do not apply), detaches when the process exits, runs
 * every instrument probe's Runner once, and keeps per-probe counters.
 *
 * It only composes: probes come from the `ProbeRegistry` their layers filled, so a custom probe is added by
 * composing its layer. Failures stay local: a probe failing to attach to one process is logged and counted, and the
 * other probes and processes go on.
 */
import { Context, Effect, Exit, Layer, Scope, Semaphore, Stream } from "effect"
import type { Applicability } from "../probe/Manifest.ts"
import type { AnyProbe } from "../probe/Probe.ts"
import { isInstrument } from "../probe/Probe.ts"
import * as ProbeRegistry from "../probe/ProbeRegistry.ts"
import type { Target } from "../probe/Target.ts"
import { TelemetrySink } from "../probe/Telemetry.ts"
import type { TargetEvent } from "./TargetEvent.ts"
import { TargetSource } from "./TargetEvent.ts"

/** Counters of one probe. */
export interface ProbeStats {
  readonly probe: string
  readonly kind: "instrument" | "daemon"
  /** Processes the probe is attached to now. */
  readonly targets: number
  readonly attachFailures: number
  /** Spans emitted (instrument probes; 0 for daemons). */
  readonly records: number
  readonly decodeErrors: number
  readonly skipped: number
  /** Records the user-space consumer dropped. */
  readonly consumerDropped: number
  /** Records the BPF side submitted / could not fit in the ring (`ps_stats`). */
  readonly kernelSubmitted: bigint
  readonly kernelDropped: bigint
}

/** One instrumented process and the probes attached to it, in attach order. */
export interface TargetState {
  readonly pid: number
  readonly exe: string
  readonly probes: ReadonlyArray<string>
}

/** A probe's applicability to a target, for `probescope inspect` and logs. */
export interface Inspection {
  readonly probe: string
  readonly kind: "instrument" | "daemon"
  readonly applicability: Applicability
}

/** The Manager. */
export class Manager extends Context.Service<Manager, {
  /** The registered probes, in build order (dependencies first). */
  readonly probes: ReadonlyArray<{ readonly name: string; readonly kind: "instrument" | "daemon" }>
  /** Each registered probe's applicability to a target, with the reason when it does not apply. */
  readonly inspect: (target: Target) => ReadonlyArray<Inspection>
  /** Apply one event (the target source's events go through here too); events are handled one at a time. */
  readonly handle: (event: TargetEvent) => Effect.Effect<void>
  readonly stats: Effect.Effect<ReadonlyArray<ProbeStats>>
  readonly targets: Effect.Effect<ReadonlyArray<TargetState>>
}>()("probescope/manager/Manager") {}

interface Instrumented {
  readonly target: Target
  readonly scope: Scope.Closeable
  readonly probes: Array<string>
}

/**
 * Build a Manager in the current scope from the registry, without following a target source. Runners start now
 * and stop, and every attachment is detached, when the scope closes.
 */
export const make: Effect.Effect<Manager["Service"], never, Scope.Scope | ProbeRegistry.ProbeRegistry | TelemetrySink> =
  Effect.gen(function*() {
    const registry = yield* ProbeRegistry.ProbeRegistry
    const sink = yield* TelemetrySink
    const scope = yield* Scope.Scope
    const probes: ReadonlyArray<AnyProbe> = yield* registry.probes
    const lock = yield* Semaphore.make(1)
    const instrumented = new Map<number, Instrumented>()
    const attachFailures = new Map<string, number>(probes.map((p) => [p.name, 0]))

    for (const probe of probes) {
      if (isInstrument(probe)) {
        yield* Effect.forkIn(
          probe.runner.run.pipe(Effect.provideService(TelemetrySink, sink), Effect.annotateLogs({ probe: probe.name })),
          scope
        )
      }
    }

    const detach = (pid: number) =>
      Effect.suspend(() => {
        const entry = instrumented.get(pid)
        if (entry === undefined) return Effect.void
        instrumented.delete(pid)
        return Scope.close(entry.scope, Exit.void).pipe(
          Effect.andThen(Effect.logDebug(`detached ${entry.probes.length} probe(s) from pid ${pid}`))
        )
      })

    const attach = (target: Target) =>
      Effect.gen(function*() {
        yield* detach(target.pid)
        const targetScope = yield* Scope.fork(scope, "sequential")
        const entry: Instrumented = { target, scope: targetScope, probes: [] }
        instrumented.set(target.pid, entry)
        yield* Effect.gen(function*() {
          for (const probe of probes) {
            const app = probe.attacher.applicability(target)
            if (app._tag === "Global") continue
            if (app._tag === "NotApplicable") {
              yield* Effect.logDebug(`probe ${probe.name} does not apply to pid ${target.pid}: ${app.reason}`)
              continue
            }
            const result = yield* probe.attacher.attach(target).pipe(Scope.provide(targetScope), Effect.exit)
            if (Exit.isSuccess(result)) {
              entry.probes.push(probe.name)
              if (result.value.missingOptional.length > 0) {
                yield* Effect.logDebug(
                  `probe ${probe.name} on pid ${target.pid}: optional symbols absent: ${result.value.missingOptional}`
                )
              }
            } else {
              attachFailures.set(probe.name, (attachFailures.get(probe.name) ?? 0) + 1)
              const error = result.cause.reasons.find((r) => r._tag === "Fail")
              yield* Effect.logWarning(
                error !== undefined && error._tag === "Fail" ?
                  error.error.message :
                  `probe ${probe.name}: attach to pid ${target.pid} failed`
              )
            }
          }
        }).pipe(
          Effect.onInterrupt(() => detach(target.pid)),
          Effect.annotateLogs({ pid: target.pid, exe: target.exe })
        )
        if (entry.probes.length === 0) {
          // Nothing applies: forget the process rather than track an empty entry.
          yield* detach(target.pid)
          yield* Effect.logDebug(`pid ${target.pid}: no probe applies`)
        } else {
          yield* Effect.logInfo(
            `pid ${target.pid}: attached ${entry.probes.length} probe(s): ${entry.probes.join(", ")}`
          )
        }
      })

    const handle = (event: TargetEvent): Effect.Effect<void> =>
      lock.withPermits(1)(event._tag === "Started" ? attach(event.target) : detach(event.pid))

    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        for (const pid of [...instrumented.keys()].reverse()) yield* detach(pid)
      })
    )

    const inspect = (target: Target): ReadonlyArray<Inspection> =>
      probes.map((p) => ({ probe: p.name, kind: p.kind, applicability: p.attacher.applicability(target) }))

    const stats = Effect.gen(function*() {
      const out: Array<ProbeStats> = []
      for (const probe of probes) {
        const runner = isInstrument(probe) ?
          yield* probe.runner.stats :
          { records: 0, decodeErrors: 0, skipped: 0, consumerDropped: 0 }
        const kernel = yield* probe.kernelStats.pipe(Effect.orElseSucceed(() => ({ submitted: 0n, dropped: 0n })))
        let targets = 0
        for (const entry of instrumented.values()) if (entry.probes.includes(probe.name)) targets++
        out.push({
          probe: probe.name,
          kind: probe.kind,
          targets,
          attachFailures: attachFailures.get(probe.name) ?? 0,
          ...runner,
          kernelSubmitted: kernel.submitted,
          kernelDropped: kernel.dropped
        })
      }
      return out
    })

    const targets = Effect.sync(() =>
      [...instrumented.values()].map((e) => ({ pid: e.target.pid, exe: e.target.exe, probes: [...e.probes] }))
    )

    return Manager.of({
      probes: probes.map((p) => ({ name: p.name, kind: p.kind })),
      inspect,
      handle,
      stats,
      targets
    })
  })

/** The Manager, following the `TargetSource` until its scope closes. Provide the probe layers to it. */
export const layer: Layer.Layer<Manager, never, ProbeRegistry.ProbeRegistry | TelemetrySink | TargetSource> = Layer
  .effect(
    Manager,
    Effect.gen(function*() {
      const manager = yield* make
      const source = yield* TargetSource
      yield* Effect.forkScoped(Stream.runForEach(source.events, manager.handle))
      return manager
    })
  )

/**
 * The Manager over the given probe layers, with a fresh registry: `Manager.layerWith(Layer.mergeAll(A.layer,
 * B.layer))`. The probes are built before the Manager reads the registry, and closed after it has detached.
 */
export const layerWith = <ROut, E, RIn>(
  probes: Layer.Layer<ROut, E, RIn>
): Layer.Layer<Manager, E, Exclude<RIn, ProbeRegistry.ProbeRegistry> | TelemetrySink | TargetSource> =>
  layer.pipe(Layer.provide(probes), Layer.provide(ProbeRegistry.layer)) as never
