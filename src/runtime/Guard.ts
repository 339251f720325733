/**
 * Imported first by every entry point of the library (src/index.ts and `./entries/*`): ES modules evaluate their
 * imports in order, so this runs before any module of `effect` does, and throws a `RuntimeRequirementError` that
 * says what to do instead of letting Effect fail obscurely on an old Node or silently with two copies of `effect`.
 * `PROBESCOPE_SKIP_RUNTIME_CHECK=1` turns the check off (for layouts it misjudges; say so in an issue).
 */
import { check } from "./Requirements.ts"

if (process.env["PROBESCOPE_SKIP_RUNTIME_CHECK"] !== "1") {
  const problem = check()
  if (problem !== undefined) {
    // On an old Node the tools around the import may break too before they report the error (vitest 5 on Node 20
    // crashes in its reporter with "Map.groupBy is not a function"): say it on stderr as well, where it is seen.
    if (problem.requirement === "node") process.stderr.write(`${problem.message}\n`)
    throw problem
  }
}
