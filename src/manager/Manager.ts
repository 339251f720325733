/**
 * The Manager composes the probes it is given with a stream of target events: for each process it loads (side by
 * side, when `Probe.LoadPolicy` left them unloaded) and then attaches every probe whose manifest matches (recording
 * why the others do not apply), detaches when the process exits, runs every instrument probe's Runner once, and keeps
 * per-probe counters.
 *
 * It only composes: the probes are those in its context, however their layers were provided or merged (a probe
 * layer also brings the probes it depends on), so a custom probe is added by composing its layer. The order is the
 * dependencies' (a probe after the probes whose maps it reuses), then the names': never the order layers were built
 * in. Two probes with one name fail the build (`DuplicateProbeError`). A daemon attaches to a process only where a
 * probe depending on it attaches (a daemon nothing depends on attaches wherever it applies). Failures stay local: a
 * probe failing to attach to one process is logged and counted, and the other probes and processes go on.
 *
 * Events of one process are applied in order; events of different processes run concurrently, so a slow detach
 * (the kernel's unregistering, which runs off the JS thread) never delays another process's attach. On shutdown
 * it detaches everything at once, then lets each Runner read what its ring still holds before stopping it.
 */
import { Context, Deferred, Duration, Effect, Exit, Fiber, Layer, Schedule, Scope, Stream } from "effect"
import type { LoadStatus } from "../probe/Capabilities.ts"
import type { Applicability } from "../probe/Manifest.ts"
import type { AnyProbe } from "../probe/Probe.ts"
import { instancesIn, isInstrument } from "../probe/Probe.ts"
import { DuplicateProbeError } from "../probe/ProbeError.ts"
import type * as ProbeRegistry from "../probe/ProbeRegistry.ts"
import type { Target } from "../probe/Target.ts"
import { TelemetrySink } from "../probe/Telemetry.ts"
import type { TargetEvent } from "./TargetEvent.ts"
import { TargetSource } from "./TargetEvent.ts"

