/**
 * A bounded batch span processor: the hot path offers spans into a bounded queue without ever blocking (a full
 * queue counts the span as dropped); one fiber exports batches of up to `maxExportBatchSize` every schedule delay, or
 * as soon as a full batch is waiting. Failed exports are retried with exponential backoff a bounded number of times,
 * then counted as failed and logged. Closing the scope drains the queue within the export timeout.
 */
import { Duration, Effect, Exit, Fiber, Option, Queue, Schedule } from "effect"
import { ExportError, type Exporter, type ReadableSpan } from "./Exporter.ts"
import type { BatchConfig } from "./TelemetryConfig.ts"

/** Counters for one exporter's pipeline. */
export interface BatcherStats {
  readonly exporter: string
  readonly endpoint: string
  /** Spans accepted into the queue since start. */
  readonly accepted: number
  /** Spans waiting in the queue now. */
  readonly queued: number
  /** Spans the exporter confirmed. */
  readonly exported: number
  /** Spans refused because the queue was full (or the pipeline was shutting down). */
  readonly dropped: number
  /** Spans given up on after the retries (or at shutdown). */
  readonly failed: number
  /** Failed export attempts, retries included. */
  readonly failedAttempts: number
  /** The most recent failed attempt's error (kept after recovery). */
  readonly lastError: Option.Option<ExportError>
  /** True while the most recent export attempt failed. */
  readonly failing: boolean
}

/** A running pipeline. `offer` is synchronous and never blocks. */
export interface Batcher {
  readonly offer: (span: ReadableSpan) => void
  readonly stats: Effect.Effect<BatcherStats>
  /** Exports everything queued now (one attempt per batch, without waiting for the schedule delay). */
  readonly flush: Effect.Effect<void>
}

/** Starts a pipeline in the current scope; closing the scope flushes it and shuts the exporter down. */
export const make = Effect.fnUntraced(function*(exporter: Exporter, config: BatchConfig) {
  const queue = yield* Queue.bounded<ReadableSpan>(config.maxQueueSize)
  // Capacity-1 sliding queue: a "wake up, a full batch is waiting" signal that never blocks the producer.
  const wake = yield* Queue.sliding<void>(1)
  let accepted = 0
  let exported = 0
  let dropped = 0
  let failed = 0
  let failedAttempts = 0
  let lastError: Option.Option<ExportError> = Option.none()
  let failing = false
  let closing = false
  /** The batch being exported, so a shutdown that has to interrupt the worker can count it as failed. */
  let inflight: ReadonlyArray<ReadableSpan> | undefined

  const attempt = (batch: ReadonlyArray<ReadableSpan>) =>
    // Suspended: every retry must call the exporter again, not replay the effect one call returned.
    Effect.suspend(() => exporter.export(batch)).pipe(
      // A defect in an exporter is one failed export, never the end of the pipeline.
      Effect.catchDefect((defect) =>
        Effect.fail(
          new ExportError({
            exporter: exporter.name,
            endpoint: exporter.endpoint,
            message: `export to ${exporter.endpoint} crashed: ${String(defect)}`,
            cause: defect
          })
        )
      ),
      Effect.timeoutOrElse({
        duration: Duration.millis(config.exportTimeoutMillis),
        orElse: () =>
          Effect.fail(
            new ExportError({
              exporter: exporter.name,
              endpoint: exporter.endpoint,
              message: `export to ${exporter.endpoint} timed out after ${config.exportTimeoutMillis} ms`
            })
          )
      }),
      Effect.tap(() => Effect.sync(() => void (failing = false))),
      Effect.tapError((e: ExportError) =>
        Effect.sync(() => {
          failedAttempts++
          failing = true
          lastError = Option.some(e)
        })
      )
    )

  const exportBatch = (batch: ReadonlyArray<ReadableSpan>, retries: number) =>
    attempt(batch).pipe(
      Effect.retry({ schedule: Schedule.exponential(Duration.millis(config.retryBaseMillis)), times: retries }),
      Effect.matchEffect({
        onSuccess: () => Effect.sync(() => void (exported += batch.length)),
        onFailure: (error: ExportError) =>
          Effect.sync(() => void (failed += batch.length)).pipe(
            Effect.andThen(Effect.logWarning(`dropping ${batch.length} spans: ${error.message}`)),
            Effect.annotateLogs({ error: error._tag, exporter: exporter.name, endpoint: exporter.endpoint })
          )
      })
    )

  const takeBatch = Effect.sync(() => {
    const n = Math.min(Queue.sizeUnsafe(queue), config.maxExportBatchSize)
    const batch: Array<ReadableSpan> = []
    for (let i = 0; i < n; i++) {
      const taken = Queue.takeUnsafe(queue)
      if (taken === undefined || !Exit.isSuccess(taken)) break
      batch.push(taken.value)
    }
    return batch
  })

  /** Exports queued spans batch by batch; with `fullOnly`, stops when less than a full batch is left. */
  const drain = (retries: number, fullOnly = false) =>
    Effect.gen(function*() {
      while (true) {
        if (fullOnly && Queue.sizeUnsafe(queue) < config.maxExportBatchSize) return
        const batch = yield* takeBatch
        if (batch.length === 0) return
        inflight = batch
        yield* exportBatch(batch, retries)
        inflight = undefined
      }
    })

  const worker = Effect.gen(function*() {
    while (!closing) {
      const woken = yield* Queue.take(wake).pipe(Effect.timeoutOption(Duration.millis(config.scheduleDelayMillis)))
      // Woken by a full batch: ship full batches now, leave the remainder for the schedule delay.
      yield* drain(closing ? 0 : config.maxRetries, Option.isSome(woken) && !closing)
    }
    yield* drain(0)
  })
  const fiber = yield* Effect.forkDetach(worker)

  // Shutdown lets the worker finish its export and drain the queue (an interrupted export may already have been
  // delivered, so re-sending it would duplicate); only past the export timeout is it cut off and the rest counted.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      closing = true
      Queue.offerUnsafe(wake, undefined)
      const finished = yield* Fiber.join(fiber).pipe(Effect.timeoutOption(Duration.millis(config.exportTimeoutMillis)))
      if (Option.isNone(finished)) {
        yield* Fiber.interrupt(fiber)
        const lost = (inflight?.length ?? 0) + Queue.sizeUnsafe(queue)
        failed += lost
        inflight = undefined
        yield* Queue.clear(queue)
        yield* Effect.logWarning(`shutdown cut off export to ${exporter.endpoint}: ${lost} spans not exported`)
      }
      yield* exporter.shutdown
    })
  )

  const batcher: Batcher = {
    offer: (span) => {
      if (closing || !Queue.offerUnsafe(queue, span)) {
        dropped++
        return
      }
      accepted++
      if (Queue.sizeUnsafe(queue) >= config.maxExportBatchSize) Queue.offerUnsafe(wake, undefined)
    },
    stats: Effect.sync(() => ({
      exporter: exporter.name,
      endpoint: exporter.endpoint,
      accepted,
      queued: Queue.sizeUnsafe(queue),
      exported,
      dropped,
      failed,
      failedAttempts,
      lastError,
      failing
    })),
    flush: drain(0)
  }
  return batcher
})
