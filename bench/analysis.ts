/**
 * Target analysis cost on large Go binaries (tens of MB): cold (read + parse + DWARF), cached (same inode), and a
 * floor (just reading the file), plus decoding every function once.
 *
 *   node_modules/.bin/node bench/analysis.ts [binary...]
 *
 * BENCH_BEFORE=<a checkout of another commit, or its bin/probescope> analyses each binary with that checkout's
 * src/target/GoBinary.ts too, in the same rounds (cold only, interleaved with this one), prints the ratio of the
 * medians, and fails when the two analyses disagree (summary with every known field and the probe functions decoded, and every function's name).
 * BENCH_ROUNDS sets the rounds per binary (default 5).
 *
 * Without arguments it builds `cmd/go` with the installed Go (with DWARF, and stripped) under test/.cache/bench and
 * also measures the toolchain's own `compile` binary.
 *
 * Issue #12's goal (a 50 MB Go binary analysed cold in ≤ 150 ms) goes to the results file (bench/internal/goals.ts)
 * as the worst of the binaries measured, each scaled linearly to 50 MB (real sizes and times in the note), against
 * reading the file as the floor.
 */
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import { Effect, Option } from "effect"
import * as GoBinary from "../src/target/GoBinary.ts"
import * as Goals from "./internal/goals.ts"
import { beforeCheckout } from "./internal/before.ts"

const root = Path.resolve(import.meta.dirname, "..")
const cache = Path.join(root, "test/.cache/bench")

const defaultTargets = (): Array<string> => {
  Fs.mkdirSync(cache, { recursive: true })
  const out: Array<string> = []
  for (const [name, flags] of [["go-dwarf", []], ["go-stripped", ["-ldflags=-s -w"]]] as const) {
    const p = Path.join(cache, name)
    if (!Fs.existsSync(p)) {
      execFileSync("go", ["build", ...flags, "-o", p, "cmd/go"], { stdio: "inherit", env: { ...process.env,
        GOFLAGS: "-buildvcs=false" } })
    }
    out.push(p)
  }
  const goroot = execFileSync("go", ["env", "GOROOT"]).toString().trim()
  out.push(Path.join(goroot, "pkg/tool/linux_amd64/compile"))
  return out
}

const make = GoBinary.make
const beforeDir = beforeCheckout("analysis")
const before = beforeDir === undefined
  ? undefined
  : await import(Path.resolve(beforeDir, "src/target/GoBinary.ts")) as typeof GoBinary
const rounds = Number(process.env["BENCH_ROUNDS"] ?? 5)

/** What an analysis found, as text: two checkouts must agree on it exactly. */
const fingerprint = (b: GoBinary.GoBinary): string =>
  JSON.stringify({ ...b.summary(probeFunctions), path: undefined }) + "\n" + [...b.functionNames()].sort().join("\n")

const targets = process.argv.length > 2 ? process.argv.slice(2) : defaultTargets()
/** A struct type outside the standard set (go_panic's): looked up alone, or named up front as the agent does. */
const probeType = ["internal/abi.Type", "Str"] as const
const probeFunctions = ["net/http.serverHandler.ServeHTTP", "net/http.(*Transport).roundTrip", "runtime.newproc1",
  "runtime.casgstatus", "main.main"]

/**
 * A full collection, before each timed cold analysis: what one analysis left behind (tens of MB of file buffers until
 * V8 collects them) must not be collected inside the next one's time — with BENCH_BEFORE both checkouts share the
 * heap, and one freeing its buffers early would otherwise speed up the other's rounds.
 */
V8.setFlagsFromString("--expose-gc")
const collect = Vm.runInNewContext("gc") as () => void

const time = async <A>(f: () => Promise<A>): Promise<[A, number]> => {
  const t0 = performance.now()
  const a = await f()
  return [a, performance.now() - t0]
}

