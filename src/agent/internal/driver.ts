/**
 * The agent's loop: discovery's process events, each started process analysed into a `Target`, its resource
 * registered and its attach handed to the Manager; and `ready`, which completes once every process selected at start
 * has been attached, has failed (with the reason), or has gone.
 *
 * The Manager is driven through `Manager.handle` rather than a `TargetSource`, so the agent learns when each attach
 * is done. Each event is forked and started at once, so the Manager keeps its per-pid order (it chains events of one
 * pid in the order `handle` runs) and different pids attach concurrently.
 */
import * as Fs from "node:fs"
import { Deferred, Duration, Effect, Exit, Logger, Schedule, Stream } from "effect"
import * as Discovery from "../../discovery/Discovery.ts"
import { scan } from "../../discovery/ProcScan.ts"
import { matcher } from "../../discovery/Selector.ts"
import { Manager } from "../../manager/Manager.ts"
import { TargetEvent } from "../../manager/TargetEvent.ts"
import type { Target } from "../../probe/Target.ts"
import type { ProcessAnalysisError } from "../../target/Errors.ts"
import { TargetAnalysis } from "../../target/GoBinary.ts"
import * as ProcessResources from "../../telemetry/ProcessResources.ts"
import type { ProbeInfo } from "./probes.ts"
import type { Selection } from "./targets.ts"
import { fileIdentity, toSelector, unsupported } from "./targets.ts"

/** A process the agent attached to at start, and the instrument probes attached there. */
export interface AttachedProcess {
  readonly pid: number
  readonly exe: string
  readonly probes: ReadonlyArray<string>
}

/** A process selected at start that the agent could not instrument, and why. */
export interface FailedProcess {
  readonly pid: number
  readonly exe: string
  readonly reason: string
}

/** What became of the processes selected when the agent started. */
export interface ReadyReport {
  readonly attached: ReadonlyArray<AttachedProcess>
  readonly failed: ReadonlyArray<FailedProcess>
}

/** How long a process's resource outlives it: spans of its last requests may still be in flight to the exporter. */
const RESOURCE_GRACE = Duration.seconds(30)

/** How often pids still awaited for `ready` are checked for having gone without an exit event. */
const GONE_POLL = Duration.millis(500)

type Outcome =
  | { readonly _tag: "Attached"; readonly process: AttachedProcess }
  | { readonly _tag: "Failed"; readonly process: FailedProcess }
  | { readonly _tag: "Skipped" }

/** Waits for every pid of `initial` to have an outcome. */
const makeReady = (initial: ReadonlySet<number>) => {
  const pending = new Set(initial)
  const attached: Array<AttachedProcess> = []
  const failed: Array<FailedProcess> = []
  const done = Deferred.makeUnsafe<ReadyReport>()
  const check = () => {
    if (pending.size > 0) return
    const byPid = <A extends { readonly pid: number }>(a: A, b: A) => a.pid - b.pid
    Deferred.doneUnsafe(done, Exit.succeed({ attached: attached.sort(byPid), failed: failed.sort(byPid) }))
  }
  check()
  return {
    pending,
    done,
    /** Records the first outcome of a pid selected at start; later ones (a restart, a second event) are not it. */
    settle: (pid: number, outcome: Outcome) =>
      Effect.sync(() => {
        if (!pending.delete(pid)) return
        if (outcome._tag === "Attached") attached.push(outcome.process)
        if (outcome._tag === "Failed") failed.push(outcome.process)
        check()
      })
  }
}

/** Text of a log message, for the reasons `ready` reports. */
const messageText = (message: unknown): string =>
  (Array.isArray(message) ? message : [message]).map((m) => typeof m === "string" ? m : String(m)).join(" ")