/** Counters of one probe. */
export interface ProbeStats {
  readonly probe: string
  readonly kind: "instrument" | "daemon"
  /** Whether its object is in the kernel: "unloaded" while no process has needed it (`Probe.LoadPolicy`). */
  readonly load: LoadStatus
  /** Processes the probe is attached to now. */
  readonly targets: number
  readonly attachFailures: number
  /** Records turned into signals (instrument probes; 0 for daemons). */
  readonly records: number
  readonly decodeErrors: number
  readonly skipped: number
  /** Records lost because the probe recorded outside its declaration (see `ProbeSignalError`). */
  readonly signalErrors: number
  /** Logs and measurements the sink could not take. */
  readonly unsupported: number
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
  /** The probes, in attach order: a probe after those it depends on, otherwise by name. */
  readonly probes: ReadonlyArray<{
    readonly name: string
    readonly kind: "instrument" | "daemon"
    readonly dependsOn: ReadonlyArray<string>
  }>
  /** Each probe's applicability to a target, with the reason when it does not apply. */
  readonly inspect: (target: Target) => ReadonlyArray<Inspection>
  /**
   * Loads every probe that would attach to the target, without attaching: for an executable named before any process
   * of it runs, so its first process — perhaps one living a few milliseconds — does not wait for the verifier. Load
   * failures are left for the attaches to report.
   */
  readonly preload: (target: Target) => Effect.Effect<void>
  /**
   * Apply one event and wait for it (the target source's events go through here too). Events of one pid are applied
   * in the order they were handed over; those of different pids concurrently.
   */
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
 * The probes of a context in attach order: every probe after the probes it depends on, and otherwise by name, so
 * the same probes compose the same however their layers were merged. Two probes with one name are refused.
 */
export const compose = (
  found: ReadonlyArray<AnyProbe>
): Effect.Effect<ReadonlyArray<AnyProbe>, DuplicateProbeError> =>
  Effect.suspend(() => {
    const byName = new Map<string, AnyProbe>()
    for (const probe of found) {
      if (byName.has(probe.name)) {
        return Effect.fail(
          new DuplicateProbeError({
            probe: probe.name,
            message: `probe ${probe.name} is composed twice (two definitions with one name, or one built both with ` +
              "`layer` and `layerWith`): give each probe a name of its own, and configure a shared one once " +
              "(ProbeSettings or one `layerWith` provided to its dependents)"
          })
        )
      }
      byName.set(probe.name, probe)
    }
    const ordered: Array<AnyProbe> = []
    const placed = new Set<string>()
    const pending = [...byName.values()].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
    while (pending.length > 0) {
      // The first (by name) whose dependencies are placed; a dependency outside the composition does not hold it back.
      const i = pending.findIndex((p) => p.dependsOn.every((d) => placed.has(d) || !byName.has(d)))
      const next = pending.splice(i < 0 ? 0 : i, 1)[0]!
      ordered.push(next)
      placed.add(next.name)
    }
    return Effect.succeed(ordered)
  })

/**
 * Build a Manager in the current scope over the probes in its context, without following a target source. Runners
 * start now and stop, and every attachment is detached, when the scope closes.
 */
export const make: Effect.Effect<Manager["Service"], DuplicateProbeError, Scope.Scope | TelemetrySink> = Effect
  .suspend(() => makeWithSubmit).pipe(Effect.map(({ manager }) => manager))

/** How long shutdown waits for each Runner to read what its ring still holds. */
const RUNNER_STOP_BOUND = Duration.seconds(2)

/** How often records lost since the last look are reported. */
const DROP_REPORT_PERIOD = Duration.seconds(5)

/**
 * One line per probe that lost records between two looks at the counters: the ring was full in the kernel (the
 * consumer fell behind for long enough to fill it), or the consumer's own buffer was full. Both are named apart
 * because their remedies differ (a bigger ring, or a faster sink).
 */
export const lossReport = (
  before: ReadonlyArray<ProbeStats>,
  after: ReadonlyArray<ProbeStats>,
  period: Duration.Duration
): ReadonlyArray<string> => {
  const lines: Array<string> = []
  for (const now of after) {
    const was = before.find((b) => b.probe === now.probe)
    const kernel = now.kernelDropped - (was?.kernelDropped ?? 0n)
    const consumer = now.consumerDropped - (was?.consumerDropped ?? 0)
    const decode = now.decodeErrors - (was?.decodeErrors ?? 0)
    const parts: Array<string> = []
    if (kernel > 0n) parts.push(`${kernel} dropped in the kernel (ring full; ${now.kernelDropped} in total)`)
    if (consumer > 0) parts.push(`${consumer} dropped by the consumer (buffer full; ${now.consumerDropped} in total)`)
    if (decode > 0) parts.push(`${decode} undecodable (${now.decodeErrors} in total)`)
    if (parts.length > 0) {
      lines.push(`probe ${now.probe}: records lost in the last ${Duration.format(period)}: ${parts.join(", ")}`)
    }
  }
  return lines
}

/**
 * Each probe's dependents that are instruments, transitively (through daemons depending on daemons): a daemon with
 * any attaches where one of them does.
 */
const instrumentDependents = (probes: ReadonlyArray<AnyProbe>): ReadonlyMap<string, ReadonlySet<string>> => {
  const dependents = new Map<string, Set<string>>(probes.map((p) => [p.name, new Set<string>()]))
  for (const probe of probes.filter(isInstrument)) {
    const visit = (name: string) => {
      for (const dep of probes.find((p) => p.name === name)?.dependsOn ?? []) {
        const set = dependents.get(dep)
        if (set === undefined || set.has(probe.name)) continue
        set.add(probe.name)
        visit(dep)
      }
    }
    visit(probe.name)
  }
  return dependents
}

/** A daemon others depend on is only wanted where one of them applies (and is undone if none attaches). */
const isWantedBy = (
  dependents: ReadonlyMap<string, ReadonlySet<string>>,
  probe: AnyProbe,
  applies: ReadonlySet<string>
): boolean => {
  const deps = dependents.get(probe.name)!
  return probe.kind !== "daemon" || deps.size === 0 || [...deps].some((d) => applies.has(d))
}

/** Loads, side by side, the probes that would attach where `applies` apply; failures are the attaches' to report. */
const loadWhere = (
  probes: ReadonlyArray<AnyProbe>,
  dependents: ReadonlyMap<string, ReadonlySet<string>>,
  applies: ReadonlySet<string>
): Effect.Effect<void> =>
  Effect.forEach(
    probes.filter((p) => applies.has(p.name) && isWantedBy(dependents, p, applies)),
    (p) => Effect.ignore(p.loader.load),
    { concurrency: "unbounded", discard: true }
  )

/** The names of the probes whose manifests apply to the target (before their loads: by the manifest alone). */
const applyingTo = (probes: ReadonlyArray<AnyProbe>, target: Target): ReadonlySet<string> => {
  const applies = new Set<string>()
  for (const p of probes) if (p.attacher.applicability(target)._tag === "Applies") applies.add(p.name)
  return applies
}

/**
 * What `Manager.preload` does, over the probe instances of a context (`Probe.instancesIn`) before any Manager exists:
 * the agent starts the loads an `--exe` file's processes need as soon as the file is analysed, while telemetry and
 * the Manager are still being built. Each load runs in its probe layer's scope, so it goes on after this returns
 * and the Manager built later finds it under way or done. A composition the Manager would refuse (two probes of one
 * name) loads nothing here: the Manager's build reports it.
 */
export const preloadProbes = (found: ReadonlyArray<AnyProbe>, target: Target): Effect.Effect<void> =>
  Effect.matchEffect(compose(found), {
    onFailure: () => Effect.void,
    onSuccess: (probes) => loadWhere(probes, instrumentDependents(probes), applyingTo(probes, target))
  })

const makeWithSubmit = Effect.gen(function*() {
  const sink = yield* TelemetrySink
  const scope = yield* Scope.Scope
  const probes = yield* compose(instancesIn(yield* Effect.context<never>()))
  if (probes.length === 0) yield* Effect.logWarning("the Manager was given no probes: nothing will be attached")
  const dependents = instrumentDependents(probes)
  /** Probes some other probe depends on: they attach only the features their dependents use (`AttachOptions`). */
  const dependedOn = new Set(probes.flatMap((p) => p.dependsOn))
  const instrumented = new Map<number, Instrumented>()
  // Every target's scope is a child of this one, made before the shutdown finalizer below: children of the Manager's
  // own scope would be closed by it one after another (newest first) before that finalizer runs, detaching the
  // processes in turn — 125 ms each for 30 processes — instead of all at once.
  const targetScopes = yield* Scope.fork(scope, "parallel")
  /** The last event of each pid still being applied: the next one for that pid waits for it. */
  const tails = new Map<number, Deferred.Deferred<void>>()
  /** Attaches under way, by pid: an exit of that pid cancels its attach instead of waiting behind it. */
  const cancels = new Map<number, Deferred.Deferred<void>>()
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

  const isWanted = (probe: AnyProbe, applies: ReadonlySet<string>) => isWantedBy(dependents, probe, applies)
  const loadAll = (applies: ReadonlySet<string>) => loadWhere(probes, dependents, applies)
  const preload = (target: Target) => Effect.suspend(() => loadAll(applyingTo(probes, target)))

  const attach = (target: Target) =>
    Effect.gen(function*() {
      yield* detach(target.pid)
      const targetScope = yield* Scope.fork(targetScopes, "sequential")
      const entry: Instrumented = { target, scope: targetScope, probes: [] }
      instrumented.set(target.pid, entry)
      yield* Effect.gen(function*() {
        const applies = new Set<string>()
        for (const probe of probes) {
          const app = probe.attacher.applicability(target)
          if (app._tag === "Applies") applies.add(probe.name)
          else if (app._tag === "NotApplicable") {
            yield* Effect.logDebug(`probe ${probe.name} does not apply to pid ${target.pid}: ${app.reason}`)
          }
        }
        const wanted = (probe: AnyProbe) => isWanted(probe, applies)
        // Load what this process needs side by side and attach side by side, each probe as soon as its own load is
        // done (its attach waits for it): each object is verified on a thread of its own, so the loads overlap
        // instead of adding up, and the first attaches overlap the later loads. One loaded already,
        // eagerly or for an earlier process, answers at once. A load that fails is that probe's attach failure
        // below, with the load's error.
        const loading = yield* Effect.forkChild(loadAll(applies), { startImmediately: true })
        // The features each probe's dependents applying here use (go_context's goroutine tracking only where a probe
        // reads a span across goroutines): a probe others depend on attaches those features' symbols only.
        const used = new Map<string, Set<string>>()
        for (const p of probes) {
          if (!applies.has(p.name)) continue
          for (const u of p.uses) {
            let set = used.get(u.probe)
            if (set === undefined) used.set(u.probe, set = new Set())
            set.add(u.feature)
          }
        }
        const featuresOf = (probe: AnyProbe) =>
          dependedOn.has(probe.name) ? { features: used.get(probe.name) ?? new Set<string>() } : undefined
        /** Each probe's own scope within the target's, so a daemon left without dependents can go on its own. */
        const scopes = new Map<string, Scope.Closeable>()
        const attaching: Array<{ readonly probe: AnyProbe; readonly probeScope: Scope.Closeable }> = []
        for (const probe of probes) {
          if (!applies.has(probe.name)) continue
          if (!wanted(probe)) {
            yield* Effect.logDebug(
              `probe ${probe.name} not attached to pid ${target.pid}: no probe depending on it applies`
            )
            continue
          }
          // Forked in attach order, so the target's scope closes them in reverse (dependents first).
          attaching.push({ probe, probeScope: yield* Scope.fork(targetScope, "sequential") })
        }
        // Attached side by side: nothing in one probe's attach needs another's links (a dependent shares its
        // dependencies' maps from its load on). At launch the first links the kernel makes (go_context's) take
        // 10-25 ms, the kernel's wait, with the main thread idle: the other probes' attach work and their links now
        // run within that wait instead of after it. The outcomes are taken in attach order below (names, failures,
        // counters and scopes as before).
        const results = yield* Effect.forEach(attaching, ({ probe, probeScope }) =>
          probe.attacher.attach(target, featuresOf(probe)).pipe(
            Scope.provide(probeScope),
            Effect.exit
          ), { concurrency: "unbounded" })
        for (let i = 0; i < attaching.length; i++) {
          const { probe, probeScope } = attaching[i]!
          const result = results[i]!
          if (Exit.isSuccess(result)) {
            scopes.set(probe.name, probeScope)
            entry.probes.push(probe.name)
            if (result.value.missingOptional.length > 0) {
              yield* Effect.logDebug(
                `probe ${probe.name} on pid ${target.pid}: optional symbols absent: ${result.value.missingOptional}`
              )
            }
          } else {
            yield* Scope.close(probeScope, Exit.void)
            attachFailures.set(probe.name, (attachFailures.get(probe.name) ?? 0) + 1)
            const error = result.cause.reasons.find((r) => r._tag === "Fail")
            yield* Effect.logWarning(
              error !== undefined && error._tag === "Fail" ?
                error.error.message :
                `probe ${probe.name}: attach to pid ${target.pid} failed`
            )
          }
        }
        // Every load was waited for by its attach (or its probe is not attached here): this ends at once.
        yield* Fiber.join(loading)
        // Daemons whose dependents all failed to attach serve nothing here: detach them, dependents' order first.
        for (const probe of [...probes].reverse()) {
          const deps = dependents.get(probe.name)!
          if (probe.kind !== "daemon" || deps.size === 0 || !scopes.has(probe.name)) continue
          if ([...deps].some((d) => entry.probes.includes(d))) continue
          yield* Scope.close(scopes.get(probe.name)!, Exit.void)
          entry.probes.splice(entry.probes.indexOf(probe.name), 1)
          yield* Effect.logDebug(
            `probe ${probe.name} detached from pid ${target.pid}: no probe depending on it attached`
          )
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

  /** Chains `effect` after the pid's previous event; call synchronously, in the order events arrive. */
  const serialized = (pid: number, effect: Effect.Effect<void>): Effect.Effect<void> => {
    const previous = tails.get(pid)
    const mine = Deferred.makeUnsafe<void>()
    tails.set(pid, mine)
    return (previous === undefined ? effect : Effect.andThen(Deferred.await(previous), effect)).pipe(
      Effect.ensuring(Effect.suspend(() => {
        if (tails.get(pid) === mine) tails.delete(pid)
        return Deferred.done(mine, Exit.void)
      }))
    )
  }
  /** Call synchronously when the event arrives: an exit cancels the pid's attach, running or waiting its turn. */
  const apply = (event: TargetEvent): Effect.Effect<void> => {
    if (event._tag === "Exited") {
      const cancel = cancels.get(event.pid)
      if (cancel !== undefined) Deferred.doneUnsafe(cancel, Exit.void)
      return detach(event.pid)
    }
    const pid = event.target.pid
    const cancel = Deferred.makeUnsafe<void>()
    cancels.set(pid, cancel)
    return Effect.suspend(() =>
      Deferred.isDoneUnsafe(cancel) ? Effect.void : Effect.raceFirst(attach(event.target), Deferred.await(cancel))
    ).pipe(
      Effect.ensuring(Effect.sync(() => {
        if (cancels.get(pid) === cancel) cancels.delete(pid)
      }))
    )
  }
  const pidOf = (event: TargetEvent) => event._tag === "Started" ? event.target.pid : event.pid

  const handle = (event: TargetEvent): Effect.Effect<void> =>
    Effect.suspend(() => serialized(pidOf(event), apply(event)))

  // Shutdown: detach every process at once (their kernel waits overlap), then let each Runner drain its ring.
  // Added after the Runners were forked, so it runs before they are interrupted.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      yield* Effect.forEach([...instrumented.keys()], detach, { concurrency: "unbounded", discard: true })
      yield* Effect.forEach(
        probes.filter(isInstrument),
        (probe) => probe.runner.stop.pipe(Effect.timeoutOption(RUNNER_STOP_BOUND)),
        { concurrency: "unbounded", discard: true }
      )
      // Last look at the kernel counters while the objects are open (they close with the probe layers, after this):
      // `stats` keeps answering with them, so a summary printed after shutdown still has them.
      yield* Effect.suspend(() => stats)
    })
  )
  // Events in flight are forked here; this scope closes first, so no attach races the shutdown's detaches.
  const events = yield* Scope.fork(scope, "parallel")
  const submit = (event: TargetEvent): Effect.Effect<void> =>
    Effect.suspend(() => Effect.asVoid(Effect.forkIn(serialized(pidOf(event), apply(event)), events)))

  const inspect = (target: Target): ReadonlyArray<Inspection> =>
    probes.map((p) => ({ probe: p.name, kind: p.kind, applicability: p.attacher.applicability(target) }))

  const stats = Effect.gen(function*() {
    const out: Array<ProbeStats> = []
    for (const probe of probes) {
      const runner = isInstrument(probe) ?
        yield* probe.runner.stats :
        { records: 0, decodeErrors: 0, skipped: 0, signalErrors: 0, unsupported: 0, consumerDropped: 0 }
      const kernel = yield* probe.kernelStats.pipe(Effect.orElseSucceed(() => ({ submitted: 0n, dropped: 0n })))
      let targets = 0
      for (const entry of instrumented.values()) if (entry.probes.includes(probe.name)) targets++
      out.push({
        probe: probe.name,
        kind: probe.kind,
        load: yield* probe.loader.status,
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

  // Losses are said while they happen, at most once per period per probe, with the counts since the last line.
  let previous: ReadonlyArray<ProbeStats> = []
  yield* Effect.forkIn(
    Effect.gen(function*() {
      const now = yield* stats
      for (const line of lossReport(previous, now, DROP_REPORT_PERIOD)) yield* Effect.logWarning(line)
      previous = now
    }).pipe(Effect.repeat(Schedule.spaced(DROP_REPORT_PERIOD))),
    scope
  )

  const manager = Manager.of({
    probes: probes.map((p) => ({ name: p.name, kind: p.kind, dependsOn: p.dependsOn })),
    inspect,
    preload,
    handle,
    stats,
    targets
  })
  return { manager, submit }
})

/**
 * The Manager, following the `TargetSource` until its scope closes, over the probes provided to it (in any order, by
 * any means): `Manager.layer.pipe(Layer.provide(Layer.mergeAll(A.layer, B.layer)))`.
 */
export const layer: Layer.Layer<Manager, DuplicateProbeError, TelemetrySink | TargetSource> = Layer
  .effect(
    Manager,
    Effect.gen(function*() {
      const { manager, submit } = yield* makeWithSubmit
      const source = yield* TargetSource
      // Each event is forked (ordered per pid), so one process's slow attach or detach holds up no other.
      yield* Effect.forkScoped(Stream.runForEach(source.events, submit))
      return manager
    })
  )

/**
 * The Manager over the given probe layers: `Manager.layerWith(Layer.mergeAll(A.layer, B.layer))`. The probes are
 * built before the Manager, and closed after it has detached.
 */
export const layerWith = <ROut, E, RIn>(
  probes: Layer.Layer<ROut, E, RIn>
): Layer.Layer<
  Manager,
  E | DuplicateProbeError,
  Exclude<RIn, ProbeRegistry.ProbeRegistry> | TelemetrySink | TargetSource
> => layer.pipe(Layer.provide(probes)) as never
