/**
 * Where a Go program's type data starts (`runtime.types`), found once per analysed executable: a file that replaced
 * another under the same device and inode (a rebuild renamed over it frees the inode for the next file) is another
 * analysis, and must not get the first file's address.
 */
import { assert, describe, it } from "@effect/vitest"
import * as GoSymbols from "../../src/instrumentations/internal/GoSymbols.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"

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
