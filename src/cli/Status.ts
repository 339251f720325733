/**
 * `probescope run`'s status: targets attached, records per second per probe, drops (kernel, consumer), export state
 * per signal and the span queue. On a terminal (stderr a TTY, text logs) a live line redrawn in place every second;
 * elsewhere nothing live, only `--status-interval S` lines (a structured record each in json logs).
 *
 * What is shown is a pure function of two snapshots of the counters, so it is tested without a kernel or a terminal.
 */
import { Effect } from "effect"
import type { ProbeStats } from "../manager/Manager.ts"
import type { TelemetryStats } from "../telemetry/Telemetry.ts"

/** The counters at one moment. */
export interface Snapshot {
  readonly atMillis: number
  /** Processes attached now (distinct pids). */
  readonly targets: number
  readonly probes: ReadonlyArray<ProbeStats>
  readonly telemetry: TelemetryStats
}

/** How a signal's export is doing: no exporter, exporting, or the last exports failed. */
export type ExportState = "off" | "ok" | "failing"

/** The status as data: what the line shows and what a json record carries. */
export interface Status {
  readonly targets: number
  /** Records per second since the previous snapshot (since the start for the first), per instrument probe. */
  readonly rates: ReadonlyArray<{ readonly probe: string; readonly perSecond: number }>
  readonly drops: { readonly kernel: number; readonly consumer: number }
  readonly export: { readonly spans: ExportState; readonly metrics: ExportState; readonly logs: ExportState }
  /** Spans waiting in the exporters' queues or in flight. */
  readonly queue: number
}

const stateOf = (exporters: ReadonlyArray<{ readonly failing: boolean }>): ExportState =>
  exporters.length === 0 ? "off" : exporters.some((e) => e.failing) ? "failing" : "ok"

/** The status between two snapshots (`previous` undefined: rates over `now` alone are 0). */
export const status = (previous: Snapshot | undefined, now: Snapshot): Status => {
  const instruments = now.probes.filter((p) => p.kind === "instrument")
  const seconds = previous === undefined ? 0 : (now.atMillis - previous.atMillis) / 1000
  const rates = instruments.map((p) => {
    const before = previous?.probes.find((q) => q.probe === p.probe)?.records ?? p.records
    return { probe: p.probe, perSecond: seconds > 0 ? Math.max(0, p.records - before) / seconds : 0 }
  })
  return {
    targets: now.targets,
    rates,
    drops: {
      kernel: instruments.reduce((n, p) => n + Number(p.kernelDropped), 0),
      consumer: instruments.reduce((n, p) => n + p.consumerDropped, 0)
    },
    export: {
      spans: stateOf(now.telemetry.exporters),
      metrics: stateOf(now.telemetry.metrics),
      logs: stateOf(now.telemetry.logs)
    },
    queue: now.telemetry.exporters.reduce((n, e) => n + e.queued + e.inFlight, 0)
  }
}

const rate = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1))

/**
 * One line, e.g. `3 targets · nethttp_server 12.0/s · nethttp_client 3.5/s · drops kernel 0 consumer 0 · export
 * spans ok metrics ok logs ok · queue 0`, cut to `columns` (a terminal line must not wrap, or redrawing in place fails).
 */
export const render = (s: Status, columns = Number.POSITIVE_INFINITY): string => {
  const line = [
    `${s.targets} target${s.targets === 1 ? "" : "s"}`,
    ...s.rates.map((r) => `${r.probe} ${rate(r.perSecond)}/s`),
    `drops kernel ${s.drops.kernel} consumer ${s.drops.consumer}`,
    `export spans ${s.export.spans} metrics ${s.export.metrics} logs ${s.export.logs}`,
    `queue ${s.queue}`
  ].join(" · ")
  return line.length <= columns ? line : `${line.slice(0, Math.max(0, columns - 1))}…`
}

/** The fields of a json status record. */
export const annotations = (s: Status): Record<string, unknown> => ({
  targets: s.targets,
  recordsPerSecond: Object.fromEntries(s.rates.map((r) => [r.probe, Number(rate(r.perSecond))])),
  droppedKernel: s.drops.kernel,
  droppedConsumer: s.drops.consumer,
  exportSpans: s.export.spans,
  exportMetrics: s.export.metrics,
  exportLogs: s.export.logs,
  queue: s.queue
})

/** Erase the current terminal line and return to its start. */
export const CLEAR_LINE = "\r\x1b[2K"

/** A terminal the live line may be drawn on. */
export interface Terminal {
  readonly isTTY: boolean
  readonly columns?: number | undefined
  write(chunk: string | Uint8Array, ...rest: Array<unknown>): boolean
}

/**
 * A line kept at the bottom of the terminal while the scope is open; `show` replaces it. Every other write to the
 * terminal (logs, `ready`, anything through the same stream) first erases the line, then the line is drawn again
 * after it, so nothing is written over. Closing the scope erases it and gives the stream its `write` back.
 */
export const liveLine = (terminal: Terminal) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      // process.stderr's write lives on its prototype: restoring means removing ours, not pinning a copy.
      const own = Object.hasOwn(terminal, "write")
      const saved = terminal.write
      const original = saved.bind(terminal)
      let current = ""
      terminal.write = (chunk, ...rest) => {
        original(CLEAR_LINE)
        const ok = original(chunk, ...rest)
        original(current)
        return ok
      }
      const show = (line: string) =>
        Effect.sync(() => {
          current = line
          original(`${CLEAR_LINE}${line}`)
        })
      return { original, show, own, saved }
    }),
    ({ original, own, saved }) =>
      Effect.sync(() => {
        original(CLEAR_LINE)
        if (own) terminal.write = saved
        else delete (terminal as { write?: unknown }).write
      })
  ).pipe(Effect.map(({ show }) => ({ show })))
