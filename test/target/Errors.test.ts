import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { analyzeBuffer, layer, TargetAnalysis } from "../../src/target/GoBinary.ts"
import { parseElf } from "../../src/target/internal/Elf.ts"
import { buildArm64, buildFixture } from "./helpers.ts"

const version = "1.26.8"

/** Runs the analysis of `bytes` and returns its failure (the test fails if it succeeds or dies). */
const failure = (bytes: Buffer, path = "/fixture") =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(analyzeBuffer(path, bytes))
    assert.isTrue(Exit.isFailure(exit), "expected a failure")
    return yield* Effect.flip(analyzeBuffer(path, bytes))
  })

const copyOf = (path: string) => Buffer.from(Fs.readFileSync(path))

/** File offset of a section's bytes. */
const sectionOffset = (bytes: Buffer, name: string): number => parseElf(bytes).section(name)!.offset

describe("analysis errors", { timeout: 300_000 }, () => {
  it.effect("NotElf for a text file", () =>
    Effect.gen(function*() {
      const e = yield* failure(Buffer.from("#!/bin/sh\necho hi\n"))
      assert.strictEqual(e._tag, "NotElf")
      assert.include(e.message, "no ELF magic")
    }))

  it.effect("TruncatedElf names the structure that lies outside the file", () =>
    Effect.gen(function*() {
      // Go writes the section headers near the start and their string table near the end.
      const e = yield* failure(copyOf(buildFixture(version, true)).subarray(0, 4096))
      assert.strictEqual(e._tag, "TruncatedElf")
      assert.include(e.message, "section header string table: bytes")
      if (e._tag === "TruncatedElf") assert.strictEqual(e.structure, "section header string table")
      const e2 = yield* failure(copyOf(buildFixture(version, true)).subarray(0, 600))
      assert.strictEqual(e2._tag, "TruncatedElf")
      assert.include(e2.message, "section headers: bytes")
    }))

  it.effect("CorruptElf for a bad section header entry size", () =>
    Effect.gen(function*() {
      const b = copyOf(buildFixture(version, true))
      b.writeUInt16LE(40, 58)
      const e = yield* failure(b)
      assert.strictEqual(e._tag, "CorruptElf")
      assert.include(e.message, "entry size 40, expected 64")
    }))

  it.effect("CorruptElf for zeroed program headers: no address would map to the file", () =>
    Effect.gen(function*() {
      const b = copyOf(buildFixture(version, true))
      const phoff = Number(b.readBigUInt64LE(32))
      const phnum = b.readUInt16LE(56)
      b.fill(0, phoff, phoff + phnum * 56)
      const e = yield* failure(b)
      assert.strictEqual(e._tag, "CorruptElf")
      assert.strictEqual(
        e.message,
        `/fixture: program headers: no PT_LOAD segment among ${phnum} entries (zeroed?): addresses cannot be mapped ` +
          "to the file"
      )
      if (e._tag === "CorruptElf") assert.strictEqual(e.structure, "program headers")

      const c = copyOf(buildFixture(version, true))
      c.writeBigUInt64LE(0n, 32)
      c.writeUInt16LE(0, 56)
      const e2 = yield* failure(c)
      assert.strictEqual(e2._tag, "CorruptElf")
      assert.strictEqual(
        e2.message,
        "/fixture: program headers: none (e_phoff or e_phnum is zero): an executable needs loadable segments"
      )
    }))

  it.effect("CorruptElf for zeroed section headers, not a later \"no .gopclntab\"", () =>
    Effect.gen(function*() {
      const b = copyOf(buildFixture(version, true))
      const shoff = Number(b.readBigUInt64LE(40))
      const shnum = b.readUInt16LE(60)
      b.fill(0, shoff, shoff + shnum * 64)
      const e = yield* failure(b)
      assert.strictEqual(e._tag, "CorruptElf")
      assert.strictEqual(
        e.message,
        `/fixture: section headers: all ${shnum} entries are empty (zeroed?): sections cannot be located`
      )
      if (e._tag === "CorruptElf") assert.strictEqual(e.structure, "section headers")

      const c = copyOf(buildFixture(version, true))
      c.writeBigUInt64LE(0n, 40)
      c.writeUInt16LE(0, 60)
      c.writeUInt16LE(0, 62)
      const e2 = yield* failure(c)
      assert.strictEqual(e2._tag, "CorruptElf")
      assert.strictEqual(
        e2.message,
        "/fixture: section headers: none (e_shoff or e_shnum is zero): sections cannot be located"
      )

      // Only the string table's header wiped: its index now names an empty entry.
      const d = copyOf(buildFixture(version, true))
      const shstrndx = d.readUInt16LE(62)
      d.fill(0, shoff + shstrndx * 64, shoff + (shstrndx + 1) * 64)
      const e3 = yield* failure(d)
      assert.strictEqual(e3._tag, "CorruptElf")
      assert.strictEqual(
        e3.message,
        `/fixture: section header string table: section ${shstrndx} has type 0, not SHT_STRTAB`
      )
    }))

  it.effect("UnsupportedArch: arm64 is recognised", () =>
    Effect.gen(function*() {
      const e = yield* failure(copyOf(buildArm64()))
      assert.strictEqual(e._tag, "UnsupportedArch")
      assert.strictEqual(e.message, "arm64 is not supported yet")
    }))

  it.effect("NotGo for a C program", () =>
    Effect.gen(function*() {
      const e = yield* failure(copyOf("/bin/true"), "/bin/true")
      assert.strictEqual(e._tag, "NotGo")
      assert.include(e.message, "/bin/true: no Go build information")
    }))

  it.effect("GoTooOld below the register ABI", () =>
    Effect.gen(function*() {
      const b = copyOf(buildFixture(version, true))
      const at = b.indexOf("go1.26.8", sectionOffset(b, ".go.buildinfo"))
      b.write("go1.16.8", at, "latin1")
      const e = yield* failure(b)
      assert.strictEqual(e._tag, "GoTooOld")
      assert.include(e.message, "built by Go 1.16.8; Go >= 1.17 (register ABI) is required")
    }))

  it.effect("CorruptBuildInfo for a bad version string or length", () =>
    Effect.gen(function*() {
      const b = copyOf(buildFixture(version, true))
      const info = sectionOffset(b, ".go.buildinfo")
      b.write("xx", b.indexOf("go1.26.8", info), "latin1")
      const e = yield* failure(b)
      assert.strictEqual(e._tag, "CorruptBuildInfo")
      assert.include(e.message, "does not start with \"go\"")
      const c = copyOf(buildFixture(version, true))
      c.fill(0xff, info + 32, info + 42)
      const e2 = yield* failure(c)
      assert.strictEqual(e2._tag, "CorruptBuildInfo")
      assert.include(e2.message, "varint")
    }))

  it.effect("StrippedNoPclntab without symtab and pclntab", () =>
    Effect.gen(function*() {
      const b = copyOf(buildFixture(version, true))
      const shstr = parseElf(b).sections[b.readUInt16LE(62)]!
      const at = b.indexOf(".gopclntab", shstr.offset)
      b.write(".gopclntaX", at, "latin1")
      const e = yield* failure(b)
      assert.strictEqual(e._tag, "StrippedNoPclntab")
      assert.include(e.message, "no .symtab and no .gopclntab")

      const c = copyOf(buildFixture(version, true))
      c.writeUInt32LE(0x12345678, sectionOffset(c, ".gopclntab"))
      const e2 = yield* failure(c)
      assert.strictEqual(e2._tag, "StrippedNoPclntab")
      assert.include(e2.message, "unknown magic 0x12345678")
    }))

  it.effect("CorruptDwarf is reported and fields fall back to the table", () =>
    Effect.gen(function*() {
      const b = copyOf(buildFixture(version, false))
      const info = parseElf(b).section(".debug_info")!
      b.fill(0x5a, info.offset + 24, info.offset + 4096)
      const bin = yield* analyzeBuffer("/fixture", b)
      const err = bin.dwarfError()
      assert.isTrue(Option.isSome(err))
      const e = Option.getOrThrow(err)
      assert.strictEqual(e._tag, "CorruptDwarf")
      assert.include(e.message, "zlib")
      assert.deepStrictEqual(bin.field("net/http.Request", "Method"), Option.some({ offset: 0, source: "table" }))
      assert.isString(bin.summary().dwarfError)
    }))

  it.effect("FileUnreadable for a missing file", () =>
    Effect.gen(function*() {
      const svc = yield* TargetAnalysis
      const e = yield* Effect.flip(svc.analyzeFile(Path.join(Os.tmpdir(), "probescope-no-such-file")))
      assert.strictEqual(e._tag, "FileUnreadable")
      assert.include(e.message, "ENOENT")
    }).pipe(Effect.provide(layer)))

  it.effect("ProcessNotFound and ProcessUnreadable", () =>
    Effect.gen(function*() {
      const svc = yield* TargetAnalysis
      const e = yield* Effect.flip(svc.analyzePid(0x3fffffff))
      assert.strictEqual(e._tag, "ProcessNotFound")
      assert.strictEqual(e.message, `process ${0x3fffffff} not found`)
      const bad = yield* Effect.flip(svc.analyzePid(-1))
      assert.strictEqual(bad._tag, "ProcessNotFound")
      assert.strictEqual(bad.message, "invalid pid -1")
      // pid 2 is kthreadd: it exists but has no executable; an unprivileged reader is refused before finding out.
      const k = yield* Effect.flip(svc.analyzePid(2))
      assert.strictEqual(k._tag, "ProcessUnreadable")
      if (process.geteuid?.() === 0) assert.include(k.message, "process 2 has no executable")
      else assert.match(k.message, /^process 2: cannot read \/proc\/2\/exe \(EACCES/)
    }).pipe(Effect.provide(layer)))
})
