/**
 * The agent's loop: discovery's process events, each started process analysed into a `Target`, its resource
 * registered and its attach handed to the Manager; and `ready`, which completes once every process selected at start
 * has been attached, has failed (with the reason), or has gone.
 *
 * A process is analysed as Go; when a given probe can apply to any process (a shared-library probe, a tracepoint
 * instrument), a process some selector names (pid, executable, port, container, cgroup) that is not Go is analysed
 * natively too, with the libraries the probes name. `--all-go` picks Go programs only: a process nothing but it
 * could pick gets the Go analysis alone.
 *
 * The Manager is driven through `Manager.handle` rather than a `TargetSource`, so the agent learns when each attach
 * is done. Each event is forked and started at once, so the Manager keeps its per-pid order (it chains events of one
 * pid in the order `handle` runs) and different pids attach concurrently.
 */
import * as Fs from "node:fs"
import { Deferred, Duration, Effect, Exit, Fiber, Logger, Schedule, Stream } from "effect"
import * as Glob from "../../discovery/Glob.ts"
import * as Discovery from "../../discovery/Discovery.ts"
import * as Cgroup from "../../discovery/Cgroup.ts"
import type { CgroupInfo } from "../../discovery/Cgroup.ts"
import { argsOf, scan } from "../../discovery/ProcScan.ts"
import type { Selector } from "../../discovery/Selector.ts"
import { matcher } from "../../discovery/Selector.ts"
import * as Sockets from "../../discovery/Sockets.ts"
import { Manager } from "../../manager/Manager.ts"
import { TargetEvent } from "../../manager/TargetEvent.ts"
import type { Target } from "../../probe/Target.ts"
import type { MapsError, NativeAnalysisError, ProcessAnalysisError } from "../../target/Errors.ts"
import { TargetAnalysis } from "../../target/GoBinary.ts"
import { NativeAnalysis } from "../../target/NativeBinary.ts"
import * as Detected from "../../telemetry/internal/detected.ts"
import * as ProcessResources from "../../telemetry/ProcessResources.ts"
import type { ProbeInfo } from "./probes.ts"
import * as Selecting from "./selection.ts"
import type { Analysed, Selection } from "./targets.ts"
import { analyze, goBinaryOf, nativeAnalysis, nativeCapable, unsupported } from "./targets.ts"

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

/** A selector no running process matched when the agent started (processes may still come). */
export interface UnmatchedSelector {
  /** As the command line spells it, e.g. `--port 8080`. */
  readonly selector: string
  readonly reason: string
}

/** What became of the processes selected when the agent started. */
export interface ReadyReport {
  readonly attached: ReadonlyArray<AttachedProcess>
  readonly failed: ReadonlyArray<FailedProcess>
  readonly unmatched: ReadonlyArray<UnmatchedSelector>
}

/** How long a process's resource outlives it: spans of its last requests may still be in flight to the exporter. */
const RESOURCE_GRACE = Duration.seconds(30)

/**
 * How often the sockets listening on selected ports are checked: a process that starts listening is selected within
 * this (plus its attach).
 */
export const PORT_POLL = Duration.millis(500)

/** How often pids still awaited for `ready` are checked for having gone without an exit event. */
const GONE_POLL = Duration.millis(500)

type Outcome =
  | { readonly _tag: "Attached"; readonly process: AttachedProcess }
  | { readonly _tag: "Failed"; readonly process: FailedProcess }
  | { readonly _tag: "Skipped" }

