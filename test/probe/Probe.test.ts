import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Scope } from "effect"
import { TestClock } from "effect/testing"
import { attachError, FakeKernel } from "../../src/kernel/BpfTest.ts"
import * as Binary from "../../src/probe/Binary.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedSpans } from "../../src/probe/ProbeTest.ts"
import * as Fixtures from "./fixtures.ts"
import { Client, fields, functions, GoCtx, record, Server } from "./fixtures.ts"

const target = (pid: number) => ProbeTest.target({ pid, functions, fields })

const withProbes = <A, E, R>(self: Effect.Effect<A, E, R>, probes: Layer.Layer<any, any, any> = Server.layer) =>
  self.pipe(Effect.provide(probes.pipe(Layer.provideMerge(ProbeTest.layer))), Effect.scoped) as Effect.Effect<A, E>

describe("Probe.objectFile", () => {
  it("takes a built-in's name, an absolute or relative path, or a file: URL", () => {
    const out = new URL("../../bpf/out/", import.meta.url).pathname
    assert.strictEqual(Probe.objectFile("nethttp_server"), `${out}nethttp_server.bpf.o`)
    assert.strictEqual(Probe.objectFile("/abs/x.bpf.o"), "/abs/x.bpf.o")
    assert.strictEqual(Probe.objectFile("file:///abs/y.bpf.o"), "/abs/y.bpf.o")
    assert.strictEqual(Probe.objectFile(new URL("file:///abs/z%20z.bpf.o")), "/abs/z z.bpf.o")
    assert.strictEqual(Probe.objectFile("build/my.bpf.o"), `${process.cwd()}/build/my.bpf.o`)
  })
})

describe("a probe's object", () => {
  it.effect("a built-in's bare name is resolved at load (PROBESCOPE_BPF_DIR read then); a path is used as given", () =>
    Effect.gen(function*() {
      const manifest = { library: { module: "std" }, symbols: [{ name: "main.x", entry: "uprobe_x" }] }
      const define = (name: string, object: string) => Probe.daemon({ name, object, manifest })
      const bare = define("test/bare", "go_context")
      const path = define("test/path", "build/x.bpf.o")
      const previous = process.env["PROBESCOPE_BPF_DIR"]
      // Set after the definitions, as a snapshot started process sets it after import.
      process.env["PROBESCOPE_BPF_DIR"] = "/opt/probes/"
      try {
        const files = yield* Effect.gen(function*() {
          const kernel = yield* FakeKernel
          yield* bare.tag
          yield* path.tag
          return (yield* kernel.events).flatMap((e) => e._tag === "Load" ? [[e.object, e.file]] : [])
        }).pipe(Effect.provide(Layer.mergeAll(bare.layer, path.layer).pipe(Layer.provideMerge(ProbeTest.layer))))
        assert.deepStrictEqual(files, [["test/bare", "/opt/probes/go_context.bpf.o"], ["test/path", "build/x.bpf.o"]])
      } finally {
        if (previous === undefined) delete process.env["PROBESCOPE_BPF_DIR"]
        else process.env["PROBESCOPE_BPF_DIR"] = previous
      }
    }).pipe(Effect.scoped))
})

