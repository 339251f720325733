/**
 * How the `probescope` process ends: its exit codes, and the signal handling that bounds a shutdown.
 *
 * The first SIGINT/SIGTERM interrupts the command (for `run`, a normal stop: detach, flush, exit 0) and arms a
 * timer; a second signal, or the timer firing, exits at once. Exiting with probes still attached is safe: the kernel
 * detaches uprobes and frees maps when the last fd of the process is closed, which `process.exit` guarantees.
 */
import { Cause, Effect, Exit, Runtime } from "effect"
import type { Fiber } from "effect"

/** The process's exit codes (docs/cli.md). */
export const ExitCode = {
  /** A clean stop: the command did what it was asked, or `run` stopped on a signal with nothing lost. */
  ok: 0,
  /** An error, reported in one line. */
  error: 1,
  /** The command line was wrong (unknown flag, bad value, nothing to do), reported in one line. */
  usage: 2,
  /** `run` stopped normally, but some telemetry never reached an exporter (dropped or failed somewhere). */
  dataLost: 3,
  /** `run` did not finish shutting down within the bound after the first signal; it exited anyway. */
  shutdownTimeout: 4,
  /** A second SIGINT during shutdown: 128 + 2, as a shell reports a process killed by SIGINT. */
  secondSigint: 130,
  /** A second SIGTERM during shutdown: 128 + 15. */
  secondSigterm: 143
} as const

/** What the shutdown bound adds to `PROBESCOPE_SHUTDOWN_TIMEOUT`: detaching probes and closing maps after the flush. */
export const SHUTDOWN_MARGIN_MILLIS = 2000

/** Shutdown bound used until a command sets one (the telemetry default, 5000 ms, plus the margin). */
const DEFAULT_BOUND_MILLIS = 5000 + SHUTDOWN_MARGIN_MILLIS

let boundMillis = DEFAULT_BOUND_MILLIS
let exitCode: number = ExitCode.ok
/** Set by `run`: a signal is how it is meant to stop. Other commands interrupted by a signal exit 128 + signo. */
let stopsNormally = false
let lastSignal: NodeJS.Signals | undefined
let armed = false
let started = false
/** Signals received before the command's handler started: it decides what they mean (see `commandStarted`). */
const pending: Array<NodeJS.Signals> = []
let deliver: ((signal: NodeJS.Signals) => void) | undefined

const shutdownHooks: Array<() => void> = []

/**
 * Runs `hook` when the shutdown starts (the first signal, or `run` stopping on its own), before anything is
 * interrupted: `run` starts the telemetry deadline's clock here, so the bound covers the whole stop.
 */
export const onShutdown = (hook: () => void): void => {
  shutdownHooks.push(hook)
}

const runShutdownHooks = () => {
  for (const hook of shutdownHooks.splice(0)) {
    try {
      hook()
    } catch {
      // A hook that fails must not keep the process from stopping.
    }
  }
}

/** The command's own outcome when it ends without a failure (e.g. `dataLost`, `doctor` finding a failed check). */
export const setExitCode = (code: number): void => {
  exitCode = code
}

/** `run` sets the bound from `PROBESCOPE_SHUTDOWN_TIMEOUT` once it has read it. */
export const setShutdownTimeout = (timeoutMillis: number): void => {
  boundMillis = timeoutMillis + SHUTDOWN_MARGIN_MILLIS
}

const stderrLine = (line: string) => {
  try {
    process.stderr.write(`probescope: ${line}\n`)
  } catch {
    // Nothing left to tell the user with.
  }
}

/**
 * Starts the shutdown bound (once): if the process is still alive `PROBESCOPE_SHUTDOWN_TIMEOUT` + the margin later,
 * it exits with `shutdownTimeout`. The first signal arms it; so does `run` stopping on its own.
 */
export const armShutdownBound = (): void => {
  if (armed) return
  armed = true
  runShutdownHooks()
  const bound = boundMillis
  const timer = setTimeout(() => {
    stderrLine(`shutdown did not finish within ${bound} ms: exiting now`)
    process.exit(ExitCode.shutdownTimeout)
  }, bound)
  // The timer is a bound, not a reason to stay alive.
  timer.unref()
}

/**
 * Called first by every command's handler: whether a signal is its normal stop, and the moment signals that arrived
 * while the CLI was loading are delivered (before it, the process had not started anything a signal should stop).
 */
export const commandStarted = (normalStop: boolean): Effect.Effect<void> =>
  Effect.sync(() => {
    stopsNormally = normalStop
    started = true
    for (const signal of pending.splice(0)) deliver?.(signal)
  })

const signalNumber = (signal: NodeJS.Signals | undefined) => (signal === "SIGTERM" ? 15 : 2)

/** The exit code for the command's exit: interrupts (a signal) are a normal stop for `run`. */
const codeOf = (exit: Exit.Exit<unknown, unknown>, isUsage: (error: unknown) => boolean): number => {
  if (Exit.isSuccess(exit)) return exitCode
  if (Cause.hasInterruptsOnly(exit.cause)) return stopsNormally ? exitCode : 128 + signalNumber(lastSignal)
  const error = Cause.findErrorOption(exit.cause)
  return error._tag === "Some" && isUsage(error.value) ? ExitCode.usage : ExitCode.error
}

export interface Options {
  /** Signals main.ts recorded while the CLI's modules were loading. */
  readonly earlySignals: ReadonlyArray<NodeJS.Signals>
  /** Called once this module's handlers are installed: main.ts removes its recorder. */
  readonly installed: () => void
  /** Failures that are usage errors (already reported in one line): exit 2. */
  readonly isUsage: (error: unknown) => boolean
}

/**
 * Runs the CLI's main effect: like `NodeRuntime.runMain`, but a second signal exits at once and the first arms the
 * shutdown bound. Always ends the process with `process.exit`: a native handle left behind must not keep it alive.
 */
export const runMain = (options: Options) =>
  Runtime.makeRunMain(<E, A>({ fiber }: { readonly fiber: Fiber.Fiber<A, E>; readonly teardown: Runtime.Teardown }) => {
    let signals = 0
    deliver = (signal) => {
      signals++
      lastSignal = signal
      if (signals > 1) {
        stderrLine(`second ${signal} during shutdown: exiting now`)
        process.exit(128 + signalNumber(signal))
      }
      armShutdownBound()
      fiber.interruptUnsafe(fiber.id)
    }
    const onSignal = (signal: NodeJS.Signals) => {
      // Before a command started, hold the signal: it decides whether it is a normal stop.
      if (started) deliver!(signal)
      else pending.push(signal)
    }
    fiber.addObserver((exit) => {
      process.exit(codeOf(exit, options.isUsage))
    })
    process.on("SIGINT", onSignal)
    process.on("SIGTERM", onSignal)
    options.installed()
    pending.push(...options.earlySignals)
  })
