/**
 * The DWARF struct reader's shortcut for Go-linked binaries: the Go linker moves every type entry into the compile
 * unit named "runtime", so only that unit is walked. Checked on a real binary against a walk of every unit, and on
 * the same DWARF with its units renamed, so the shortcut is seen to restrict the walk and to fall back without one.
 */
import { assert, describe, it } from "vitest"
import * as Fs from "node:fs"
import { readStructs } from "../../src/target/internal/Dwarf.ts"
import type { ElfSections } from "../../src/target/internal/Elf.ts"
import { parseElf } from "../../src/target/internal/Elf.ts"
import { knownTypes } from "../../src/target/Fields.ts"
import { buildFixture, goVersions } from "./helpers.ts"

const version = goVersions[goVersions.length - 1]!

/** The ELF with its `.debug_info` replaced by `info`. */
const withInfo = (elf: ElfSections, info: Buffer): ElfSections => ({
  ...elf,
  sectionData: (s, max) => s.name === ".debug_info" || s.name === ".zdebug_info" ? info : elf.sectionData(s, max)
})

/**
 * `.debug_info` with every inline name `from` written as `to` (same length): the compile units of that name (a
 * package's Go and assembly files make several) and any other entry so named, which the struct reader never reads.
 */
const renamed = (info: Buffer, from: string, to: string): Buffer => {
  const copy = Buffer.from(info)
  // A Go compile unit's entry: abbreviation 1, its name inline (DW_FORM_string), NUL-terminated.
  const needle = Buffer.from(`\x01${from}\x00`, "latin1")
  let count = 0
  for (let at = copy.indexOf(needle); at >= 0; at = copy.indexOf(needle, at + needle.length)) {
    copy.write(to, at + 1, "latin1")
    count++
  }
  assert.isAtLeast(count, 1, `no entry named ${from}`)
  return copy
}

const sorted = (m: Map<string, unknown>) => [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))

describe("readStructs on a Go-linked binary", { timeout: 300_000 }, () => {
  const elf = parseElf(Fs.readFileSync(buildFixture(version, false)))
  const info = elf.sectionData(elf.section(".debug_info") ?? elf.section(".zdebug_info")!)

  it("the runtime unit alone holds every struct a walk of all units finds", () => {
    const all = readStructs(elf)
    const runtimeOnly = readStructs(elf, undefined, { goLinked: true })
    assert.isAbove(all.size, 100)
    assert.deepStrictEqual(sorted(runtimeOnly), sorted(all))
    assert.deepStrictEqual(runtimeOnly.get("net/http.Request")?.fields.get("Method"), 0)
  })

  it("walks only the unit named runtime: another unit given that name holds no types", () => {
    const swapped = renamed(renamed(info, "runtime", "runtimX"), "strings", "runtime")
    assert.strictEqual(readStructs(withInfo(elf, swapped), undefined, { goLinked: true }).size, 0)
    // Without the option every unit is walked, names aside.
    assert.strictEqual(readStructs(withInfo(elf, swapped)).size, readStructs(elf).size)
  })

  it("a walk for some types finds them as a walk for every type does (names of other lengths not decoded)", () => {
    const all = readStructs(elf, undefined, { goLinked: true })
    // Wanted: the probes' standard types, one absent, and names of the same lengths in bytes as many others.
    const wanted = new Set([...knownTypes, "net/http.Requesx", "no/such.Type", "sync.Mutex", "runtime.g"])
    const some = readStructs(elf, wanted, { goLinked: true })
    const expected = [...all].filter(([name]) => wanted.has(name))
    assert.isAtLeast(expected.length, 10)
    assert.deepStrictEqual(sorted(some), expected.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    const lengths = new Set([...wanted].map((n) => Buffer.byteLength(n)))
    // Other structs share those lengths: the length alone does not decide.
    assert.isAbove([...all.keys()].filter((n) => lengths.has(Buffer.byteLength(n)) && !wanted.has(n)).length, 10)
  })

  it("without a unit named runtime, walks them all", () => {
    const none = renamed(info, "runtime", "runtimX")
    const fallback = readStructs(withInfo(elf, none), undefined, { goLinked: true })
    assert.deepStrictEqual(sorted(fallback), sorted(readStructs(elf)))
  })
})
