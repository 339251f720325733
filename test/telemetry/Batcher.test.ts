import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Logger, Option, Scope } from "effect"
import { TestClock } from "effect/testing"
import type { SpanData } from "../../src/probe/Telemetry.ts"
import * as Batcher from "../../src/telemetry/Batcher.ts"
import { ExportError, type Exporter, type ReadableSpan } from "../../src/telemetry/Exporter.ts"
import * as Deadline from "../../src/telemetry/internal/deadline.ts"
import { OtlpFailure } from "../../src/telemetry/internal/otlp/transport.ts"
import { toReadableSpan } from "../../src/telemetry/internal/readableSpan.ts"
import * as ProcessResources from "../../src/telemetry/ProcessResources.ts"
import type { BatchConfig } from "../../src/telemetry/TelemetryConfig.ts"
import { countingClock } from "./countingClock.ts"

const resources = ProcessResources.make({ serviceName: undefined, attributes: {} })

const span = (i: number): ReadableSpan => {
  const data: SpanData = {
    pid: 1,
    probe: "p",
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: i.toString(16).padStart(16, "0"),
    traceFlags: 1,
    name: `s${i}`,
    kind: "internal",
    startMonoNs: BigInt(i),
    endMonoNs: BigInt(i + 1),
    attributes: {},
    status: { code: "unset" }
  }
  return toReadableSpan(data, resources.resourceFor(1), "0.1.0", (ns) => ns)
}

const config = (over: Partial<BatchConfig> = {}): BatchConfig => ({
  maxQueueSize: 10,
  maxExportBatchSize: 4,
  scheduleDelayMillis: 1000,
  exportTimeoutMillis: 5000,
  maxRetries: 2,
  retryBaseMillis: 100,
  ...over
})

/** A fake exporter: records batch names; fails while `down` is true. */
const fake = () => {
  const state = { down: false, attempts: 0, batches: [] as Array<Array<string>> }
  const exporter: Exporter = {
    name: "fake",
    endpoint: "fake://sink",
    export: (spans) =>
      Effect.suspend(() => {
        state.attempts++
        if (state.down) {
          return Effect.fail(
            new ExportError({
              exporter: "fake",
              endpoint: "fake://sink",
              message: "export to fake://sink failed: down"
            })
          )
        }
        state.batches.push(spans.map((s) => s.name))
        return Effect.void
      }),
    shutdown: Effect.void
  }
  return { state, exporter }
}

/** Lets forked fibers run (TestClock does not advance by itself). */
const settle = Effect.yieldNow.pipe(Effect.repeat({ times: 20 }))

/** Captures warning messages; the batcher's fibers inherit the logger from the fiber that made it. */
const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    if (logLevel === "Warn") lines.push(Array.isArray(message) ? message.join(" ") : String(message))
  })
  return { lines, layer: Logger.layer([logger]) }
}

/** Every offered span is accounted for exactly once. */
const assertBalanced = (s: Batcher.BatcherStats) =>
  assert.strictEqual(s.sent, s.exported + s.dropped + s.failed + s.queued + s.inFlight, JSON.stringify(s))

