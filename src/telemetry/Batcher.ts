/**
 * A bounded batch span processor: the hot path offers spans without ever blocking, and one fiber exports batches of
 * up to `maxExportBatchSize` a schedule delay after the first span into the empty queue, or as soon as a full batch
 * is waiting; while the queue is empty it arms no timer. Failed exports are retried with exponential backoff a
 * bounded number of times, then counted as failed.
 *
 * Memory is bounded by `maxQueueSize`: spans waiting in the queue plus the batch being exported (and retried) never
 * exceed it; past it, offered spans are dropped. Every offered span ends up exported, dropped or failed, so
 * `sent = exported + dropped + failed + queued + inFlight` at all times. Losses are logged while they happen, at
 * most one warning per report interval (its timer armed by the first loss since the last warning). Closing drains
 * the queue within a deadline (shared with the rest of the telemetry layer); whatever is not exported by then counts
 * as failed, and the exporter's shutdown is bounded too.
 */
import { Duration, Effect, Fiber, Option, Queue, Schedule, type Scope } from "effect"
import { ExportError, type Exporter, type ReadableSpan } from "./Exporter.ts"
import * as OtelExport from "./internal/otelExport.ts"
import * as Deadline from "./internal/deadline.ts"
import * as LossReport from "./internal/lossReport.ts"
import { isRetryable } from "./OtlpExporter.ts"
import { type BatchConfig, DEFAULT_SHUTDOWN_TIMEOUT_MILLIS } from "./TelemetryConfig.ts"

/** Counters for one exporter's pipeline. */
export interface BatcherStats {
  readonly exporter: string
  readonly endpoint: string
  /** Spans offered to this pipeline since start: `exported + dropped + failed + queued + inFlight`. */
  readonly sent: number
  /** Spans accepted into the queue since start. */
  readonly accepted: number
  /** Spans waiting in the queue now. */
  readonly queued: number
  /** Spans in the batch being exported (or retried) now. */
  readonly inFlight: number
  /** Spans the exporter confirmed. */
  readonly exported: number
  /** Spans refused because the queue was full (or the pipeline was shutting down). */
  readonly dropped: number
  /** The part of `dropped` refused because the pipeline was shutting down (the rest: the queue was full). */
  readonly droppedShuttingDown: number
  /** Spans given up on: after the retries, or not exported when the shutdown deadline passed. */
  readonly failed: number
  /** Failed export attempts, retries included. */
  readonly failedAttempts: number
  /** The most recent failed attempt's error (kept after recovery). */
  readonly lastError: Option.Option<ExportError>
  /** True while the most recent export attempt failed. */
  readonly failing: boolean
}

/** A running pipeline. `offer` is synchronous and never blocks. */
export interface Batcher<A = ReadableSpan> {
  readonly offer: (item: A) => void
  readonly stats: Effect.Effect<BatcherStats>
  /** Exports everything queued now (one attempt per batch, without waiting for the schedule delay). */
  readonly flush: Effect.Effect<void>
  /**
   * Stops accepting spans, drains the queue and shuts the exporter down, all within the deadline; what is not
   * exported by then counts as failed. Runs once (later calls do nothing); closing the scope calls it too.
   */
  readonly close: Effect.Effect<void>
}

/**
 * Where a pipeline keeps what waits for export, and how it cuts it into batches: by default a plain array whose
 * batches are arrays of items; the OTLP exporter's queue encodes each span as it comes and hands out whole requests.
 */
export interface BatchQueue<A, B> {
  /** Items waiting now. */
  readonly size: () => number
  /** Whether a whole batch is waiting: `max` items, or a batch the queue closed for reasons of its own. */
  readonly full: (max: number) => boolean
  /** Takes an item; false when the queue is full by a measure of its own (e.g. bytes), the item not taken. */
  readonly push: (item: A) => boolean
  /** The next batch, of at most `max` items, out of the queue; undefined when it is empty. */
  readonly take: (max: number) => B | undefined
  /** How many items a batch taken from this queue holds. */
  readonly sizeOf: (batch: B) => number
  /** Forgets everything waiting (the shutdown deadline passed); returns how many items that was. */
  readonly clear: () => number
  /** The batch's export has ended (exported, failed, or cut off): the batcher reads it no more. */
  readonly done?: (batch: B) => void
}

/** What ships the batches a `BatchQueue` hands out (an `Exporter<A>` ships arrays of items). */
export interface BatchExporter<B> {
  readonly name: string
  readonly endpoint: string
  readonly export: (batch: B) => Effect.Effect<void, ExportError>
  readonly shutdown: Effect.Effect<void>
}

