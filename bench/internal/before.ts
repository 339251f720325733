/**
 * `BENCH_BEFORE` for the benches that import another checkout's sources (pipeline, analysis). The process benches
 * (startup, overhead, footprint) take it as a `bin/probescope` to run; one `npm run bench` passes the same value to
 * all, so this accepts either: a checkout, or a `bin/probescope` inside one (its checkout is two levels up). Anything
 * else, e.g. a wrapper script that sets variables for the process benches, has no sources to import: the bench says
 * so and runs without it, instead of failing the whole run.
 */
import * as fs from "node:fs"
import * as path from "node:path"

export const beforeCheckout = (bench: string): string | undefined => {
  const given = process.env["BENCH_BEFORE"]
  if (given === undefined || given === "") return undefined
  const resolved = path.resolve(given)
  const candidates = [resolved, path.dirname(path.dirname(resolved))]
  const checkout = candidates.find((dir) => fs.existsSync(path.join(dir, "src", "index.ts")))
  if (checkout === undefined) {
    console.log(`${bench}: BENCH_BEFORE=${given} is neither a checkout nor its bin/probescope: run without it`)
  }
  return checkout
}
