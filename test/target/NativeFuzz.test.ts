import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { analyzeBuffer } from "../../src/target/NativeBinary.ts"
import { parseElf } from "../../src/target/internal/Elf.ts"
import { buildNative } from "./nativeHelpers.ts"
import { rng } from "../prng.ts"
import { exercise as typed } from "./fuzzing.ts"

const tags = new Set(["NotElf", "TruncatedElf", "CorruptElf", "UnsupportedArch", "NoSymbols"])

/** Analyses `bytes` fully (lookups, summary); fails the test on a defect, returns the outcome. */
const exercise = (bytes: Buffer, label: string): string =>
  typed(analyzeBuffer("/fuzz", bytes), tags, label, (b) => {
    b.function("lib_add")
    b.function("SSL_write")
    JSON.stringify(b.summary(["main", "lib_add", "SSL_write"]))
  })

/** Headers and the tables the native analysis walks: symbols, versions, dynamic, notes. */
const hotRanges = (bytes: Buffer): Array<[number, number]> => {
  const elf = parseElf(bytes)
  const shoff = Number(bytes.readBigUInt64LE(40))
  const ranges: Array<[number, number]> = [[0, 64], [64, 64 + 56 * elf.segments.length],
    [shoff, shoff + 64 * elf.sections.length]]
  for (const s of elf.sections) {
    if ([".dynsym", ".dynstr", ".symtab", ".strtab", ".gnu.version", ".gnu.version_d", ".gnu.version_r", ".dynamic",
      ".note.gnu.build-id", ".shstrtab"].includes(s.name)) ranges.push([s.offset, s.offset + Math.min(s.size, 8192)])
  }
  return ranges
}

const mutateAndRun = (base: Buffer, seed: number, variants: number, label: string): Map<string, number> => {
  const next = rng(seed)
  const ranges = hotRanges(base)
  const outcomes = new Map<string, number>()
  for (let v = 0; v < variants; v++) {
    const flips: Array<[number, number]> = []
    const n = 1 + next(8)
    for (let k = 0; k < n; k++) {
      const [lo, hi] = next(10) < 8 ? ranges[next(ranges.length)]! : [0, base.length]
      const at = lo + next(Math.max(1, hi - lo))
      flips.push([at, base[at]!])
      base[at] = next(4) === 0 ? next(256) : base[at]! ^ (1 << next(8))
    }
    try {
      const o = exercise(base, `${label} variant ${v}`)
      outcomes.set(o, (outcomes.get(o) ?? 0) + 1)
    } finally {
      for (let k = flips.length - 1; k >= 0; k--) base[flips[k]![0]] = flips[k]![1]
    }
  }
  return outcomes
}

describe("fuzzing the native analysis", { timeout: 300_000 }, () => {
  const dir = buildNative()
  for (const name of ["libdemo.so.1", "main", "main-stripped"]) {
    it(`bit-flipped ${name}: results or typed errors only`, () => {
      const outcomes = mutateAndRun(Buffer.from(Fs.readFileSync(Path.join(dir, name))), 0xe1f, 1500, name)
      assert.strictEqual([...outcomes.values()].reduce((a, b) => a + b, 0), 1500)
      assert.isAbove(outcomes.get("ok") ?? 0, 100)
      assert.isAbove(outcomes.size, 2)
    })
  }

  it("bit-flipped libssl.so.3: results or typed errors only", () => {
    const outcomes = mutateAndRun(Buffer.from(Fs.readFileSync("/usr/lib/x86_64-linux-gnu/libssl.so.3")), 7, 300, "ssl")
    assert.isAbove(outcomes.get("ok") ?? 0, 10)
  })

  it("random bytes, with and without the ELF magic: typed errors only", () => {
    const next = rng(42)
    const outcomes = new Map<string, number>()
    for (let v = 0; v < 2000; v++) {
      const bytes = Buffer.alloc(next(4096))
      for (let i = 0; i < bytes.length; i++) bytes[i] = next(256)
      if (v % 2 === 0 && bytes.length >= 20) {
        bytes.set([0x7f, 0x45, 0x4c, 0x46, 2, 1], 0)
        bytes.writeUInt16LE(62, 18)
      }
      const o = exercise(bytes, `random ${v}`)
      outcomes.set(o, (outcomes.get(o) ?? 0) + 1)
    }
    assert.isFalse(outcomes.has("ok"))
    assert.isAbove(outcomes.get("NotElf") ?? 0, 900)
  })
})
