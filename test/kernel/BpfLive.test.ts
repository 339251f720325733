import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Bpf } from "../../src/kernel/Bpf.ts"
import { encodeConstant } from "../../src/kernel/internal/constants.ts"

describe("BpfLive without the native addon", () => {
  it.effect("load fails with a typed error that says how to build the addon", () =>
    Effect.gen(function*() {
      // The addon is looked up lazily, so pointing the loader elsewhere before the layer builds simulates a clone
      // where `npm run build:native` has not run.
      process.env["PROBESCOPE_NATIVE_DIR"] = "/nonexistent/probescope-native"
      const BpfLive = yield* Effect.promise(() => import("../../src/kernel/BpfLive.ts"))
      const error = yield* Effect.gen(function*() {
        const bpf = yield* Bpf
        assert.strictEqual(bpf.libbpfVersion, "unavailable")
        return yield* bpf.load({ file: "doctor.bpf.o" }).pipe(Effect.flip)
      }).pipe(Effect.scoped, Effect.provide(BpfLive.layer))
      delete process.env["PROBESCOPE_NATIVE_DIR"]
      assert.strictEqual(error._tag, "BpfOpenError")
      assert.strictEqual(error.code, "ENOADDON")
      assert.match(error.message, /^the probescope native addon could not be loaded \(.*\); build it with `npm rebuild probescope \(installed\) or npm run build:native \(in a checkout\)`$/)
    }))
})

describe("encodeConstant", () => {
  it("encodes integers little-endian to the variable's size", () => {
    assert.deepStrictEqual(encodeConstant(0x0102, 4), Buffer.from([2, 1, 0, 0]))
    assert.deepStrictEqual(encodeConstant(0xc0ffeen, 8), Buffer.from([0xee, 0xff, 0xc0, 0, 0, 0, 0, 0]))
    assert.deepStrictEqual(encodeConstant(-1, 2), Buffer.from([0xff, 0xff]))
    assert.deepStrictEqual(encodeConstant(true, 1), Buffer.from([1]))
  })

  it("rejects values that do not fit", () => {
    assert.strictEqual(encodeConstant(256, 1), "is 1 bytes, 256 does not fit")
    assert.strictEqual(encodeConstant(1.5, 4), "needs an integer, got 1.5")
    assert.strictEqual(encodeConstant(new Uint8Array(3), 4), "is 4 bytes, got 3 bytes")
  })
})
