import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as NativeBinary from "../../src/target/NativeBinary.ts"
import { buildNative, readelfFunctions, readelfOffsetOf } from "./nativeHelpers.ts"

const dir = buildNative()
const fixture = (name: string) => Path.join(dir, name)
const analyze = (path: string) => NativeBinary.analyzeBuffer(path, Fs.readFileSync(path))
const libssl = "/usr/lib/x86_64-linux-gnu/libssl.so.3"
const libcrypto = "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"
const libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"

/** Our functions against readelf's: every defined function of both tables, same address, size and file offset. */
const assertMatchesReadelf = (b: NativeBinary.NativeBinary) => {
  const offsetOf = readelfOffsetOf(b.path)
  const expected = readelfFunctions(b.path)
  const inDynsym = new Set(expected.filter((s) => s.table === "dynsym").map((s) => `${s.name.split("@")[0]}:${s.value}`))
  const want = expected
    .filter((s) => s.table === "dynsym" || !inDynsym.has(`${s.name.split("@")[0]}:${s.value}`))
    .map((s) => `${s.table} ${s.table === "dynsym" ? s.name : s.name.split("@")[0]} ${s.value} ${s.size} ` +
      `${offsetOf(s.value)} ${s.bind.toLowerCase()}`)
    .sort()
  const got = b.functions
    .map((f) => `${f.table} ${f.table === "dynsym" ? f.qualifiedName : f.name} ${f.address} ${f.size} ${f.fileOffset} ` +
      `${f.binding === "unique" ? "unique" : f.binding}`)
    .sort()
  assert.deepStrictEqual(got, want)
}

const buildId = (file: string) => /Build ID: ([0-9a-f]+)/.exec(execFileSync("readelf", ["-n", file]).toString())?.[1]
const needed = (file: string) =>
  [...execFileSync("readelf", ["-dW", file]).toString().matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)]
    .map((m) => m[1])

describe("native analysis of programs built here", { timeout: 120_000 }, () => {
  it.effect("a C program linked to a shared library: kind, needed, build id, functions as readelf sees them", () =>
    Effect.gen(function*() {
      for (const [name, kind] of [["main", "executable"], ["main-pie", "pie"]] as const) {
        const b = yield* analyze(fixture(name))
        assert.strictEqual(b.kind, kind)
        assert.strictEqual(b.language, "c")
        assert.isFalse(b.stripped)
        assert.isUndefined(b.soname)
        assert.deepStrictEqual(b.needed, needed(fixture(name)))
        assert.include(b.needed, "libdemo.so.1")
        assert.strictEqual(b.buildId, buildId(fixture(name)))
        assert.strictEqual(b.interpreter, "/lib64/ld-linux-x86-64.so.2")
        assertMatchesReadelf(b)
        const helper = Option.getOrThrow(b.function("helper"))
        assert.strictEqual(helper.table, "symtab")
        assert.isDefined(helper.fileOffset)
      }
    }))

  it.effect("the shared library: soname, its version definition, versioned and local functions", () =>
    Effect.gen(function*() {
      const b = yield* analyze(fixture("libdemo.so.1"))
      assert.strictEqual(b.kind, "shared-object")
      assert.strictEqual(b.soname, "libdemo.so.1")
      assert.deepStrictEqual(b.versions, ["DEMO_1.0"])
      assertMatchesReadelf(b)
      const add = Option.getOrThrow(b.function("lib_add"))
      assert.strictEqual(add.qualifiedName, "lib_add@@DEMO_1.0")
      assert.strictEqual(add.table, "dynsym")
      assert.deepStrictEqual(b.function("lib_add@@DEMO_1.0"), Option.some(add))
      // The version script made it local: only .symtab names it.
      assert.strictEqual(Option.getOrThrow(b.function("lib_internal")).binding, "local")
    }))

  it.effect("stripped: only .dynsym functions remain; static stripped: a NoSymbols error", () =>
    Effect.gen(function*() {
      const b = yield* analyze(fixture("main-stripped"))
      assert.isTrue(b.stripped)
      assert.isTrue(Option.isNone(b.function("helper")))
      assertMatchesReadelf(b)
      const s = yield* analyze(fixture("plain-static"))
      assert.strictEqual(s.kind, "executable")
      assert.deepStrictEqual(s.needed, [])
      assertMatchesReadelf(s)
      const path = fixture("plain-static-stripped")
      const e = yield* Effect.flip(analyze(path))
      assert.strictEqual(e._tag, "NoSymbols")
      assert.strictEqual(e.message, `${path}: stripped (no .symtab) and no .dynsym: no function has a name to attach to`)
    }))

  it.effect("C++ and Rust are recognised", () =>
    Effect.gen(function*() {
      const cxx = yield* analyze(fixture("greet"))
      assert.strictEqual(cxx.language, "c++")
      assert.isTrue(cxx.functions.some((f) => f.name.startsWith("_ZN4demo5greet")))
      assertMatchesReadelf(cxx)
      const rust = yield* analyze(fixture("hello"))
      assert.strictEqual(rust.language, "rust")
      assertMatchesReadelf(rust)
    }))

  it.effect("the cache: one analysis per file, shared by concurrent requests and other paths to it", () =>
    Effect.gen(function*() {
      const analysis = yield* NativeBinary.make()
      const [a, b] = yield* Effect.all([analysis.analyzeFile(fixture("main")), analysis.analyzeFile(fixture("main"))],
        { concurrency: 2 })
      assert.strictEqual(a, b)
      const c = yield* analysis.analyzeFile(`/proc/self/root${fixture("main")}`)
      assert.strictEqual(a, c)
      assert.deepStrictEqual(yield* analysis.cacheStats, { hits: 2, misses: 1, entries: 1 })
      const e = yield* Effect.flip(analysis.analyzeFile(fixture("nonexistent")))
      assert.strictEqual(e._tag, "FileUnreadable")
    }))
})

