/**
 * A file analysed from the parts it reads (`analyzeParts`, what `analyzeFile` does) against the same bytes analysed
 * whole (`analyzeBuffer`): the same result or the same error, on real binaries and on copies damaged where the
 * analysis reads (headers, build info, symtab, pclntab, DWARF) — a parser that read bytes it had not loaded would see
 * zeros and differ. And the parts are fewer bytes than the file.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import { analyzeBuffer, analyzeParts, type GoBinary } from "../../src/target/GoBinary.ts"
import { parseElf, SHT_SYMTAB } from "../../src/target/internal/Elf.ts"
import { openGoElf } from "../../src/target/internal/Sparse.ts"
import { buildFixture, goVersions } from "./helpers.ts"

const latest = goVersions[goVersions.length - 1]!
const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-sparse-"))

/** This process's open descriptors of `path` (a replaced file's read " (deleted)"). */
const openOf = (path: string): number => {
  const real = Fs.realpathSync(path)
  return Fs.readdirSync("/proc/self/fd").filter((fd) => {
    try {
      const target = Fs.readlinkSync(`/proc/self/fd/${fd}`)
      return target === real || target === `${real} (deleted)`
    } catch {
      return false
    }
  }).length
}

/** What an analysis found: summary with every known field and these functions decoded, names, symbols, a field. */
const fingerprint = (b: GoBinary): string => {
  const names = [...b.functionNames()]
  const some = names.filter((_, i) => i % 97 === 0)
  return JSON.stringify({
    summary: { ...b.summary(["main.main", "net/http.serverHandler.ServeHTTP", ...some]), path: undefined },
    names,
    symbols: ["runtime.firstmoduledata", "main.main", ...some].map((n) => Option.getOrUndefined(b.symbol(n))),
    field: Option.getOrUndefined(b.field("runtime.g", "goid")),
    // A type outside the first DWARF pass: read later, from the DWARF kept after the file was let go.
    later: Option.getOrUndefined(b.field("internal/abi.Type", "Str")),
    dwarfError: Option.getOrUndefined(b.dwarfError())?.message
  }, (_, v) => typeof v === "bigint" ? v.toString() : v)
}

let files = 0
/** Both analyses of `bytes` (written to a file for the parts): equal results, or equal failures. */
const same = (bytes: Buffer) =>
  Effect.gen(function*() {
    const path = Path.join(dir, `bin-${files++}`)
    Fs.writeFileSync(path, bytes)
    const whole = yield* Effect.exit(analyzeBuffer(path, bytes))
    const parts = yield* Effect.exit(analyzeParts(path))
    Fs.rmSync(path)
    if (Exit.isSuccess(whole) && Exit.isSuccess(parts)) {
      assert.strictEqual(fingerprint(parts.value), fingerprint(whole.value))
      return "ok"
    }
    assert.isTrue(Exit.isFailure(whole) && Exit.isFailure(parts), "one analysis failed and the other did not")
    const [a, b] = [whole, parts].map((x) => Exit.isFailure(x) ? JSON.stringify(x.cause) : "")
    assert.strictEqual(b, a)
    return "failed"
  })

/** Deterministic bytes to damage: xorshift32. */
const random = (seed: number) => () => {
  seed ^= seed << 13
  seed ^= seed >>> 17
  seed ^= seed << 5
  return (seed >>> 0) / 0x1_0000_0000
}

