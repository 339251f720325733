/**
 * Turns cached measurements into one module's table entry (builds, dependencies, runs per field) and the table
 * into reviewable JSON (one run per line).
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import {
  cellKey,
  type Cells,
  compareVersions,
  compress,
  type ModuleOffsets
} from "../../src/target/internal/OffsetTable.ts"
import type { OffsetsTable } from "../../src/target/Offsets.ts"
import type { Measured } from "./build.ts"
import { packageOf } from "./fields.ts"

/** Every cached measurement of a module (this run's and earlier runs'), failed builds included. */
export const cached = (dir: string): Array<Measured> =>
  !Fs.existsSync(dir) ? [] : Fs.readdirSync(dir).filter((f) => f.endsWith(".json"))
    .map((f) => JSON.parse(Fs.readFileSync(Path.join(dir, f), "utf8")) as Measured)

/** The Go a failed build said the release needs ("go.mod requires go >= 1.26.0"). */
const requiredGo = (error: string): string | undefined => /requires go >= (\S+?)[ )]/.exec(error)?.[1]

const sortKeys = <A>(o: Record<string, A>, cmp?: (a: string, b: string) => number): Record<string, A> =>
  Object.fromEntries(Object.keys(o).sort(cmp).map((k) => [k, o[k]!]))

/** One module's entry from its measurements, recording only the wanted fields. */
export const assemble = (
  module: string,
  all: ReadonlyArray<Measured>,
  wanted: ReadonlyMap<string, ReadonlySet<string>>
): ModuleOffsets => {
  const needsGo: Record<string, string> = {}
  for (const m of all) {
    const go = m.error === undefined ? undefined : requiredGo(m.error)
    if (go !== undefined) needsGo[m.version] = go
  }
  const measured = all.filter((m) => m.error === undefined)
  const builds: Record<string, Array<string>> = {}
  const cells = new Map<string, Cells>()
  const deps: Record<string, Set<string>> = {}
  for (const m of measured) {
    ;(builds[m.version] ??= []).push(m.go)
    for (const [type, fields] of Object.entries(m.fields)) {
      for (const [field, off] of Object.entries(fields)) {
        if (!wanted.get(type)?.has(field)) continue
        const k = `${type}\u0000${field}`
        if (!cells.has(k)) cells.set(k, new Map())
        cells.get(k)!.set(cellKey(m.version, m.go), off)
      }
    }
    // Dependency modules whose types are recorded: the versions each build resolved.
    for (const type of wanted.keys()) {
      const pkg = packageOf(type)
      if (module === "std" || pkg === module || pkg.startsWith(module + "/")) continue
      const dep = Object.keys(m.deps).filter((d) => pkg === d || pkg.startsWith(d + "/"))
        .sort((a, b) => b.length - a.length)[0]
      if (dep !== undefined) (deps[dep] ??= new Set()).add(m.deps[dep]!)
    }
  }
  for (const v of Object.keys(builds)) builds[v]!.sort(compareVersions)
  const sortedBuilds = sortKeys(builds, compareVersions)
  const types: Record<string, Record<string, ReturnType<typeof compress>>> = {}
  for (const [k, c] of [...cells].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const [type, field] = k.split("\u0000") as [string, string]
    ;(types[type] ??= {})[field] = compress(sortedBuilds, c)
  }
  const dependencies = sortKeys(Object.fromEntries(Object.entries(deps).map(([d, vs]) => [d, [...vs].sort()])))
  return {
    builds: sortedBuilds,
    ...(Object.keys(dependencies).length > 0 ? { dependencies } : {}),
    ...(Object.keys(needsGo).length > 0 ? { needsGo: sortKeys(needsGo, compareVersions) } : {}),
    types
  }
}

/** JSON with each run, each build's Go list and each version list on one line: reviewable diffs, small file. */
export const format = (t: OffsetsTable): string => {
  const lines: Array<string> = []
  const inline = (v: unknown) => JSON.stringify(v).replace(/,"/g, ", \"").replace(/":/g, "\": ")
  lines.push("{", ` "schema": ${t.schema},`)
  lines.push(` "generated": {`)
  lines.push(`  "go": ${inline(t.generated?.go ?? [])},`)
  const rel = Object.entries(t.generated?.released ?? {})
  lines.push(`  "released": {`)
  rel.forEach(([m, vs], i) => lines.push(`   ${JSON.stringify(m)}: ${inline(vs)}${i < rel.length - 1 ? "," : ""}`))
  lines.push("  }", " },", ` "modules": {`)
  const mods = Object.entries(t.modules)
  mods.forEach(([name, m], mi) => {
    lines.push(`  ${JSON.stringify(name)}: {`, `   "builds": {`)
    const bs = Object.entries(m.builds)
    bs.forEach(([v, gos], i) => lines.push(`    ${JSON.stringify(v)}: ${inline(gos)}${i < bs.length - 1 ? "," : ""}`))
    lines.push("   },")
    if (m.dependencies !== undefined) {
      lines.push(`   "dependencies": {`)
      const ds = Object.entries(m.dependencies)
      ds.forEach(([d, vs], i) => lines.push(`    ${JSON.stringify(d)}: ${inline(vs)}${i < ds.length - 1 ? "," : ""}`))
      lines.push("   },")
    }
    if (m.needsGo !== undefined) lines.push(`   "needsGo": ${inline(m.needsGo)},`)
    lines.push(`   "types": {`)
    const ts = Object.entries(m.types)
    ts.forEach(([type, fields], ti) => {
      lines.push(`    ${JSON.stringify(type)}: {`)
      const fs = Object.entries(fields)
      fs.forEach(([f, runs], fi) => {
        lines.push(`     ${JSON.stringify(f)}: [`)
        runs.forEach((r, ri) => lines.push(`      ${inline(r)}${ri < runs.length - 1 ? "," : ""}`))
        lines.push(`     ]${fi < fs.length - 1 ? "," : ""}`)
      })
      lines.push(`    }${ti < ts.length - 1 ? "," : ""}`)
    })
    lines.push("   }", `  }${mi < mods.length - 1 ? "," : ""}`)
  })
  lines.push(" }", "}")
  return lines.join("\n") + "\n"
}