/** The default queue: items in a plain array, one push per item and one splice per batch. */
export const arrayQueue = <A>(): BatchQueue<A, ReadonlyArray<A>> => {
  let items: Array<A> = []
  return {
    size: () => items.length,
    full: (max) => items.length >= max,
    push: (item) => {
      items.push(item)
      return true
    },
    take: (max) => items.length === 0 ? undefined : items.splice(0, max),
    sizeOf: (batch) => batch.length,
    clear: () => {
      const n = items.length
      items = []
      return n
    }
  }
}

/** Overrides for the telemetry layer and tests. */
export interface Options {
  /** The shutdown deadline (shared with the other pipelines); default: its own of 5 s. */
  readonly deadline?: Deadline.Deadline
  /** Minimum time between two loss warnings (default 5 s). */
  readonly reportIntervalMillis?: number
  /** What the items are, in loss reports ("spans" by default; "log records"). */
  readonly signal?: string
}

/** Starts a pipeline in the current scope; closing the scope closes it (see `Batcher.close`). */
export const make = <A = ReadableSpan>(
  exporter: Exporter<A>,
  config: BatchConfig,
  options: Options = {}
): Effect.Effect<Batcher<A>, never, Scope.Scope> => makeWith(exporter, arrayQueue<A>(), config, options)

