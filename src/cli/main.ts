/**
 * The `probescope` command's entry point.
 *
 * Loading the CLI (Effect, the OpenTelemetry exporters, the native addon) takes a second or more, and until a
 * listener exists Node's default for SIGINT/SIGTERM kills the process (status 130/143). So this module listens first
 * and loads the commands dynamically; what arrived meanwhile is handed to them (Lifecycle decides what it means).
 */
import "../runtime/CliGuard.ts"

const early: Array<NodeJS.Signals> = []
const record = (signal: NodeJS.Signals) => void early.push(signal)
process.on("SIGINT", record)
process.on("SIGTERM", record)

const { main } = await import("./Commands.ts")
main(early, () => {
  process.off("SIGINT", record)
  process.off("SIGTERM", record)
})
