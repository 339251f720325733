/**
 * Whether the processes `run --pid` named are still alive, from /proc alone (no dependency on the Manager's
 * internals). A process counts as gone when /proc/PID is absent, when it is a zombie (it has exited, its parent just
 * has not reaped it), or when its start time changed (the pid was reused by another process).
 */
import { Effect } from "effect"
import * as Fs from "node:fs"

/** How often the pids are checked: a stop within a quarter second is soon enough for a process that has exited. */
export const POLL_INTERVAL_MILLIS = 250

/**
 * The start time (field 22 of /proc/PID/stat, in clock ticks since boot) of a live process, or undefined when it has
 * exited (absent or zombie). The command name (field 2) may hold spaces and parentheses: fields are counted from the
 * last ")".
 */
export const startTime = (stat: string | undefined): string | undefined => {
  if (stat === undefined) return undefined
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  const state = fields[0]
  if (state === undefined || state === "Z" || state === "X" || state === "x") return undefined
  return fields[19]
}

const readStat = (pid: number): string | undefined => {
  try {
    return Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  } catch {
    return undefined
  }
}

/**
 * Completes once every pid has exited. The start times are taken now, so a pid reused later is not mistaken for the
 * process the user named.
 */
export const allExited = (pids: ReadonlyArray<number>): Effect.Effect<void> =>
  Effect.gen(function*() {
    const watched = pids.map((pid) => ({ pid, start: startTime(readStat(pid)) }))
    const alive = () => watched.some((w) => w.start !== undefined && startTime(readStat(w.pid)) === w.start)
    while (alive()) yield* Effect.sleep(POLL_INTERVAL_MILLIS)
  })