describe("Probe", () => {
  it.effect("loads once with config, sampler constants and the dependency's map", () =>
    withProbes(Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const server = yield* Server.tag
      assert.strictEqual(server.kind, "instrument")
      assert.deepStrictEqual(server.config, { maxPath: 32, skipHealth: false })
      const loads = (yield* kernel.events).filter((e) => e._tag === "Load")
      assert.deepStrictEqual(loads.map((l) => l.object), ["test/goctx", "test/server"])
      const load = loads[1]!
      assert.deepStrictEqual(load._tag === "Load" ? load.constants : {}, {
        ps_sampler_kind: 0,
        ps_sampler_parent_based: true,
        ps_sampler_threshold: 0n,
        max_path: 32
      })
      assert.deepStrictEqual(load._tag === "Load" ? load.reusedMaps : {}, { go_spans: "test/goctx/go_spans" })
      // The daemon is not handed tracing config: no sampler constants.
      assert.deepStrictEqual(loads[0]!._tag === "Load" ? loads[0]!.constants : { x: 1 }, {})
    })))

  it.effect("attaches entry and every return offset, writes then deletes the per-pid offsets", () =>
    withProbes(Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const server = yield* Server.tag
      yield* kernel.clearEvents
      const scope = yield* Scope.make()
      const attachment = yield* server.attacher.attach(target(11)).pipe(Scope.provide(scope))
      assert.deepStrictEqual(attachment.symbols, ["net/http.serverHandler.ServeHTTP"])
      assert.deepStrictEqual(attachment.missingOptional, ["net/http.(*conn).hijack"])
      const map = yield* kernel.map("test/server", "ps_targets")
      const value = map.get("0b000000")!
      assert.deepStrictEqual(Array.from(value.slice(8, 9)), [16])
      yield* Scope.close(scope, Exit.void)
      const events = (yield* kernel.events).map((e) =>
        e._tag === "Attach" ?
          `attach ${e.program}@${e.offsets?.map((o) => o.toString(16)).join(",")} pid=${e.pid} ${e.binary}` :
          e._tag === "Detach" ? `detach ${e.program}` :
          `${e._tag} ${"map" in e ? e.map : ""}`
      )
      // One link per program with all its offsets (uprobe_multi), carrying the pid: a "process" selection.
      assert.deepStrictEqual(events, [
        "MapUpdate ps_targets",
        "attach uprobe_serve@2014 pid=11 /fake/bin/app-11",
        "attach uprobe_serve_ret@2100,2180 pid=11 /fake/bin/app-11",
        "detach uprobe_serve_ret",
        "detach uprobe_serve",
        "MapDelete ps_targets"
      ])
      assert.strictEqual((yield* kernel.map("test/server", "ps_targets")).size, 0)
    })))

  it.effect("one load serves two targets; detaching one leaves the other", () =>
    withProbes(Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const server = yield* Server.tag
      const s1 = yield* Scope.make()
      const s2 = yield* Scope.make()
      yield* server.attacher.attach(target(1)).pipe(Scope.provide(s1))
      yield* server.attacher.attach(target(2)).pipe(Scope.provide(s2))
      assert.strictEqual((yield* kernel.liveLinks).length, 4)
      yield* Scope.close(s1, Exit.void)
      const left = yield* kernel.liveLinks
      assert.deepStrictEqual([...new Set(left.map((l) => l.pid))], [2])
      assert.deepStrictEqual([...(yield* kernel.map("test/server", "ps_targets")).keys()], ["02000000"])
      assert.strictEqual((yield* kernel.events).filter((e) => e._tag === "Load").length, 2)
    })))

  it.effect("an executable selection shares one link per program among its processes; a grace keeps them", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const server = yield* Server.tag
      const shared = (pid: number) =>
        ProbeTest.target({ pid, functions, fields, exe: "/srv/app", file: "8:42", selection: "executable" })
      const s1 = yield* Scope.make()
      const s2 = yield* Scope.make()
      yield* server.attacher.attach(shared(1)).pipe(Scope.provide(s1))
      yield* server.attacher.attach(shared(2)).pipe(Scope.provide(s2))
      // Made once, for every process of the file (no pid); each process has its own per-pid entry.
      const links = yield* kernel.liveLinks
      assert.deepStrictEqual(links.map((l) => [l.program, l.pid, l.offsets]), [
        ["uprobe_serve", undefined, [0x2014]],
        ["uprobe_serve_ret", undefined, [0x2100, 0x2180]]
      ])
      assert.deepStrictEqual([...(yield* kernel.map("test/server", "ps_targets")).keys()], ["01000000", "02000000"])
      yield* Scope.close(s1, Exit.void)
      assert.strictEqual((yield* kernel.liveLinks).length, 2)
      assert.deepStrictEqual([...(yield* kernel.map("test/server", "ps_targets")).keys()], ["02000000"])
      // The last process goes: the links stay for the grace, so a restart finds them.
      yield* Scope.close(s2, Exit.void)
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual((yield* kernel.liveLinks).length, 2)
      const s3 = yield* Scope.make()
      yield* server.attacher.attach(shared(3)).pipe(Scope.provide(s3))
      assert.deepStrictEqual((yield* kernel.liveLinks).map((l) => l.id), links.map((l) => l.id))
      // The restart's own exit starts a new grace; the first one's timer no longer closes anything.
      yield* TestClock.adjust("6 seconds")
      assert.strictEqual((yield* kernel.liveLinks).length, 2)
      yield* Scope.close(s3, Exit.void)
      yield* TestClock.adjust("9 seconds")
      assert.strictEqual((yield* kernel.liveLinks).length, 2)
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* kernel.liveLinks, [])
      assert.strictEqual((yield* kernel.events).filter((e) => e._tag === "Attach").length, 2)
    }).pipe(
      Effect.provide(Server.layer.pipe(Layer.provideMerge(ProbeTest.layer))),
      Effect.scoped
    ))

  it.effect("an executable's links that fail to attach are not kept: the next process tries again", () =>
    withProbes(Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const server = yield* Server.tag
      const shared = (pid: number) =>
        ProbeTest.target({ pid, functions, fields, exe: "/srv/app", file: "8:43", selection: "executable" })
      yield* kernel.failAttach({ program: "uprobe_serve_ret" }, attachError("uprobe_serve_ret", "ENOENT"))
      const error = yield* Effect.flip(server.attacher.attach(shared(1)).pipe(Scope.provide(yield* Scope.make())))
      assert.strictEqual(error._tag, "ProbeAttachError")
      assert.strictEqual(error.message, "probe test/server: attach to pid 1 failed: fake attach failure (ENOENT)")
      assert.deepStrictEqual(yield* kernel.liveLinks, [])
      assert.strictEqual((yield* kernel.map("test/server", "ps_targets")).size, 0)
      yield* kernel.clearFailures
      yield* server.attacher.attach(shared(2)).pipe(Scope.provide(yield* Scope.make()))
      assert.strictEqual((yield* kernel.liveLinks).length, 2)
    })))

  it.effect("stop reads what the ring still holds, emits it, and ends the Runner", () =>
    withProbes(Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const server = yield* Server.tag
      const captured = yield* CapturedSpans
      const fiber = yield* server.runner.run.pipe(Effect.forkChild)
      yield* kernel.push("test/server", [record({ path: "/a" })])
      yield* captured.take(1)
      yield* kernel.push("test/server", [record({ path: "/b" }), record({ path: "/c" })])
      yield* server.runner.stop
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.isSuccess(exit))
      assert.deepStrictEqual((yield* captured.take(2)).map((s) => s.name), ["GET /b", "GET /c"])
      assert.strictEqual((yield* server.runner.stats).records, 3)
    })))

  it.effect("interruption mid-attach releases what was acquired", () =>
    withProbes(Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const server = yield* Server.tag
      yield* kernel.hangAttach({ program: "uprobe_serve_ret", offset: 0x2180 })
      const scope = yield* Scope.make()
      const fiber = yield* server.attacher.attach(target(5)).pipe(Scope.provide(scope), Effect.forkChild)
      yield* Effect.yieldNow
      yield* Effect.yieldNow
      // The entry link is made; the return link (with 0x2180) hangs.
      assert.strictEqual((yield* kernel.liveLinks).length, 1)
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(yield* kernel.liveLinks, [])
      assert.strictEqual((yield* kernel.map("test/server", "ps_targets")).size, 0)
    })))

  it.effect("an attach failure is a ProbeAttachError naming probe and pid, and leaves nothing attached", () =>
    withProbes(Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const server = yield* Server.tag
      yield* kernel.failAttach({ program: "uprobe_serve_ret" }, attachError("uprobe_serve_ret", "EINVAL", "bad offset"))
      const error = yield* Effect.flip(server.attacher.attach(target(3)).pipe(Effect.scoped))
      assert.strictEqual(error._tag, "ProbeAttachError")
      assert.strictEqual(error.message, "probe test/server: attach to pid 3 failed: bad offset")
      assert.strictEqual(error._tag === "ProbeAttachError" ? error.pid : undefined, 3)
      assert.deepStrictEqual(yield* kernel.liveLinks, [])
    })))

  it.effect("disabled programs are not attached; a symbol left with none is skipped, never missing", () => {
    const Partial = Probe.instrument({
      name: "test/partial",
      object: Probe.objectFile("test_partial"),
      manifest: {
        library: { module: "std" },
        symbols: [
          { name: "net/http.serverHandler.ServeHTTP", entry: "uprobe_serve", return: "uprobe_serve_ret" },
          // Required, absent from the target, but its only program is off: not a reason to refuse the target.
          { name: "net/http.absent", entry: "uprobe_absent" },
          { name: "net/http.(*Transport).roundTrip", entry: "uprobe_rt", return: "uprobe_rt_ret", optional: true }
        ]
      },
      disablePrograms: () => ["uprobe_serve_ret", "uprobe_absent", "uprobe_rt"],
      record: Binary.schema(Fixtures.Record),
      span: () => undefined
    })
    // No RET instructions: a return probe that is off must not demand them.
    const noRets = ProbeTest.target({
      pid: 21,
      functions: { ...functions, "net/http.serverHandler.ServeHTTP": { entryOffset: 0x2014, returnOffsets: [] } }
    })
    return withProbes(
      Effect.gen(function*() {
        const kernel = yield* FakeKernel
        const probe = yield* Partial.tag
        const loads = (yield* kernel.events).filter((e) => e._tag === "Load")
        assert.deepStrictEqual(loads[0]?._tag === "Load" ? loads[0].disablePrograms : [], [
          "uprobe_serve_ret",
          "uprobe_absent",
          "uprobe_rt"
        ])
        yield* kernel.clearEvents
        const attachment = yield* probe.attacher.attach(noRets).pipe(Effect.scoped)
        assert.deepStrictEqual(attachment.symbols, [
          "net/http.serverHandler.ServeHTTP",
          "net/http.(*Transport).roundTrip"
        ])
        assert.deepStrictEqual(attachment.missingOptional, [])
        const attached = (yield* kernel.events).flatMap((e) => e._tag === "Attach" ? [e.program] : [])
        assert.deepStrictEqual(attached, ["uprobe_serve", "uprobe_rt_ret"])
      }),
      Partial.layer
    )
  })

  it.effect("a target the probe does not apply to fails with the reason", () =>
    withProbes(Effect.gen(function*() {
      const server = yield* Server.tag
      const old = ProbeTest.target({ pid: 9, goVersion: "1.20.5", functions, fields })
      const error = yield* Effect.flip(server.attacher.attach(old).pipe(Effect.scoped))
      assert.strictEqual(error.reason, "NotApplicable")
      assert.strictEqual(
        error.message,
        "probe test/server does not apply to pid 9: std 1.20.5 is outside the supported range >=1.21"
      )
    })))

  it.effect("config errors name the probe and the field", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Effect.provide(Effect.void, Server.layerWith({ maxPath: 100 }).pipe(Layer.provide(ProbeTest.layer)))
      )
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
      const e = error?._tag === "Fail" ? error.error : undefined
      assert.strictEqual(e?._tag, "ProbeConfigError")
      assert.strictEqual(e?._tag === "ProbeConfigError" && e.probe, "test/server")
      assert.strictEqual(e?._tag === "ProbeConfigError" && e.field, "maxPath")
      assert.strictEqual(e?.message, "probe test/server: config field \"maxPath\": Expected a value between 1 and 32")
    }))

  it.effect("config comes from ProbeSettings by probe name", () =>
    Effect.gen(function*() {
      const server = yield* Server.tag
      assert.deepStrictEqual(server.config, { maxPath: 8, skipHealth: true })
    }).pipe(
      Effect.provide(Server.layer.pipe(Layer.provideMerge(ProbeTest.layer))),
      Effect.provide(Probe.settings({ "test/server": { maxPath: 8, skipHealth: true } }))
    ))

  it.effect("an object given as a file: URL is opened as its path", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const url = Probe.instrument({
        name: "test/url-object",
        object: new URL("file:///srv/probes/my%20probe.bpf.o"),
        manifest: { library: { module: "std" }, symbols: [{ name: "main.work", entry: "uprobe_work" }] },
        record: Binary.schema(Binary.struct({ n: Binary.u64 })),
        span: () => undefined
      })
      yield* Layer.build(url.layer)
      const load = (yield* kernel.events).find((e) => e._tag === "Load" && e.object === "test/url-object")
      assert.strictEqual(load?._tag === "Load" ? load.file : undefined, "/srv/probes/my probe.bpf.o")
    }).pipe(Effect.scoped, Effect.provide(ProbeTest.layer)))

  it.effect("a load failure is a ProbeLoadError with the verifier log", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      yield* kernel.failVerifier({ object: "test/server" }, "invalid access to map value")
      const exit = yield* Effect.exit(Layer.build(Server.layer))
      const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
      const e = error?._tag === "Fail" ? error.error : undefined
      assert.strictEqual(e?._tag, "ProbeLoadError")
      assert.strictEqual(e?.message, "probe test/server: program rejected by the verifier")
      assert.strictEqual(e?._tag === "ProbeLoadError" && e.verifierLog, "invalid access to map value")
      // The dependency loaded before the failure and is closed again.
      assert.deepStrictEqual(yield* kernel.liveObjects, [])
    }).pipe(Effect.scoped, Effect.provide(ProbeTest.layer)))

  it.effect("a daemon shared by two instrument probes is loaded once and closed last", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const scope = yield* Scope.make()
      yield* Layer.buildWithScope(Layer.mergeAll(Server.layer, Client.layer, GoCtx.layer), scope)
      const loads = (yield* kernel.events).filter((e) => e._tag === "Load").map((e) => e.object)
      assert.deepStrictEqual(loads, ["test/goctx", "test/server", "test/client"])
      yield* Scope.close(scope, Exit.void)
      const closes = (yield* kernel.events).filter((e) => e._tag === "Close").map((e) => e.object)
      assert.strictEqual(closes.length, 3)
      assert.strictEqual(closes[2], "test/goctx")
    }).pipe(Effect.scoped, Effect.provide(ProbeTest.layer)))

  it.effect("the Runner decodes records, emits spans, counts decode errors and skipped records", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const captured = yield* CapturedSpans
      const server = yield* Server.tag
      yield* kernel.push("test/server", [record(), new Uint8Array(3), record({ path: "/health", status: 503 })])
      const fiber = yield* Effect.forkChild(server.runner.run)
      const spans = yield* captured.take(1)
      yield* kernel.push("test/server", [record({ path: "/health" }), record({ path: "/two" })])
      const more = yield* captured.take(1)
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(more[0]!.name, "GET /two")
      assert.strictEqual(spans[0]!.probe, "test/server")
      assert.strictEqual(spans[0]!.name, "GET /hello")
      assert.strictEqual(spans[0]!.traceId, "0af7651916cd43dd8448eb211c80319c")
      const all = yield* captured.all
      assert.strictEqual(all.length, 2)
      const stats = yield* server.runner.stats
      assert.deepStrictEqual({ ...stats }, { records: 2, decodeErrors: 1, signalErrors: 0, unsupported: 0, skipped: 2, consumerDropped: 0 })
      const kstats = yield* server.kernelStats
      assert.strictEqual(kstats.submitted, 5n)
    }).pipe(
      Effect.provide(Server.layer.pipe(Layer.provideMerge(ProbeTest.layer))),
      Effect.provide(Probe.settings({ "test/server": { skipHealth: true } }))
    ))

  it.effect("decode works without a kernel", () =>
    Effect.gen(function*() {
      const span = yield* Server.decode(record({ status: 500 }))
      assert.strictEqual(span?.status.code, "error")
      assert.strictEqual(span?.attributes["http.response.status_code"], 500)
      const skipped = yield* Server.decode(record({ path: "/health" }), { skipHealth: true })
      assert.strictEqual(skipped, undefined)
      const error = yield* Effect.flip(Server.decode(new Uint8Array(4)))
      assert.strictEqual(error._tag, "SchemaError")
      assert.match(error.message, /record is 4 bytes, expected at least/)
    }))

  it.effect("a map not declared in shares cannot be referenced", () =>
    withProbes(Effect.gen(function*() {
      const ctx = yield* GoCtx.tag
      const error = yield* Effect.flip(ctx.mapRef("events" as never))
      assert.strictEqual(error._tag, "BpfMapError")
      assert.strictEqual(error.message, "probe test/goctx does not share map events (declare it in `shares`)")
    }), GoCtx.layer))
})

describe("Probe.fileKey", () => {
  const decode = (key: Uint8Array | undefined) => {
    if (key === undefined) return undefined
    const view = new DataView(key.buffer, key.byteOffset, key.byteLength)
    return [view.getBigUint64(0, true), view.getBigUint64(8, true)]
  }

  it("turns stat's device number into the kernel's s_dev encoding (major << 20 | minor), then the inode", () => {
    assert.deepStrictEqual(decode(Probe.fileKey("8:42")), [8n, 42n])
    // 254:0 (a device-mapper root): stat says 65024.
    assert.deepStrictEqual(decode(Probe.fileKey("65024:1311")), [254n << 20n, 1311n])
    // 259:300: the C library spreads major and minor over the high and low bits.
    assert.deepStrictEqual(decode(Probe.fileKey("1114924:7")), [(259n << 20n) | 300n, 7n])
  })

  it("has no key for a file identity it cannot read", () => {
    assert.isUndefined(Probe.fileKey(undefined))
    assert.isUndefined(Probe.fileKey("/srv/app"))
  })
})
