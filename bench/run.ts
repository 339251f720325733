/**
 * Runs every benchmark in sequence, each in its own Node process (so one's JIT state, heap and native handles do not
 * colour the next), and prints their tables. `npm run bench`, or:
 *
 *   node_modules/.bin/node bench/run.ts [name...]     e.g. `bench/run.ts decode overhead`
 *
 * ringbuf, discovery, overhead and footprint need root (BPF, uprobes); analysis builds cmd/go once into
 * test/.cache/bench; export starts a local OTLP sink (loopback) in a child process.
 *
 * The benches that measure one of issue #12's goals write each figure to a results file (bench/internal/goals.ts);
 * this run starts it afresh and ends with one "Goals (#12)" table of them: figure, target, ratio to the floor measured
 * in the same run (or to the previous figure, #12's table), met or not.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Goals from "./internal/goals.ts"

/** In the order they run: the quick user-space ones first. */
const benches = [
  "decode",
  "metrics",
  "export",
  "pipeline",
  "analysis",
  "ringbuf",
  "discovery",
  "attach",
  "startup",
  "overhead",
  "footprint"
] as const

const chosen = process.argv.slice(2)
const unknown = chosen.filter((c) => !(benches as ReadonlyArray<string>).includes(c))
if (unknown.length > 0) {
  console.error(`bench: unknown ${unknown.join(", ")} (known: ${benches.join(", ")})`)
  process.exit(2)
}

const results = Goals.resultsFile()
fs.mkdirSync(path.dirname(results), { recursive: true })
fs.writeFileSync(results, "")

const failed: Array<string> = []
for (const name of benches) {
  if (chosen.length > 0 && !chosen.includes(name)) continue
  console.log(`\n=== ${name} (bench/${name}.ts) ===`)
  const t0 = performance.now()
  const r = spawnSync(process.execPath, [path.join(import.meta.dirname, `${name}.ts`)], {
    stdio: "inherit",
    env: { ...process.env, BENCH_RESULTS: results }
  })
  const seconds = ((performance.now() - t0) / 1000).toFixed(1)
  if (r.status !== 0) failed.push(name)
  console.log(`--- ${name}: ${r.status === 0 ? "ok" : `failed (exit ${r.status ?? r.signal})`} in ${seconds} s`)
}
const goals = Goals.read(results)
if (goals.length > 0) {
  const f = Goals.formatNumber
  console.log(`\nGoals (#12), ${new Date().toISOString().slice(0, 10)}, results in ${path.relative(process.cwd(), results)}`)
  console.table(goals.map((g) => ({
    goal: g.goal,
    figure: `${f(g.figure)} ${g.unit}`,
    target: `${g.direction === "min" ? "≥" : "≤"} ${f(g.target)} ${g.unit}`,
    ratio: g.ratio === null ? "-" : `${f(g.ratio)}x ${g.baseline}`,
    met: g.met ? "yes" : "no",
    bench: g.bench
  })))
  for (const g of goals) if (g.note !== null) console.log(`  ${g.goal}: ${g.note}`)
}
if (failed.length > 0) {
  console.error(`bench: failed: ${failed.join(", ")}`)
  process.exit(1)
}
