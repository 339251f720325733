import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import * as Errors from "../../src/target/Errors.ts"
import {
  cellKey,
  type Cells,
  compress,
  describeLines,
  expand,
  representative
} from "../../src/target/internal/OffsetTable.ts"
import { find, lookup, type OffsetsTable, parseVersion, shipped } from "../../src/target/Offsets.ts"

const GRPC = "google.golang.org/grpc"
const T = `${GRPC}/internal/transport.Stream`
const GO3 = ["1.25.9", "1.26.8", "1.27.3"]

const t: OffsetsTable = {
  schema: 2,
  modules: {
    std: {
      builds: { "1.22.12": ["1.22.12"], "1.24.2": ["1.24.2"], "1.24.9": ["1.24.9"] },
      types: {
        "net/http.Request": {
          ctx: [
            { versions: ["1.22.12", "1.22.12"], offset: 232 },
            { versions: ["1.24.2", "1.24.2"], offset: 248 },
            { versions: ["1.24.9", "1.24.9"], offset: 256 }
          ]
        }
      }
    },
    [GRPC]: {
      builds: {
        "v1.60.0": GO3,
        "v1.60.1": GO3,
        "v1.61.1": GO3,
        "v1.70.0": ["1.26.8"],
        "v1.85.0": GO3,
        "v1.86.0": ["1.26.8", "1.27.3"]
      },
      needsGo: { "v1.86.0": "1.26.0" },
      types: {
        [T]: {
          // 40 through 1.61, 48 from 1.70; with Go 1.25 only, 1.85 puts it at 56.
          method: [
            { versions: ["v1.60.0", "v1.61.1"], offset: 40 },
            { versions: ["v1.70.0", "v1.70.0"], offset: 48 },
            { versions: ["v1.85.0", "v1.85.0"], go: ["1.25.9", "1.25.9"], offset: 56 },
            { versions: ["v1.85.0", "v1.85.0"], go: ["1.26.8", "1.27.3"], offset: 48 },
            { versions: ["v1.86.0", "v1.86.0"], offset: 48 }
          ],
          // Added in 1.70.
          id: [{ versions: ["v1.70.0", "v1.86.0"], offset: 8 }]
        },
        "golang.org/x/net/http2.FrameHeader": { StreamID: [{ versions: ["v1.60.0", "v1.85.0"], offset: 8 }] }
      }
    }
  }
}

const bin = (goVersion: string, grpc?: string) => ({
  goVersion,
  modules: new Map([["std", goVersion], ...(grpc === undefined ? [] : [[GRPC, grpc] as const])])
})

const offsetOf = (goVersion: string, grpc: string | undefined, type: string, field: string) => {
  const r = find(t, bin(goVersion, grpc), type, field)
  return Result.isSuccess(r) ? r.success.offset : r.failure
}

const failure = (goVersion: string, grpc: string | undefined, type: string, field: string) => {
  const r = find(t, bin(goVersion, grpc), type, field)
  if (Result.isSuccess(r)) throw new Error(`found ${r.success.offset}`)
  return r.failure
}