const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const measured: Array<{ path: string; size: number; cold: number; floor: number; before?: number }> = []
for (const path of targets) {
  const size = Fs.statSync(path).size
  const floors: Array<number> = []
  const colds: Array<number> = []
  const cached: Array<number> = []
  const laterField: Array<number> = []
  const namedField: Array<number> = []
  let decodeAll = 0
  let functions = 0
  let summary = ""
  const beforeColds: Array<number> = []
  for (let round = 0; round < rounds; round++) {
    collect()
    floors.push((await time(() => Fs.promises.readFile(path)))[1])
    // The other checkout's analysis first in even rounds, second in odd ones: neither always follows the other.
    const runBefore = async () => {
      if (before === undefined) return undefined
      const old = await Effect.runPromise(before.make())
      collect()
      const [ob, t] = await time(() =>
        Effect.runPromise(old.analyzeFile(path).pipe(Effect.tap((b) => Effect.sync(() => b.summary(probeFunctions)))))
      )
      beforeColds.push(t)
      return ob
    }
    const early = round % 2 === 0 ? await runBefore() : undefined
    const svc = await Effect.runPromise(make())
    collect()
    const [b, cold] = await time(() =>
      Effect.runPromise(svc.analyzeFile(path).pipe(Effect.tap((b) => Effect.sync(() => b.summary(probeFunctions)))))
    )
    const ob = round % 2 === 0 ? early : await runBefore()
    if (round === 0 && ob !== undefined && fingerprint(ob) !== fingerprint(b)) {
      console.error(`${path}: this checkout's analysis differs from ${beforeDir}'s`)
      process.exit(1)
    }
    colds.push(cold)
    // The first field of a type the first DWARF pass did not read costs a pass over every struct of the file; the
    // agent names its probes' types to the analysis so that pass never happens (GoBinary AnalysisOptions.types).
    laterField.push((await time(async () => b.field(...probeType)))[1])
    const named = await Effect.runPromise(make({ types: new Set([probeType[0]]) }))
    const [withTypes, namedCold] = await time(() => Effect.runPromise(named.analyzeFile(path)))
    namedField.push(namedCold + (await time(async () => withTypes.field(...probeType)))[1] - cold)
    const [, many] = await time(async () => {
      for (let i = 0; i < 200; i++) await Effect.runPromise(svc.analyzeFile(path))
    })
    cached.push(many / 200)
    if (round === 0) {
      const names = b.functionNames()
      const t0 = performance.now()
      let incomplete = 0
      for (const n of names) if (!Option.getOrThrow(b.function(n)).complete) incomplete++
      decodeAll = performance.now() - t0
      functions = names.length
      summary = `go ${b.goVersion}, ${b.functionSource}, dwarf ${b.hasDwarf}, ${incomplete} incomplete decodes`
    }
  }
  const floor = median(floors)
  const cold = median(colds)
  const beforeCold = before === undefined ? undefined : median(beforeColds)
  measured.push({ path, size, cold, floor, ...(beforeCold === undefined ? {} : { before: beforeCold }) })
  console.log(`${Path.basename(path)}: ${(size / 1e6).toFixed(1)} MB, ${functions} functions (${summary})`)
  console.log(`  floor (read file)   ${floor.toFixed(1)} ms`)
  console.log(`  cold analysis       ${cold.toFixed(1)} ms  (${(cold / floor).toFixed(1)}x floor; incl. read, ` +
    `build info, functions, DWARF offsets, ${probeFunctions.length} functions decoded)`)
  if (beforeCold !== undefined) {
    console.log(`  before (${beforeDir}) ${beforeCold.toFixed(1)} ms cold: now ${(cold / beforeCold).toFixed(2)}x`)
  }
  console.log(`  cached analysis     ${(median(cached) * 1000).toFixed(0)} µs`)
  console.log(`  ${probeType.join(".")}: first lookup after analysis ${median(laterField).toFixed(1)} ms; named ` +
    `to the analysis up front ${median(namedField).toFixed(1)} ms more than the cold analysis`)
  const each = (decodeAll * 1000 / functions).toFixed(1)
  console.log(`  decode all functions ${decodeAll.toFixed(0)} ms (${each} µs each)`)
}

// Analysis reads and walks the file's sections (DWARF's the most): its cost grows with the size, so each binary's time
// is scaled linearly up to the goal's 50 MB (stated as such; one of 50 MB or more is taken as measured), and the
// worst of them is the figure: a binary without DWARF would flatter it.
const scaled = measured.map((m) => ({ ...m, scale: Math.max(1, 50e6 / m.size) }))
const worst = scaled.reduce((a, b) => (b.cold * b.scale > a.cold * a.scale ? b : a))
Goals.record("analysis", {
  goal: "cold analysis of a 50 MB Go binary",
  figure: worst.cold * worst.scale,
  unit: "ms",
  target: 150,
  baseline: { name: "reading the file (floor)", value: worst.floor * worst.scale },
  note: scaled.map((m) => `${Path.basename(m.path)} ${(m.size / 1e6).toFixed(1)} MB: ${m.cold.toFixed(1)} ms cold, ` +
    `${m.floor.toFixed(1)} ms to read${m.scale > 1 ? `, x${m.scale.toFixed(2)} to 50 MB` : ""}`).join("; ") +
    `; the figure is the worst scaled (${Path.basename(worst.path)})` +
    (worst.before === undefined
      ? ""
      : `; before (${beforeDir}) ${(worst.before * worst.scale).toFixed(1)} ms scaled, ` +
        `now ${(worst.cold / worst.before).toFixed(2)}x`)
})
