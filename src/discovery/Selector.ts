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
  /**
   * For a `predicate` that can only select processes of these executables (paths; e.g. `--exe` files and nothing
   * else): discovery then has the kernel send only the execs of a file of the same name as one of these or of
   * `exes` (symlinks resolved), and the exits of what it follows; the machine's other execs and exits never reach
   * the agent. Without a predicate, `exes` alone are the filter. Unset, with a predicate: every exec is looked at.
   */
  readonly onlyExes?: ReadonlyArray<string>
}

export const realpath = (p: string): string => {
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

/**
 * The file names the kernel may let through when nothing else can match (the last component of each executable,
 * symlinks resolved); undefined when a predicate may select any process.
 */
export const fileNames = (selector: Selector): ReadonlyArray<string> | undefined => {
  if (selector.predicate !== undefined && selector.onlyExes === undefined) return undefined
  const paths = [...selector.exes, ...(selector.onlyExes ?? [])].map(realpath)
  return [...new Set(paths.map((p) => p.slice(p.lastIndexOf("/") + 1)))]
}
