/**
 * The agent's scheduling priority (`PROBESCOPE_NICE`): by default `run` gives way to the programs it watches while it
 * is busy and the host has CPU to spare, and takes its usual priority back when it would fall behind.
 *
 * Why: the agent's batch work (decoding, encoding, exporting, V8's GC) runs at the moments the traced service's
 * requests arrive, and at equal priority the scheduler lets a running batch finish its slice while a request that
 * woke up waits: the agent shows in the service's slowest requests. Giving way, its threads go to SCHED_IDLE
 * ({@link Yielder}), which a waking request preempts at once (`PROBESCOPE_GIVE_WAY=nice`: nice 10, a tenth of a nice-0
 * task's weight, which under EEVDF still keeps its slice). Either way it still has every idle cycle, and
 * needs only a few per cent of one CPU at 10k spans/s. But on a host with no idle CPU a low share is less than the
 * agent needs: it falls behind and its rings overflow (a saturated footprint run at a fixed nice 10 lost 7 007
 * spans). So, unset, the agent watches its main thread's schedstat ({@link governor}, {@link step}): it gives way once
 * it has been busy with short waits for a CPU for two seconds, and takes its usual priority back when a wait grows
 * past a quarter of the time (at SCHED_IDLE also seen within {@link GUARD_MS} by a native guard thread: the agent's
 * own JavaScript may not run for a long while) or when it goes idle (the next burst of work, which may saturate the
 * host from its first moment, starts at the usual priority). Taking it back needs CAP_SYS_NICE (root has it): without
 * it the agent keeps the priority it was started with, and it never raises a priority it was started with (under
 * `nice -n 15` it stays at 15). A value given is fixed, set as it is from the start (0: the usual priority; a
 * negative one, which needs CAP_SYS_NICE, favours the agent).
 *
 * Linux keeps a nice value per thread, and a new thread takes its creator's. So every thread the process has is set
 * (V8's and libuv's workers were started before any JavaScript ran), and threads made later take the same value.
 */
