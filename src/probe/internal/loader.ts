/**
 * One load per probe, whenever it happens: at build (eager) or on first use (`onAttach`). The load runs on a fiber
 * of the probe layer's scope, not the caller's: an attach interrupted because its process exited must not abort a
 * load other processes (or a dependent probe) are waiting for, and the object must outlive the attach that caused
 * it. Its outcome, success or failure, is kept and given to every later caller.
 */
import { Deferred, Effect, Exit, Option, Scope } from "effect"
import type { Attacher, LoadStatus, Loaded, Runner, RunnerStats } from "../Capabilities.ts"
import type { Manifest } from "../Manifest.ts"
import { isTracepointInstrument } from "../Manifest.ts"
import type { ProbeLoadError } from "../ProbeError.ts"

/** What a probe has once its object is loaded. */
export interface LoadedState {
  readonly loaded: Loaded
  readonly attacher: Attacher
  /** Instruments only. */
  readonly runner: Runner | undefined
}

export interface Once {
  /** Starts the load if nobody has (on a fiber of the scope), and waits for it. */
  readonly get: Effect.Effect<LoadedState, ProbeLoadError>
  /** The same, loading on the caller's fiber: a layer's eager build, whose interruption then stops the load. */
  readonly now: Effect.Effect<LoadedState, ProbeLoadError>
  /** The state if loaded. */
  readonly current: () => LoadedState | undefined
  /** Completes (successfully only) once loaded: what a Runner waits on, without causing the load itself. */
  readonly ready: Deferred.Deferred<LoadedState>
  readonly status: () => LoadStatus
}

export const loadOnce = (load: Effect.Effect<LoadedState, ProbeLoadError>, scope: Scope.Scope): Once => {
  const outcome = Deferred.makeUnsafe<LoadedState, ProbeLoadError>()
  const ready = Deferred.makeUnsafe<LoadedState>()
  let status: LoadStatus = "unloaded"
  let current: LoadedState | undefined
  const recorded = load.pipe(
    Effect.onExit((exit) =>
      Effect.sync(() => {
        if (Exit.isSuccess(exit)) {
          current = exit.value
          status = "loaded"
          Deferred.doneUnsafe(ready, Exit.succeed(exit.value))
        } else {
          status = "failed"
        }
        Deferred.doneUnsafe(outcome, exit)
      })
    )
  )
  const start = (how: "here" | "forked") =>
    Effect.suspend(() => {
      if (status !== "unloaded") return Effect.void
      status = "loading"
      // Started at once, on the caller's turn: the load's JavaScript part runs until the object is handed to the
      // kernel (the verifier then works on a libuv thread), rather than waiting for the main thread to be free —
      // which, while the agent is being built, is after the whole build.
      return how === "here" ?
        Effect.ignore(recorded) :
        Effect.asVoid(Effect.forkIn(recorded, scope, { startImmediately: true }))
    })
  return {
    get: Effect.andThen(start("forked"), Deferred.await(outcome)),
    now: Effect.andThen(start("here"), Deferred.await(outcome)),
    current: () => current,
    ready,
    status: () => status
  }
}

/**
 * Whether a probe loads at build whatever the policy:
 * - one that attaches when it loads (global tracepoints, cgroup programs): no attach would ever cause its load;
 * - one that names no library (a tracepoint instrument): whether it applies at all depends on the tracepoints its
 *   loaded object has, so its applicability must be known before any target comes.
 */
export const loadsAtBuild = (manifest: Manifest): boolean =>
  (manifest.cgroups ?? []).length > 0 ||
  (!isTracepointInstrument(manifest) && (manifest.tracepoints ?? []).length > 0) ||
  manifest.library === undefined

const noStats: RunnerStats = {
  records: 0,
  decodeErrors: 0,
  skipped: 0,
  signalErrors: 0,
  unsupported: 0,
  consumerDropped: 0
}

/**
 * An instrument's Runner before its object exists: `run` waits for the load (without causing it) and then runs the
 * loaded Runner; `stop` before the load ends the wait, after it stops the loaded Runner (which drains its ring).
 */
export const deferredRunner = (once: Once): Runner => {
  const stopped = Deferred.makeUnsafe<void>()
  return {
    run: Effect.raceFirst(
      Effect.map(Deferred.await(once.ready), Option.some),
      Effect.as(Deferred.await(stopped), Option.none<LoadedState>())
    ).pipe(
      Effect.flatMap((state) =>
        Option.isSome(state) && state.value.runner !== undefined ? state.value.runner.run : Effect.void
      )
    ),
    stats: Effect.suspend(() => once.current()?.runner?.stats ?? Effect.succeed(noStats)),
    stop: Effect.suspend(() => {
      const runner = once.current()?.runner
      if (runner !== undefined) return runner.stop
      Deferred.doneUnsafe(stopped, Exit.void)
      return Effect.void
    })
  }
}
