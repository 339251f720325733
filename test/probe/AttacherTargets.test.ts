/** The Attacher on the fake kernel: shared-library uprobes and tracepoint instruments. */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Layer, Scope } from "effect"
import { TestClock } from "effect/testing"
import { attachError, FakeKernel, type KernelEvent } from "../../src/kernel/BpfTest.ts"
import * as Binary from "../../src/probe/Binary.ts"
import { withoutPrograms } from "../../src/probe/internal/attacher.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"

const Event = Binary.struct({ pid: Binary.u32, kind: Binary.u32 })

const Ssl = Probe.instrument({
  name: "test/ssl",
  object: Probe.objectFile("test_ssl"),
  manifest: {
    library: { sharedObject: "libssl.so.3", versions: ">=3.0.0 <4" },
    symbols: [
      { name: "SSL_write", entry: "uprobe_SSL_write", return: "uretprobe_SSL_write" },
      { name: "SSL_read", entry: "uprobe_SSL_read", optional: true }
    ]
  },
  perTarget: { layout: Binary.struct({ on: Binary.u8 }), value: () => ({ on: 1 }) },
  record: Binary.schema(Event),
  instruments: {},
  signals: () => {}
})

const Sched = Probe.instrument({
  name: "test/sched",
  object: Probe.objectFile("test_sched"),
  manifest: {
    processes: "any",
    tracepoints: [
      { program: "tp_btf_switch", category: "sched", name: "sched_switch" },
      { program: "raw_tp_exit", category: "sched", name: "sched_process_exit" }
    ]
  },
  perTarget: { layout: Binary.struct({ on: Binary.u8 }), value: () => ({ on: 1 }) },
  record: Binary.schema(Event),
  instruments: {},
  signals: () => {}
})

const libssl = (file = "2049:77") => ({
  name: "libssl.so.3",
  version: "3.0.0",
  file,
  symbols: { SSL_write: 0x3a000, SSL_read: 0x39000 }
})

const withProbes = <A, E, R>(self: Effect.Effect<A, E, R>, probes: Layer.Layer<any, any, any>) =>
  self.pipe(Effect.provide(probes.pipe(Layer.provideMerge(ProbeTest.layer))), Effect.scoped) as Effect.Effect<A, E>

const attachLines = (events: ReadonlyArray<KernelEvent>) =>
  events.flatMap((e) =>
    e._tag === "Attach" ?
      [`attach ${e.program} ${e.kind === "tracepoint" ? e.tracepoint : `${e.binary}@${e.offsets}`}` +
        `${e.pid === undefined ? "" : ` pid=${e.pid}`}${e.retprobe === true ? " return" : ""}`] :
      e._tag === "Detach" ? [`detach ${e.program}`] :
      e._tag === "MapUpdate" || e._tag === "MapDelete" ? [`${e._tag} ${e.map} ${e.key}`] :
      []
  )

