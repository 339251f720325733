/**
 * Loss reporting shared by every signal's pipeline: while data is being dropped (a full queue) or failing to export,
 * one warning per exporter per interval says how much since the last warning and how much in total, so an outage is
 * visible while it happens without one log line per batch. At close, one summary line if anything was lost.
 */
import { Duration, Effect, Option } from "effect"
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

/** Reports every `intervalMillis` in a fiber of the current scope. */
export const schedule = (report: LossReport, intervalMillis: number) =>
  Effect.sleep(Duration.millis(intervalMillis)).pipe(
    Effect.andThen(report.report),
    Effect.forever,
    Effect.forkScoped
  )