describe("offsets table lookup", () => {
  it("a module's exact built versions, each Go", () => {
    assert.strictEqual(offsetOf("1.26.8", "v1.60.1", T, "method"), 40)
    assert.strictEqual(offsetOf("1.25.9", "v1.61.1", T, "method"), 40)
    assert.strictEqual(offsetOf("1.26.8", "v1.70.0", T, "method"), 48)
    assert.strictEqual(offsetOf("1.26.8", "v1.70.0", T, "id"), 8)
  })
  it("an offset that differs by Go version", () => {
    assert.strictEqual(offsetOf("1.25.9", "v1.85.0", T, "method"), 56)
    assert.strictEqual(offsetOf("1.26.8", "v1.85.0", T, "method"), 48)
    assert.strictEqual(offsetOf("1.27.3", "v1.85.0", T, "method"), 48)
  })
  it("other patches of a built line: the closest lower built patch, else the line's lowest", () => {
    assert.strictEqual(representative(["v1.60.0", "v1.60.1", "v1.61.1"], "v1.60.7"), "v1.60.1")
    assert.strictEqual(representative(["v1.60.0", "v1.60.1", "v1.61.1"], "v1.61.0"), "v1.61.1")
    assert.strictEqual(representative(["v1.60.0"], "v1.62.0"), undefined)
    assert.strictEqual(offsetOf("1.26.2", "v1.61.0", T, "method"), 40)
    assert.strictEqual(offsetOf("1.27.0", "v1.85.3", T, "method"), 48)
    // A pseudo-version of a built line counts as that line.
    assert.strictEqual(offsetOf("1.26.8", "v1.70.1-0.20260101000000-abcdef012345", T, "id"), 8)
  })
  it("a dependency's type (x/net under grpc) is looked up with the module that records it", () =>
    assert.strictEqual(offsetOf("1.26.8", "v1.70.0", "golang.org/x/net/http2.FrameHeader", "StreamID"), 8))
  it("std: the Go version is the module version", () => {
    assert.strictEqual(offsetOf("1.24.9", undefined, "net/http.Request", "ctx"), 256)
    assert.strictEqual(offsetOf("1.24.5", undefined, "net/http.Request", "ctx"), 248)
    assert.strictEqual(offsetOf("1.22.1", undefined, "net/http.Request", "ctx"), 232)
  })

  it("a module version in no built line: ModuleVersionNotCovered naming the module, its version and the lines", () => {
    const e = failure("1.26.8", "v1.59.0", T, "method")
    assert.instanceOf(e, Errors.ModuleVersionNotCovered)
    assert.deepStrictEqual({ ...e, message: e.message }, {
      _tag: "ModuleVersionNotCovered",
      module: GRPC,
      version: "v1.59.0",
      covered: "1.60–1.61, 1.70, 1.85–1.86",
      message: "google.golang.org/grpc v1.59.0 is not covered by the offsets table " +
        "(covered: 1.60–1.61, 1.70, 1.85–1.86)"
    })
    assert.strictEqual(failure("1.26.8", "v1.87.0", T, "method")._tag, "ModuleVersionNotCovered")
  })
  it("a Go line the version was not built with: GoVersionNotCovered", () => {
    const e = failure("1.24.3", "v1.60.1", T, "method")
    assert.instanceOf(e, Errors.GoVersionNotCovered)
    assert.strictEqual(e.message,
      "google.golang.org/grpc v1.60.1 with Go 1.24.3 is not covered by the offsets table (covered with Go 1.25–1.27)")
    // A release whose go.mod needs a newer Go than the binary's: said so.
    assert.strictEqual(failure("1.25.9", "v1.86.0", T, "id").message,
      "google.golang.org/grpc v1.86.0 with Go 1.25.9 is not covered by the offsets table (its go.mod needs Go >= " +
        "1.26.0; covered with Go 1.26–1.27)")
    // 1.70 was built with Go 1.26 only.
    assert.strictEqual(failure("1.27.3", "v1.70.0", T, "id").message,
      "google.golang.org/grpc v1.70.0 with Go 1.27.3 is not covered by the offsets table (covered with Go 1.26)")
  })
  it("std outside its built Go lines", () => {
    const e = failure("1.23.4", undefined, "net/http.Request", "ctx")
    assert.instanceOf(e, Errors.ModuleVersionNotCovered)
    assert.strictEqual(e.message, "Go 1.23.4 is not covered by the offsets table (covered: Go 1.22, 1.24)")
  })
  it("a field absent at that version, a field not recorded, a type of no module of the binary: FieldNotInTable", () => {
    const absent = failure("1.26.8", "v1.60.1", T, "id")
    assert.instanceOf(absent, Errors.FieldNotInTable)
    assert.deepStrictEqual({ ...absent, message: absent.message }, {
      _tag: "FieldNotInTable",
      type: T,
      field: "id",
      module: GRPC,
      version: "v1.60.1",
      message: `${T}.id does not exist in google.golang.org/grpc v1.60.1 (offsets table)`
    })
    assert.strictEqual(failure("1.26.8", "v1.60.1", T, "nope").message,
      `the offsets table does not record ${T}.nope`)
    assert.strictEqual(failure("1.26.8", undefined, T, "method").message,
      `the offsets table records ${T} for no module of the binary`)
  })

  it("lookup (number or undefined) keeps its arguments; module versions with or without the v", () => {
    assert.strictEqual(lookup(t, "std", "1.24.9", "net/http.Request", "ctx"), 256)
    assert.strictEqual(lookup(t, "std", "1.23.4", "net/http.Request", "ctx"), undefined)
    assert.strictEqual(lookup(t, GRPC, "v1.85.0", T, "method", "1.25.9"), 56)
    assert.strictEqual(lookup(t, GRPC, "1.85.0", T, "method"), 48)
    assert.strictEqual(lookup(t, "nope", "1.24.9", "net/http.Request", "ctx"), undefined)
    assert.strictEqual(lookup(t, "std", "garbage", "net/http.Request", "ctx"), undefined)
    assert.strictEqual(parseVersion("devel"), undefined)
  })
  it("describes built lines compactly", () => {
    assert.strictEqual(describeLines(["1.22.12", "1.24.13", "1.25.9", "1.26.8", "1.27.3"]), "1.22, 1.24–1.27")
    assert.strictEqual(describeLines(["v9.0.0", "v9.0.5", "v9.2.1", "v9.3.1"]), "9.0, 9.2–9.3")
  })
})

