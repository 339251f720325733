/**
 * How the `probescope` command logs: `--log-format text|json` and `--log-level debug|info|warning|error`, else
 * `PROBESCOPE_LOG_FORMAT` / `PROBESCOPE_LOG_LEVEL`, else text at info. Logs always go to stderr: stdout belongs to
 * the console exporter and to `--json` output.
 *
 * Text is the agent's own logger (Effect's pretty shape); json is one object per line for log shippers. An error a
 * command ends with is one line either way — its message only, unless the level is debug, which adds the cause.
 */
import { Cause, Config, Context, Effect, Layer, Logger, Option, References, Schema } from "effect"
import { CliError, Command, Flag } from "effect/cli"
import * as Agent from "../agent/Agent.ts"
import { UsageError } from "./Errors.ts"
import * as Lifecycle from "./Lifecycle.ts"

export const LogFormat = Schema.Literals(["text", "json"])
export type LogFormat = typeof LogFormat.Type

export const LogLevelName = Schema.Literals(["debug", "info", "warning", "error"])
export type LogLevelName = typeof LogLevelName.Type

export interface Settings {
  readonly format: LogFormat
  readonly level: LogLevelName
}

const levels = { debug: "Debug", info: "Info", warning: "Warn", error: "Error" } as const

/** `--log-format` and `--log-level`, for the commands that log (`run`, `doctor`, `inspect`, `list`). */
export const flags = {
  logFormat: Flag.Literals("log-format", LogFormat.literals).pipe(
    Flag.withDescription("Log lines as text (default) or json, one object per line, on stderr"),
    Flag.optional
  ),
  logLevel: Flag.Literals("log-level", LogLevelName.literals).pipe(
    Flag.withDescription("The least severe level logged (default info; debug adds causes to errors)"),
    Flag.optional
  )
}

/** A variable holding one of `literals`; any other value is a usage error naming the variable and the choices. */
const fromEnv = <A extends string>(
  name: string,
  literals: ReadonlyArray<A>
): Effect.Effect<Option.Option<A>, UsageError> =>
  Effect.gen(function*() {
    const value = yield* Config.option(Config.String(name)).pipe(
      Effect.mapError((e) => new UsageError({ message: `${name}: ${e.message.split("\n")[0]}` }))
    )
    if (Option.isNone(value)) return Option.none()
    const given = value.value
    const known = literals.find((l) => l === given)
    if (known === undefined) {
      return yield* new UsageError({ message: `${name}=${given}: expected one of ${literals.join(", ")}` })
    }
    return Option.some(known)
  })

/** The command line wins over the environment; a bad variable is a usage error (one line, exit 2). */
export const settings = (given: {
  readonly logFormat: Option.Option<LogFormat>
  readonly logLevel: Option.Option<LogLevelName>
}): Effect.Effect<Settings, UsageError> =>
  Effect.gen(function*() {
    const format = Option.isSome(given.logFormat)
      ? given.logFormat.value
      : Option.getOrElse(yield* fromEnv("PROBESCOPE_LOG_FORMAT", LogFormat.literals), () => "text" as const)
    const level = Option.isSome(given.logLevel)
      ? given.logLevel.value
      : Option.getOrElse(yield* fromEnv("PROBESCOPE_LOG_LEVEL", LogLevelName.literals), () => "info" as const)
    return { format, level }
  })

const plain = (value: unknown): unknown => {
  if (typeof value === "bigint") return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString()
  return value
}

/** One log record as one JSON line: time, level, message, the fiber, every annotation, and the cause when any. */
export const jsonRecord = (record: {
  readonly date: Date
  readonly logLevel: string
  readonly message: unknown
  readonly fiberId: number
  readonly annotations: Readonly<Record<string, unknown>>
  readonly cause?: string | undefined
}): string => {
  const parts = Array.isArray(record.message) ? record.message : [record.message]
  const message = parts.map((p) => (typeof p === "string" ? p : JSON.stringify(p, (_k, v) => plain(v)))).join(" ")
  const out: Record<string, unknown> = {
    time: record.date.toISOString(),
    level: record.logLevel.toLowerCase(),
    message,
    fiber: `#${record.fiberId}`,
    ...record.annotations
  }
  if (record.cause !== undefined) out["cause"] = record.cause
  return JSON.stringify(out, (_k, v) => plain(v))
}

/** The json logger: one line per record on stderr (or `write`). */
export const jsonLogger = (write: (chunk: string) => void = (chunk) => void process.stderr.write(chunk)) =>
  Logger.make<unknown, void>(({ cause, date, fiber, logLevel, message }) => {
    const line = jsonRecord({
      date,
      logLevel,
      message,
      fiberId: fiber.id,
      annotations: fiber.getRef(References.CurrentLogAnnotations),
      cause: cause.reasons.length > 0 ? Cause.pretty(cause) : undefined
    })
    try {
      write(`${line}\n`)
    } catch {
      // A closed stderr leaves nowhere to report to; logging must not fail the command.
    }
  })

