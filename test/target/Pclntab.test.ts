/**
 * The pclntab's function names are sliced from one decode of the name table, those with bytes that are not ASCII
 * decoded one by one: the same names either way (a copy with "main.main" made non-ASCII decodes it on its own), and
 * a name offset outside the table fails as before.
 */
import { assert, describe, it } from "vitest"
import * as Fs from "node:fs"
import { parseElf } from "../../src/target/internal/Elf.ts"
import { readPclntab } from "../../src/target/internal/Pclntab.ts"
import { buildFixture, goVersions } from "./helpers.ts"

const functionsOf = (bytes: Buffer) => readPclntab(parseElf(bytes))!.functions

describe("pclntab names", { timeout: 300_000 }, () => {
  for (const version of goVersions) {
    it(`go ${version}: the same names whether sliced from the table or decoded on their own`, () => {
      const original = Fs.readFileSync(buildFixture(version, true))
      const pclntab = parseElf(original).section(".gopclntab")!
      const damaged = Buffer.from(original)
      const at = damaged.indexOf("main.main\0", pclntab.offset)
      assert.isAbove(at, pclntab.offset)
      damaged.write("main.m\u00e9n\0", at, "utf8")
      const fast = functionsOf(original)
      const slow = functionsOf(damaged)
      assert.isAbove(fast.length, 1000)
      assert.strictEqual(slow.length, fast.length)
      const renamed = slow.map((f, i) => f.name === "main.m\u00e9n" ? fast[i]!.name : f.name)
      assert.deepStrictEqual(renamed, fast.map((f) => f.name))
      assert.deepStrictEqual(slow.map((f) => [f.address, f.size, f.asm, f.funcID]),
        fast.map((f) => [f.address, f.size, f.asm, f.funcID]))
      assert.strictEqual(slow.filter((f) => f.name === "main.m\u00e9n").length, 1)
      // Names with "·" (not ASCII) are among the table's: UTF-8, as the one-by-one decode reads them.
      assert.isAbove(fast.filter((f) => f.name.includes("\u00b7")).length, 0)
    })
  }

  it("a name offset past the table's end fails as an unterminated string, as before", () => {
    const bytes = Buffer.from(Fs.readFileSync(buildFixture(goVersions[goVersions.length - 1]!, true)))
    const s = parseElf(bytes).section(".gopclntab")!
    const d = bytes.subarray(s.offset, s.offset + s.size)
    const pclnOff = Number(d.readBigUInt64LE(64))
    // Function 3's _func: its name offset made to point at the table's last byte (not a NUL: the end of the file).
    const funcOff = d.readUInt32LE(pclnOff + 3 * 8 + 4)
    const funcnameOff = Number(d.readBigUInt64LE(32))
    const last = d.length - 1 - funcnameOff
    d[d.length - 1] = 0x41
    d.writeUInt32LE(last, pclnOff + funcOff + 4)
    assert.throws(() => functionsOf(bytes), `pclntab name 3: unterminated string at ${last}`)
  })
})