describe("Attacher: shared libraries", () => {
  it.effect("a process selection: a uprobe and a uretprobe on the library at the symbol, carrying the pid", () =>
    withProbes(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        const ssl = yield* Ssl.tag
        yield* kernel.clearEvents
        const scope = yield* Scope.make()
        const target = ProbeTest.target({ pid: 7, language: "native", exe: "/usr/bin/curl", libraries: [libssl()] })
        const attachment = yield* ssl.attacher.attach(target).pipe(Scope.provide(scope))
        assert.deepStrictEqual(attachment.symbols, ["SSL_write", "SSL_read"])
        yield* Scope.close(scope, Exit.void)
        const lib = "/usr/lib/x86_64-linux-gnu/libssl.so.3"
        assert.deepStrictEqual(attachLines(yield* kernel.events), [
          "MapUpdate ps_targets 07000000",
          `attach uprobe_SSL_write ${lib}@${0x3a000} pid=7`,
          `attach uretprobe_SSL_write ${lib}@${0x3a000} pid=7 return`,
          `attach uprobe_SSL_read ${lib}@${0x39000} pid=7`,
          "detach uprobe_SSL_read",
          "detach uretprobe_SSL_write",
          "detach uprobe_SSL_write",
          "MapDelete ps_targets 07000000"
        ])
        assert.deepStrictEqual(yield* kernel.liveLinks, [])
      }),
      Ssl.layer
    ))

  it.effect("an executable selection: one set of links per library file, shared by every process mapping it", () =>
    withProbes(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        const ssl = yield* Ssl.tag
        yield* kernel.clearEvents
        const target = (pid: number, exe: string, language: "go" | "native") =>
          ProbeTest.target({
            pid,
            exe,
            file: `8:${pid}`,
            language,
            selection: "executable",
            libraries: [libssl()]
          })
        const s1 = yield* Scope.make()
        const s2 = yield* Scope.make()
        yield* ssl.attacher.attach(target(1, "/usr/bin/curl", "native")).pipe(Scope.provide(s1))
        yield* ssl.attacher.attach(target(2, "/srv/gateway", "go")).pipe(Scope.provide(s2))
        const links = yield* kernel.liveLinks
        assert.deepStrictEqual(links.map((l) => [l.program, l.pid, l.binary, l.retprobe]), [
          ["uprobe_SSL_write", undefined, "/usr/lib/x86_64-linux-gnu/libssl.so.3", undefined],
          ["uretprobe_SSL_write", undefined, "/usr/lib/x86_64-linux-gnu/libssl.so.3", true],
          ["uprobe_SSL_read", undefined, "/usr/lib/x86_64-linux-gnu/libssl.so.3", undefined]
        ])
        // Per-pid entries only: the file map is keyed by executables, which say nothing of who maps libssl.
        const updates = (yield* kernel.events).filter((e) => e._tag === "MapUpdate").map((e) =>
          e._tag === "MapUpdate" ? `${e.map} ${e.key}` : ""
        )
        assert.deepStrictEqual(updates, ["ps_targets 01000000", "ps_targets 02000000"])
        yield* Scope.close(s1, Exit.void)
        yield* Scope.close(s2, Exit.void)
        // The grace keeps them for a restart, then they go.
        yield* TestClock.adjust("9 seconds")
        assert.strictEqual((yield* kernel.liveLinks).length, 3)
        yield* TestClock.adjust("1 second")
        assert.deepStrictEqual(yield* kernel.liveLinks, [])
        assert.strictEqual((yield* kernel.map("test/ssl", "ps_targets")).size, 0)
      }),
      Ssl.layer
    ))

  it.effect("an executable selection also writes the value under the executable's identity while it has targets", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const maps = ["ps_targets", "ps_target_files", "events", "ps_stats"]
      const programs = ["uprobe_SSL_write", "uretprobe_SSL_write", "uprobe_SSL_read"]
      yield* kernel.define("test/ssl", { programs, maps })
      yield* kernel.define("test/sched", { programs: ["tp_btf_switch", "raw_tp_exit"], maps })
      yield* Effect.gen(function*() {
        const ssl = yield* Ssl.tag
        const sched = yield* Sched.tag
        // Two processes of /usr/bin/curl (2049:4242): one entry for the executable file.
        const curl = (pid: number) =>
          ProbeTest.target({
            pid,
            language: "native",
            exe: "/usr/bin/curl",
            file: "2049:4242",
            selection: "executable",
            libraries: [libssl()]
          })
        const scopes = [yield* Scope.make(), yield* Scope.make()]
        for (const [i, pid] of [1, 2].entries()) {
          yield* ssl.attacher.attach(curl(pid)).pipe(Scope.provide(scopes[i]!))
          yield* sched.attacher.attach(curl(pid)).pipe(Scope.provide(scopes[i]!))
        }
        // struct ps_file_key of 2049:4242: s_dev (8 << 20 | 1) and the inode, little-endian.
        const key = "0100800000000000" + "9210000000000000"
        assert.deepStrictEqual([...(yield* kernel.map("test/ssl", "ps_target_files")).keys()], [key])
        assert.deepStrictEqual([...(yield* kernel.map("test/sched", "ps_target_files")).keys()], [key])
        yield* Scope.close(scopes[0]!, Exit.void)
        assert.strictEqual((yield* kernel.map("test/ssl", "ps_target_files")).size, 1)
        yield* Scope.close(scopes[1]!, Exit.void)
        yield* TestClock.adjust("10 seconds")
        assert.strictEqual((yield* kernel.map("test/ssl", "ps_target_files")).size, 0)
        assert.strictEqual((yield* kernel.map("test/sched", "ps_target_files")).size, 0)
        // A process selection writes none.
        yield* ssl.attacher.attach(ProbeTest.target({ pid: 3, file: "2049:4242", libraries: [libssl()] }))
          .pipe(Scope.provide(yield* Scope.make()))
        assert.strictEqual((yield* kernel.map("test/ssl", "ps_target_files")).size, 0)
      }).pipe(Effect.provide(Layer.mergeAll(Ssl.layer, Sched.layer)))
    }).pipe(Effect.provide(ProbeTest.layer), Effect.scoped))

  it.effect("another copy of the library (another file) gets links of its own", () =>
    withProbes(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        const ssl = yield* Ssl.tag
        const target = (pid: number, file: string) =>
          ProbeTest.target({ pid, language: "native", selection: "executable", libraries: [libssl(file)] })
        yield* ssl.attacher.attach(target(1, "2049:1")).pipe(Scope.provide(yield* Scope.make()))
        yield* ssl.attacher.attach(target(2, "2049:2")).pipe(Scope.provide(yield* Scope.make()))
        assert.strictEqual((yield* kernel.liveLinks).length, 6)
      }),
      Ssl.layer
    ))

  it.effect("a process without the library: a NotApplicable attach error with the reason, nothing attached", () =>
    withProbes(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        const ssl = yield* Ssl.tag
        const error = yield* Effect.flip(
          ssl.attacher.attach(ProbeTest.target({ pid: 9, language: "native" })).pipe(Effect.scoped)
        )
        assert.strictEqual(error._tag, "ProbeAttachError")
        assert.strictEqual(error.reason, "NotApplicable")
        assert.strictEqual(
          error.message,
          "probe test/ssl does not apply to pid 9: shared library libssl.so.3 is not mapped by the process"
        )
        assert.deepStrictEqual(yield* kernel.liveLinks, [])
      }),
      Ssl.layer
    ))

  it.effect("a failed library attach leaves nothing; the next process tries again", () =>
    withProbes(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        const ssl = yield* Ssl.tag
        const target = (pid: number) =>
          ProbeTest.target({ pid, language: "native", selection: "executable", libraries: [libssl()] })
        yield* kernel.failAttach({ program: "uretprobe_SSL_write" }, attachError("uretprobe_SSL_write", "ENOENT"))
        const error = yield* Effect.flip(ssl.attacher.attach(target(1)).pipe(Scope.provide(yield* Scope.make())))
        assert.strictEqual(error.message, "probe test/ssl: attach to pid 1 failed: fake attach failure (ENOENT)")
        assert.deepStrictEqual(yield* kernel.liveLinks, [])
        assert.strictEqual((yield* kernel.map("test/ssl", "ps_targets")).size, 0)
        yield* kernel.clearFailures
        yield* ssl.attacher.attach(target(2)).pipe(Scope.provide(yield* Scope.make()))
        assert.strictEqual((yield* kernel.liveLinks).length, 3)
      }),
      Ssl.layer
    ))
})