/** Waits for every pid of `initial` to have an outcome. */
const makeReady = (initial: ReadonlySet<number>, unmatched: ReadonlyArray<UnmatchedSelector>) => {
  const pending = new Set(initial)
  const attached: Array<AttachedProcess> = []
  const failed: Array<FailedProcess> = []
  const done = Deferred.makeUnsafe<ReadyReport>()
  const check = () => {
    if (pending.size > 0) return
    const byPid = <A extends { readonly pid: number }>(a: A, b: A) => a.pid - b.pid
    Deferred.doneUnsafe(done, Exit.succeed({ attached: attached.sort(byPid), failed: failed.sort(byPid), unmatched }))
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

/** How the driver fills in resources. */
export interface DriverOptions {
  /** Put `process.command_args` in each resource (off by default: arguments can hold secrets). */
  readonly commandArgs: boolean
}

/**
 * The executables a selection can select, when it names files and nothing else (no glob, Go predicate, port,
 * container or cgroup; pids too): then discovery has the kernel drop every other exec and exit of the machine
 * before they reach the agent (by file name; the selector still decides). On a busy host those had been most of
 * what the idle agent did. Undefined when any process may be selected.
 */
export const onlyExes = (selection: Selection): ReadonlyArray<string> | undefined =>
  selection.goPredicate === undefined && (selection.ports ?? []).length === 0 &&
    (selection.containers ?? []).length === 0 && (selection.cgroups ?? []).length === 0 &&
    selection.exes.every((exe) => !Glob.isGlob(exe))
    ? selection.exes
    : undefined

/** The agent's loop in the current scope; see the module comment. */
export const make = (selection: Selection, probes: ReadonlyArray<ProbeInfo>, options: DriverOptions) =>
  Effect.gen(function*() {
    const manager = yield* Manager
    const analysis = yield* TargetAnalysis
    // One native analysis for the agent's life: libc and libssl, mapped by many processes, are analysed once.
    const native = yield* nativeAnalysis
    const anyProcess = nativeCapable(probes)
    const resources = yield* ProcessResources.ProcessResources
    const scope = yield* Effect.scope
    // The executables named (`--exe` files, not globs): the probes their processes need are loaded now, first thing
    // (the verifier's threads work while discovery starts and /proc is scanned), and before `ready`, even with none
    // of them running — the first one started, perhaps living a few milliseconds, is then attached without waiting
    // for the verifier (probes load on attach otherwise). Failures are the attaches' to report.
    const files = selection.exes.filter((exe) => !Glob.isGlob(exe))
    const preloaded = yield* Effect.forkIn(
      Effect.forEach(files, (exe) =>
        analysis.analyzeFile(exe).pipe(
          Effect.flatMap((b) => manager.preload({ ...b, pid: 0, exe: b.path, libraries: [] })),
          Effect.ignore
        ), { concurrency: "unbounded", discard: true }),
      scope
    )
    const rules = Selecting.compile(selection)
    const host = Detected.host()
    /** pid -> the selected ports it listens on, as the port poll found them. */
    const portOwners = new Map<number, ReadonlyArray<number>>()
    if (rules.ports.size > 0) for (const [pid, ports] of Sockets.listeners(rules.ports)) portOwners.set(pid, ports)
    // The cgroup is read at most once per look at a process, and only when a selector needs it: not cached across
    // looks, since discovery asks about every exec on the machine and reports the exits of only what it follows.
    const view = (pid: number, exe: string): Selecting.ProcessView => {
      let cgroup: CgroupInfo | undefined
      return {
        pid,
        exe,
        cgroup: () => (cgroup ??= Cgroup.readSync(pid)),
        ports: () => portOwners.get(pid) ?? []
      }
    }
    const named = (pid: number, exe: string) => rules.matches(view(pid, exe)).length > 0
    // With Go or ports selected, discovery follows every process: analysis decides the first, the port poll the
    // second (a process listens after its exec, when discovery sees it), and each needs the process's exit.
    const followAll = selection.goPredicate !== undefined || rules.ports.size > 0
    const only = onlyExes(selection)
    const selector: Selector = {
      pids: selection.pids,
      exes: [],
      predicate: (exe, pid) => exe !== process.execPath && (followAll || named(pid, exe)),
      ...(only === undefined ? {} : { onlyExes: only })
    }
    const processes = yield* Discovery.subscribe(selector)
    // Taken after discovery subscribed: every process here is reported by it, from its own scan or as an exec.
    const selects = matcher(selector)
    const all = yield* scan
    const running = all.filter((p) => !selection.pids.includes(p.pid) && selects(p.pid, p.exe))
    const matchedAtStart = new Set(all.flatMap((p) => rules.matches(view(p.pid, p.exe))))
    const unmatched = rules.labels.filter((label) => !matchedAtStart.has(label))
      .map((label) => ({ selector: label, reason: Selecting.unmatchedReason(label) }))
    const ready = makeReady(new Set([...selection.pids, ...running.map((p) => p.pid)]), unmatched)
    const instruments = new Set(probes.filter((p) => p.kind === "instrument").map((p) => p.name))
    const exited = new Set<number>()
    const exes = new Map<number, string>()
    /** Followed for their ports but not (yet) listening on one: pid -> exe. */
    const waiting = new Map<number, string>()
    /** Selected and handed to the Manager (until they exit). */
    const chosen = new Set<number>()
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

    /** The detected part of the process's resource: host, container, pod, and the arguments when asked for. */
    const detected = (proc: Selecting.ProcessView) =>
      Effect.map(options.commandArgs ? argsOf(proc.pid) : Effect.succeed(undefined), (args) => {
        const cg = proc.cgroup()
        return Detected.attributes(host, {
          ...(cg.containerId === undefined ? {} : { containerId: cg.containerId }),
          ...(cg.podUid === undefined ? {} : { podUid: cg.podUid }),
          ...(args === undefined ? {} : { args })
        })
      })

    /** Not picked by any selector now; a port may still pick it once it listens. */
    const notSelected = (pid: number, exe: string) => {
      if (rules.ports.size > 0) waiting.set(pid, exe)
      return skip(pid, exe, "not selected", false)
    }

    const started = (pid: number, exe: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        exes.set(pid, exe)
        // One view for this look: its cgroup is read at most once, for the selectors and for the resource alike.
        const proc = view(pid, exe)
        const isNamed = rules.matches(proc).length > 0
        // Nothing but analysis (Go) could pick it: spare the analysis.
        if (selection.goPredicate === undefined && !isNamed) return notSelected(pid, exe)
        // Named by a selector: any process may be a target (when a probe can apply to it); else only Go can be.
        const analysed: Effect.Effect<Analysed, ProcessAnalysisError | MapsError | NativeAnalysisError> =
          isNamed && anyProcess ?
            analyze(probes, pid).pipe(
              Effect.provideService(TargetAnalysis, analysis),
              Effect.provideService(NativeAnalysis, native)
            ) :
            analysis.analyzePid(pid)
        return analysed.pipe(
          Effect.flatMap((target) => {
            const go = goBinaryOf(target)
            const predicate = go !== undefined && selection.goPredicate?.(go) === true
            if (!isNamed && !predicate) return notSelected(pid, exe)
            const reason = unsupported(probes, target)
            if (reason !== undefined) return skip(pid, exe, reason, isNamed)
            exited.delete(pid)
            waiting.delete(pid)
            chosen.add(pid)
            // Selected by what it runs, every process of the file is wanted: links can be shared per file.
            const wide = rules.wide(proc) || predicate
            const how: Target["selection"] = wide ? "executable" : "process"
            const selected: Target = { ...target, selection: how }
            return detected(proc).pipe(
              Effect.flatMap((attributes) =>
                resources.register(pid, {
                  exe: target.exe,
                  // "" for a native process: its resource then names no runtime.
                  goVersion: target.goVersion,
                  detected: attributes
                })
              ),
              Effect.andThen(submit(attach(selected)))
            )
          }),
          Effect.catch((e: ProcessAnalysisError | MapsError | NativeAnalysisError) =>
            skip(pid, exe, e.message, isNamed)
          )
        )
      })

    /**
     * The port poll: a socket newly listening on a selected port is looked up once among every process's fds; its
     * owners that discovery reported (and nothing picked yet) are started now, the others when discovery reports
     * them (`portOwners` makes them match).
     */
    const knownSockets = new Map<number, number>()
    const pollPorts = Effect.suspend(() => {
      const inodes = Sockets.listeningInodes(rules.ports)
      for (const inode of knownSockets.keys()) if (!inodes.has(inode)) knownSockets.delete(inode)
      const fresh = new Map([...inodes].filter(([inode]) => !knownSockets.has(inode)))
      if (fresh.size === 0) return Effect.void
      for (const [inode, port] of fresh) knownSockets.set(inode, port)
      const found = [...Sockets.owners(fresh)]
      for (const [pid, ports] of found) portOwners.set(pid, [...new Set([...(portOwners.get(pid) ?? []), ...ports])])
      return Effect.forEach(found, ([pid]) => {
        const exe = waiting.get(pid)
        if (exe === undefined || chosen.has(pid)) return Effect.void
        waiting.delete(pid)
        return started(pid, exe)
      }, { discard: true })
    })

    // The delayed unregistrations belong to this scope: the agent stopping cancels them.
    const gone = (pid: number): Effect.Effect<void> =>
      Effect.gen(function*() {
        exited.add(pid)
        waiting.delete(pid)
        chosen.delete(pid)
        portOwners.delete(pid)
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
    if (rules.ports.size > 0) {
      yield* Effect.forkIn(Effect.repeat(pollPorts, Schedule.spaced(PORT_POLL)), scope)
    }
    return { ready: Effect.andThen(Fiber.await(preloaded), Deferred.await(ready.done)) }
  })