describe("native analysis of the system's libraries", () => {
  it.effect("libssl.so.3: SSL_write, SSL_read and their _ex variants, versioned; the OpenSSL API level", () =>
    Effect.gen(function*() {
      const b = yield* analyze(libssl)
      assert.strictEqual(b.kind, "shared-object")
      assert.strictEqual(b.soname, "libssl.so.3")
      assert.include(b.needed, "libcrypto.so.3")
      assert.isTrue(b.stripped)
      for (const name of ["SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex"]) {
        const f = Option.getOrThrow(b.function(name))
        assert.match(f.qualifiedName, new RegExp(`^${name}@@OPENSSL_3\\.\\d+\\.\\d+$`))
        assert.isAbove(f.size, 0)
      }
      const openssl = b.libraries.find((l) => l.name === "openssl")!
      assert.strictEqual(openssl.source, "symbol-versions")
      assert.match(openssl.version, /^3\.\d+\.\d+$/)
      assertMatchesReadelf(b)
    }))

  it.effect("libcrypto.so.3 embeds the exact OpenSSL release, as readelf -p .rodata shows it", () =>
    Effect.gen(function*() {
      const b = yield* analyze(libcrypto)
      const openssl = b.libraries.find((l) => l.name === "openssl")!
      assert.strictEqual(openssl.source, "version-text")
      const text = execFileSync("readelf", ["-p", ".rodata", libcrypto], { maxBuffer: 64 << 20 }).toString()
      assert.strictEqual(openssl.version, /OpenSSL (\d+\.\d+\.\d+[a-z]?) +\d+ \w+ \d{4}/.exec(text)![1])
    }))

  it.effect("libc.so.6: a shared object (though runnable), glibc's version, hidden versions named with @", () =>
    Effect.gen(function*() {
      const b = yield* analyze(libc)
      assert.strictEqual(b.kind, "shared-object")
      assert.strictEqual(b.soname, "libc.so.6")
      assert.strictEqual(b.language, "c")
      assertMatchesReadelf(b)
      assert.match(Option.getOrThrow(b.function("malloc")).qualifiedName, /^malloc@@GLIBC_2\.2\.5$/)
      const glibc = b.libraries.find((l) => l.name === "glibc")!
      const ldd = /(\d+\.\d+)\s*$/m.exec(execFileSync("ldd", ["--version"]).toString().split("\n")[0]!)![1]
      assert.strictEqual(glibc.version, ldd)
    }))
})

describe("bad input", () => {
  const main = () => Fs.readFileSync(fixture("main"))
  it.effect("not ELF", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(NativeBinary.analyzeBuffer("/x", Buffer.from("#!/bin/sh\necho hi\n")))
      assert.strictEqual(e._tag, "NotElf")
      assert.strictEqual(e.message, "/x: no ELF magic (\\x7fELF) at the start of the file")
    }))
  it.effect("truncated", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(NativeBinary.analyzeBuffer("/x", main().subarray(0, 40)))
      assert.strictEqual(e._tag, "TruncatedElf")
      assert.strictEqual(e.message, "/x: ELF header: bytes 0..64 outside 0..40")
      const bytes = main()
      const cut = yield* Effect.flip(NativeBinary.analyzeBuffer("/x", bytes.subarray(0, bytes.length - 100)))
      assert.strictEqual(cut._tag, "TruncatedElf")
      assert.strictEqual(cut.message, `/x: section headers: bytes ${Number(bytes.readBigUInt64LE(40))}..` +
        `${Number(bytes.readBigUInt64LE(40)) + 64 * bytes.readUInt16LE(60)} outside 0..${bytes.length - 100}`)
    }))
  it.effect("not x86-64", () =>
    Effect.gen(function*() {
      const arm = main()
      arm.writeUInt16LE(183, 18)
      const e = yield* Effect.flip(NativeBinary.analyzeBuffer("/x", arm))
      assert.strictEqual(e._tag, "UnsupportedArch")
      assert.strictEqual(e.message, "arm64 is not supported yet")
      const riscv = main()
      riscv.writeUInt16LE(243, 18)
      const r = yield* Effect.flip(NativeBinary.analyzeBuffer("/x", riscv))
      assert.strictEqual(r.message, "riscv64 is not supported (only x86-64)")
    }))
})
