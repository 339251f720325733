import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import { decodeRecord, nameKey } from "../../src/discovery/Discovery.ts"
import { exeOf, scan } from "../../src/discovery/ProcScan.ts"
import { fileNames, matcher } from "../../src/discovery/Selector.ts"

const record = (kind: number, pid: number, path: string): Uint8Array => {
  const bytes = new Uint8Array(24 + 256)
  const v = new DataView(bytes.buffer)
  v.setUint32(0, kind, true)
  v.setUint32(4, pid, true)
  v.setBigUint64(8, 123n, true)
  const p = new TextEncoder().encode(path)
  v.setUint32(16, p.length, true)
  bytes.set(p, 24)
  return bytes
}

describe("discovery", () => {
  it("decodes exec and exit records as bpf/discovery.bpf.c lays them out", () => {
    assert.deepStrictEqual(decodeRecord(record(1, 42, "/usr/bin/frontend")), {
      kind: 1,
      pid: 42,
      path: "/usr/bin/frontend"
    })
    assert.deepStrictEqual(decodeRecord(record(2, 7, "")), { kind: 2, pid: 7, path: "" })
    // An exit is its pid: whatever the path bytes hold is not read.
    assert.deepStrictEqual(decodeRecord(record(2, 8, "/left/over")), { kind: 2, pid: 8, path: "" })
    assert.isUndefined(decodeRecord(new Uint8Array(10)))
  })

  it("bounds the path by the record even when the length field lies", () => {
    const r = record(1, 1, "/x")
    new DataView(r.buffer).setUint32(16, 10_000, true)
    assert.strictEqual(decodeRecord(r)?.path.length, 256)
  })

  it("matches by pid, by resolved executable path, and by predicate", () => {
    const m = matcher({ pids: [10], exes: ["/proc/self/exe"], predicate: (exe) => exe.endsWith("/go-app") })
    assert.isTrue(m(10, "/anything"))
    assert.isTrue(m(11, fs.realpathSync("/proc/self/exe")))
    assert.isTrue(m(12, "/srv/go-app"))
    assert.isFalse(m(13, "/bin/true"))
  })

  it("lets the kernel filter by file name only when nothing but the named executables can match", () => {
    const node = fs.realpathSync(process.execPath)
    const base = node.slice(node.lastIndexOf("/") + 1)
    // Symlinks resolved: /proc/self/exe is the node binary, under its own name.
    assert.deepStrictEqual(fileNames({ pids: [], exes: ["/proc/self/exe", "/usr/local/bin/svc"] }), [base, "svc"])
    assert.deepStrictEqual(fileNames({ pids: [3], exes: [] }), [], "pids only: no exec of a new process can match")
    assert.isUndefined(fileNames({ pids: [], exes: ["/x/svc"], predicate: () => true }), "a predicate sees all")
    assert.deepStrictEqual(
      fileNames({ pids: [], exes: [], predicate: () => true, onlyExes: ["/x/a", "/y/a", "/x/b"] }),
      ["a", "b"]
    )
  })

  it("keys a file name as the kernel reads it: its first 63 bytes, NUL-padded to 64", () => {
    assert.deepStrictEqual([...nameKey("svc").subarray(0, 4)], [0x73, 0x76, 0x63, 0])
    assert.strictEqual(nameKey("svc").length, 64)
    const long = nameKey("n".repeat(100))
    assert.strictEqual(Buffer.from(long.subarray(0, 63)).toString(), "n".repeat(63))
    assert.strictEqual(long[63], 0)
  })

  it.effect("scans /proc and finds this process", () =>
    Effect.gen(function*() {
      const procs = yield* scan
      const self = procs.find((p) => p.pid === process.pid)
      assert.strictEqual(self?.exe, fs.realpathSync(process.execPath))
    }))

  it.effect("a missing pid is ProcessNotFound with a clear message", () =>
    Effect.gen(function*() {
      const err = yield* Effect.flip(exeOf(2 ** 22 + 12345))
      assert.strictEqual(err._tag, "ProcessNotFound")
      assert.strictEqual(err.message, `process ${2 ** 22 + 12345} does not exist`)
    }))
})
