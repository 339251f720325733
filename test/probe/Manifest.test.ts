import { assert, describe, it } from "@effect/vitest"
import * as Manifest from "../../src/probe/Manifest.ts"
import * as Version from "../../src/probe/internal/version.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"

const manifest = Manifest.make({
  library: { module: "github.com/segmentio/kafka-go", versions: ">=0.4.0 <0.5" },
  goVersions: ">=1.21",
  symbols: [
    { name: "kafka.(*Writer).WriteMessages", entry: "w" },
    { name: "kafka.(*Reader).FetchMessage", entry: "r", return: "r_ret", optional: true }
  ],
  fields: {
    topic: { type: "kafka.Message", field: "Topic" },
    key: { type: "kafka.Message", field: "Key", optional: true }
  }
})

const base = {
  goVersion: "1.24.3",
  modules: { "github.com/segmentio/kafka-go": "v0.4.47" },
  functions: { "kafka.(*Writer).WriteMessages": {} },
  fields: { "kafka.Message.Topic": 24 }
}

describe("Manifest", () => {
  it("applies with resolved offsets, listing missing optional symbols", () => {
    const result = Manifest.check("kafka", manifest, ProbeTest.target(base))
    assert.strictEqual(result._tag, "Applies")
    if (result._tag !== "Applies") return
    assert.deepStrictEqual(result.symbols, ["kafka.(*Writer).WriteMessages"])
    assert.deepStrictEqual(result.missingOptional, ["kafka.(*Reader).FetchMessage"])
    assert.deepStrictEqual(result.offsets, { topic: 24, key: undefined })
  })

  it("says why it does not apply", () => {
    const reason = (over: Partial<ProbeTest.FakeTargetOptions>) => {
      const r = Manifest.check("kafka", manifest, ProbeTest.target({ ...base, ...over }))
      return r._tag === "NotApplicable" ? r.reason : r._tag
    }
    assert.strictEqual(reason({ goVersion: "1.20.14" }), "Go 1.20.14 is outside the supported range >=1.21")
    assert.strictEqual(reason({ modules: {} }), "module github.com/segmentio/kafka-go is not in the binary")
    assert.strictEqual(
      reason({ modules: { "github.com/segmentio/kafka-go": "v0.5.0" } }),
      "github.com/segmentio/kafka-go v0.5.0 is outside the supported range >=0.4.0 <0.5"
    )
    assert.strictEqual(
      reason({ functions: {} }),
      "required symbol kafka.(*Writer).WriteMessages is not in the binary"
    )
    assert.strictEqual(reason({ fields: {} }), "no offset for kafka.Message.Topic (Go 1.24.3, github.com/segmentio/kafka-go v0.4.47)")
  })

  it("a probe without a library is global", () => {
    assert.deepStrictEqual(Manifest.check("exec", {}, ProbeTest.target()), { _tag: "Global", probe: "exec" })
  })

  it("validate finds bad ranges and symbols without programs", () => {
    assert.deepStrictEqual(
      Manifest.validate({
        goVersions: ">=banana",
        library: { module: "std" },
        symbols: [{ name: "f" }]
      }),
      ['goVersions ">=banana" is not a version range', "symbol f has no entry or return program"]
    )
  })
})

describe("version ranges", () => {
  it("compares Go and module versions", () => {
    assert.isTrue(Version.satisfies("1.24.3", ">=1.21 <1.27"))
    assert.isTrue(Version.satisfies("go1.26.0", ">=1.26"))
    assert.isFalse(Version.satisfies("1.25rc1", ">=1.25.0"))
    assert.isTrue(Version.satisfies("1.25rc1", ">=1.24"))
    assert.isTrue(Version.satisfies("v1.62.0", ">=1.40.0 <2 || =0.9"))
    assert.isTrue(Version.satisfies("v0.9.0", ">=1.40.0 <2 || =0.9"))
    assert.isTrue(Version.satisfies("v0.0.0-20240101000000-abcdef123456", "<0.1"))
    assert.isFalse(Version.satisfies("garbage", ">=1"))
    assert.isTrue(Version.satisfies("garbage", "*"))
  })
})
