/**
 * Generates src/target/offsets.json: builds the fixture program in test/fixtures/go/targets with several Go
 * toolchains (GOTOOLCHAIN=go1.X.Y, fetched through the module proxy once and then cached), reads each binary's DWARF
 * with probescope's own reader, and records the offsets of `knownFields` per Go version (module "std").
 *
 *   node_modules/.bin/node scripts/gen-offsets.ts [1.22.12 1.24.13 ...]
 *
 * Existing entries for other versions are kept, so the table only grows.
 */
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { knownFields, knownTypes } from "../src/target/Fields.ts"
import { readBuildInfo } from "../src/target/internal/BuildInfo.ts"
import { readStructs } from "../src/target/internal/Dwarf.ts"
import { parseElf } from "../src/target/internal/Elf.ts"
import type { OffsetsTable } from "../src/target/Offsets.ts"

const root = Path.resolve(import.meta.dirname, "..")
const tablePath = Path.join(root, "src/target/offsets.json")
const fixture = Path.join(root, "test/fixtures/go/targets")
const defaults = ["1.22.12", "1.24.13", "1.25.9", "1.26.8", "1.27.3"]
const versions = process.argv.length > 2 ? process.argv.slice(2) : defaults

type Mutable = Record<string, Record<string, Record<string, Record<string, number>>>>
const old: OffsetsTable = Fs.existsSync(tablePath)
  ? JSON.parse(Fs.readFileSync(tablePath, "utf8"))
  : { schema: 1, modules: {} }
const modules: Mutable = structuredClone(old.modules) as Mutable
const std = (modules["std"] ??= {})

const tmp = Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-offsets-"))
try {
  for (const version of versions) {
    const out = Path.join(tmp, `fixture-${version}`)
    process.stdout.write(`go${version}: building... `)
    execFileSync("go", ["build", "-trimpath", "-o", out, "."], {
      cwd: fixture,
      env: { ...process.env, GOTOOLCHAIN: `go${version}`, CGO_ENABLED: "0", GOFLAGS: "-buildvcs=false" },
      stdio: ["ignore", "ignore", "inherit"]
    })
    const elf = parseElf(Fs.readFileSync(out))
    const info = readBuildInfo(elf)
    if (info === undefined || info.goVersion !== version) {
      throw new Error(`go${version}: build info says ${info?.goVersion}`)
    }
    const structs = readStructs(elf, knownTypes)
    let n = 0
    for (const [type, fields] of Object.entries(knownFields)) {
      const layout = structs.get(type)
      if (layout === undefined) continue
      for (const field of fields) {
        const off = layout.fields.get(field)
        if (off === undefined) continue
        ;((std[type] ??= {})[field] ??= {})[version] = off
        n++
      }
    }
    console.log(`${n} offsets`)
  }
} finally {
  Fs.rmSync(tmp, { recursive: true, force: true })
}

// Stable order: types and fields as in knownFields, versions ascending.
const cmp = (a: string, b: string) => {
  const pa = a.split(".").map(Number)
  const pb = b.split(".").map(Number)
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0)
  return 0
}
const sorted: Mutable[string] = {}
for (const type of Object.keys(std).sort()) {
  sorted[type] = {}
  for (const field of Object.keys(std[type]!).sort()) {
    const byVersion = std[type]![field]!
    sorted[type]![field] = Object.fromEntries(Object.keys(byVersion).sort(cmp).map((v) => [v, byVersion[v]!]))
  }
}
modules["std"] = sorted
const table: OffsetsTable = { schema: 1, modules }
Fs.writeFileSync(tablePath, JSON.stringify(table, null, 1) + "\n")
console.log(`wrote ${Path.relative(root, tablePath)}`)
