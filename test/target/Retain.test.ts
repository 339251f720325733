import { assert, describe, it } from "@effect/vitest"
import { Option } from "effect"
import * as Fs from "node:fs"
import { analyzeBytes } from "../../src/target/internal/Analyze.ts"
import { Corrupt } from "../../src/target/internal/Bytes.ts"
import { isStructSection, readStructs } from "../../src/target/internal/Dwarf.ts"
import { parseElf, retain, SHF_EXECINSTR } from "../../src/target/internal/Elf.ts"
import { buildFixture, goVersions } from "./helpers.ts"

const version = goVersions[goVersions.length - 1]!
const isCode = (s: { readonly flags: bigint }) => (s.flags & BigInt(SHF_EXECINSTR)) !== 0n

describe(`what analysis keeps of a Go ${version} executable`, { timeout: 600_000 }, () => {
  it("retain: only the chosen sections, at their file offsets", () => {
    const elf = parseElf(Fs.readFileSync(buildFixture(version, false)))
    const text = elf.section(".text")!
    const kept = retain(elf, (s) => isCode(s) || isStructSection(s.name))
    assert.strictEqual(kept.section(".text"), text)
    assert.isUndefined(kept.section(".gopclntab"))
    assert.isUndefined(kept.section(".symtab"))
    assert.deepStrictEqual(kept.read(text.offset + 16, 64), elf.read(text.offset + 16, 64))
    // Reads stop at the end of the section that holds them, and find nothing outside what was kept.
    assert.strictEqual(kept.read(text.offset + text.size - 8, 64)!.length, 8)
    assert.isUndefined(kept.read(elf.section(".gopclntab")!.offset, 16))
    assert.strictEqual(kept.vaddrToOffset(text.addr), text.offset)
  })

  it("retain with a reader: the same sections and reads, each read from the reader, nothing copied", () => {
    const bytes = Fs.readFileSync(buildFixture(version, false))
    const elf = parseElf(bytes)
    const text = elf.section(".text")!
    const asked: Array<readonly [number, number]> = []
    const kept = retain(elf, (s) => isCode(s) || isStructSection(s.name), (offset, length) => {
      asked.push([offset, length])
      return bytes.subarray(offset, offset + length)
    })
    assert.deepStrictEqual(asked, [])
    assert.strictEqual(kept.section(".text"), text)
    assert.isUndefined(kept.section(".gopclntab"))
    assert.deepStrictEqual(kept.read(text.offset + 16, 64), elf.read(text.offset + 16, 64))
    assert.strictEqual(kept.read(text.offset + text.size - 8, 64)!.length, 8)
    assert.isUndefined(kept.read(elf.section(".gopclntab")!.offset, 16))
    assert.deepStrictEqual(asked, [[text.offset + 16, 64], [text.offset + text.size - 8, 8]])
    const wanted = new Set(["net/http.Request"])
    assert.deepStrictEqual(readStructs(kept, wanted).get("net/http.Request"), readStructs(elf, wanted).get("net/http.Request"))
    // A reader that fails: no bytes for code, and the DWARF named as unreadable.
    const failing = retain(elf, (s) => isCode(s) || isStructSection(s.name), () => undefined)
    assert.isUndefined(failing.read(text.offset, 16))
    const error = (() => {
      try {
        failing.sectionData(elf.section(".debug_info")!)
      } catch (e) {
        return e
      }
    })()
    assert.instanceOf(error, Corrupt)
    assert.strictEqual((error as Corrupt).message, "section .debug_info: unreadable after analysis")
  })

  it("retain: the struct DWARF reads the same from the copies as from the file", () => {
    const elf = parseElf(Fs.readFileSync(buildFixture(version, false)))
    const kept = retain(elf, (s) => isStructSection(s.name))
    const fromFile = readStructs(elf, new Set(["net/http.Request"]))
    const fromCopies = readStructs(kept, new Set(["net/http.Request"]))
    assert.deepStrictEqual(fromCopies.get("net/http.Request"), fromFile.get("net/http.Request"))
    assert.isTrue((fromCopies.get("net/http.Request")?.fields.size ?? 0) > 10)
  })

  it("retain: a section that was not kept cannot be read", () => {
    const elf = parseElf(Fs.readFileSync(buildFixture(version, false)))
    const kept = retain(elf, isCode)
    const error = (() => {
      try {
        kept.sectionData(elf.section(".gopclntab")!)
      } catch (e) {
        return e
      }
    })()
    assert.instanceOf(error, Corrupt)
    assert.strictEqual((error as Corrupt).message, "section .gopclntab: not retained after analysis")
  })

  it("a GoBinary decodes functions and lazily read struct fields without the file's bytes", () => {
    const bytes = Fs.readFileSync(buildFixture(version, false))
    const reference = analyzeBytes("fixture", Buffer.from(bytes))
    const expectedFn = reference.function("net/http.serverHandler.ServeHTTP")
    // A type outside the known set takes the lazy all-structs DWARF read.
    const expectedField = reference.field("net/http.persistConn", "conn")
    const binary = analyzeBytes("fixture", bytes)
    // Overwrite the file's bytes: anything still reading them would now see zeros.
    bytes.fill(0)
    assert.isTrue(Option.isSome(expectedFn))
    assert.deepStrictEqual(binary.function("net/http.serverHandler.ServeHTTP"), expectedFn)
    assert.isTrue(Option.isSome(expectedField) && expectedField.value.source === "dwarf")
    assert.deepStrictEqual(binary.field("net/http.persistConn", "conn"), expectedField)
  })
})
