/** tcp_context without a kernel: its manifest, its config, and its load on the fake kernel. */
import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Exit, Layer, Scope } from "effect"
import * as TcpContext from "../../src/instrumentations/TcpContext.ts"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import * as Manifest from "../../src/probe/Manifest.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"

describe("tcp_context", () => {
  it("is a global daemon: one sock_ops program, never attached per process", () => {
    assert.strictEqual(TcpContext.TcpContext.kind, "daemon")
    assert.deepStrictEqual(TcpContext.TcpContext.dependsOn, ["go_context"])
    assert.deepStrictEqual(Manifest.validate(TcpContext.manifest), [])
    assert.deepStrictEqual(TcpContext.manifest.cgroups, [{ program: "tcp_context", attach: "sock_ops" }])
    assert.deepStrictEqual(
      Manifest.check("tcp_context", TcpContext.manifest, ProbeTest.target({})),
      { _tag: "Global", probe: "tcp_context" }
    )
  })

  it.effect("loads after go_context reusing its ps_conn_spans, attaches to the configured cgroup, detaches on close", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const scope = yield* Scope.make()
      const context = yield* Layer.build(TcpContext.TcpContext.layerWith({ cgroup: "/sys/fs/cgroup/unified/x" }))
        .pipe(Scope.provide(scope))
      const probe = (yield* TcpContext.TcpContext.tag.pipe(Effect.provideContext(context)))
      assert.deepStrictEqual(probe.config, { cgroup: "/sys/fs/cgroup/unified/x" })
      const loads = (yield* kernel.events).flatMap((e) => e._tag === "Load" ? [e] : [])
      assert.deepStrictEqual(loads.map((l) => l.object), ["go_context", "tcp_context"])
      assert.deepStrictEqual(loads[1]!.reusedMaps, { ps_conn_spans: "go_context/ps_conn_spans" })
      const attaches = (yield* kernel.events).flatMap((e) => e._tag === "Attach" ? [`${e.kind} ${e.program}`] : [])
      assert.deepStrictEqual(attaches, ["cgroup tcp_context"])
      // Not per target: the attacher refuses, saying it is global.
      const exit = yield* probe.attacher.attach(ProbeTest.target({ pid: 42 })).pipe(Effect.scoped, Effect.exit)
      assert.isTrue(Exit.isFailure(exit))
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual((yield* kernel.liveLinks).map((l) => l.program), [])
      assert.deepStrictEqual(yield* kernel.liveObjects, [])
    }).pipe(Effect.provide(ProbeTest.layer)) as Effect.Effect<void>)

  it.effect("a cgroup that is not an absolute path is a config error naming the field", () =>
    Effect.gen(function*() {
      const exit = yield* Layer.build(TcpContext.TcpContext.layerWith({ cgroup: "unified/x" })).pipe(
        Effect.scoped,
        Effect.exit
      )
      const fail = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
      const error = fail?._tag === "Fail" ? fail.error as { _tag: string; field: string; message: string } : undefined
      assert.deepStrictEqual(
        error && { tag: error._tag, field: error.field, message: error.message },
        {
          tag: "ProbeConfigError",
          field: "cgroup",
          message: 'probe tcp_context: config field "cgroup": Expected an absolute path'
        }
      )
    }).pipe(Effect.provide(ProbeTest.layer)) as Effect.Effect<void>)

  it("the option constants agree with the BPF side's", () => {
    // bpf/tcp_context.bpf.c: TCP_CONTEXT_KIND, TCP_CONTEXT_LEN, TCP_CONTEXT_EXID (| 1 when sampled)
    const source = fs.readFileSync(path.join(import.meta.dirname, "../../bpf/tcp_context.bpf.c"), "utf8")
    const define = (name: string) => Number(new RegExp(`#define ${name} (\\S+)`).exec(source)![1])
    assert.deepStrictEqual(
      { kind: define("TCP_CONTEXT_KIND"), length: define("TCP_CONTEXT_LEN"), exid: define("TCP_CONTEXT_EXID") },
      { kind: TcpContext.option.kind, length: TcpContext.option.length, exid: TcpContext.option.exid }
    )
    assert.strictEqual(TcpContext.option.exidSampled, TcpContext.option.exid | 1)
  })
})
