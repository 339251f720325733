/**
 * Which processes the agent instruments: explicit PIDs, every process of given executables (running and future),
 * and/or a predicate over the executable path (e.g. "every Go process", decided by the caller after analysis).
 */
import * as fs from "node:fs"

export interface Selector {
  readonly pids: ReadonlyArray<number>
  /** Executable paths; compared after resolving symlinks. */
  readonly exes: ReadonlyArray<string>
  /**
   * Also select any process for which this returns true (e.g. every Go binary, or the processes of a container: the
   * pid lets it read /proc/PID/cgroup, which is set before the exec it is called at).
   */
  readonly predicate?: (exe: string, pid: number) => boolean
}

const realpath = (p: string): string => {
  try {
    return fs.realpathSync(p)
  } catch {
    return p
  }
}

/** A matcher with the selector's executable paths resolved once. */
export const matcher = (selector: Selector): ((pid: number, exe: string) => boolean) => {
  const pids = new Set(selector.pids)
  const exes = new Set(selector.exes.map(realpath))
  return (pid, exe) => pids.has(pid) || exes.has(exe) || (selector.predicate?.(exe, pid) ?? false)
}