/** The agent's loop in the current scope; see the module comment. */
export const make = (selection: Selection, probes: ReadonlyArray<ProbeInfo>) =>
  Effect.gen(function*() {
    const manager = yield* Manager
    const analysis = yield* TargetAnalysis
    const resources = yield* ProcessResources.ProcessResources
    const scope = yield* Effect.scope
    const selector = toSelector(selection)
    const processes = yield* Discovery.subscribe(selector)
    // Taken after discovery subscribed: every process here is reported by it, from its own scan or as an exec.
    const selects = matcher(selector)
    const running = (yield* scan).filter((p) => !selection.pids.includes(p.pid) && selects(p.pid, p.exe))
    const ready = makeReady(new Set([...selection.pids, ...running.map((p) => p.pid)]))
    const named = matcher({ pids: selection.pids, exes: selection.exes })
    const byExecutable = matcher({ pids: [], exes: selection.exes })
    const instruments = new Set(probes.filter((p) => p.kind === "instrument").map((p) => p.name))
    const exited = new Set<number>()
    const exes = new Map<number, string>()
    /** A process selected at start that went away before it was attached: a failure only for what was named. */
    const vanished = (pid: number) => {
      const exe = exes.get(pid) ?? ""
      return ready.settle(
        pid,
        named(pid, exe)
          ? { _tag: "Failed", process: { pid, exe, reason: "exited before it was attached" } }
          : { _tag: "Skipped" }
      )
    }

    /** What the user named deserves a warning (and a place in `ready`) when it cannot be instrumented. */
    const skip = (pid: number, exe: string, why: string, selected = named(pid, exe)) =>
      Effect.andThen(
        selected ? Effect.logWarning(`pid ${pid}: not instrumented: ${why}`) : Effect.logDebug(`pid ${pid}: ${why}`),
        ready.settle(pid, selected ? { _tag: "Failed", process: { pid, exe, reason: why } } : { _tag: "Skipped" })
      )

    /**
     * Hands the attach to the Manager and records how it went. Warnings said during this pid's attach are its
     * attach failures (the Manager logs each with the probe's error): they are the reasons `ready` reports.
     */
    const attach = (target: Target) =>
      Effect.gen(function*() {
        const warnings: Array<string> = []
        const capture = Logger.make(({ logLevel, message }) => {
          if (logLevel === "Warn" || logLevel === "Error") warnings.push(messageText(message))
        })
        const loggers = yield* Logger.CurrentLoggers
        yield* manager.handle(TargetEvent.Started({ target })).pipe(
          Effect.provideService(Logger.CurrentLoggers, new Set([...loggers, capture]))
        )
        const mine = (yield* manager.targets).find((t) => t.pid === target.pid)
        const attached = (mine?.probes ?? []).filter((p) => instruments.has(p))
        if (attached.length > 0) {
          return yield* ready.settle(target.pid, {
            _tag: "Attached",
            process: { pid: target.pid, exe: target.exe, probes: attached }
          })
        }
        const reason = exited.has(target.pid)
          ? "exited before it was attached"
          : warnings.length > 0
          ? warnings.join("; ")
          : "no instrument probe attached"
        yield* ready.settle(target.pid, { _tag: "Failed", process: { pid: target.pid, exe: target.exe, reason } })
      })

    // Forked at once (`startImmediately`): the Manager has registered the event in its per-pid order before the
    // next event is read.
    const submit = (effect: Effect.Effect<void>) =>
      Effect.asVoid(Effect.forkIn(effect, scope, { startImmediately: true }))

    const started = (pid: number, exe: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        exes.set(pid, exe)
        return analysis.analyzePid(pid)
      }).pipe(
        Effect.flatMap((target) => {
          const predicate = selection.goPredicate?.(target.binary) === true
          if (!named(pid, exe) && !predicate) return skip(pid, exe, "not selected")
          const reason = unsupported(probes, target)
          if (reason !== undefined) return skip(pid, exe, reason)
          exited.delete(pid)
          // Selected by what it runs, every process of the file is wanted: links can be shared per file.
          const wide = byExecutable(pid, exe) || predicate
          const how: Target["selection"] = wide ? "executable" : "process"
          const selected: Target = { ...target, selection: how, ...fileIdentity(target.exe) }
          return Effect.andThen(
            resources.register(pid, { exe: target.exe, goVersion: target.goVersion }),
            submit(attach(selected))
          )
        }),
        Effect.catch((e: ProcessAnalysisError) => skip(pid, exe, e.message))
      )

    // The delayed unregistrations belong to this scope: the agent stopping cancels them.
    const gone = (pid: number): Effect.Effect<void> =>
      Effect.gen(function*() {
        exited.add(pid)
        yield* vanished(pid)
        yield* submit(manager.handle(TargetEvent.Exited({ pid })))
        yield* Effect.forkIn(Effect.delay(resources.unregister(pid), RESOURCE_GRACE), scope)
        exes.delete(pid)
      })

    yield* Effect.forkIn(
      Stream.runForEach(processes, (e) => e._tag === "Started" ? started(e.pid, e.exe) : gone(e.pid)),
      scope
    )
    // A process selected at start may be gone before discovery reported it (its exit then has no event): it is not
    // awaited forever.
    yield* Effect.forkIn(
      Effect.suspend(() =>
        Effect.forEach(
          [...ready.pending].filter((pid) => !Fs.existsSync(`/proc/${pid}`)),
          vanished,
          { discard: true }
        )
      ).pipe(Effect.repeat({ schedule: Schedule.spaced(GONE_POLL), until: () => ready.pending.size === 0 })),
      scope
    )
    return { ready: Deferred.await(ready.done) }
  })