describe("Batcher", () => {
  it.live("flush returns once the worker's batch in flight is exported too, not only the queue's", () =>
    Effect.gen(function*() {
      let exportedBatches = 0
      const slow: Exporter = {
        name: "slow",
        endpoint: "slow://sink",
        export: () => Effect.andThen(Effect.sleep("150 millis"), Effect.sync(() => void exportedBatches++)),
        shutdown: Effect.void
      }
      const scope = yield* Scope.make()
      const b = yield* Batcher.make(slow, config({ maxExportBatchSize: 4 }), {}).pipe(Scope.provide(scope))
      // A full batch wakes the worker, which takes it and starts its export.
      for (let i = 0; i < 4; i++) b.offer(span(i))
      yield* Effect.sleep("20 millis")
      assert.strictEqual((yield* b.stats).inFlight, 4)
      yield* b.flush
      const stats = yield* b.stats
      assert.deepStrictEqual([stats.inFlight, stats.exported, exportedBatches], [0, 4, 1])
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("exports on the schedule delay, in batches of at most the batch size", () =>
    Effect.gen(function*() {
      const { state, exporter } = fake()
      const b = yield* Batcher.make(exporter, config({ maxExportBatchSize: 4, maxQueueSize: 10 }))
      for (let i = 0; i < 3; i++) b.offer(span(i))
      yield* settle
      assert.deepStrictEqual(state.batches, [], "nothing before the delay")
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.deepStrictEqual(state.batches, [["s0", "s1", "s2"]])
      const s = yield* b.stats
      assert.deepStrictEqual([s.accepted, s.queued, s.exported, s.dropped, s.failed], [3, 0, 3, 0, 0])
    }))

  it.effect("idle, it arms no timer; the delay counts from the first span into the empty queue", () =>
    Effect.gen(function*() {
      const { state, exporter } = fake()
      const clock = yield* countingClock
      const scope = yield* Scope.make()
      const b = yield* Batcher.make(exporter, config({ scheduleDelayMillis: 1000 })).pipe(
        Scope.provide(scope),
        clock.provide
      )
      // A minute with nothing offered: no schedule tick and no loss report wakes the process.
      for (let i = 0; i < 60; i++) yield* TestClock.adjust("1 second")
      yield* settle
      assert.deepStrictEqual(clock.sleeps, [], "no sleep armed while the queue is empty")
      // Offered 700 ms into a second: a free-running 1 s tick would export it 300 ms later; the delay is its own.
      yield* TestClock.adjust("700 millis")
      b.offer(span(0))
      yield* settle
      yield* TestClock.adjust("999 millis")
      yield* settle
      assert.deepStrictEqual(state.batches, [], "not before the delay")
      yield* TestClock.adjust("1 millis")
      yield* settle
      assert.deepStrictEqual(state.batches, [["s0"]])
      assert.deepStrictEqual(clock.sleeps, [1000], "one delay, for the one span")
      // Empty again: no timer until the next span, which again gets the whole delay.
      yield* TestClock.adjust("10 seconds")
      yield* settle
      assert.deepStrictEqual(clock.sleeps, [1000])
      b.offer(span(1))
      b.offer(span(2))
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.deepStrictEqual(state.batches, [["s0"], ["s1", "s2"]])
      assert.deepStrictEqual(clock.sleeps, [1000, 1000])
      yield* Scope.close(scope, Exit.void)
      const s = yield* b.stats
      assert.deepStrictEqual([s.exported, s.dropped, s.failed], [3, 0, 0])
    }))

  it.effect("a full batch is exported without waiting for the delay", () =>
    Effect.gen(function*() {
      const { state, exporter } = fake()
      const b = yield* Batcher.make(exporter, config({ maxExportBatchSize: 4 }))
      for (let i = 0; i < 9; i++) b.offer(span(i))
      yield* settle
      assert.deepStrictEqual(state.batches, [["s0", "s1", "s2", "s3"], ["s4", "s5", "s6", "s7"]])
      // The remainder waits for the schedule delay.
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.deepStrictEqual(state.batches, [["s0", "s1", "s2", "s3"], ["s4", "s5", "s6", "s7"], ["s8"]])
    }))

  it.effect("a queue of its own: a batch it closes early ships at once; an item it cannot take is counted dropped", () =>
    Effect.gen(function*() {
      // Batches close at 2 items (as the OTLP queue closes a request at its byte limit), whatever the batch size.
      let items: Array<string> = []
      const closed: Array<Array<string>> = []
      const queue: Batcher.BatchQueue<string, ReadonlyArray<string>> = {
        size: () => closed.reduce((n, b) => n + b.length, 0) + items.length,
        full: () => closed.length > 0,
        push: (item) => {
          if (item === "bad") throw new Error("cannot encode")
          items.push(item)
          if (items.length === 2) {
            closed.push(items)
            items = []
          }
          return true
        },
        take: () => closed.shift() ?? (items.length > 0 ? items.splice(0) : undefined),
        sizeOf: (batch) => batch.length,
        clear: () => 0
      }
      const shipped: Array<ReadonlyArray<string>> = []
      const b = yield* Batcher.makeWith(
        {
          name: "fake",
          endpoint: "fake://sink",
          export: (batch) => Effect.sync(() => void shipped.push(batch)),
          shutdown: Effect.void
        },
        queue,
        config({ maxExportBatchSize: 100, maxQueueSize: 100 })
      )
      b.offer("a")
      b.offer("bad")
      b.offer("b")
      b.offer("c")
      yield* settle
      assert.deepStrictEqual(shipped, [["a", "b"]], "the closed batch, before the schedule delay")
      const stats = yield* b.stats
      assert.deepStrictEqual([stats.accepted, stats.dropped, stats.exported, stats.queued], [3, 1, 2, 1])
      assertBalanced(stats)
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.deepStrictEqual(shipped, [["a", "b"], ["c"]])
    }))

  it.effect("spans beyond the queue capacity are dropped and counted, never blocking", () =>
    Effect.gen(function*() {
      const { state, exporter } = fake()
      const b = yield* Batcher.make(exporter, config({ maxQueueSize: 5, maxExportBatchSize: 5 }))
      // All offers happen synchronously, before the worker can run.
      for (let i = 0; i < 8; i++) b.offer(span(i))
      const before = yield* b.stats
      assert.deepStrictEqual([before.accepted, before.queued, before.dropped], [5, 5, 3])
      yield* settle
      assert.deepStrictEqual(state.batches, [["s0", "s1", "s2", "s3", "s4"]])
    }))

  it.effect("a failing export is retried with backoff and delivered when the exporter comes back", () =>
    Effect.gen(function*() {
      const { state, exporter } = fake()
      state.down = true
      const b = yield* Batcher.make(exporter, config({ maxRetries: 3, retryBaseMillis: 100 }))
      b.offer(span(0))
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.strictEqual(state.attempts, 1)
      yield* TestClock.adjust("100 millis")
      yield* settle
      assert.strictEqual(state.attempts, 2)
      state.down = false
      yield* TestClock.adjust("200 millis")
      yield* settle
      assert.deepStrictEqual(state.batches, [["s0"]])
      const s = yield* b.stats
      assert.deepStrictEqual([s.exported, s.failed, s.failedAttempts, s.failing], [1, 0, 2, false])
      const error = Option.getOrThrow(s.lastError)
      assert.strictEqual(error._tag, "ExportError")
      assert.strictEqual(error.message, "export to fake://sink failed: down")
    }))

  it.effect("a permanent refusal (an OTLP 400) is not retried: one attempt, the batch counted as failed", () =>
    Effect.gen(function*() {
      let attempts = 0
      const refused = new ExportError({
        exporter: "otlp",
        endpoint: "http://c/v1/traces",
        message: "export to http://c/v1/traces failed: HTTP 400 Bad Request: bad span (not retried)",
        cause: new OtlpFailure("HTTP 400", { retryable: false, status: 400 })
      })
      const exporter: Exporter = {
        name: "otlp",
        endpoint: "http://c/v1/traces",
        export: () => Effect.suspend(() => (attempts++, Effect.fail(refused))),
        shutdown: Effect.void
      }
      const b = yield* Batcher.make(exporter, config({ maxRetries: 3, retryBaseMillis: 100 }))
      b.offer(span(0))
      yield* TestClock.adjust("1 second")
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.strictEqual(attempts, 1)
      const s = yield* b.stats
      assert.deepStrictEqual([s.exported, s.failed, s.failedAttempts], [0, 1, 1])
      assert.strictEqual(Option.getOrThrow(s.lastError).message, refused.message)
    }))

  it.effect("after the retries the batch is counted as failed and the pipeline keeps going", () =>
    Effect.gen(function*() {
      const { state, exporter } = fake()
      state.down = true
      const b = yield* Batcher.make(exporter, config({ maxRetries: 2, retryBaseMillis: 100 }))
      b.offer(span(0))
      b.offer(span(1))
      yield* TestClock.adjust("1 second")
      yield* settle
      yield* TestClock.adjust("100 millis")
      yield* settle
      yield* TestClock.adjust("200 millis")
      yield* settle
      const failed = yield* b.stats
      assert.deepStrictEqual([failed.exported, failed.failed, failed.failedAttempts, failed.failing], [0, 2, 3, true])
      state.down = false
      b.offer(span(2))
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.deepStrictEqual(state.batches, [["s2"]])
      assert.strictEqual((yield* b.stats).exported, 1)
    }))

  it.effect("an exporter that dies or hangs counts as a failed export (typed), not a dead pipeline", () =>
    Effect.gen(function*() {
      let calls = 0
      const exporter: Exporter = {
        name: "bad",
        endpoint: "bad://",
        export: () => ++calls === 1 ? Effect.die(new Error("kaboom")) : Effect.never,
        shutdown: Effect.void
      }
      const b = yield* Batcher.make(exporter, config({ maxRetries: 1, retryBaseMillis: 100, exportTimeoutMillis: 500 }))
      b.offer(span(0))
      yield* TestClock.adjust("1 second")
      yield* settle
      let s = yield* b.stats
      assert.strictEqual(Option.getOrThrow(s.lastError).message, "export to bad:// crashed: Error: kaboom")
      yield* TestClock.adjust("100 millis")
      yield* settle
      yield* TestClock.adjust("500 millis")
      yield* settle
      s = yield* b.stats
      assert.deepStrictEqual([s.failed, s.failedAttempts], [1, 2])
      assert.strictEqual(Option.getOrThrow(s.lastError).message, "export to bad:// timed out after 500 ms")
    }))

  it.effect("closing the scope flushes what is queued, and later offers are dropped", () =>
    Effect.gen(function*() {
      const { state, exporter } = fake()
      const scope = yield* Scope.make()
      const b = yield* Batcher.make(exporter, config({ maxExportBatchSize: 4, scheduleDelayMillis: 60_000 })).pipe(
        Scope.provide(scope)
      )
      for (let i = 0; i < 6; i++) b.offer(span(i))
      yield* settle
      assert.deepStrictEqual(state.batches, [["s0", "s1", "s2", "s3"]])
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(state.batches, [["s0", "s1", "s2", "s3"], ["s4", "s5"]])
      b.offer(span(6))
      const s = yield* b.stats
      assert.deepStrictEqual([s.exported, s.dropped, s.queued], [6, 1, 0])
    }))

  it.effect("a hung exporter at shutdown is cut off at the default 5 s deadline; its spans count as failed", () =>
    Effect.gen(function*() {
      const exporter: Exporter = {
        name: "hung",
        endpoint: "hung://",
        export: () => Effect.never,
        shutdown: Effect.void
      }
      const scope = yield* Scope.make()
      const b = yield* Batcher.make(exporter, config({ exportTimeoutMillis: 60_000, scheduleDelayMillis: 10 })).pipe(
        Scope.provide(scope)
      )
      b.offer(span(0))
      b.offer(span(1))
      yield* TestClock.adjust("10 millis")
      yield* settle
      b.offer(span(2))
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* settle
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(closing)
      const s = yield* b.stats
      assert.deepStrictEqual([s.exported, s.failed, s.queued], [0, 3, 0])
    }))
  it.effect("an outage keeps memory within the queue bound, accounts for every span, and export resumes after", () =>
    Effect.gen(function*() {
      const { state, exporter } = fake()
      state.down = true
      const bound = 50
      const b = yield* Batcher.make(
        exporter,
        config({ maxQueueSize: bound, maxExportBatchSize: 10, scheduleDelayMillis: 100, maxRetries: 2 })
      )
      // 10 000 spans during the outage, 100 at a time, with time passing in between so that batches are taken out
      // of the queue, retried and given up on while more arrive.
      let maxRetained = 0
      for (let round = 0; round < 100; round++) {
        for (let i = 0; i < 100; i++) b.offer(span(round * 100 + i))
        const s = yield* b.stats
        maxRetained = Math.max(maxRetained, s.queued + s.inFlight)
        assertBalanced(s)
        yield* TestClock.adjust("50 millis")
        yield* settle
      }
      const down = yield* b.stats
      assert.isAtMost(maxRetained, bound)
      assert.strictEqual(down.sent, 10_000)
      assert.strictEqual(down.exported, 0)
      assert.isAbove(down.failed, 0, "batches were given up on after their retries")
      assert.isAbove(down.dropped, 0, "the queue filled up")
      assertBalanced(down)

      state.down = false
      // The backlog (at most the bound) goes out, then new spans flow again.
      yield* TestClock.adjust("10 seconds")
      yield* settle
      for (let i = 0; i < 5; i++) b.offer(span(20_000 + i))
      yield* TestClock.adjust("1 second")
      yield* settle
      const up = yield* b.stats
      assert.deepStrictEqual([up.queued, up.inFlight, up.failing], [0, 0, false])
      assert.deepStrictEqual(state.batches.at(-1), ["s20000", "s20001", "s20002", "s20003", "s20004"])
      // Nothing lingers: every span sent is exported, dropped or failed.
      assert.strictEqual(up.sent, up.exported + up.dropped + up.failed)
    }))

  it.effect("the batch being retried counts against the queue bound", () =>
    Effect.gen(function*() {
      const { state, exporter } = fake()
      state.down = true
      const scope = yield* Scope.make()
      const b = yield* Batcher.make(
        exporter,
        config({ maxQueueSize: 6, maxExportBatchSize: 4, maxRetries: 5, retryBaseMillis: 1000 })
      ).pipe(Scope.provide(scope))
      for (let i = 0; i < 4; i++) b.offer(span(i))
      yield* settle
      // The full batch is out of the queue and waiting for its retry, but still in memory.
      for (let i = 4; i < 10; i++) b.offer(span(i))
      const s = yield* b.stats
      assert.deepStrictEqual([s.inFlight, s.queued, s.dropped], [4, 2, 4])
      assertBalanced(s)
      // The retries would outlast the shutdown deadline (5 s by default): the rest counts as failed.
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* settle
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(closing)
      const closed = yield* b.stats
      assert.deepStrictEqual([closed.exported, closed.dropped, closed.failed, closed.queued, closed.inFlight], [
        0,
        4,
        6,
        0,
        0
      ])
    }))

  it.effect("losses are logged as they happen, at most once per interval, with news since the last and totals", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const { state, exporter } = fake()
      state.down = true
      const scope = yield* Scope.make()
      const b = yield* Batcher.make(
        exporter,
        config({ maxQueueSize: 4, maxExportBatchSize: 4, maxRetries: 0, scheduleDelayMillis: 60_000 }),
        { reportIntervalMillis: 5000 }
      ).pipe(Scope.provide(scope))
      for (let i = 0; i < 10; i++) b.offer(span(i)) // 4 queued (a full batch: exported at once, fails), 6 dropped
      yield* settle
      for (let i = 0; i < 3; i++) b.offer(span(i))
      yield* settle
      assert.deepStrictEqual(logs.lines, [], "nothing before the interval")
      yield* TestClock.adjust("5 seconds")
      yield* settle
      assert.deepStrictEqual(logs.lines, [
        "spans to fake fake://sink: 6 dropped (queue full), 4 failed to export since the last report; " +
        "6 dropped, 4 failed in total; last error: export to fake://sink failed: down"
      ])
      yield* TestClock.adjust("5 seconds")
      yield* settle
      assert.strictEqual(logs.lines.length, 1, "nothing new: no line")
      // 1 fills the queued 3 up to a full batch (exported at once, fails), the 19 others find the queue full.
      for (let i = 0; i < 20; i++) b.offer(span(i))
      yield* TestClock.adjust("5 seconds")
      yield* settle
      assert.strictEqual(
        logs.lines[1],
        "spans to fake fake://sink: 19 dropped (queue full), 4 failed to export since the last report; " +
          "25 dropped, 8 failed in total; last error: export to fake://sink failed: down"
      )
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(
        logs.lines.at(-1),
        "spans to fake fake://sink: 0 exported, 25 dropped, 8 failed (33 lost)"
      )
    }).pipe(Effect.provide(logs.layer))
  })

  it.effect("the shutdown deadline bounds the drain and the exporter's shutdown; what is left counts as failed", () =>
    Effect.gen(function*() {
      let shutdownStarted = false
      const exporter: Exporter = {
        name: "hung",
        endpoint: "hung://",
        export: () => Effect.never,
        // An OpenTelemetry exporter's shutdown waits for its requests in flight: it must not hold the process.
        shutdown: Effect.suspend(() => {
          shutdownStarted = true
          return Effect.never
        })
      }
      const scope = yield* Scope.make()
      const b = yield* Batcher.make(exporter, config({ exportTimeoutMillis: 60_000, scheduleDelayMillis: 10 }), {
        deadline: Deadline.make(1000)
      }).pipe(Scope.provide(scope))
      b.offer(span(0))
      yield* TestClock.adjust("10 millis")
      yield* settle
      b.offer(span(1))
      b.offer(span(2))
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* settle
      yield* TestClock.adjust("999 millis")
      yield* settle
      assert.isUndefined(closing.pollUnsafe(), "still draining within the deadline")
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(closing)
      const s = yield* b.stats
      assert.deepStrictEqual([s.sent, s.exported, s.failed, s.queued, s.inFlight], [3, 0, 3, 0, 0])
      assert.isFalse(shutdownStarted, "no time was left for the exporter's shutdown")
    }))

  it.effect("drops are told apart: queue full while running, shutting down once closing began", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const b = yield* Batcher.make({
        name: "memory",
        endpoint: "memory",
        export: () => Effect.void,
        shutdown: Effect.void
      }, config({ maxQueueSize: 2, maxExportBatchSize: 2 })).pipe(Scope.provide(scope))
      for (let i = 1; i <= 3; i++) b.offer(span(i))
      const running = yield* b.stats
      assert.deepStrictEqual([running.dropped, running.droppedShuttingDown], [1, 0])
      yield* Scope.close(scope, Exit.void)
      b.offer(span(4))
      const closed = yield* b.stats
      assert.deepStrictEqual([closed.sent, closed.exported, closed.dropped, closed.droppedShuttingDown], [4, 2, 2, 1])
    }))
})
