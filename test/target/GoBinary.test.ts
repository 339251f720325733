import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Result } from "effect"
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import { knownFields, knownTypes } from "../../src/target/Fields.ts"
import { analyzeBuffer, type GoBinary } from "../../src/target/GoBinary.ts"
import { parseElf } from "../../src/target/internal/Elf.ts"
import * as Errors from "../../src/target/Errors.ts"
import { describeLines } from "../../src/target/internal/OffsetTable.ts"
import { lookup, type OffsetsTable, shipped } from "../../src/target/Offsets.ts"
import { buildFixture, dwarfOracle, goNm, goObjdump, goVersions, type ObjdumpInstruction } from "./helpers.ts"

const analyze = (path: string): Promise<GoBinary> => Effect.runPromise(analyzeBuffer(path, Fs.readFileSync(path)))

/** RET addresses per GNU objdump (binutils decodes ADX and AVX-512, which Go's objdump does not). */
const gnuRets = (binary: string, start: number, end: number): Array<number> => {
  const out = execFileSync("objdump", ["-d", "--no-show-raw-insn", `--start-address=0x${start.toString(16)}`,
    `--stop-address=0x${end.toString(16)}`, binary], { maxBuffer: 64 << 20 }).toString()
  const rets: Array<number> = []
  for (const line of out.split("\n")) {
    const m = /^\s*([0-9a-f]+):\s+(?:rep |repz |bnd )?ret[qw]?\b/.exec(line)
    if (m !== null) rets.push(parseInt(m[1]!, 16))
  }
  return rets
}

/** Entry as Go's own objdump shows it: the instruction after `CMPQ x, 0x10(R14); JBE` in the first 8. */
const expectedEntry = (ins: ReadonlyArray<ObjdumpInstruction>): number => {
  for (let k = 0; k + 2 < Math.min(ins.length, 9); k++) {
    if (/^CMPQ .*, 0x10\(R14\)$/.test(ins[k]!.text) && /^JBE /.test(ins[k + 1]!.text)) return ins[k + 2]!.address
  }
  return ins[0]!.address
}