describe("compact runs", () => {
  const builds = { "v1.0.0": GO3, "v1.1.0": GO3, "v1.2.0": ["1.26.8"], "v1.3.0": GO3, "v1.4.0": GO3 }
  const cells = (f: (v: string, g: string) => number | undefined): Cells => {
    const c: Cells = new Map()
    for (const [v, gos] of Object.entries(builds)) {
      for (const g of gos) {
        const o = f(v, g)
        if (o !== undefined) c.set(cellKey(v, g), o)
      }
    }
    return c
  }
  it("equal offsets over versions and Go make one run", () =>
    assert.deepStrictEqual(compress(builds, cells(() => 8)), [{ versions: ["v1.0.0", "v1.4.0"], offset: 8 }]))
  it("a version where the field is absent splits the run; a Go-dependent version gets per-Go entries", () => {
    const c = cells((v, g) => (v === "v1.2.0" ? undefined : v === "v1.3.0" && g === "1.25.9" ? 16 : 8))
    assert.deepStrictEqual(compress(builds, c), [
      { versions: ["v1.0.0", "v1.1.0"], offset: 8 },
      { versions: ["v1.3.0", "v1.3.0"], go: ["1.25.9", "1.25.9"], offset: 16 },
      { versions: ["v1.3.0", "v1.3.0"], go: ["1.26.8", "1.27.3"], offset: 8 },
      { versions: ["v1.4.0", "v1.4.0"], offset: 8 }
    ])
  })
  it("expand gives back exactly the cells compressed (random cells)", () => {
    let seed = 7
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648
    for (let i = 0; i < 200; i++) {
      const c = cells(() => (rnd() < 0.15 ? undefined : [8, 16, 24][Math.floor(rnd() * (i % 3 + 1))]))
      assert.deepStrictEqual(new Map([...expand(builds, compress(builds, c))].sort()), new Map([...c].sort()))
    }
  })
})

describe("the shipped table", () => {
  it("is well formed: every run's bounds are builds, ascending, and no build gets two offsets", () => {
    assert.strictEqual(shipped.schema, 2)
    for (const [module, m] of Object.entries(shipped.modules)) {
      const built = Object.keys(m.builds)
      const gos = new Set(Object.values(m.builds).flat())
      for (const [type, fields] of Object.entries(m.types)) {
        for (const [field, runs] of Object.entries(fields)) {
          const where = `${module} ${type}.${field}`
          assert.isAbove(runs.length, 0, where)
          for (const r of runs) {
            assert.includeMembers(built, [...r.versions], where)
            if (r.go !== undefined) assert.includeMembers([...gos], [...r.go], where)
            assert.isTrue(Number.isInteger(r.offset) && r.offset >= 0 && r.offset < 1 << 16, where)
          }
          for (const [v, gs] of Object.entries(m.builds)) {
            for (const g of gs) {
              const hits = runs.filter((r) =>
                expand({ [v]: [g] }, [r]).size === 1
              )
              assert.isAtMost(hits.length, 1, `${where} at ${v} go${g}`)
            }
          }
        }
      }
    }
  })
  it("keeps the net/http probe fields for several Go lines", () => {
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
