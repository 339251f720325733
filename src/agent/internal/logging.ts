/**
 * The agent's logs go to stderr: stdout belongs to the console exporter (trace trees, metrics tables), and a log line
 * mixed into it would break whoever reads that output. Embedded in a program whose default logger writes to stdout,
 * the agent's layer swaps that logger for this one inside the agent only.
 */
import { Cause, Effect, Layer, Logger, References } from "effect"

const pad = (n: number, width = 2) => String(n).padStart(width, "0")

const time = (date: Date) =>
  `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`

const text = (value: unknown): string => {
  if (typeof value === "string") return value
  try {
    return JSON.stringify(value, (_k, v) => typeof v === "bigint" ? v.toString() : v) ?? String(value)
  } catch {
    return String(value)
  }
}

/**
 * A logger in the shape of Effect's pretty console logger — `[12:00:00.000] INFO (#12): message`, then the cause,
 * further message parts and annotations on indented lines — written with `write` (stderr by default). The message
 * stays last on its line, so a line can be matched up to its end.
 */
export const make = (write: (chunk: string) => void = (chunk) => void process.stderr.write(chunk)) =>
  Logger.make<unknown, void>(({ cause, date, fiber, logLevel, message }) => {
    const parts = Array.isArray(message) ? message : [message]
    const first = parts.length > 0 && typeof parts[0] === "string" ? ` ${parts[0]}` : ""
    const lines = [`[${time(date)}] ${logLevel.toUpperCase()} (#${fiber.id}):${first}`]
    if (cause.reasons.length > 0) lines.push(...Cause.pretty(cause).split("\n").map((l) => `  ${l}`))
    for (const part of first === "" ? parts : parts.slice(1)) lines.push(`  ${text(part)}`)
    for (const [key, value] of Object.entries(fiber.getRef(References.CurrentLogAnnotations))) {
      lines.push(`  ${key}: ${text(value)}`)
    }
    try {
      write(`${lines.join("\n")}\n`)
    } catch {
      // A closed stderr leaves nowhere to report to; logging must not fail the agent.
    }
  })

/** The logger `layer` installs. */
export const stderr = make()

/**
 * Installs `logger` in place of Effect's default logger (which writes to stdout) and sends the built-in console
 * loggers to stderr; loggers the program added itself (OTLP, files, a json logger) are kept, and when the default is
 * not among them nothing is added.
 */
export const layer = (logger: Logger.Logger<unknown, void> = stderr): Layer.Layer<never> =>
  Layer.mergeAll(
    Layer.effect(
      Logger.CurrentLoggers,
      Effect.gen(function*() {
        const current = yield* Logger.CurrentLoggers
        // A program that chose its loggers (the CLI's json format, say) keeps them as they are: adding ours too
        // would print every record twice. Only Effect's default, which writes to stdout, is replaced.
        if (!current.has(Logger.defaultLogger)) return current
        return new Set([...[...current].filter((l) => l !== Logger.defaultLogger), logger])
      })
    ),
    Layer.succeed(Logger.LogToStderr, true)
  )