/**
 * The loggers and minimum level for a command. Text uses the agent's own logger (the agent installs it inside its
 * layer too, and one logger in a set is called once); json replaces it.
 */
export const layer = (s: Settings): Layer.Layer<never> =>
  Layer.mergeAll(
    Layer.succeed(Logger.CurrentLoggers, new Set([s.format === "json" ? jsonLogger() : Agent.logger])),
    Layer.succeed(Logger.LogToStderr, true),
    Layer.succeed(References.MinimumLogLevel, levels[s.level])
  )

/**
 * The line a command's failure is reported with: `probescope: <message>` in text, a json error record otherwise;
 * at debug the cause (with its stack) follows.
 */
export const failureLine = (s: Settings, error: { readonly message: string }, cause?: unknown): string => {
  const detail = s.level === "debug" && cause !== undefined ? debugCause(cause) : undefined
  if (s.format === "json") {
    return jsonRecord({
      date: new Date(),
      logLevel: "ERROR",
      message: error.message,
      fiberId: 0,
      annotations: {},
      cause: detail
    })
  }
  return detail === undefined ? `probescope: ${error.message}` : `probescope: ${error.message}\n${detail}`
}

const debugCause = (cause: unknown): string =>
  cause instanceof Error && cause.stack !== undefined ? cause.stack : Cause.pretty(Cause.fail(cause))

/** The command's logging settings, or the bad variable that kept them from being read (reported by `reported`). */
export class LogSettings extends Context.Service<LogSettings, {
  readonly settings: Settings
  readonly problem: Option.Option<UsageError>
}>()("probescope/cli/LogSettings") {}

const defaults: Settings = { format: "text", level: "info" }

/**
 * For `Command.provide`: the command's loggers and level from its flags and the environment. Never fails, so that a
 * bad variable is reported like any other failure of the command (by `reported`, in one line, exit 2).
 */
export const provide = <
  I extends { readonly logFormat: Option.Option<LogFormat>; readonly logLevel: Option.Option<LogLevelName> }
>(input: I): Layer.Layer<LogSettings> =>
  Layer.unwrap(
    settings(input).pipe(
      Effect.match({
        onFailure: (problem) => ({ settings: defaults, problem: Option.some(problem) }),
        onSuccess: (s) => ({ settings: s, problem: Option.none<UsageError>() })
      }),
      Effect.map((value) => Layer.merge(Layer.succeed(LogSettings, value), layer(value.settings)))
    )
  )

/** A command with the logging flags, given its loggers and `LogSettings` (`.pipe(Logging.withLogging)`). */
export const withLogging = <
  const Name extends string,
  I extends { readonly logFormat: Option.Option<LogFormat>; readonly logLevel: Option.Option<LogLevelName> },
  CI,
  E,
  R
>(self: Command.Command<Name, I, CI, E, R>) => Command.provide(self, (input: I) => provide(input))

const isUsage = (error: unknown): boolean =>
  CliError.isCliError(error) ||
  (typeof error === "object" && error !== null && (error as { _tag?: unknown })._tag === "UsageError")

/**
 * Runs a command's body, reporting its failure in one line (`failureLine`) with the exit code it calls for: 2 for a
 * usage error, else 1. A defect is reported the same way, as an internal error. An interrupt (a signal) passes on:
 * Lifecycle decides what it means.
 */
export const reported = <A, E extends { readonly message: string }, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const { problem, settings: s } = yield* LogSettings
    const report = (error: { readonly message: string }, cause: unknown, usage: boolean) =>
      Effect.sync(() => {
        process.stderr.write(`${failureLine(s, error, cause)}\n`)
        Lifecycle.setExitCode(usage ? Lifecycle.ExitCode.usage : Lifecycle.ExitCode.error)
      })
    if (Option.isSome(problem)) return yield* report(problem.value, problem.value, true)
    return yield* effect.pipe(
      Effect.asVoid,
      Effect.catchCause((cause) => {
        if (Cause.hasInterruptsOnly(cause)) return Effect.failCause(cause)
        const error = Cause.findErrorOption(cause)
        if (Option.isSome(error)) return report(error.value, error.value, isUsage(error.value))
        const defect = Cause.squash(cause)
        const message = defect instanceof Error ? defect.message : String(defect)
        return report({ message: `internal error: ${message}` }, defect, false)
      })
    )
  })

/** A line for the user (`ready`, the summary): `probescope: <line>` in text, an info record in json. */
export const say = (line: string) =>
  Effect.gen(function*() {
    const { settings: s } = yield* LogSettings
    if (s.format === "json") return yield* Effect.logInfo(line)
    yield* Effect.sync(() => void process.stderr.write(`probescope: ${line}\n`))
  })
