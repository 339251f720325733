/**
 * Native targets on the real kernel (root): a C program (compiled here) analysed natively with its mapped libc, a
 * shared-library probe on libc's getpid (uprobe and uretprobe, links shared by the library file) and a tracepoint
 * instrument on tp_btf/sys_enter, both filtered in the kernel to the target's pid: a second process of the same
 * program, calling getpid just as often, yields nothing. Nothing stays attached once the scopes close.
 */
import { assert, describe, it } from "@effect/vitest"
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Duration, Effect, Exit, Fiber, Layer, Option, Scope, Stream } from "effect"
import { afterAll, beforeAll } from "vitest"
import { Bpf } from "../../src/kernel/Bpf.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import * as Binary from "../../src/probe/Binary.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedLogs } from "../../src/probe/ProbeTest.ts"
import type { Target } from "../../src/probe/Target.ts"
import * as TracingConfig from "../../src/probe/TracingConfig.ts"
import * as GoBinary from "../../src/target/GoBinary.ts"
import * as NativeBinary from "../../src/target/NativeBinary.ts"
import * as ProcessTarget from "../../src/target/ProcessTarget.ts"
import { bpfObject } from "./fixtures.ts"

const root = path.resolve(import.meta.dirname, "../..")
let dir = ""
const children: Array<ChildProcess> = []

const PROGRAM = `#include <stdio.h>
#include <unistd.h>
int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  printf("ready\\n");
  for (;;) {
    getpid();
    usleep(10000);
  }
}
`

let program = ""
/** The same program in another file: another executable, mapping the same libc. */
let copy = ""

const start = (file = program): Promise<number> =>
  new Promise((resolve, reject) => {
    const child = spawn(file, [], { stdio: ["ignore", "pipe", "ignore"] })
    children.push(child)
    child.on("error", reject)
    child.stdout!.once("data", () => resolve(child.pid!))
  })

beforeAll(() => {
  execFileSync("make", [
    "-s",
    "-C",
    path.join(root, "bpf"),
    "out/native_libc.bpf.o",
    "out/native_tp.bpf.o",
    "out/absent_tp.bpf.o"
  ])
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "probescope-native-"))
  fs.writeFileSync(path.join(dir, "getpid.c"), PROGRAM)
  program = path.join(dir, "getpid")
  execFileSync("gcc", ["-O1", "-o", program, path.join(dir, "getpid.c")])
  copy = path.join(dir, "getpid-copy")
  fs.copyFileSync(program, copy)
  fs.chmodSync(copy, 0o755)
}, 120_000)

afterAll(() => {
  for (const c of children) c.kill("SIGKILL")
  if (dir !== "") fs.rmSync(dir, { recursive: true, force: true })
})

const Event = Binary.struct({ pid: Binary.u32, kind: Binary.u32, value: Binary.u64 }, { struct: "native_event" })
const On = Binary.struct({ on: Binary.u8 }, { struct: "native_target" })

const toLog = (r: { readonly pid: number; readonly kind: number; readonly value: bigint }, emit: Probe.Emit<never>) =>
  emit.log({
    pid: r.pid,
    timeMonoNs: 0n,
    severity: "info",
    body: `kind ${r.kind}`,
    attributes: { value: Number(r.value) }
  })

const Getpid = Probe.instrument({
  name: "test/native_libc",
  object: bpfObject("native_libc"),
  manifest: {
    library: { sharedObject: "libc.so.6", versions: ">=2.17" },
    symbols: [{ name: "getpid", entry: "uprobe_getpid", return: "uretprobe_getpid" }]
  },
  perTarget: { layout: On, value: () => ({ on: 1 }) },
  sampling: "none",
  record: Binary.schema(Event),
  signals: toLog
})

const SysEnter = Probe.instrument({
  name: "test/native_tp",
  object: bpfObject("native_tp"),
  manifest: {
    processes: "any",
    tracepoints: [{ program: "tp_sys_enter", category: "raw_syscalls", name: "sys_enter" }]
  },
  perTarget: { layout: On, value: () => ({ on: 1 }) },
  sampling: "none",
  record: Binary.schema(Event),
  signals: toLog
})

