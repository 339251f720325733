import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import { analyzeBuffer } from "../../src/target/GoBinary.ts"
import { parseElf } from "../../src/target/internal/Elf.ts"
import { buildFixture } from "./helpers.ts"
import { rng } from "../prng.ts"
import { exercise as typed } from "./fuzzing.ts"

const tags = new Set(["NotElf", "TruncatedElf", "CorruptElf", "UnsupportedArch", "NotGo", "GoTooOld",
  "CorruptBuildInfo", "StrippedNoPclntab"])

/** Analyses `bytes` fully (functions, fields, summary); fails the test on a defect, returns the outcome. */
const exercise = (bytes: Buffer, label: string): string =>
  typed(analyzeBuffer("/fuzz", bytes), tags, label, (b) => {
    const names = b.functionNames()
    for (let i = 0; i < names.length; i += Math.max(1, Math.floor(names.length / 40))) b.function(names[i]!)
    b.field("net/http.Request", "Method")
    b.field("main.unknownType", "x")
    b.dwarfError()
    JSON.stringify(b.summary(["main.main", "runtime.main", "runtime.memmove"]))
  })

/** Byte ranges worth corrupting: headers and the tables the analysis walks. */
const hotRanges = (bytes: Buffer): Array<[number, number]> => {
  const elf = parseElf(bytes)
  const ranges: Array<[number, number]> = [[0, 64], [64, 64 + 56 * elf.segments.length]]
  const shoff = Number(bytes.readBigUInt64LE(40))
  ranges.push([shoff, shoff + 64 * elf.sections.length])
  for (const name of [".go.buildinfo", ".gopclntab", ".symtab", ".strtab", ".debug_info", ".debug_abbrev",
    ".shstrtab"]) {
    const s = elf.section(name)
    if (s !== undefined) ranges.push([s.offset, s.offset + Math.min(s.size, 8192)])
  }
  return ranges
}

const mutateAndRun = (base: Buffer, seed: number, variants: number, label: string): Map<string, number> => {
  const next = rng(seed)
  const ranges = hotRanges(base)
  const outcomes = new Map<string, number>()
  const count = (o: string) => outcomes.set(o, (outcomes.get(o) ?? 0) + 1)
  for (let v = 0; v < variants; v++) {
    // Flip 1–8 bits, mostly in hot ranges, and restore afterwards (no copy of the whole file per variant).
    const flips: Array<[number, number]> = []
    const n = 1 + next(8)
    for (let k = 0; k < n; k++) {
      const [lo, hi] = next(10) < 8 ? ranges[next(ranges.length)]! : [0, base.length]
      const at = lo + next(Math.max(1, hi - lo))
      flips.push([at, base[at]!])
      base[at] = next(4) === 0 ? next(256) : base[at]! ^ (1 << next(8))
    }
    try {
      count(exercise(base, `${label} variant ${v}`))
    } finally {
      for (let k = flips.length - 1; k >= 0; k--) base[flips[k]![0]] = flips[k]![1]
    }
  }
  return outcomes
}

describe("fuzzing the analysis", { timeout: 600_000 }, () => {
  it("bit-flipped stripped binaries give results or typed errors only", () => {
    const base = Buffer.from(Fs.readFileSync(buildFixture("1.26.8", true, "empty")))
    const outcomes = mutateAndRun(base, 0x5eed, 2000, "stripped")
    assert.strictEqual([...outcomes.values()].reduce((a, b) => a + b, 0), 2000)
    assert.isAbove(outcomes.get("ok") ?? 0, 100)
    console.log("stripped outcomes", Object.fromEntries(outcomes))
    assert.isAbove(outcomes.size, 3)
  })

  it("bit-flipped binaries with symtab and DWARF give results or typed errors only", () => {
    const base = Buffer.from(Fs.readFileSync(buildFixture("1.24.13", false, "empty")))
    const outcomes = mutateAndRun(base, 0xbeef, 1000, "full")
    assert.strictEqual([...outcomes.values()].reduce((a, b) => a + b, 0), 1000)
    assert.isAbove(outcomes.get("ok") ?? 0, 50)
  })

  it("truncations at every structure boundary and at random lengths", () => {
    const base = Fs.readFileSync(buildFixture("1.22.12", true, "empty"))
    const elf = parseElf(base)
    const cuts = new Set<number>([0, 1, 4, 16, 63, 64, 65, 120, 500])
    for (const s of elf.sections) for (const d of [-1, 0, 1, 7]) cuts.add(Math.max(0, s.offset + d))
    for (const s of elf.sections) cuts.add(s.offset + s.size - 1)
    const next = rng(7)
    for (let i = 0; i < 300; i++) cuts.add(next(base.length))
    const outcomes = new Map<string, number>()
    for (const cut of cuts) {
      const o = exercise(base.subarray(0, cut), `cut ${cut}`)
      outcomes.set(o, (outcomes.get(o) ?? 0) + 1)
    }
    assert.isAbove(cuts.size, 350)
    assert.isAbove(outcomes.get("TruncatedElf") ?? 0, 100)
  })

  it("random bytes, with and without a plausible ELF header", () => {
    const next = rng(99)
    const header = Fs.readFileSync(buildFixture("1.26.8", true, "empty")).subarray(0, 64)
    const outcomes = new Map<string, number>()
    for (let i = 0; i < 1000; i++) {
      const b = Buffer.alloc(next(65536))
      for (let k = 0; k < b.length; k++) b[k] = next(256)
      if (i % 2 === 0) header.copy(b, 0, 0, Math.min(64, b.length))
      const o = exercise(b, `random ${i}`)
      outcomes.set(o, (outcomes.get(o) ?? 0) + 1)
    }
    console.log("random bytes outcomes", Object.fromEntries(outcomes))
    assert.isAbove(outcomes.get("NotElf") ?? 0, 400)
    // Those with a real header get past the magic: they fail later, on the tables that follow.
    assert.isAbove(1000 - (outcomes.get("NotElf") ?? 0) - (outcomes.get("ok") ?? 0), 400)
  })
})
