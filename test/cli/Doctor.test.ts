import { assert, describe, it } from "@effect/vitest"
import { formatTable, kernelVersion, privileges } from "../../src/cli/Doctor.ts"

describe("doctor checks", () => {
  it("accepts kernels from 5.8 and rejects older ones with the reason", () => {
    assert.isTrue(kernelVersion("6.18.44-fc").ok)
    assert.isTrue(kernelVersion("5.8.0").ok)
    const old = kernelVersion("5.4.0-150-generic")
    assert.isFalse(old.ok)
    assert.strictEqual(old.detail, "5.4.0-150-generic is older than 5.8 (BPF ring buffer)")
    assert.isFalse(kernelVersion("weird").ok)
  })

  it("reads capabilities from CapEff", () => {
    const root = privileges("Name:\tnode\nCapEff:\t000001ffffffffff\n", 0)
    assert.deepStrictEqual(root, { name: "privileges", ok: true, detail: "root" })
    // CAP_BPF (39) and CAP_PERFMON (38) only
    const bpfOnly = privileges(`CapEff:\t${((1n << 39n) | (1n << 38n)).toString(16).padStart(16, "0")}\n`, 1000)
    assert.deepStrictEqual(bpfOnly, { name: "privileges", ok: true, detail: "CAP_BPF + CAP_PERFMON" })
    const none = privileges("CapEff:\t0000000000000000\n", 1000)
    assert.isFalse(none.ok)
    assert.match(none.detail, /^missing CAP_BPF and CAP_PERFMON: run as root/)
    const perfmonOnly = privileges(`CapEff:\t${(1n << 38n).toString(16)}\n`, 1000)
    assert.match(perfmonOnly.detail, /^missing CAP_BPF:/)
  })

  it("formats a table whose last line says whether everything passed", () => {
    const text = formatTable({
      ok: false,
      checks: [{ name: "kernel", ok: true, detail: "6.18" }, { name: "btf", ok: false, detail: "absent" }]
    })
    assert.strictEqual(text, "ok    kernel  6.18\nFAIL  btf     absent\n\n1 check(s) failed")
  })
})
