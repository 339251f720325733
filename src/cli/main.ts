/**
 * The `probescope` command's entry point.
 *
 * Loading the CLI (Effect, the OpenTelemetry exporters, the native addon) takes a second or more, and until a
 * listener exists Node's default for SIGINT/SIGTERM kills the process (status 130/143). So this module listens first
 * and loads the commands dynamically; what arrived meanwhile is handed to them (Lifecycle decides what it means).
 *
 * This module runs unbundled (dist/cli/main.js) or inside the bundle (dist/cli/probescope.mjs, entered through
 * launch.ts, which chooses). Compiling what a command loads (~700 modules unbundled, megabytes of bundle) is a good
 * part of the start-up (bench/startup.ts), so V8's code cache is kept beside the compiled CLI (dist/.compile-cache):
 * never in the shared temporary directory, where another user could plant code a root agent would run. Where that
 * directory cannot be written, Node just compiles as before.
 */
import * as Module from "node:module"
import "../runtime/CliGuard.ts"

// Only the compiled CLI caches: run from src/ (tests, a checkout without dist/) it would write into the sources.
if (process.env["NODE_COMPILE_CACHE"] === undefined && import.meta.url.endsWith(".js")) {
  try {
    Module.enableCompileCache(new URL("../.compile-cache", import.meta.url).pathname)
  } catch {
    // An older Node without the cache, or a read-only install: start-up is slower, nothing else changes.
  }
}

const early: Array<NodeJS.Signals> = []
const record = (signal: NodeJS.Signals) => void early.push(signal)
process.on("SIGINT", record)
process.on("SIGTERM", record)

const { main } = await import("./Commands.ts")
main(early, () => {
  process.off("SIGINT", record)
  process.off("SIGTERM", record)
})
