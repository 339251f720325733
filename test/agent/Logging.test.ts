/**
 * The agent's logger: Effect's default logger writes to stdout, where the console exporter's output goes; the
 * agent's layer puts its stderr logger in its place and keeps the loggers a program added itself.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger } from "effect"
import * as Agent from "../../src/agent/Agent.ts"
import * as Logging from "../../src/agent/internal/logging.ts"

describe("agent logging", () => {
  it.effect("the default logger is replaced by the stderr logger; a program's own logger is kept", () =>
    Effect.gen(function*() {
      const mine: Array<unknown> = []
      const own = Logger.make(({ message }) => void mine.push(message))
      const loggers = yield* Logger.CurrentLoggers.pipe(
        Effect.provide(Agent.layerLogger),
        Effect.provideService(Logger.CurrentLoggers, new Set([Logger.defaultLogger, own]))
      )
      assert.isFalse(loggers.has(Logger.defaultLogger))
      assert.isTrue(loggers.has(own))
      assert.isTrue(loggers.has(Agent.logger))
      const toStderr = yield* Logger.LogToStderr.pipe(Effect.provide(Agent.layerLogger))
      assert.isTrue(toStderr)
    }))

  it.effect("a line in the pretty console format: the message last on its first line, annotations below", () =>
    Effect.gen(function*() {
      const written: Array<string> = []
      yield* Effect.logWarning("pid 7: attached 1 probe(s): a, b").pipe(
        Effect.annotateLogs({ pid: 7 }),
        Effect.provide(Logging.layer(Logging.make((chunk) => void written.push(chunk))))
      )
      assert.strictEqual(written.length, 1)
      assert.match(
        written[0]!,
        /^\[\d\d:\d\d:\d\d\.\d{3}\] WARN \(#\d+\): pid 7: attached 1 probe\(s\): a, b\n  pid: 7\n$/
      )
    }))
})
