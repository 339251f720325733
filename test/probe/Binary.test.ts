import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as path from "node:path"
import { Effect, Schema } from "effect"
import * as Binary from "../../src/probe/Binary.ts"

describe("Binary", () => {
  it("lays fields out at C alignment", () => {
    const L = Binary.struct({ a: Binary.u8, b: Binary.u64, c: Binary.u16, d: Binary.u32, e: Binary.hex(3) })
    assert.deepStrictEqual(L.offsets, { a: 0, b: 8, c: 16, d: 20, e: 24 })
    assert.strictEqual(L.size, 32)
    const P = Binary.struct({ a: Binary.u8, b: Binary.u64 }, { packed: true })
    assert.deepStrictEqual(P.offsets, { a: 0, b: 1 })
    assert.strictEqual(P.size, 9)
  })

  it("round-trips every field kind, with a length field and padding", () => {
    const L = Binary.struct({
      n: Binary.u64,
      m: Binary.u64n,
      i: Binary.i64,
      s32: Binary.i32,
      flag: Binary.bool,
      _pad: Binary.pad(3),
      id: Binary.hex(8),
      raw: Binary.bytes(2),
      len: Binary.u32,
      name: Binary.string(8, "len"),
      cstr: Binary.string(6)
    })
    const value = {
      n: 2n ** 63n + 5n,
      m: 1234567,
      i: -7n,
      s32: -3,
      flag: true,
      id: "00f1e2d3c4b5a697",
      raw: new Uint8Array([9, 8]),
      len: 0,
      name: "GET",
      cstr: "héllo"
    }
    const bytes = L.encode(value)
    assert.strictEqual(bytes.length, L.size)
    const decoded = L.decode(bytes)
    assert.deepStrictEqual(decoded, { ...value, len: 3, cstr: "héllo" })
    assert.isFalse("_pad" in decoded)
  })

  it("decodeAt reads a record in place in a larger buffer; the fallback without generated code agrees", () => {
    // Run in a child so that the one without code generation can be compared with this process's.
    const script = `
      import * as Binary from ${JSON.stringify(path.resolve(import.meta.dirname, "../../src/probe/Binary.ts"))}
      const L = Binary.struct({ len: Binary.u16, id: Binary.hex(8), name: Binary.string(16, "len"), n: Binary.u64,
        raw: Binary.bytes(3), "odd key": Binary.u8, c: Binary.string(4) })
      const one = L.encode({ len: 0, id: "0102030405060708", name: "caf\u00e9", n: 7n, raw: new Uint8Array([9, 8, 7]),
        "odd key": 5, c: "ab" })
      const batch = Buffer.alloc(L.size * 3)
      batch.set(one, L.size)
      const r = L.decodeAt(new DataView(batch.buffer, batch.byteOffset, batch.length), batch, L.size, L.size)
      batch.fill(0)
      console.log(JSON.stringify({ ...r, n: String(r.n), raw: [...r.raw], keys: Object.keys(r) }))
    `
    const run = (flags: Array<string>) =>
      execFileSync(process.execPath, [...flags, "--input-type=module", "-e", script])
        .toString().trim()
    const expected = JSON.stringify({
      len: 5,
      id: "0102030405060708",
      name: "café",
      n: "7",
      raw: [9, 8, 7],
      "odd key": 5,
      c: "ab",
      keys: ["len", "id", "name", "n", "raw", "odd key", "c"]
    })
    assert.strictEqual(run([]), expected)
    assert.strictEqual(run(["--disallow-code-generation-from-strings"]), expected)
  })

  it("an interned string field decodes every value right: repeats, near misses, more values than its table", () => {
    const L = Binary.struct({
      len: Binary.u8,
      host: Binary.string(24, "len", { intern: true }),
      cstr: Binary.string(12, undefined, { intern: true })
    })
    // Far more distinct values than the table's 256 slots (so slots are shared and replaced), values of one length
    // differing in one byte, non-ASCII text, and the empty string; each decoded twice, the second time from the table.
    const values = [
      ...Array.from({ length: 600 }, (_, i) => [`10.0.${i >> 8}.${i & 255}:80`, `c${i}`] as const),
      ["127.0.0.1:8080", "GET"],
      ["127.0.0.1:8081", "GEt"],
      ["hôte.example:443", "größe"],
      ["", ""]
    ]
    for (const round of [0, 1]) {
      for (const [host, cstr] of values) {
        const decoded = L.decode(L.encode({ len: 0, host, cstr }))
        assert.deepStrictEqual([decoded.host, decoded.cstr], [host, cstr], `round ${round}`)
      }
    }
  })

  it("clamps a string's length field to its capacity", () => {
    const L = Binary.struct({ len: Binary.u16, s: Binary.string(4, "len") })
    const bytes = L.encode({ len: 0, s: "abcd" })
    new DataView(bytes.buffer).setUint16(0, 500, true)
    assert.strictEqual(L.decode(bytes).s, "abcd")
  })

  it("rejects a length field that is not in the struct", () => {
    assert.throws(() => Binary.struct({ s: Binary.string(4, "nope") }), /length field "nope" of "s"/)
  })

  it.effect("as a Schema, a short record fails with a SchemaError", () =>
    Effect.gen(function*() {
      const S = Binary.schema(Binary.struct({ a: Binary.u32, b: Binary.u32 }))
      const ok = yield* Schema.decodeUnknownEffect(S)(new Uint8Array([1, 0, 0, 0, 2, 0, 0, 0]))
      assert.deepStrictEqual(ok, { a: 1, b: 2 })
      const error = yield* Effect.flip(Schema.decodeUnknownEffect(S)(new Uint8Array(5)))
      assert.strictEqual(error._tag, "SchemaError")
      assert.match(error.message, /record is 5 bytes, expected at least 8/)
      const notBytes = yield* Effect.flip(Schema.decodeUnknownEffect(S)("nope"))
      assert.match(notBytes.message, /Expected Uint8Array/)
    }))

  it("pidKey is a little-endian u32", () => {
    assert.deepStrictEqual(Array.from(Binary.pidKey(0x01020304)), [4, 3, 2, 1])
  })
})
