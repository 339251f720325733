/**
 * Generates src/target/offsets.json, the struct offsets a binary without DWARF gets its probes' fields from.
 *
 * For each covered module (scripts/offsets/specs.ts) and each of its releases to cover (the Go module proxy's list,
 * `go list -m -versions`: the newest patch of each minor line plus the first covered release, or every release), and
 * for each supported Go toolchain (GOTOOLCHAIN=go1.X.Y), it builds a small program using the module with DWARF,
 * reads the offsets of the fields the probes' manifests name (scripts/offsets/fields.ts) with probescope's own DWARF
 * reader, and stores them as runs of equal offsets. Each build's result is cached under test/.cache/offsets/, so a
 * run can be stopped and resumed, and a module regenerated alone. See docs/offsets.md.
 *
 *   node scripts/gen-offsets.ts [--module <path>]... [--go 1.26.8]... [--versions v1.60.0,v1.85.0] [--jobs 2]
 *                               [--plan]   (print what would be built, build nothing)
 *                               [--cached] (build nothing: assemble the table from the cached builds only)
 *
 * Modules not generated in this run keep their entries (the table only grows).
 */
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { parseArgs } from "node:util"
import { compareVersions, lineOf } from "../src/target/internal/OffsetTable.ts"
import type { OffsetsTable } from "../src/target/Offsets.ts"
import { assemble, cached, format } from "./offsets/assemble.ts"
import { measure, moduleCacheDir } from "./offsets/build.ts"
import { loadManifests, wantedFields } from "./offsets/fields.ts"
import { type ModuleSpec, specs, stdGo, supportedGo } from "./offsets/specs.ts"

const root = Path.resolve(import.meta.dirname, "..")
const tablePath = Path.join(root, "src/target/offsets.json")
const cacheDir = Path.join(root, "test/.cache/offsets")

const { values: args } = parseArgs({
  options: {
    module: { type: "string", multiple: true },
    go: { type: "string", multiple: true },
    versions: { type: "string" },
    jobs: { type: "string", default: "1" },
    plan: { type: "boolean", default: false },
    cached: { type: "boolean", default: false }
  }
})

/** Every release (no pre-releases) the module proxy lists, ascending. */
const released = (spec: ModuleSpec): Array<string> => {
  const out = execFileSync("go", ["list", "-m", "-versions", spec.module], {
    env: { ...process.env, GOTOOLCHAIN: "local", GOFLAGS: "-mod=mod" },
    cwd: Os.tmpdir(),
    encoding: "utf8"
  })
  return out.trim().split(/\s+/).slice(1).filter((v) => !v.includes("-")).sort(compareVersions)
}

/** The releases to build: each line's newest patch and the first release, or all of them. */
const pick = (spec: ModuleSpec, listed: ReadonlyArray<string>): Array<string> => {
  const all = listed.filter((v) => compareVersions(v, spec.from) >= 0)
  if (spec.pick === "all") return [...all]
  const newest = new Map<string, string>()
  for (const v of all) newest.set(lineOf(v)!, v)
  return [...new Set([...(all.length > 0 ? [all[0]!] : []), ...newest.values()])].sort(compareVersions)
}

const started = Date.now()
const manifests = await loadManifests(root)
const wanted = wantedFields(specs, manifests)
/** The table as it is on disk now (read again just before writing: runs for other modules may have written it). */
const current = (): OffsetsTable | undefined => {
  const t = Fs.existsSync(tablePath) ? JSON.parse(Fs.readFileSync(tablePath, "utf8")) as OffsetsTable : undefined
  return t?.schema === 2 ? t : undefined
}
/** This run's modules and release lists, merged over the table on disk when written. */
const modules: Record<string, OffsetsTable["modules"][string]> = {}
const releasedLists: Record<string, ReadonlyArray<string>> = {}

const chosen = specs.filter((s) => args.module === undefined || args.module.includes(s.module))
const work = Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-offsets-"))
try {
  for (const spec of chosen) {
    const fields = wanted.get(spec.module)!
    if (fields.size === 0) {
      console.log(`${spec.module}: no probe names a field of it; skipped`)
      continue
    }
    let versions: Array<string>
    let gosOf: (v: string) => ReadonlyArray<string>
    if (spec.module === "std") {
      versions = args.versions?.split(",") ?? [...(args.go ?? stdGo)]
      gosOf = (v) => [v]
    } else {
      const all = released(spec)
      releasedLists[spec.module] = all
      versions = args.versions?.split(",") ?? pick(spec, all)
      gosOf = () => args.go ?? supportedGo
    }
    const jobs = versions.flatMap((v) => gosOf(v).map((g) => [v, g] as const))
    console.log(`${spec.module}: ${versions.length} releases, ${jobs.length} builds (${
      [...fields.values()].reduce((n, f) => n + f.size, 0)} fields of ${fields.size} types)`)
    if (args.plan) {
      console.log(`  ${versions.join(" ")}`)
      continue
    }
    if (args.cached) {
      modules[spec.module] = assemble(spec.module, cached(moduleCacheDir(cacheDir, spec.module)), fields)
      continue
    }
    // Builds of one release run in turn (they share its module directory); releases run `--jobs` at a time.
    const queue = [...versions]
    const worker = async () => {
      for (let v = queue.shift(); v !== undefined; v = queue.shift()) {
        for (const g of gosOf(v)) {
          const t0 = Date.now()
          const m = await measure({ work, cacheDir, wanted: fields }, spec, v, g)
          const n = Object.values(m.fields).reduce((k, f) => k + Object.keys(f).length, 0)
          console.log(`  ${v} go${g}: ${m.error ?? `${n} offsets`}${m.cached ? " (cached)" : ""} ${
            ((Date.now() - t0) / 1000).toFixed(0)}s`)
        }
      }
    }
    await Promise.all(Array.from({ length: Math.max(1, Number(args.jobs)) }, worker))
    modules[spec.module] = assemble(spec.module, cached(moduleCacheDir(cacheDir, spec.module)), fields)
  }
} finally {
  Fs.rmSync(work, { recursive: true, force: true })
}

if (!args.plan) {
  const old = current()
  Object.assign(releasedLists, { ...old?.generated?.released, ...releasedLists })
  for (const [m, v] of Object.entries(old?.modules ?? {})) if (!(m in modules)) modules[m] = v
  const table: OffsetsTable = {
    schema: 2,
    generated: {
      go: [...new Set([...stdGo, ...supportedGo])],
      released: Object.fromEntries(Object.entries(releasedLists).sort(([a], [b]) => (a < b ? -1 : 1)))
    },
    modules: Object.fromEntries(Object.entries(modules).sort(([a], [b]) =>
      a === "std" ? -1 : b === "std" ? 1 : a < b ? -1 : 1
    ))
  }
  const text = format(table)
  Fs.writeFileSync(tablePath, text)
  console.log(`wrote ${Path.relative(root, tablePath)}: ${text.length} bytes, ${text.split("\n").length - 1} lines, ${
    ((Date.now() - started) / 1000).toFixed(0)}s`)
}
