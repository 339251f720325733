import { assert, describe, it } from "@effect/vitest"
import { lookup, type OffsetsTable, parseVersion, shipped } from "../../src/target/Offsets.ts"

const t: OffsetsTable = {
  schema: 1,
  modules: {
    std: { "net/http.Request": { ctx: { "1.22.5": 232, "1.24.2": 248, "1.24.9": 256 } } },
    "google.golang.org/grpc": { "google.golang.org/grpc.Server": { opts: { "1.60.0": 8 } } }
  }
}

describe("offsets table lookup", () => {
  it("exact version", () => assert.strictEqual(lookup(t, "std", "1.24.9", "net/http.Request", "ctx"), 256))
  it("closest lower version in the same minor line", () => {
    assert.strictEqual(lookup(t, "std", "1.24.5", "net/http.Request", "ctx"), 248)
    assert.strictEqual(lookup(t, "std", "1.24.20", "net/http.Request", "ctx"), 256)
  })
  it("lower patch than any known: only when the minor line agrees", () => {
    assert.strictEqual(lookup(t, "std", "1.22.1", "net/http.Request", "ctx"), 232)
    assert.strictEqual(lookup(t, "std", "1.24.1", "net/http.Request", "ctx"), undefined)
  })
  it("never crosses minor lines", () => {
    assert.strictEqual(lookup(t, "std", "1.23.4", "net/http.Request", "ctx"), undefined)
    assert.strictEqual(lookup(t, "std", "1.25.0", "net/http.Request", "ctx"), undefined)
  })
  it("module versions with a v prefix", () => {
    assert.strictEqual(lookup(t, "google.golang.org/grpc", "v1.60.3", "google.golang.org/grpc.Server", "opts"), 8)
  })
  it("unknown module, type, field or version", () => {
    assert.strictEqual(lookup(t, "nope", "1.24.9", "net/http.Request", "ctx"), undefined)
    assert.strictEqual(lookup(t, "std", "1.24.9", "net/http.Request", "Method"), undefined)
    assert.strictEqual(lookup(t, "std", "garbage", "net/http.Request", "ctx"), undefined)
    assert.strictEqual(parseVersion("devel"), undefined)
  })
  it("the shipped table covers the net/http probe fields for several Go lines", () => {
    for (const v of ["1.22.12", "1.24.13", "1.25.9", "1.26.8", "1.27.3"]) {
      for (const [type, field] of [["net/http.Request", "Method"], ["net/http.Request", "ctx"],
        ["net/url.URL", "Path"], ["runtime.g", "goid"], ["net/http.response", "status"]] as const) {
        assert.isNumber(lookup(shipped, "std", v, type, field), `${v} ${type}.${field}`)
      }
    }
    assert.strictEqual(lookup(shipped, "std", "1.24.13", "runtime.g", "goid"), 160)
    assert.strictEqual(lookup(shipped, "std", "1.25.9", "runtime.g", "goid"), 152)
  })
})
