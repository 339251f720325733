import { assert, describe, it } from "@effect/vitest"
import * as Ids from "../../src/probe/Ids.ts"

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"

describe("Ids", () => {
  it("hex and fromHex are inverse; hex leaves a hex id as it is", () => {
    const bytes = Ids.fromHex(TRACE)
    assert.strictEqual(bytes.length, 16)
    assert.deepStrictEqual([bytes[0], bytes[15]], [0x4b, 0x36])
    assert.strictEqual(Ids.hex(bytes), TRACE)
    assert.strictEqual(Ids.hex(TRACE), TRACE)
    assert.strictEqual(Ids.hex(Ids.fromHex("00FF")), "00ff")
    assert.strictEqual(Ids.hex(new Uint8Array(0)), "")
  })

  it("fromHex refuses what is not hex, with a TypeError naming the input", () => {
    for (const [input, message] of [
      ["abc", `an id in hex has an even number of digits: "abc"`],
      ["zz", `not a hex id: "zz"`],
      ["0g", `not a hex id: "0g"`],
      ["\u0130\u0130", `not a hex id: "\u0130\u0130"`]
    ] as const) {
      assert.throws(() => Ids.fromHex(input), TypeError, message)
    }
  })

  it("isValid: the length in bytes or hex digits, lowercase hex only, all-zero refused only when asked", () => {
    assert.isTrue(Ids.isValid(TRACE, 16, true))
    assert.isTrue(Ids.isValid(Ids.fromHex(TRACE), 16, true))
    assert.isFalse(Ids.isValid(TRACE.toUpperCase(), 16, true))
    assert.isFalse(Ids.isValid(TRACE.slice(2), 16, true))
    assert.isFalse(Ids.isValid(Ids.fromHex(TRACE).subarray(1), 16, true))
    assert.isFalse(Ids.isValid(undefined, 8, false))
    assert.isFalse(Ids.isValid(new Uint8Array(8), 8, true))
    assert.isTrue(Ids.isValid(new Uint8Array(8), 8, false))
    assert.isFalse(Ids.isValid("0000000000000000", 8, true))
    assert.isTrue(Ids.isValid("0000000000000000", 8, false))
  })

  it("isEmpty: absent, an empty string or no bytes", () => {
    assert.deepStrictEqual(
      [undefined, "", new Uint8Array(0), "00", new Uint8Array(1)].map(Ids.isEmpty),
      [true, true, true, false, false]
    )
  })
})
