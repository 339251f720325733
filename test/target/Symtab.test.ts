/**
 * The symbol table's fast path (ASCII names, safe addresses: no symbol object per entry) against the reference path
 * (`readSymbols`, one object per symbol) on real binaries: the same functions and data objects in the same order,
 * and the reference taken wherever the fast path cannot be exact.
 */
import { assert, describe, it } from "vitest"
import * as Fs from "node:fs"
import { parseElf, readSymbols, SHT_SYMTAB } from "../../src/target/internal/Elf.ts"
import { type Entries, fromSymbols, goSymbols } from "../../src/target/internal/Symtab.ts"
import { buildFixture, goVersions } from "./helpers.ts"

const entries = (m: Entries) => [...m.keys()].map((name) => `${name} ${m.get(name)!.address} ${m.get(name)!.size}`)

/** Both paths on these bytes: the same maps, entry for entry and in order. */
const same = (bytes: Buffer) => {
  const elf = parseElf(bytes)
  const symtab = elf.sections.find((s) => s.type === SHT_SYMTAB)!
  const fast = goSymbols(elf, symtab)
  const reference = fromSymbols(readSymbols(elf, symtab))
  assert.deepStrictEqual(entries(fast.funcs), entries(reference.funcs))
  assert.deepStrictEqual(entries(fast.objects), entries(reference.objects))
  return { fast, elf, symtab }
}

describe("goSymbols", { timeout: 300_000 }, () => {
  for (const version of goVersions) {
    it(`go ${version}: the same functions and objects as the reference path`, () => {
      const { fast } = same(Fs.readFileSync(buildFixture(version, false)))
      assert.isAbove(fast.funcs.size, 1000)
      assert.isTrue(fast.funcs.has("main.main"))
      assert.isTrue(fast.objects.has("runtime.firstmoduledata"))
      // An assembly function is found by its symtab name and by its plain one.
      const abi0 = [...fast.funcs.keys()].filter((n) => n.endsWith(".abi0"))
      assert.isAbove(abi0.length, 0)
      for (const n of abi0) assert.isTrue(fast.funcs.has(n.slice(0, -5)), n)
    })
  }

  it("a table at an offset that is not a multiple of 4 in memory: the same maps (its words read from a copy)", () => {
    const original = Fs.readFileSync(buildFixture(goVersions[goVersions.length - 1]!, false))
    const shifted = Buffer.alloc(original.length + 1)
    original.copy(shifted, 1)
    const { fast } = same(shifted.subarray(1))
    assert.deepStrictEqual(entries(fast.funcs), entries(same(original).fast.funcs))
    assert.isTrue(fast.funcs.has("main.main"))
  })

  it("functions without a size reach to the next greater address, as in the reference path", () => {
    const bytes = Buffer.from(Fs.readFileSync(buildFixture(goVersions[goVersions.length - 1]!, false)))
    const elf = parseElf(bytes)
    const symtab = elf.sections.find((s) => s.type === SHT_SYMTAB)!
    // Every third function's size zeroed, and one address duplicated: sizes come from the sorted addresses.
    let zeroed = 0
    let firstFunc = -1
    for (let o = symtab.offset + 24; o + 24 <= symtab.offset + symtab.size; o += 24) {
      if ((bytes[o + 4]! & 0xf) !== 2 || bytes.readBigUInt64LE(o + 8) === 0n) continue
      if (firstFunc < 0) firstFunc = o
      else if (zeroed === 0) bytes.writeBigUInt64LE(bytes.readBigUInt64LE(firstFunc + 8), o + 8)
      if (zeroed++ % 3 === 0) bytes.writeBigUInt64LE(0n, o + 16)
    }
    assert.isAbove(zeroed, 1000)
    const { fast } = same(bytes)
    const sizes = [...fast.funcs.keys()].map((n) => fast.funcs.get(n)!.size)
    assert.isAbove(sizes.filter((s) => s > 0).length, fast.funcs.size / 2)
  })

  it("a name that is not ASCII: the reference path reads the table, and the name is UTF-8", () => {
    const bytes = Buffer.from(Fs.readFileSync(buildFixture(goVersions[goVersions.length - 1]!, false)))
    const elf = parseElf(bytes)
    const symtab = elf.sections.find((s) => s.type === SHT_SYMTAB)!
    const strtab = elf.sections[symtab.link]!
    const at = bytes.indexOf("main.main\0", strtab.offset)
    assert.isAbove(at, strtab.offset)
    // "main.main" becomes "main.mé" (same length in bytes).
    bytes.write("main.m\u00e9\0", at, "utf8")
    const { fast } = same(bytes)
    assert.isTrue(fast.funcs.has("main.m\u00e9"))
    assert.isFalse(fast.funcs.has("main.main"))
  })

  it("a corrupt table fails as in the reference path", () => {
    const bytes = Buffer.from(Fs.readFileSync(buildFixture(goVersions[goVersions.length - 1]!, false)))
    const elf = parseElf(bytes)
    const symtab = elf.sections.find((s) => s.type === SHT_SYMTAB)!
    // Symbol 5's name points past the string table.
    bytes.writeUInt32LE(0xfffffff0, symtab.offset + 5 * 24)
    assert.throws(() => goSymbols(elf, symtab), /symbols of \.symtab name 5: unterminated string at 4294967280/)
    // A size that is not a safe integer.
    bytes.writeUInt32LE(0, symtab.offset + 5 * 24)
    bytes.writeBigUInt64LE(1n << 60n, symtab.offset + 7 * 24 + 16)
    assert.throws(() => goSymbols(elf, symtab), /symbols of \.symtab: symbol 7 size too large/)
  })
})