describe("Attacher: tracepoint instruments", () => {
  it.effect("nothing at load; attached with the first target, shared, released after the last and the grace", () =>
    withProbes(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        const sched = yield* Sched.tag
        assert.deepStrictEqual(yield* kernel.liveLinks, [])
        const s1 = yield* Scope.make()
        const s2 = yield* Scope.make()
        yield* sched.attacher.attach(ProbeTest.target({ pid: 1 })).pipe(Scope.provide(s1))
        yield* sched.attacher.attach(ProbeTest.target({ pid: 2, language: "native" })).pipe(Scope.provide(s2))
        assert.deepStrictEqual((yield* kernel.liveLinks).map((l) => [l.program, l.tracepoint]), [
          ["tp_btf_switch", "sched/sched_switch"],
          ["raw_tp_exit", "sched/sched_process_exit"]
        ])
        assert.deepStrictEqual([...(yield* kernel.map("test/sched", "ps_targets")).keys()], ["01000000", "02000000"])
        yield* Scope.close(s1, Exit.void)
        assert.deepStrictEqual([...(yield* kernel.map("test/sched", "ps_targets")).keys()], ["02000000"])
        assert.strictEqual((yield* kernel.liveLinks).length, 2)
        yield* Scope.close(s2, Exit.void)
        assert.strictEqual((yield* kernel.map("test/sched", "ps_targets")).size, 0)
        yield* TestClock.adjust("10 seconds")
        assert.deepStrictEqual(yield* kernel.liveLinks, [])
        // A later target attaches them again.
        yield* sched.attacher.attach(ProbeTest.target({ pid: 3 })).pipe(Scope.provide(yield* Scope.make()))
        assert.strictEqual((yield* kernel.liveLinks).length, 2)
        assert.strictEqual((yield* kernel.events).filter((e) => e._tag === "Attach").length, 4)
      }),
      Sched.layer
    ))

  it.effect("with no grace the tracepoints go as the last target does", () =>
    withProbes(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        const sched = yield* Sched.tag
        const scope = yield* Scope.make()
        yield* sched.attacher.attach(ProbeTest.target({ pid: 1 })).pipe(Scope.provide(scope))
        yield* Scope.close(scope, Exit.void)
        yield* Effect.yieldNow
        assert.deepStrictEqual(yield* kernel.liveLinks, [])
      }),
      Sched.layer.pipe(Layer.provide(Layer.succeed(Probe.LinkGrace, Duration.zero)))
    ))

  it.effect("a tracepoint program the object could not load: the probe applies to no target, saying why", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      // As the kernel binding loads an object whose tp_btf program names a tracepoint the kernel lacks: without it.
      yield* kernel.define("test/sched", { programs: ["tp_btf_switch"], maps: ["ps_targets", "events", "ps_stats"] })
      yield* Effect.gen(function*() {
        const sched = yield* Sched.tag
        const reason = "tracepoint sched:sched_process_exit is not in this kernel (program raw_tp_exit could not be " +
          "loaded)"
        assert.deepStrictEqual(sched.attacher.applicability(ProbeTest.target({ pid: 5, language: "native" })), {
          _tag: "NotApplicable",
          probe: "test/sched",
          reason
        })
        const error = yield* Effect.flip(sched.attacher.attach(ProbeTest.target({ pid: 5 })).pipe(Effect.scoped))
        assert.strictEqual(error.message, `probe test/sched does not apply to pid 5: ${reason}`)
        assert.deepStrictEqual(yield* kernel.liveLinks, [])
      }).pipe(Effect.provide(Sched.layer))
    }).pipe(Effect.provide(ProbeTest.layer), Effect.scoped))

  it("a disabled tracepoint program is left out of the manifest as loaded", () => {
    const loaded = withoutPrograms(Sched.manifest, ["raw_tp_exit"])
    assert.deepStrictEqual(loaded.tracepoints, [{ program: "tp_btf_switch", category: "sched", name: "sched_switch" }])
  })
})
