/**
 * Giving way to other programs on the CPU: every thread of this process to the idle scheduling policy (SCHED_IDLE),
 * watched by a guard thread of the native addon that takes the usual policy back as soon as the main thread waits
 * too long for a CPU (native/src/sched.cc says why an idle policy, and why a guard). Knows nothing of probes or of
 * the agent: the CLI's priority governor (src/cli/Priority.ts) decides when.
 *
 * Synchronous on purpose: the governor runs on a plain timer, not in a fiber, so an idle agent wakes as little as
 * it can.
 */
import { loadAddon } from "./internal/addon.ts"

/** The sample of the main thread at which the guard took the usual policy back. */
export interface FellBehind {
  readonly waitedNs: number
  readonly wallNs: number
}

export interface IdlePolicy {
  /**
   * Every thread to SCHED_IDLE, guarded: a wait for a CPU above `behind` of a `intervalMs` sample of the main thread
   * puts every thread back at SCHED_OTHER and `usualNice`. Throws the system's error (the threads left at SCHED_OTHER).
   */
  readonly giveWay: (behind: number, intervalMs: number, usualNice: number) => void
  /** Stops the guard and puts every thread back at SCHED_OTHER and `usualNice`. Throws the system's error. */
  readonly takeBack: (usualNice: number) => void
  /** Whether the guard took the usual policy back since the last call, and at which sample. */
  readonly fellBehind: () => FellBehind | undefined
}

/** The idle policy through the native addon; undefined when the addon cannot be loaded (not built). */
export const idlePolicy = (): IdlePolicy | undefined => {
  const addon = loadAddon()
  if (typeof addon === "string") return undefined
  return {
    giveWay: (behind, intervalMs, usualNice) => addon.schedGiveWay(process.pid, behind, intervalMs, usualNice),
    takeBack: (usualNice) => addon.schedTakeBack(usualNice),
    fellBehind: () => addon.schedGuardFired()
  }
}
