/**
 * What `run` would attach, decided the way the running agent decides it (the same selectors, the same analysis,
 * the same probe check): for `inspect` (one process: which selector picked it, or why none did) and `list` (every
 * running process some selector picks).
 */
import { Effect } from "effect"
import * as Cgroup from "../../discovery/Cgroup.ts"
import { scan } from "../../discovery/ProcScan.ts"
import * as Sockets from "../../discovery/Sockets.ts"
import { TargetAnalysis } from "../../target/GoBinary.ts"
import type { ProbeInfo } from "./probes.ts"
import * as Selecting from "./selection.ts"
import type { Analysed, Selection } from "./targets.ts"
import { analyze, goBinaryOf, unsupported } from "./targets.ts"

/** One process as `run` would treat it now. */
export interface Planned {
  readonly pid: number
  readonly exe: string
  /** The selectors that pick it, as the command line spells them (`--all-go` when analysis did). */
  readonly selectedBy: ReadonlyArray<string>
  /** Whether `run` would attach to it. */
  readonly attach: boolean
  /** Why not, or null. */
  readonly reason: string | null
}

/** Decides one process, given which processes listen on the selected ports. */
const decide = (
  selection: Selection,
  rules: Selecting.Matcher,
  probes: ReadonlyArray<ProbeInfo>,
  listeners: ReadonlyMap<number, ReadonlyArray<number>>,
  pid: number,
  exe: string
) =>
  Effect.gen(function*() {
    const analysis = yield* TargetAnalysis
    let cgroup: Cgroup.CgroupInfo | undefined
    const matched = rules.matches({
      pid,
      exe,
      cgroup: () => (cgroup ??= Cgroup.readSync(pid)),
      ports: () => listeners.get(pid) ?? []
    })
    const none = { pid, exe, selectedBy: [], attach: false, reason: "no selector matches it" }
    if (matched.length === 0 && selection.goPredicate === undefined) return none
    // As the agent does: a process a selector names is analysed for every given probe (native ones included); one
    // only --all-go could pick needs Go analysis alone.
    const analysed = yield* Effect.result(
      matched.length === 0 ? Effect.map(analysis.analyzePid(pid), (t): Analysed => t) : analyze(probes, pid)
    )
    if (analysed._tag === "Failure") {
      if (matched.length === 0) return none
      return { pid, exe, selectedBy: matched, attach: false, reason: analysed.failure.message }
    }
    const target = analysed.success
    const binary = goBinaryOf(target)
    const selectedBy = [
      ...matched,
      ...(binary !== undefined && selection.goPredicate?.(binary) === true ? ["--all-go"] : [])
    ]
    if (selectedBy.length === 0) return none
    const reason = unsupported(probes, target) ?? null
    return { pid, exe, selectedBy, attach: reason === null, reason }
  })

const listenersOf = (rules: Selecting.Matcher) =>
  Effect.sync(() => rules.ports.size === 0 ? new Map<number, Array<number>>() : Sockets.listeners(rules.ports))

/** How `run` would treat one running process. */
export const explain = (selection: Selection, probes: ReadonlyArray<ProbeInfo>, pid: number, exe: string) =>
  Effect.gen(function*() {
    const rules = Selecting.compile(selection)
    return yield* decide(selection, rules, probes, yield* listenersOf(rules), pid, exe)
  })

/** Every running process some selector picks (whether or not it can be attached), by pid. */
export const plan = (selection: Selection, probes: ReadonlyArray<ProbeInfo>) =>
  Effect.gen(function*() {
    const rules = Selecting.compile(selection)
    const listeners = yield* listenersOf(rules)
    const running = (yield* scan).filter((p) => p.exe !== process.execPath)
    const decided = yield* Effect.forEach(running, (p) => decide(selection, rules, probes, listeners, p.pid, p.exe))
    return decided.filter((p) => p.selectedBy.length > 0)
  })
