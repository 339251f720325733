/**
 * Imported first by the CLI (src/cli/main.ts): the same checks as `Guard.ts`, reported as one line on stderr with
 * exit 1, as the CLI reports every error, instead of an uncaught exception's stack.
 */
import { check } from "./Requirements.ts"

if (process.env["PROBESCOPE_SKIP_RUNTIME_CHECK"] !== "1") {
  const problem = check()
  if (problem !== undefined) {
    process.stderr.write(`probescope: ${problem.message}\n`)
    process.exit(1)
  }
}
