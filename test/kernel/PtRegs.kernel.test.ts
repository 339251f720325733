/**
 * The uprobe programs read their registers through bpf/include/probescope/regs.h's `struct ps_pt_regs`, a copy of
 * x86-64's `struct pt_regs` written without CO-RE (so that libbpf needs no kernel BTF to load them): its layout is
 * checked here against the running kernel's BTF, field by field, as every layout C and TypeScript share is.
 */
import { assert, describe, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import * as Path from "node:path"
import { kernelStruct } from "./fixtures.ts"

const header = Path.resolve(import.meta.dirname, "../../bpf/include/probescope/regs.h")

/** The fields of `struct ps_pt_regs` in regs.h, in order (each a u64). */
const headerFields = (): ReadonlyArray<string> => {
  const body = /struct ps_pt_regs \{([^}]*)\}/.exec(readFileSync(header, "utf8"))?.[1]
  if (body === undefined) throw new Error(`${header} declares no struct ps_pt_regs`)
  return body.split(";").map((f) => f.trim()).filter((f) => f !== "").map((f) => {
    const m = /^u64 (\w+)$/.exec(f)
    if (m === null) throw new Error(`${header}: ps_pt_regs field "${f}" is not a u64`)
    return m[1]!
  })
}

describe("regs.h", () => {
  it("lays struct ps_pt_regs out as the running kernel's struct pt_regs, a uprobe's context", () => {
    const fields = headerFields()
    const kernel = kernelStruct("pt_regs")
    assert.strictEqual(fields.length * 8, kernel.size, "the structs' sizes")
    // Every field at the kernel's offset for the member of that name (cs and ss sit in anonymous unions since FRED).
    assert.deepStrictEqual(
      Object.fromEntries(fields.map((f) => [f, kernel.offsets[f]])),
      Object.fromEntries(fields.map((f, i) => [f, i * 8]))
    )
  })
})
