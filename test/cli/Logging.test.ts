import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Option } from "effect"
import * as Logging from "../../src/cli/Logging.ts"
import { UsageError } from "../../src/cli/Errors.ts"

const env = (vars: Record<string, string>) => Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(vars)))
const none = { logFormat: Option.none(), logLevel: Option.none() }

describe("log settings", () => {
  it.effect("default to text at info", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* Logging.settings(none).pipe(env({})), { format: "text", level: "info" })
    }))

  it.effect("come from PROBESCOPE_LOG_FORMAT / PROBESCOPE_LOG_LEVEL, and the flags win over them", () =>
    Effect.gen(function*() {
      const vars = env({ PROBESCOPE_LOG_FORMAT: "json", PROBESCOPE_LOG_LEVEL: "warning" })
      assert.deepStrictEqual(yield* Logging.settings(none).pipe(vars), { format: "json", level: "warning" })
      const flags = { logFormat: Option.some("text" as const), logLevel: Option.some("debug" as const) }
      assert.deepStrictEqual(yield* Logging.settings(flags).pipe(vars), { format: "text", level: "debug" })
    }))

  it.effect("a bad variable is a usage error naming it, its value and the choices", () =>
    Effect.gen(function*() {
      const level = yield* Logging.settings(none).pipe(env({ PROBESCOPE_LOG_LEVEL: "loud" }), Effect.flip)
      assert.instanceOf(level, UsageError)
      assert.strictEqual(level.message, "PROBESCOPE_LOG_LEVEL=loud: expected one of debug, info, warning, error")
      const format = yield* Logging.settings(none).pipe(env({ PROBESCOPE_LOG_FORMAT: "xml" }), Effect.flip)
      assert.strictEqual(format.message, "PROBESCOPE_LOG_FORMAT=xml: expected one of text, json")
    }))
})

describe("log lines", () => {
  const date = new Date("2026-11-26T12:00:00.000Z")

  it("a json record is one line: time, level, message, fiber, annotations, bigints as numbers", () => {
    const line = Logging.jsonRecord({
      date,
      logLevel: "INFO",
      message: ["status"],
      fiberId: 7,
      annotations: { targets: 2, dropped: 3n }
    })
    assert.strictEqual(
      line,
      "{\"time\":\"2026-11-26T12:00:00.000Z\",\"level\":\"info\",\"message\":\"status\",\"fiber\":\"#7\"," +
        "\"targets\":2,\"dropped\":3}"
    )
  })

  it("a failure is one line, with no stack unless the level is debug", () => {
    const error = new Error("config agent.yaml: selection.pid: unknown key")
    const text = { format: "text", level: "info" } as const
    assert.strictEqual(
      Logging.failureLine(text, error, error),
      "probescope: config agent.yaml: selection.pid: unknown key"
    )
    const json = JSON.parse(Logging.failureLine({ format: "json", level: "error" }, error, error))
    assert.deepStrictEqual([json.level, json.message, json.cause], [
      "error",
      "config agent.yaml: selection.pid: unknown key",
      undefined
    ])
    const debug = Logging.failureLine({ format: "text", level: "debug" }, error, error).split("\n")
    assert.strictEqual(debug[0], "probescope: config agent.yaml: selection.pid: unknown key")
    assert.strictEqual(debug[1], "Error: config agent.yaml: selection.pid: unknown key")
    assert.match(debug[2]!, /^\s+at /)
  })
})
