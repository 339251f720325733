/**
 * The W3C traceparent parse the server probes run in the kernel (`ps_traceparent_parse`, go_context.h: its hex digits
 * read through a table rather than comparisons, which halved the instructions the verifier processes for
 * nethttp_server's entry program). On the running kernel, through bpf/test/traceparent.bpf.c: what it accepts and
 * decodes, and that it rejects each kind of bad text, the characters just outside the digit ranges included.
 */
import { assert, layer } from "@effect/vitest"
import * as fs from "node:fs"
import { Effect, Option } from "effect"
import { Bpf } from "../../src/kernel/Bpf.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { bpfObject, buildAll } from "./fixtures.ts"

buildAll()

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
const SPAN = "00f067aa0ba902b7"
const valid = `00-${TRACE}-${SPAN}-01`

/** Each text, and what the parse must say: the decoded ids and flags, or undefined for a rejection. */
const CASES: ReadonlyArray<readonly [string, { trace: string; span: string; flags: number } | undefined]> = [
  [valid, { trace: TRACE, span: SPAN, flags: 1 }],
  [`00-${TRACE.toUpperCase()}-${SPAN.toUpperCase()}-03`, { trace: TRACE, span: SPAN, flags: 3 }],
  [`00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-ff`, {
    trace: "f".repeat(32),
    span: "f".repeat(16),
    flags: 0xff
  }],
  [valid.replace("4bf9", "4bg9"), undefined], // g: past f
  [valid.replace("4bf9", "4b:9"), undefined], // ':' just after '9'
  [valid.replace("4bf9", "4b/9"), undefined], // '/' just before '0'
  [valid.replace("4bf9", "4b@9"), undefined], // '@' just before 'A'
  [valid.replace("4bf9", "4bG9"), undefined], // 'G' just after 'F'
  [valid.replace("4bf9", "4b`9"), undefined], // '`' just before 'a'
  [valid.replace(/-01$/, "-0\u00e1"), undefined], // a byte above 0x7f in the flags
  [`ff-${TRACE}-${SPAN}-01`, undefined], // version ff
  [`00-${"0".repeat(32)}-${SPAN}-01`, undefined], // all-zero trace id
  [`00-${TRACE}-${"0".repeat(16)}-01`, undefined], // all-zero span id
  [valid.replace(`-${SPAN}`, `_${SPAN}`), undefined] // a bad separator
]

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")
const key = (i: number) => {
  const k = new Uint8Array(4)
  new DataView(k.buffer).setUint32(0, i, true)
  return k
}

layer(BpfLive.layer, { excludeTestServices: true })("the traceparent parse in the kernel", (it) => {
  it.effect("accepts and decodes well-formed texts, rejects each kind of malformed one", () =>
    Effect.gen(function*() {
      const bpf = yield* Bpf
      const obj = yield* bpf.load({ file: bpfObject("traceparent"), constants: { test_tgid: process.pid } })
      for (const [i, [text]] of CASES.entries()) {
        const value = new Uint8Array(56 + 4 + 4 + 32)
        value.set(Buffer.from(text, "latin1").subarray(0, 55), 0)
        yield* obj.update("cases", key(i), value)
      }
      yield* obj.attachTracepoint({ program: "traceparent_parse", category: "raw_syscalls", name: "sys_enter" })
      const read = (i: number) =>
        Effect.map(obj.lookup("cases", key(i)), (v) => Option.getOrThrow(v))
      for (let n = 0; n < 50; n++) {
        fs.statSync("/")
        const last = yield* read(CASES.length - 1)
        if (new DataView(last.buffer, last.byteOffset).getUint32(60, true) === 1) break
        yield* Effect.sleep("20 millis")
      }
      for (const [i, [text, expected]] of CASES.entries()) {
        const v = yield* read(i)
        const view = new DataView(v.buffer, v.byteOffset, v.byteLength)
        assert.strictEqual(view.getUint32(60, true), 1, `case ${i} was parsed`)
        const ret = view.getInt32(56, true)
        if (expected === undefined) {
          assert.strictEqual(ret, -1, `rejects ${JSON.stringify(text)}`)
        } else {
          assert.strictEqual(ret, 0, `accepts ${text}`)
          assert.strictEqual(hex(v.subarray(64, 80)), expected.trace)
          assert.strictEqual(hex(v.subarray(80, 88)), expected.span)
          assert.strictEqual(v[88], expected.flags)
        }
      }
    }).pipe(Effect.scoped))
})