describe("analysis from the parts of a file", { timeout: 300_000 }, () => {
  for (const [name, path] of [
    ["go with DWARF", () => buildFixture(latest, false)],
    ["go stripped (pclntab)", () => buildFixture(latest, true)],
    [`go ${goVersions[0]} PIE stripped`, () => buildFixture(goVersions[0]!, true, ".", true)]
  ] as const) {
    it.effect(`${name}: the same analysis as of the whole file`, () =>
      Effect.gen(function*() {
        assert.strictEqual(yield* same(Fs.readFileSync(path())), "ok")
      }))
  }

  it.effect("damaged where the analysis reads: the same results and the same errors", () =>
    Effect.gen(function*() {
      const original = Fs.readFileSync(buildFixture(latest, false))
      const elf = parseElf(original)
      const symtab = elf.sections.find((s) => s.type === SHT_SYMTAB)!
      const regions: Array<readonly [number, number]> = [[0, 64], [Number(original.readBigUInt64LE(40)), 64 * 40]]
      for (const n of [".go.buildinfo", ".debug_info", ".debug_abbrev", ".gopclntab", ".shstrtab"]) {
        const s = elf.section(n)
        if (s !== undefined) regions.push([s.offset, Math.min(s.size, 4096)])
      }
      regions.push([symtab.offset, symtab.size], [elf.sections[symtab.link]!.offset, 4096])
      const next = random(12345)
      const outcomes = new Set<string>()
      for (let i = 0; i < 48; i++) {
        const b = Buffer.from(original)
        const [start, length] = regions[i % regions.length]!
        for (let k = 0; k < 1 + (i % 3); k++) b[start + Math.floor(next() * length)]! ^= 1 << Math.floor(next() * 8)
        outcomes.add(yield* same(b))
      }
      // Cut short: inside the DWARF, the symtab, the section headers.
      for (const at of [elf.section(".debug_info")!.offset + 100, symtab.offset + 1000, 600, 10]) {
        outcomes.add(yield* same(original.subarray(0, at)))
      }
      assert.deepStrictEqual([...outcomes].sort(), ["failed", "ok"])
    }))

  it.effect("a C program: the same error, and nothing read past its headers and the little the analysis reads", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* same(Fs.readFileSync("/bin/true")), "failed")
      const e = yield* Effect.flip(analyzeParts("/bin/true"))
      assert.strictEqual(e._tag, "NotGo")
      const file = yield* Effect.promise(() => openGoElf("/bin/true"))
      const read = file.bytesRead()
      assert.strictEqual(openOf("/bin/true"), 1)
      yield* Effect.promise(() => file.close())
      assert.isBelow(read, 16384)
      // Nothing was kept: the file is closed with the analysis, failed or not.
      assert.strictEqual(openOf("/bin/true"), 0)
    }))

  it("reads fewer bytes than the file: no code, no pclntab with a symtab, no DWARF but the structs'", async () => {
    const path = buildFixture(latest, false)
    const file = await openGoElf(path)
    try {
      const read = file.bytesRead()
      const size = Fs.statSync(path).size
      // The code is not read ahead: functions are decoded from the file when they are asked for.
      const skipped = file.elf.section(".text")!.size + file.elf.section(".gopclntab")!.size
      assert.isBelow(read, size - skipped)
    } finally {
      await file.close()
    }
    // Closed, the file's buffer is freed at once, not left to a collection: the analysis holds no view of it.
    assert.strictEqual(file.elf.bytes.length, 0)
  })

  it("code is read from the file the analysis was made of: kept open while the analysis is reachable, then closed", async () => {
    const path = Path.join(dir, "replaced")
    Fs.copyFileSync(buildFixture(latest, false), path)
    const whole = await Effect.runPromise(analyzeBuffer(path, Fs.readFileSync(path)))
    const decoded = async () => {
      const parts = await Effect.runPromise(analyzeParts(path))
      assert.strictEqual(openOf(path), 1)
      // The path now names another file (a new build deployed while the old one runs): the analysis still reads the
      // old one, which it keeps open, not whatever the path names.
      Fs.copyFileSync(buildFixture(goVersions[0]!, false), `${path}.new`)
      Fs.renameSync(`${path}.new`, path)
      const names = ["net/http.serverHandler.ServeHTTP", "main.main", "runtime.newproc1"]
      assert.deepStrictEqual(names.map(parts.function), names.map(whole.function))
      assert.isTrue(Option.isSome(parts.function(names[0]!)))
      // A type outside the first DWARF pass: its DWARF is read from the old file too.
      const later = whole.field("internal/abi.Type", "Str")
      assert.isTrue(Option.isSome(later) && later.value.source === "dwarf")
      assert.deepStrictEqual(parts.field("internal/abi.Type", "Str"), later)
      assert.strictEqual(openOf(path), 1)
    }
    await decoded()
    // Unreachable, the analysis lets the file go: a collection, then its registry's callback closes it.
    V8.setFlagsFromString("--expose-gc")
    const collect = Vm.runInNewContext("gc") as () => void
    for (let i = 0; i < 300 && openOf(path) > 0; i++) {
      collect()
      await new Promise((r) => setTimeout(r, 10))
    }
    assert.strictEqual(openOf(path), 0)
  })

  it.effect("a file that cannot be read fails as one that cannot be read whole does", () =>
    Effect.gen(function*() {
      const missing = Path.join(dir, "missing")
      const e = yield* Effect.flip(analyzeParts(missing))
      assert.strictEqual(e._tag, "FileUnreadable")
      assert.strictEqual(e.message, `${missing}: ENOENT: no such file or directory, open '${missing}'`)
      const d = yield* Effect.flip(analyzeParts(dir))
      assert.strictEqual(d._tag, "FileUnreadable")
      assert.strictEqual(d.message, `${dir}: EISDIR: illegal operation on a directory, read`)
    }))
})