const probes = Layer.mergeAll(Getpid.layer, SysEnter.layer).pipe(
  Layer.provideMerge(Layer.mergeAll(
    BpfLive.layer,
    ProbeTest.layerSink,
    TracingConfig.layer({ root: "always_on", ratio: 1, parentBased: true }),
    GoBinary.layer,
    NativeBinary.layer,
    Layer.succeed(Probe.LinkGrace, Duration.zero)
  ))
)

/** Logs until `n` of them came (or 5 s passed). */
const collect = (n: number) =>
  Effect.gen(function*() {
    const captured = yield* CapturedLogs
    for (let i = 0; i < 100; i++) {
      if ((yield* captured.all).length >= n) break
      yield* Effect.sleep("50 millis")
    }
    return yield* captured.all
  })

describe("native targets on the kernel", () => {
  it.live("libc uprobe/uretprobe and tp_btf instrument see the selected executable only; nothing stays attached", () =>
    Effect.gen(function*() {
      const before = BpfLive.ownBpfFds()
      // `other` runs the same code from another file: it maps the same libc, so it traps, and BPF leaves it out.
      const [target, other] = yield* Effect.promise(() => Promise.all([start(), start(copy)]))
      yield* Effect.gen(function*() {
        const analysed = yield* ProcessTarget.analyzeProcess(target, { libraries: new Set(["libc.so.6"]) })
        assert.strictEqual(analysed.language, "native")
        const libc = analysed.libraries.find((l) => l.name === "libc.so.6")!
        assert.isDefined(libc)
        assert.match(libc.version ?? "", /^2\.\d+$/)
        // Selected by executable: the libc links carry no pid, so every process mapping libc traps and BPF filters:
        // by the target's per-pid entry, and by its executable's entry for the processes of it not seen yet.
        const selected: Target = { ...analysed, selection: "executable" }
        const getpid = yield* Getpid.tag
        const sysEnter = yield* SysEnter.tag
        const loaded = BpfLive.ownBpfFds()
        const runners = yield* Effect.forkChild(
          Effect.all([getpid.runner.run, sysEnter.runner.run], { concurrency: 2, discard: true })
        )
        const attach = yield* Scope.make()
        const a1 = yield* getpid.attacher.attach(selected).pipe(Scope.provide(attach))
        const a2 = yield* sysEnter.attacher.attach(selected).pipe(Scope.provide(attach))
        assert.deepStrictEqual(a1.links.map((l) => [l.program, l.description.split(" ")[0]]), [
          ["uprobe_getpid", "uprobe_multi"],
          ["uretprobe_getpid", "uretprobe_multi"]
        ])
        assert.deepStrictEqual(a2.links.map((l) => l.description), ["tracing raw_syscalls:sys_enter"])
        // A process of the selected executable the agent has not handed over (yet): served from its first call.
        const late = yield* Effect.promise(() => start())
        const logs = yield* collect(60)
        assert.isAtLeast(logs.length, 60)
        assert.deepStrictEqual([...new Set(logs.map((l) => l.pid))].sort(), [target, late].sort())
        const kinds = new Set(logs.map((l) => l.body))
        assert.deepStrictEqual([...kinds].sort(), ["kind 1", "kind 2", "kind 3"])
        // The uretprobe sees getpid's return value: the caller's pid; the tracepoint the syscall number.
        for (const l of logs.filter((l) => l.body === "kind 2")) assert.strictEqual(l.attributes["value"], l.pid)
        for (const l of logs.filter((l) => l.body === "kind 3")) assert.strictEqual(l.attributes["value"], 39)
        assert.notInclude(logs.map((l) => l.pid), other)
        yield* Scope.close(attach, Exit.void)
        // No grace: the shared library links and the tracepoint go with the last target.
        for (let i = 0; i < 50 && BpfLive.ownBpfFds().links > loaded.links; i++) yield* Effect.sleep("20 millis")
        assert.deepStrictEqual(BpfLive.ownBpfFds(), loaded)
        yield* Fiber.interrupt(runners)
      }).pipe(Effect.provide(probes))
      // The probes' scope closed: their objects too.
      assert.deepStrictEqual(BpfLive.ownBpfFds(), before)
    }), 60_000)

  it.live("a tracepoint the kernel lacks: the object loads without it, and the probe does not apply, saying why", () =>
    Effect.gen(function*() {
      const Absent = Probe.instrument({
        name: "test/absent_tp",
        object: bpfObject("absent_tp"),
        manifest: {
          processes: "any",
          tracepoints: [{ program: "tp_absent", category: "probescope", name: "probescope_absent" }]
        },
        perTarget: { layout: Binary.struct({ on: Binary.u8 }, { struct: "absent_target" }), value: () => ({ on: 1 }) },
        sampling: "none",
        record: Binary.schema(Event),
        signals: toLog
      })
      const Present = Probe.instrument({
        name: "test/present_tp",
        object: bpfObject("absent_tp"),
        manifest: {
          processes: "any",
          tracepoints: [{ program: "tp_present", category: "raw_syscalls", name: "sys_enter" }]
        },
        perTarget: { layout: Binary.struct({ on: Binary.u8 }, { struct: "absent_target" }), value: () => ({ on: 1 }) },
        sampling: "none",
        record: Binary.schema(Event),
        signals: toLog
      })
      const pid = yield* Effect.promise(() => start())
      yield* Effect.gen(function*() {
        const target: Target = yield* ProcessTarget.analyzeProcess(pid, { libraries: new Set() })
        const absent = yield* Absent.tag
        const { object } = yield* absent.loader.load
        assert.deepStrictEqual(object.programs, ["tp_present"])
        assert.deepStrictEqual(absent.attacher.applicability(target), {
          _tag: "NotApplicable",
          probe: "test/absent_tp",
          reason: "tracepoint probescope:probescope_absent is not in this kernel (program tp_absent could not be " +
            "loaded)"
        })
        const error = yield* Effect.flip(absent.attacher.attach(target).pipe(Effect.scoped))
        assert.strictEqual(error.reason, "NotApplicable")
        // The binding itself says why, were the program attached anyway.
        const direct = yield* Effect.flip(
          object.attachTracepoint({
            program: "tp_absent",
            category: "probescope",
            name: "probescope_absent"
          }).pipe(Effect.scoped)
        )
        assert.strictEqual(direct._tag, "BpfAttachError")
        assert.include(direct.message, "tp_absent was not loaded: this kernel has no tracepoint probescope_absent")
        // The same object's other tracepoint is there and attaches.
        const present = yield* Present.tag
        const attached = yield* present.attacher.attach(target).pipe(Effect.scoped)
        assert.deepStrictEqual(attached.links.map((l) => l.program), ["tp_present"])
      }).pipe(Effect.provide(Layer.mergeAll(Absent.layer, Present.layer).pipe(Layer.provideMerge(Layer.mergeAll(
        BpfLive.layer,
        ProbeTest.layerSink,
        TracingConfig.layer({ root: "always_on", ratio: 1, parentBased: true }),
        GoBinary.layer,
        NativeBinary.layer,
        Layer.succeed(Probe.LinkGrace, Duration.zero)
      )))))
    }), 60_000)

  it.live("a uretprobe without uprobe_multi (one perf-event link per offset) fires on return too", () =>
    Effect.gen(function*() {
      const pid = yield* Effect.promise(() => start())
      const target = yield* ProcessTarget.analyzeProcess(pid, { libraries: new Set(["libc.so.6"]) }).pipe(
        Effect.provide(Layer.mergeAll(GoBinary.layer, NativeBinary.layer))
      )
      const libc = target.libraries[0]!
      const offset = Option.getOrThrow(libc.symbol("getpid")).fileOffset!
      yield* Effect.gen(function*() {
        const bpf = yield* Bpf
        const object = yield* bpf.load({ file: bpfObject("native_libc"), name: "native_libc_perf" })
        yield* object.update("ps_targets", Binary.pidKey(pid), new Uint8Array([1]))
        const rb = yield* object.ringBuffer("events")
        const link = yield* object.attachUprobe({
          program: "uretprobe_getpid",
          binary: libc.path,
          offsets: [offset],
          pid,
          retprobe: true
        })
        assert.match(link.description, / pid \d+ \(return\)$/)
        assert.strictEqual(link.description.split(" ")[0], "uretprobe")
        const records = yield* rb.records.pipe(Stream.take(3), Stream.runCollect, Effect.timeout("5 seconds"))
        for (const r of records) {
          const e = Event.decode(r)
          // The return value in RAX: the pid getpid returned. An entry probe would see no return value (0 here).
          assert.deepStrictEqual([e.pid, e.kind, e.value], [pid, 2, BigInt(pid)])
        }
      }).pipe(Effect.scoped, Effect.provide(BpfLive.layer))
    }), 60_000)
})
