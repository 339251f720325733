/**
 * The probes' lookup by executable file (bpf/include/probescope/targets.h) reads task->mm->exe_file->f_inode and on
 * through offsets the addon writes from the kernel's BTF before a load (native/src/kernel_btf.cc), not through CO-RE
 * relocations (each of which made libbpf parse the kernel's whole BTF at every load). Checked on the running kernel
 * for this test's own process: the offsets written are the ones CO-RE computes, the file's identity read through them
 * is the one BPF_CORE_READ reads and the one stat gives, and `ps_target()` finds the value put under that file. An
 * object whose `ps_exe_offsets` is not the addon's layout is refused, not filled wrongly.
 */
import { assert, layer } from "@effect/vitest"
import * as fs from "node:fs"
import { Effect, Exit, Option } from "effect"
import { Bpf, BpfLoadError } from "../../src/kernel/Bpf.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { fileKey } from "../../src/probe/Probe.ts"
import { bpfObject, buildAll } from "./fixtures.ts"

buildAll()

const zero = new Uint8Array(4)
const FIELDS = ["task_mm", "mm_exe_file", "file_inode", "inode_sb", "sb_dev", "inode_ino"] as const

const offsets = (view: DataView, at: number) =>
  Object.fromEntries(FIELDS.map((f, i) => [f, view.getUint32(at + 4 * i, true)]))

layer(BpfLive.layer, { excludeTestServices: true })("the lookup by executable file without CO-RE", (it) => {
  it.effect("reads the offsets CO-RE computes, and finds the value stored under this process's executable", () =>
    Effect.gen(function*() {
      const bpf = yield* Bpf
      const obj = yield* bpf.load({ file: bpfObject("exe_offsets"), constants: { test_tgid: process.pid } })
      const exe = fs.statSync("/proc/self/exe", { bigint: true })
      const key = fileKey(`${exe.dev}:${exe.ino}`)!
      const value = new Uint8Array(8)
      new DataView(value.buffer).setBigUint64(0, 0x5eedn, true)
      yield* obj.update("ps_target_files", key, value)
      yield* obj.attachTracepoint({ program: "exe_offsets", category: "raw_syscalls", name: "sys_enter" })
      let seen = Option.none<Uint8Array>()
      for (let i = 0; i < 50; i++) {
        fs.statSync("/") // a syscall of this process
        seen = yield* obj.lookup("seen", zero)
        if (Option.isSome(seen) && new DataView(seen.value.buffer, seen.value.byteOffset).getBigUint64(72, true) > 0n) break
        yield* Effect.sleep("20 millis")
      }
      assert.isTrue(Option.isSome(seen))
      const bytes = Option.getOrThrow(seen)
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      assert.isAbove(Number(view.getBigUint64(72, true)), 0, "the program ran for this process")
      const core = offsets(view, 0)
      assert.deepStrictEqual(offsets(view, 24), core)
      assert.isAbove(core["task_mm"]!, 0)
      const keyView = new DataView(key.buffer)
      assert.strictEqual(view.getBigUint64(48, true), keyView.getBigUint64(0, true), "s_dev as CO-RE reads it")
      assert.strictEqual(view.getBigUint64(56, true), exe.ino, "i_ino as CO-RE reads it")
      assert.strictEqual(view.getBigUint64(64, true), 0x5eedn, "ps_target() found the file's value")
    }).pipe(Effect.scoped))

  it.effect("refuses an object whose ps_exe_offsets is not the addon's layout", () =>
    Effect.gen(function*() {
      const bpf = yield* Bpf
      const exit = yield* Effect.exit(Effect.scoped(bpf.load({ file: bpfObject("exe_offsets_stale") })))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
      assert.instanceOf(error?._tag === "Fail" ? error.error : undefined, BpfLoadError)
      const e = error?._tag === "Fail" ? (error.error as BpfLoadError) : undefined
      assert.strictEqual(e?.code, "EINVAL")
      assert.include(
        e?.message,
        "exe_offsets_stale: ps_exe_offsets is 12 bytes, the addon writes 24 (an object built with another targets.h)"
      )
    }))
})