/** `make` with a queue of its own (its batches are what `exporter` ships). */
export const makeWith = <A, B>(
  exporter: BatchExporter<B>,
  queue: BatchQueue<A, B>,
  config: BatchConfig,
  options: Options = {}
): Effect.Effect<Batcher<A>, never, Scope.Scope> =>
  Effect.gen(function*() {
  const deadline = options.deadline ?? Deadline.make(DEFAULT_SHUTDOWN_TIMEOUT_MILLIS)
  // The spans waiting, bounded by `offer` (with what is in flight) at maxQueueSize. A plain structure, not an Effect
  // queue: that cost a node and an Exit per span on the agent's hot path.
  // Capacity-1 sliding queue: a "wake up, a full batch is waiting" signal that never blocks the producer.
  const wake = yield* Queue.sliding<void>(1)
  let accepted = 0
  let exported = 0
  let dropped = 0
  let droppedShuttingDown = 0
  let failed = 0
  let inFlight = 0
  let failedAttempts = 0
  let lastError: Option.Option<ExportError> = Option.none()
  let failing = false
  let closing = false

  const counts = () => ({ exported, dropped, failed, lastError })
  const losses = LossReport.make({
    signal: options.signal ?? "spans",
    exporter: exporter.name,
    endpoint: exporter.endpoint,
    dropReason: "queue full",
    read: counts
  })
  const reportEvery = options.reportIntervalMillis ?? LossReport.DEFAULT_INTERVAL_MILLIS
  // Armed by the first loss since its last warning: no timer while nothing is lost.
  const reporter = yield* LossReport.whenLost(losses, reportEvery)

  const attempt = (batch: B) =>
    // Suspended: every retry must call the exporter again, not replay the effect one call returned.
    OtelExport.attempt(exporter, "export", config.exportTimeoutMillis, () => exporter.export(batch)).pipe(
      Effect.tap(() => Effect.sync(() => void (failing = false))),
      Effect.tapError((e: ExportError) =>
        Effect.sync(() => {
          failedAttempts++
          failing = true
          lastError = Option.some(e)
        })
      )
    )

  // The batch stays counted in `inFlight` (and so against the queue bound) until its fate is known. Interrupted
  // (the shutdown deadline passed) counts as failed: it may or may not have arrived, and it was never confirmed.
  const exportBatch = (batch: B, retries: number) =>
    Effect.suspend(() => {
      const n = queue.sizeOf(batch)
      inFlight += n
      return attempt(batch).pipe(
        Effect.retry({
          schedule: Schedule.exponential(Duration.millis(config.retryBaseMillis)),
          times: retries,
          // A permanent refusal (e.g. HTTP 400) fails the same way every time: no retry.
          while: isRetryable
        }),
        Effect.match({
          onSuccess: () => void (exported += n),
          onFailure: () => {
            failed += n
            reporter.lost()
          }
        }),
        Effect.onInterrupt(() =>
          Effect.sync(() => {
            failed += n
            reporter.lost()
          })
        ),
        Effect.ensuring(Effect.sync(() => {
          inFlight -= n
          queue.done?.(batch)
        }))
      )
    })

  const takeBatch = Effect.sync(() => queue.take(config.maxExportBatchSize))

  /** Exports queued spans batch by batch; with `fullOnly`, stops when less than a full batch is left. */
  const drain = (retries: number, fullOnly = false) =>
    Effect.gen(function*() {
      while (true) {
        if (fullOnly && !queue.full(config.maxExportBatchSize)) return
        const batch = yield* takeBatch
        if (batch === undefined) return
        yield* exportBatch(batch, retries)
      }
    })

  // While the queue is empty no timer is armed: the worker waits for the first span (or close) and only then counts
  // the schedule delay, from that span's arrival as the OpenTelemetry SDK's processor does. A delay ticking over an
  // empty queue woke the idle agent every delay for nothing (#12's idle CPU).
  const worker = Effect.gen(function*() {
    while (!closing) {
      if (queue.size() === 0) yield* Queue.take(wake)
      if (closing) break
      const woken = queue.full(config.maxExportBatchSize) ?
        Option.some(undefined) :
        yield* Queue.take(wake).pipe(Effect.timeoutOption(Duration.millis(config.scheduleDelayMillis)))
      // Woken by a full batch: ship full batches now, leave the remainder for the schedule delay.
      yield* drain(closing ? 0 : config.maxRetries, Option.isSome(woken) && !closing)
    }
    yield* drain(0)
  })
  const fiber = yield* Effect.forkDetach(worker)
  /**
   * Until no export is in flight, whoever started it (the worker, or a `flush` running beside it): a flush that
   * returned while the worker's batch was still on the wire said "everything is exported" too early, and a shutdown
   * that closed the exporter then cut that batch off (seen over gRPC: 512 spans counted failed).
   */
  const settled = Effect.suspend(function loop(): Effect.Effect<void> {
    return inFlight === 0 ? Effect.void : Effect.andThen(Effect.sleep(Duration.millis(5)), Effect.suspend(loop))
  })

  // Shutdown lets the worker finish its export and drain the queue (an interrupted export may already have been
  // delivered, so re-sending it would duplicate); only when the deadline passes is it cut off and the rest counted
  // as failed. The exporter's own shutdown waits for its requests in flight, so it gets only what is left, if any.
  const close = Effect.suspend(() => {
    if (closing) return Effect.void
    closing = true
    Queue.offerUnsafe(wake, undefined)
    return Effect.gen(function*() {
      const finished = yield* Deadline.within(deadline, Fiber.join(fiber))
      if (Option.isNone(finished)) {
        yield* Fiber.interrupt(fiber)
        const queued = queue.clear()
        failed += queued
        yield* Effect.logWarning(
          `shutdown deadline (${deadline.totalMillis} ms) cut off export to ${exporter.endpoint}: ` +
            `${queued} queued ${options.signal ?? "spans"} and the batch in flight not exported`
        )
      }
      yield* Deadline.within(deadline, settled)
      yield* Deadline.within(deadline, exporter.shutdown)
      yield* Fiber.interrupt(reporter.fiber)
      yield* losses.summary
    })
  })
  yield* Effect.addFinalizer(() => close)

  const batcher: Batcher<A> = {
    offer: (item) => {
      // The batch in flight still holds memory: it counts against the queue bound until it is done.
      if (closing) {
        dropped++
        droppedShuttingDown++
        return
      }
      const waiting = queue.size()
      if (waiting + inFlight >= config.maxQueueSize) {
        dropped++
        reporter.lost()
        return
      }
      let taken: boolean
      try {
        taken = queue.push(item)
      } catch {
        // An item the queue could not take (an encoding queue that failed on it): lost, and counted so.
        taken = false
      }
      if (!taken) {
        dropped++
        reporter.lost()
        return
      }
      accepted++
      // The first span into an empty queue starts the schedule delay; a full batch ships at once.
      if (waiting === 0 || queue.full(config.maxExportBatchSize)) Queue.offerUnsafe(wake, undefined)
    },
    stats: Effect.sync(() => ({
      exporter: exporter.name,
      endpoint: exporter.endpoint,
      sent: accepted + dropped,
      accepted,
      queued: queue.size(),
      inFlight,
      exported,
      dropped,
      droppedShuttingDown,
      failed,
      failedAttempts,
      lastError,
      failing
    })),
    flush: Effect.andThen(drain(0), settled),
    close
  }
  return batcher
})
