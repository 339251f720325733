/**
 * Loss reporting shared by every signal's pipeline: while data is being dropped (a full queue) or failing to export,
 * one warning per exporter per interval says how much since the last warning and how much in total, so an outage is
 * visible while it happens without one log line per batch. At close, one summary line if anything was lost.
 */
import { Duration, Effect, type Fiber, Option, Queue, type Scope } from "effect"
import type { ExportError } from "./otelExport.ts"

/** What one exporter of one signal has lost so far. */
export interface LossCounts {
  readonly exported: number
  readonly dropped: number
  readonly failed: number
  readonly lastError: Option.Option<ExportError>
}

/** Rate-limited loss warnings for one exporter of one signal. */
export interface LossReport {
  /** Logs one warning if anything was dropped or failed since the last one. */
  readonly report: Effect.Effect<void>
  /** One line with the totals if anything was ever lost (it stops the "since the last report" lines). */
  readonly summary: Effect.Effect<void>
}

/** Default interval between two loss warnings of one exporter. */
export const DEFAULT_INTERVAL_MILLIS = 5000

export const make = (options: {
  /** "spans", "metric data points", ... */
  readonly signal: string
  readonly exporter: string
  readonly endpoint: string
  /** Why this signal drops data, e.g. "queue full". */
  readonly dropReason: string
  readonly read: () => LossCounts
}): LossReport => {
  let dropped = 0
  let failed = 0
  const annotate = Effect.annotateLogs({
    signal: options.signal,
    exporter: options.exporter,
    endpoint: options.endpoint
  })
  const where = `${options.exporter} ${options.endpoint}`

  const report = Effect.suspend(() => {
    const now = options.read()
    const newDropped = now.dropped - dropped
    const newFailed = now.failed - failed
    if (newDropped === 0 && newFailed === 0) return Effect.void
    dropped = now.dropped
    failed = now.failed
    const error = Option.match(now.lastError, { onNone: () => "", onSome: (e) => `; last error: ${e.message}` })
    return Effect.logWarning(
      `${options.signal} to ${where}: ${newDropped} dropped (${options.dropReason}), ${newFailed} failed to export since the ` +
        `last report; ${now.dropped} dropped, ${now.failed} failed in total${error}`
    ).pipe(annotate)
  })

  const summary = Effect.suspend(() => {
    const now = options.read()
    dropped = now.dropped
    failed = now.failed
    if (now.dropped === 0 && now.failed === 0) return Effect.void
    return Effect.logWarning(
      `${options.signal} to ${where}: ${now.exported} exported, ${now.dropped} dropped, ${now.failed} failed ` +
        `(${now.dropped + now.failed} lost)`
    ).pipe(annotate)
  })
  return { report, summary }
}

/** A loss report that runs only after something was lost: `lost()` arms it; `fiber` is what closing interrupts. */
export interface Armed {
  /** Says data was just dropped or failed: the report runs `intervalMillis` from now, unless already armed. */
  readonly lost: () => void
  readonly fiber: Fiber.Fiber<never>
}

/**
 * The report, `intervalMillis` after the first loss since the last report, in a fiber of the current scope. While
 * nothing is lost the fiber waits on a signal with no timer armed: an idle agent is not woken every interval to find
 * nothing new (#12's idle CPU). Still at most one warning per interval: losses during the wait go into that report.
 */
export const whenLost = (report: LossReport, intervalMillis: number): Effect.Effect<Armed, never, Scope.Scope> =>
  Effect.gen(function*() {
    // Capacity 1, sliding: `lost` never blocks the hot path that counts the loss, and repeated signals collapse.
    const signal = yield* Queue.sliding<void>(1)
    let armed = false
    const fiber = yield* Queue.take(signal).pipe(
      Effect.andThen(Effect.sleep(Duration.millis(intervalMillis))),
      // Disarmed before reading the counts: a loss counted from here on arms the next report, none is missed.
      Effect.andThen(Effect.sync(() => void (armed = false))),
      Effect.andThen(report.report),
      Effect.forever,
      Effect.forkScoped
    )
    return {
      lost: () => {
        if (armed) return
        armed = true
        Queue.offerUnsafe(signal, undefined)
      },
      fiber
    }
  })