for (const version of goVersions) {
  describe(`Go ${version}`, { timeout: 600_000 }, () => {
    const full = () => buildFixture(version, false)
    const stripped = () => buildFixture(version, true)

    it("reads the build info", async () => {
      const b = await analyze(full())
      assert.strictEqual(b.goVersion, version)
      assert.strictEqual(b.rawGoVersion, `go${version}`)
      assert.strictEqual(b.modules.get("std"), version)
      assert.strictEqual(b.mainPath, "example.com/probescope/fixture")
      assert.strictEqual(b.mainModule?.path, "example.com/probescope/fixture")
      assert.strictEqual(b.arch, "x86-64")
      assert.isFalse(b.stripped)
      assert.isTrue(b.hasDwarf)
      assert.strictEqual(b.functionSource, "symtab")
      const s = await analyze(stripped())
      assert.isTrue(s.stripped)
      assert.isFalse(s.hasDwarf)
      assert.strictEqual(s.functionSource, "pclntab")
      assert.strictEqual(s.goVersion, version)
    })

    it("function addresses equal go tool nm (symtab and stripped pclntab)", async () => {
      const nm = goNm(full())
      const b = await analyze(full())
      const s = await analyze(stripped())
      let checked = 0
      for (const [name, addr] of nm) {
        const f = b.function(name)
        assert.isTrue(Option.isSome(f), `symtab lacks ${name}`)
        assert.strictEqual(Option.getOrThrow(f).address, addr, name)
        checked++
      }
      assert.isAbove(checked, 3000)
      // The stripped build links the same text: its pclntab must name every Go function at the same address.
      let pcln = 0
      for (const name of s.functionNames()) {
        if (nm.ambiguous.has(name)) continue
        const addr = nm.get(name) ?? nm.get(`${name}.abi0`)
        assert.isDefined(addr, `pclntab function ${name} unknown to nm`)
        assert.strictEqual(Option.getOrThrow(s.function(name)).address, addr, name)
        pcln++
      }
      assert.isAbove(pcln, 3000)
      for (const name of ["main.handle", "main.leaf", "net/http.serverHandler.ServeHTTP", "net/http.(*conn).serve"]) {
        assert.isTrue(Option.isSome(s.function(name)), name)
      }
    })

    it("RET offsets equal objdump and entry offsets are past the prologue, for every function", async () => {
      const path = full()
      const b = await analyze(path)
      const od = goObjdump(path)
      const bytes = Fs.readFileSync(path)
      let exact = 0
      let viaGnu = 0
      let withPrologue = 0
      let largeFrame = 0
      for (const [name, ins] of od) {
        if (ins.length === 0) continue
        const f = Option.getOrThrow(b.function(name))
        assert.isTrue(f.complete, `${name}: ${f.decodeError}`)
        const delta = Number(f.address) - f.fileOffset
        const ours = f.returnOffsets.map((r) => r + delta)
        // Go's objdump cannot decode ADX/AVX-512 ("?") and then loses sync: ask binutils for those functions.
        const theirs = ins.some((i) => i.text === "?")
          ? (viaGnu++, gnuRets(path, Number(f.address), Number(f.address) + f.size))
          : (exact++, ins.filter((i) => /^RET\b/.test(i.text)).map((i) => i.address))
        assert.deepStrictEqual(ours, theirs, name)
        const entry = expectedEntry(ins)
        assert.strictEqual(f.entryOffset + delta, entry, `${name} entry`)
        if (entry !== Number(f.address)) withPrologue++
        if (entry !== Number(f.address) && ins.some((i, k) => k < 8 && i.text === "CMPQ R12, 0x10(R14)")) largeFrame++
        // The file offset maps to the bytes objdump shows at that address.
        assert.strictEqual(bytes.subarray(f.fileOffset, f.fileOffset + ins[0]!.hex.length / 2).toString("hex"),
          ins[0]!.hex, `${name} bytes`)
      }
      assert.isAbove(exact, 3000)
      assert.isAbove(withPrologue, 2000)
      // The LEAQ/SUBQ + CMPQ R12 variants of large frames are among them.
      assert.isAbove(largeFrame, 20)
      assert.isBelow(viaGnu, exact / 50)
    })

    it("resolves the pclntab's text base (Go 1.26 writes 0 in the file)", async () => {
      const bytes = Fs.readFileSync(stripped())
      const elf = parseElf(bytes)
      const header = elf.section(".gopclntab")!.offset
      const textStart = bytes.readBigUInt64LE(header + 24)
      const [, minor] = version.split(".").map(Number)
      assert.strictEqual(textStart, minor! >= 26 ? 0n : elf.section(".text")!.addr)
      const s = await analyze(stripped())
      assert.strictEqual(Option.getOrThrow(s.function("main.handle")).address, goNm(full()).get("main.handle"))
    })

    it("finds the small- and huge-frame prologues and leaves a leaf at offset 0", async () => {
      const b = await analyze(full())
      const bytes = Fs.readFileSync(full())
      const handle = Option.getOrThrow(b.function("main.handle"))
      // CMPQ SP, 0x10(R14) (4 bytes) + JBE rel8 (2 bytes) or rel32 (6 bytes).
      assert.strictEqual(bytes.subarray(handle.fileOffset, handle.fileOffset + 4).toString("hex"), "493b6610")
      const jbe = bytes.subarray(handle.fileOffset + 4, handle.entryOffset).toString("hex")
      assert.match(jbe, /^(76..|0f86........)$/)
      const big = Option.getOrThrow(b.function("main.bigFrame"))
      // MOVQ SP, R12; SUBQ $n, R12; JB; CMPQ R12, 0x10(R14); JBE.
      assert.strictEqual(bytes.subarray(big.entryOffset - 6, big.entryOffset - 2).toString("hex"), "4d3b6610")
      const leaf = Option.getOrThrow(b.function("main.leaf"))
      assert.strictEqual(leaf.entryOffset, leaf.fileOffset)
      assert.strictEqual(leaf.returnOffsets.length, 1)
      assert.isTrue(Option.isNone(b.function("main.doesNotExist")))
    })

    it("stripped functions have the same code layout as unstripped ones", async () => {
      const b = await analyze(full())
      const s = await analyze(stripped())
      for (const name of ["main.handle", "main.bigFrame", "net/http.serverHandler.ServeHTTP", "runtime.memmove",
        "net/http.(*conn).serve", "net/http.(*Transport).roundTrip"]) {
        const x = Option.getOrThrow(b.function(name))
        const y = Option.getOrThrow(s.function(name))
        assert.strictEqual(y.entryOffset - y.fileOffset, x.entryOffset - x.fileOffset, name)
        const relative = (f: typeof x) => f.returnOffsets.map((r) => r - f.fileOffset)
        assert.deepStrictEqual(relative(y), relative(x), name)
      }
    })

    it("struct offsets equal the DWARF oracle, and the shipped table agrees", async () => {
      const b = await analyze(full())
      const s = await analyze(stripped())
      const oracle = dwarfOracle(full(), [...knownTypes])
      let n = 0
      for (const [type, fields] of Object.entries(knownFields)) {
        for (const field of fields) {
          const want = oracle[type]?.[field]
          const got = b.field(type, field)
          if (want === undefined) {
            assert.isTrue(Option.isNone(got), `${type}.${field} absent in DWARF`)
            continue
          }
          assert.deepStrictEqual(Option.getOrThrow(got), { offset: want, source: "dwarf" }, `${type}.${field}`)
          assert.strictEqual(lookup(shipped, "std", version, type, field), want, `table ${type}.${field}`)
          assert.deepStrictEqual(Option.getOrThrow(s.field(type, field)), { offset: want, source: "table" })
          n++
        }
      }
      assert.isAbove(n, 40)
      // A type outside the known list is read from DWARF on demand.
      const other = dwarfOracle(full(), ["net/http.Server"])["net/http.Server"]!
      assert.deepStrictEqual(b.field("net/http.Server", "Handler"), Option.some({ offset: other["Handler"]!,
        source: "dwarf" }))
      assert.isTrue(Option.isNone(s.field("net/http.Server", "Handler")))
    })

    it("a stripped binary: fieldOffset gives the table's offset, or the typed reason when its Go is not covered",
      async () => {
        const bytes = Fs.readFileSync(stripped())
        const s = await Effect.runPromise(analyzeBuffer("stripped", bytes))
        assert.deepStrictEqual(Result.getOrUndefined(s.fieldOffset("net/http.Request", "Method")),
          { offset: lookup(shipped, "std", version, "net/http.Request", "Method")!, source: "table" })
        // The same bytes against a table without this Go line.
        const std = shipped.modules["std"]!
        const line = version.split(".").slice(0, 2).join(".")
        const table: OffsetsTable = {
          ...shipped,
          modules: { std: { ...std, builds: Object.fromEntries(Object.entries(std.builds).filter(([v]) =>
            !v.startsWith(`${line}.`)
          )) } }
        }
        const t = await Effect.runPromise(analyzeBuffer("stripped", bytes, table))
        const why = t.fieldOffset("net/http.Request", "Method")
        assert.isTrue(Result.isFailure(why))
        const e = Result.isFailure(why) ? why.failure : undefined
        assert.instanceOf(e, Errors.ModuleVersionNotCovered)
        assert.strictEqual(e?.message, `Go ${version} is not covered by the offsets table (covered: Go ${
          describeLines(Object.keys(table.modules["std"]!.builds))})`)
        assert.isTrue(Option.isNone(t.field("net/http.Request", "Method")))
        // A type no module of the binary records.
        const none = s.fieldOffset("google.golang.org/grpc.ClientConn", "authority")
        assert.strictEqual(Result.isFailure(none) ? none.failure.message : "",
          "the offsets table records google.golang.org/grpc.ClientConn for no module of the binary")
      })

    it("summarises as JSON", async () => {
      const b = await analyze(stripped())
      const json = JSON.parse(JSON.stringify(b.summary(["main.handle", "nope"])))
      assert.strictEqual(json.goVersion, version)
      assert.strictEqual(json.functionSource, "pclntab")
      assert.strictEqual(json.fields["net/http.Request"]["Method"].source, "table")
      assert.strictEqual(json.functions["nope"], null)
      assert.match(json.functions["main.handle"].address, /^0x[0-9a-f]+$/)
      assert.strictEqual(json.buildSettings["CGO_ENABLED"], "0")
    })
  })
}

describe("position-independent executables", { timeout: 600_000 }, () => {
  for (const version of [goVersions[0]!, goVersions[goVersions.length - 1]!]) {
    it(`Go ${version} -buildmode=pie, stripped: pclntab in .data.rel.ro.gopclntab`, async () => {
      const nm = goNm(buildFixture(version, false, ".", true))
      const s = await analyze(buildFixture(version, true, ".", true))
      assert.strictEqual(s.functionSource, "pclntab")
      let n = 0
      for (const name of s.functionNames()) {
        if (nm.ambiguous.has(name)) continue
        const addr = nm.get(name) ?? nm.get(`${name}.abi0`)
        assert.isDefined(addr, name)
        assert.strictEqual(Option.getOrThrow(s.function(name)).address, addr, name)
        n++
      }
      assert.isAbove(n, 3000)
      const full = await analyze(buildFixture(version, false, ".", true))
      const a = Option.getOrThrow(full.function("main.handle"))
      const b = Option.getOrThrow(s.function("main.handle"))
      assert.strictEqual(b.fileOffset, a.fileOffset)
      assert.strictEqual(b.entryOffset, a.entryOffset)
      assert.deepStrictEqual(b.returnOffsets, a.returnOffsets)
    })
  }
})
