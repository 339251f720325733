/**
 * Where a Go program's type data starts (`runtime.types`), found once per analysed executable: a file that replaced
 * another under the same device and inode (a rebuild renamed over it frees the inode for the next file) is another
 * analysis, and must not get the first file's address. And what the kernel could not read, read from a process's
 * memory: a Python process holds a Go type, its name, an itab, strings, an `interface{}` and an int laid out as a Go
 * program has them, at addresses it prints.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as GoSymbols from "../../src/instrumentations/internal/GoSymbols.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { holding, name, type, words } from "./HeldMemory.ts"

const withTypes = (pid: number, address: bigint) =>
  ProbeTest.target({
    pid,
    exe: "/srv/app",
    file: "2049:1234",
    symbols: { "runtime.types": { fileOffset: 0x100000, address, kind: "object" } }
  })

describe("GoSymbols.typesAddress", () => {
  it("one address per analysis, not per device:inode", () => {
    const first = withTypes(1, 0x4a0000n)
    // Another file at the same device:inode: a new analysis (its own lookups).
    const replaced = withTypes(2, 0x520000n)
    assert.strictEqual(GoSymbols.typesAddress(first), 0x4a0000n)
    assert.strictEqual(GoSymbols.typesAddress(replaced), 0x520000n)
    // Processes of one analysis share the first lookup's answer.
    const sameAnalysis = { ...first, pid: 3 }
    assert.strictEqual(GoSymbols.typesAddress(sameAnalysis), 0x4a0000n)
  })
})

/** What `holding` lays out, by offset from its base (runtime.types is the base too). */
const AT = { type: 0, name: 64, itab: 128, header: 160, bytes: 192, iface: 224, stringType: 256, stringName: 320,
  int: 352, pointerIface: 368 }

const layout = (base: bigint) => {
  const b = Buffer.alloc(400)
  // *main.Err stored with TFlagExtraStar (2), kind pointer (22) with another flag bit above the kind's five.
  type(2, 22 | 0x20, AT.name).copy(b, AT.type)
  name("*main.Err").copy(b, AT.name)
  words(0n, base + BigInt(AT.type)).copy(b, AT.itab)
  words(base + BigInt(AT.bytes), 5n).copy(b, AT.header)
  Buffer.from("hello").copy(b, AT.bytes)
  words(base + BigInt(AT.stringType), base + BigInt(AT.header)).copy(b, AT.iface)
  type(0, 24, AT.stringName).copy(b, AT.stringType)
  name("string").copy(b, AT.stringName)
  words(-7n).copy(b, AT.int)
  words(base + BigInt(AT.type), base + BigInt(AT.header)).copy(b, AT.pointerIface)
  return b
}

describe("reading what the kernel could not, from the process", () => {
  it.live("types (directly and through an itab), strings, an interface{} holding a string, an int", () =>
    Effect.gen(function*() {
      const { base, pid } = yield* holding(layout)
      const at = (o: number) => base + BigInt(o)
      const err = { name: "*main.Err", tflag: 2, kind: 22 }
      assert.deepStrictEqual(GoSymbols.coldType(pid, at(AT.type), base, "type"), err)
      assert.deepStrictEqual(GoSymbols.coldType(pid, at(AT.itab), base, "itab"), err)
      assert.strictEqual(GoSymbols.goStringAt(pid, at(AT.header), 128), "hello")
      assert.strictEqual(GoSymbols.goStringAt(pid, at(AT.header), 3), "hel")
      assert.strictEqual(GoSymbols.bytesAt(pid, at(AT.bytes), 5), "hello")
      assert.strictEqual(GoSymbols.coldStringValue(pid, at(AT.iface), base, 32), "hello")
      // An interface{} holding a pointer, not a string: no string of it.
      assert.strictEqual(GoSymbols.coldStringValue(pid, at(AT.pointerIface), base, 32), undefined)
      assert.strictEqual(GoSymbols.int64At(pid, at(AT.int)), -7n)
    }).pipe(Effect.scoped))

  it.live("nothing there, no runtime.types, or no such process: nothing, never a guess", () =>
    Effect.gen(function*() {
      const { base, pid } = yield* holding(layout)
      assert.strictEqual(GoSymbols.coldType(pid, 8n, base, "type"), undefined)
      assert.strictEqual(GoSymbols.coldType(pid, base, 0n, "type"), undefined)
      // The itab's first word (0) read as a type: none.
      assert.strictEqual(GoSymbols.coldType(pid, base + BigInt(AT.itab) - 8n, base, "itab"), undefined)
      assert.strictEqual(GoSymbols.goStringAt(pid, 8n, 16), "")
      assert.strictEqual(GoSymbols.bytesAt(pid, 8n, 4), "")
      assert.strictEqual(GoSymbols.int64At(pid, 8n), undefined)
      assert.strictEqual(GoSymbols.coldType(0x7ffffff0, base, base, "type"), undefined)
    }).pipe(Effect.scoped))
})