import { Config, Duration, Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import { type FellBehind, idlePolicy } from "../kernel/Scheduling.ts"
import { effectiveCapabilities } from "./Doctor.ts"
import { AgentConfigError } from "./Errors.ts"

const VARIABLE = "PROBESCOPE_NICE"
const GIVE_WAY = "PROBESCOPE_GIVE_WAY"

/**
 * The nice value `run` gives way at (busy, the host with CPU to spare), when `PROBESCOPE_NICE` is unset and the idle
 * policy is not used (`PROBESCOPE_GIVE_WAY=nice`, no addon, refused).
 */
export const defaultNice = 10

/** `PROBESCOPE_NICE`: a whole number from -20 to 19; `undefined` when unset or empty. */
export const niceConfig: Effect.Effect<number | undefined, AgentConfigError> = Config.String(VARIABLE).pipe(
  Config.option,
  Effect.mapError((e) => new AgentConfigError({ variable: VARIABLE, message: e.message })),
  Effect.flatMap((value) => {
    if (value._tag === "None" || value.value.trim() === "") return Effect.succeed(undefined)
    const text = value.value.trim()
    const n = Number(text)
    if (/^[+-]?\d+$/.test(text) && n >= -20 && n <= 19) return Effect.succeed(n)
    return Effect.fail(
      new AgentConfigError({
        variable: VARIABLE,
        message: `Invalid ${VARIABLE}=${JSON.stringify(value.value)}: expected a whole number from -20 to 19`
      })
    )
  })
)

/**
 * `PROBESCOPE_GIVE_WAY`: how the governor gives way, `idle` (the default: every thread at SCHED_IDLE, guarded; see
 * {@link Yielder} and docs/benchmarks.md, "Giving way with SCHED_IDLE (session 23)") or `nice` (at
 * {@link defaultNice}, session 22's way).
 */
export const giveWayConfig: Effect.Effect<"nice" | "idle", AgentConfigError> = Config.String(GIVE_WAY).pipe(
  Config.option,
  Effect.mapError((e) => new AgentConfigError({ variable: GIVE_WAY, message: e.message })),
  Effect.flatMap((value) => {
    if (value._tag === "None" || value.value.trim() === "") return Effect.succeed("idle" as const)
    const text = value.value.trim().toLowerCase()
    if (text === "nice" || text === "idle") return Effect.succeed(text)
    return Effect.fail(
      new AgentConfigError({
        variable: GIVE_WAY,
        message: `Invalid ${GIVE_WAY}=${JSON.stringify(value.value)}: expected "nice" or "idle"`
      })
    )
  })
)

/** The process's threads, by id (empty where /proc is not Linux's). */
const threads = (): ReadonlyArray<number> => {
  try {
    return fs.readdirSync("/proc/self/task").map(Number).filter((t) => Number.isInteger(t) && t > 0)
  } catch {
    return []
  }
}

/** Gives every thread of this process the nice value `nice`; throws the system's error. */
const setAll = (nice: number): void => {
  // A thread being created while the list is read takes its creator's old value: a second pass finds it.
  for (let pass = 0; pass < 3; pass++) {
    let changed = 0
    for (const tid of threads()) {
      try {
        if (os.getPriority(tid) === nice) continue
        os.setPriority(tid, nice)
      } catch (e) {
        if ((e as { info?: { code?: string } }).info?.code === "ESRCH") continue // the thread has exited
        throw e
      }
      changed++
    }
    if (changed === 0) return
  }
}

const setError = (nice: number, cause: unknown) => {
  const e = cause as { message?: string; info?: { code?: string } }
  const denied = e.info?.code === "EACCES" || e.info?.code === "EPERM"
  return new AgentConfigError({
    variable: VARIABLE,
    message: `Cannot set the agent's nice value to ${nice} (${VARIABLE}): ${e.message ?? String(cause)}${
      denied ? "; raising a priority needs CAP_SYS_NICE (root)" : ""
    }`
  })
}

/** What `run` does with its priority: `yielding` while the host has CPU to spare, `usual` while it has none. */
export interface Plan {
  readonly yielding: number
  readonly usual: number
  /** Give way at SCHED_IDLE (`PROBESCOPE_GIVE_WAY` unset or `idle`) rather than at `yielding`. */
  readonly idle?: true
}

/** CAP_SYS_NICE's bit in the capability sets: raising a priority (lowering a nice value). */
const CAP_SYS_NICE = 23n

/**
 * The plan for a `PROBESCOPE_NICE` value (`undefined`: unset), the nice value the agent was started with, and whether
 * it may raise its priority again once lowered. One value in both fields: fixed, no governor.
 */
export const plan = (asked: number | undefined, started: number, canRaise: boolean): Plan => {
  if (asked !== undefined) return { yielding: asked, usual: asked }
  if (started >= defaultNice || !canRaise) return { yielding: started, usual: started }
  return { yielding: defaultNice, usual: started }
}

/** How often the governor reads the main thread's schedstat while the agent is busy. */
export const SAMPLE = Duration.millis(500)
/** How often it reads it while the agent is idle (see {@link nextSampleMs}). */
export const IDLE_SAMPLE = Duration.seconds(4)
/** The share of a sample's wall time the main thread ran or waited from which the agent is busy. */
export const BUSY = 0.01
/** The share of a sample's wall time the main thread waited for a CPU above which the agent takes its priority back. */
export const BEHIND = 0.25
/** The share below which a busy sample is calm. */
export const CALM = 0.05
/** How long the agent keeps its usual priority once it took it back because it fell behind, at least. */
export const HOLD_MS = 30_000
/** Busy, calm samples in a row at the usual priority before it gives way. */
export const CALM_SAMPLES = 4
/** How often the native guard reads the main thread's schedstat while the agent gives way at SCHED_IDLE. */
export const GUARD_MS = 100

/**
 * How the governor gives way and takes the usual priority back: by default every thread goes to SCHED_IDLE, watched
 * by the native guard ({@link GUARD_MS}, {@link BEHIND}; src/kernel/Scheduling.ts): under EEVDF a nice value still
 * lets the agent keep the CPU for its slice while a request that woke waits, an idle policy does not, and the guard
 * takes the usual priority back within 100 ms on a host that fills up, where the governor's own samples, late at a
 * low priority, took a second (docs/benchmarks.md, "Giving way with SCHED_IDLE (session 23)"). With
 * `PROBESCOPE_GIVE_WAY=nice`, without the addon, or when the system refuses the policy: the plan's nice value.
 */
export interface Yielder {
  /** What giving way means, for the logs: "SCHED_IDLE" or "nice <n>". */
  readonly how: string
  readonly giveWay: () => void
  readonly takeBack: () => void
  /** Whether the agent was put back at its usual priority without the governor (the guard), and why. */
  readonly fellBehind: () => FellBehind | undefined
}

/** Giving way with the plan's nice value. */
export const niceYielder = (p: Plan): Yielder => ({
  how: `nice ${p.yielding}`,
  giveWay: () => setAll(p.yielding),
  takeBack: () => setAll(p.usual),
  fellBehind: () => undefined
})

/** The plan's way of giving way: SCHED_IDLE, guarded, when it says so and the addon is there; else its nice value. */
export const yielderOf = (p: Plan): Yielder => {
  const idle = p.idle === true ? idlePolicy() : undefined
  if (idle === undefined) return niceYielder(p)
  return {
    how: "SCHED_IDLE",
    giveWay: () => idle.giveWay(BEHIND, GUARD_MS, p.usual),
    takeBack: () => idle.takeBack(p.usual),
    fellBehind: idle.fellBehind
  }
}

export interface GovernorState {
  readonly yielding: boolean
  /** When the agent last took its usual priority back because it fell behind (ms; -Infinity: never). */
  readonly since: number
  /** Busy, calm samples in a row at the usual priority. */
  readonly calm: number
}

/** Where the governor starts: the usual priority, as if it had never fallen behind. */
export const initial: GovernorState = { yielding: false, since: -Infinity, calm: 0 }

/**
 * One step of the governor, from one sample: the main thread ran `runNs` and waited `waitNs` for a CPU, of
 * `wallNs`. The agent gives way only while it is busy and the host has room:
 * - at the usual priority, {@link CALM_SAMPLES} busy samples in a row with a wait under {@link CALM} make it give
 *   way (not within {@link HOLD_MS} of falling behind, so a host busy in bursts does not make it flap);
 * - giving way, a wait above {@link BEHIND} takes the usual priority back at once (the rings fill while the agent
 *   waits), and so does an idle sample: the next burst of work then starts at the usual priority, so a load that
 *   saturates the host from its first moment never meets an agent that is both giving way and sampling slowly.
 */
export const step = (state: GovernorState, runNs: number, waitNs: number, wallNs: number, nowMs: number): GovernorState => {
  const wait = wallNs > 0 ? waitNs / wallNs : 0
  const busy = wallNs > 0 && (runNs + waitNs) >= BUSY * wallNs
  if (state.yielding) {
    if (wait > BEHIND) return { yielding: false, since: nowMs, calm: 0 }
    return busy ? state : { ...state, yielding: false, calm: 0 }
  }
  const calm = busy && wait < CALM ? state.calm + 1 : 0
  if (calm >= CALM_SAMPLES && nowMs - state.since >= HOLD_MS) return { yielding: true, since: state.since, calm: 0 }
  return calm === state.calm ? state : { ...state, calm }
}

/** The main thread's time on a CPU and waiting on a run queue, cumulative ns (/proc/self/task/<pid>/schedstat). */
export interface Sched {
  readonly runNs: number
  readonly waitNs: number
}

/**
 * A reader of the main thread's schedstat through one descriptor kept open and one buffer: each sample is a single
 * `pread` and no allocation, so it wakes no garbage collection in an idle agent. `close` gives the descriptor back.
 */
const mainSched = (): { readonly read: () => Sched | undefined; readonly close: () => void } | undefined => {
  let fd: number
  try {
    fd = fs.openSync(`/proc/self/task/${process.pid}/schedstat`, "r")
  } catch {
    return undefined
  }
  const buf = Buffer.alloc(96)
  const read = (): Sched | undefined => {
    let n: number
    try {
      n = fs.readSync(fd, buf, 0, buf.length, 0)
    } catch {
      return undefined
    }
    // "<ns on a CPU> <ns waiting on a run queue> <timeslices>\n", decimal.
    let run = 0
    let wait = 0
    let field = 0
    for (let i = 0; i < n && field < 2; i++) {
      const c = buf[i]!
      if (c === 0x20) field++
      else if (field === 0) run = run * 10 + (c - 0x30)
      else wait = wait * 10 + (c - 0x30)
    }
    return field === 2 ? { runNs: run, waitNs: wait } : undefined
  }
  return { read, close: () => fs.closeSync(fd) }
}

/**
 * Reads `PROBESCOPE_NICE`, sets a value given on every thread and returns the plan. Fails with `AgentConfigError`
 * on a bad value, or when the system refuses the value given (a raise without CAP_SYS_NICE), with the system's reason.
 */
export const apply: Effect.Effect<Plan, AgentConfigError> = Effect.gen(function*() {
  const asked = yield* niceConfig
  const started = os.getPriority()
  const status = (() => {
    try {
      return fs.readFileSync("/proc/self/status", "latin1")
    } catch {
      return ""
    }
  })()
  const canRaise = ((effectiveCapabilities(status) >> CAP_SYS_NICE) & 1n) === 1n
  const how = yield* giveWayConfig
  const fixed = plan(asked, started, canRaise)
  const p: Plan = how === "idle" && fixed.yielding !== fixed.usual ? { ...fixed, idle: true } : fixed
  // A fixed value holds from the start; the default changes only once the agent is ready (`governor`): start-up is a
  // one-off burst that decides how soon the first request is traced, not a cost per request.
  if (p.yielding === p.usual && p.yielding !== started) {
    yield* Effect.try({ try: () => setAll(p.yielding), catch: (cause) => setError(p.yielding, cause) })
  }
  return p
})

/**
 * The interval to the next sample: {@link SAMPLE} while the main thread ran or waited {@link BUSY} of the last one,
 * else {@link IDLE_SAMPLE}. A wakeup of an idle agent costs ~0.2–0.4 ms of CPU on a small VM (measured: a bare
 * 500 ms timer in Node, 0.46 ms/s), so an idle agent samples every 4 s, not every 0.5 (it is at its usual priority
 * then, see {@link step}).
 */
export const nextSampleMs = (ranNs: number, waitedNs: number, wallNs: number): number =>
  ranNs + waitedNs >= BUSY * wallNs ? Duration.toMillis(SAMPLE) : Duration.toMillis(IDLE_SAMPLE)

/**
 * The governor of a plan with two values, for as long as the scope lasts (a fixed plan has none): from the usual
 * priority, it reads the main thread's schedstat (`readSched`) at {@link nextSampleMs}'s intervals and applies
 * {@link step}, setting every thread at each change. A plain unreferenced timer, not a fiber: each sample may be a
 * wakeup of the whole process, and the agent's idle cost is counted in them. A change it cannot make (the capability
 * dropped since) is logged and ends it where it is.
 */
export const governor = (p: Plan, readSched?: () => Sched | undefined, yielder?: Yielder) =>
  Effect.gen(function*() {
    if (p.yielding === p.usual) return
    let how = yielder ?? yielderOf(p)
    let read = readSched
    if (read === undefined) {
      const own = yield* Effect.acquireRelease(Effect.sync(mainSched), (r) => Effect.sync(() => r?.close()))
      if (own === undefined) return
      read = own.read
    }
    const readNow = read
    let last = readNow()
    if (last === undefined) return
    let lastWall = performance.now()
    let state = initial
    const log = Effect.runForkWith(yield* Effect.context<never>())
    let timer: ReturnType<typeof setTimeout> | undefined
    const fellBehind = (waitedNs: number, wallNs: number) =>
      log(Effect.logInfo(
        `the agent waited ${(waitedNs / 1e6).toFixed(0)} ms of ${(wallNs / 1e6).toFixed(0)} for a CPU: nice ` +
          `${p.usual} for ${HOLD_MS / 1000} s at least (${VARIABLE})`
      ))
    const sample = () => {
      const now = performance.now()
      const sched = readNow()
      if (sched === undefined) {
        // Blind from here on: end where the agent cannot fall behind unseen.
        if (state.yielding) {
          try {
            how.takeBack()
          } catch {
            // the priority it has is the one it keeps
          }
        }
        log(Effect.logWarning("priority governor stopped: the main thread's schedstat cannot be read"))
        return
      }
      const ran = sched.runNs - last!.runNs
      const waited = sched.waitNs - last!.waitNs
      const wallNs = (now - lastWall) * 1e6
      last = sched
      lastWall = now
      // The guard put the threads back at their usual priority between two samples (the host filled up).
      const guarded = state.yielding ? how.fellBehind() : undefined
      if (guarded !== undefined) {
        state = { yielding: false, since: now, calm: 0 }
        fellBehind(guarded.waitedNs, guarded.wallNs)
        timer = setTimeout(sample, nextSampleMs(ran, waited, wallNs)).unref()
        return
      }
      const next = step(state, ran, waited, wallNs, now)
      if (next.yielding !== state.yielding) {
        try {
          if (next.yielding) how.giveWay()
          else how.takeBack()
        } catch (cause) {
          if (next.yielding && how.how === "SCHED_IDLE") {
            // The system refuses the idle policy (a seccomp filter, a container): give way with the nice value.
            const why = cause instanceof Error ? cause.message : String(cause)
            log(Effect.logDebug(`SCHED_IDLE refused (${why}): giving way at nice ${p.yielding}`))
            how = niceYielder(p)
            timer = setTimeout(sample, nextSampleMs(ran, waited, wallNs)).unref()
            return
          }
          const nice = next.yielding ? p.yielding : p.usual
          log(Effect.logWarning(`priority governor stopped: ${setError(nice, cause).message}`))
          return
        }
        // Falling behind is worth a line; giving way and going idle are routine (debug).
        if (!next.yielding && next.since === now) fellBehind(waited, wallNs)
        else {
          const what = next.yielding ? `${how.how}: giving way to the traced programs` : `nice ${p.usual}: idle`
          log(Effect.logDebug(what))
        }
      }
      state = next
      timer = setTimeout(sample, nextSampleMs(ran, waited, wallNs)).unref()
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        timer = setTimeout(sample, Duration.toMillis(SAMPLE)).unref()
      }),
      // The end of the run (a shutdown's export, the probes' detach) at the usual priority, the guard stopped.
      () =>
        Effect.sync(() => {
          clearTimeout(timer)
          if (!state.yielding) return
          try {
            how.takeBack()
          } catch {
            // the priority it has is the one it keeps
          }
        })
    )
  })
