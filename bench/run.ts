/**
 * Runs every benchmark in sequence, each in its own Node process (so one's JIT state, heap and native handles do not
 * colour the next), and prints their tables. `npm run bench`, or:
 *
 *   node_modules/.bin/node bench/run.ts [name...]     e.g. `bench/run.ts decode overhead`
 *
 * ringbuf, discovery and overhead need root (BPF, uprobes); analysis builds cmd/go once into test/.cache/bench; export
 * starts a local OTLP sink (loopback) in a child process.
 */
import { spawnSync } from "node:child_process"
import * as path from "node:path"

/** In the order they run: the quick user-space ones first. */
const benches = [
  "decode",
  "metrics",
  "export",
  "analysis",
  "ringbuf",
  "discovery",
  "attach",
  "startup",
  "overhead"
] as const

const chosen = process.argv.slice(2)
const unknown = chosen.filter((c) => !(benches as ReadonlyArray<string>).includes(c))
if (unknown.length > 0) {
  console.error(`bench: unknown ${unknown.join(", ")} (known: ${benches.join(", ")})`)
  process.exit(2)
}

const failed: Array<string> = []
for (const name of benches) {
  if (chosen.length > 0 && !chosen.includes(name)) continue
  console.log(`\n=== ${name} (bench/${name}.ts) ===`)
  const t0 = performance.now()
  const r = spawnSync(process.execPath, [path.join(import.meta.dirname, `${name}.ts`)], { stdio: "inherit" })
  const seconds = ((performance.now() - t0) / 1000).toFixed(1)
  if (r.status !== 0) failed.push(name)
  console.log(`--- ${name}: ${r.status === 0 ? "ok" : `failed (exit ${r.status ?? r.signal})`} in ${seconds} s`)
}
if (failed.length > 0) {
  console.error(`bench: failed: ${failed.join(", ")}`)
  process.exit(1)
}
