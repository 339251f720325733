/** Global probes' cgroup programs: the manifest kind, its checks, and the attach once at load (fake kernel). */
import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import { Effect, Exit, Layer, Scope } from "effect"
import { Bpf, type BpfObject, type CgroupSpec, type ObjectSpec } from "../../src/kernel/Bpf.ts"
import { attachError, FakeKernel } from "../../src/kernel/BpfTest.ts"
import { cgroup2Mount, withoutPrograms } from "../../src/probe/internal/attacher.ts"
import * as Manifest from "../../src/probe/Manifest.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { Schema } from "effect"

const sockops = Manifest.make({ cgroups: [{ program: "sockops_a", attach: "sock_ops" }] })

describe("Manifest: cgroup programs", () => {
  it("are a global probe's: Global for every target", () => {
    assert.deepStrictEqual(Manifest.validate(sockops), [])
    assert.deepStrictEqual(Manifest.check("s", sockops, ProbeTest.target({})), { _tag: "Global", probe: "s" })
  })

  it("anywhere else, or with an unknown attach point or no program, the manifest is invalid", () => {
    const untyped = (m: unknown) => Manifest.validate(m as Manifest.Manifest)
    assert.deepStrictEqual(
      untyped({
        library: { module: "std" },
        symbols: [{ name: "main.main", entry: "e" }],
        cgroups: [{ program: "p", attach: "sock_ops" }]
      }),
      ["cgroup programs belong to a global probe (no library, no processes): they are attached once at load"]
    )
    assert.deepStrictEqual(untyped({ cgroups: [{ program: "p", attach: "ingress" }] }), [
      'cgroup program p: attach must be one of sock_ops (got "ingress")'
    ])
    assert.deepStrictEqual(untyped({ cgroups: [{ program: "", attach: "sock_ops" }] }), [
      "a cgroup program needs a program name"
    ])
    assert.throws(
      () => Probe.daemon({ name: "bad", object: "bad.o", manifest: { cgroups: [{ program: "p", attach: "x" }] } as never }),
      'probe bad: invalid manifest: cgroup program p: attach must be one of sock_ops (got "x")'
    )
  })

  it("a disabled cgroup program is left out of the manifest as loaded", () => {
    const two = Manifest.make({
      cgroups: [{ program: "a", attach: "sock_ops" }, { program: "b", attach: "sock_ops" }]
    })
    assert.deepStrictEqual(withoutPrograms(two, ["a"]), { cgroups: [{ program: "b", attach: "sock_ops" }] })
  })
})

describe("cgroup2Mount", () => {
  it("finds the cgroup v2 hierarchy's mount point in mountinfo (hybrid, unified), else undefined", () => {
    const hybrid = [
      "25 22 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755",
      "26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw",
      "27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,name=systemd"
    ].join("\n")
    assert.strictEqual(cgroup2Mount(hybrid), "/sys/fs/cgroup/unified")
    assert.strictEqual(
      cgroup2Mount("30 1 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate"),
      "/sys/fs/cgroup"
    )
    // A container's view of a sub-cgroup bound in is not the hierarchy's root.
    assert.strictEqual(cgroup2Mount("40 30 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw"), undefined)
    assert.strictEqual(cgroup2Mount(hybrid.split("\n").filter((l) => !l.includes("cgroup2")).join("\n")), undefined)
  })
})

/** The fake kernel, with every cgroup attach's spec recorded (the fake's events do not carry the directory). */
const recording = (specs: Array<CgroupSpec>) =>
  Layer.merge(
    ProbeTest.layer,
    Layer.effect(
      Bpf,
      Effect.gen(function*() {
        const bpf = yield* Bpf
        return {
          ...bpf,
          load: (spec: ObjectSpec) =>
            Effect.map(bpf.load(spec), (object): BpfObject => ({
              ...object,
              attachCgroup: (c) => Effect.andThen(Effect.sync(() => void specs.push(c)), object.attachCgroup(c))
            }))
        }
      })
    ).pipe(Layer.provide(ProbeTest.layer))
  )

const Sockops = Probe.daemon({
  name: "test/sockops",
  object: Probe.objectFile("test_sockops"),
  manifest: { cgroups: [{ program: "sockops_a", attach: "sock_ops" }, { program: "sockops_b", attach: "sock_ops" }] },
  config: Schema.Struct({ cgroup: Schema.optionalKey(Schema.String) }),
  disablePrograms: ({ config }) => config.cgroup === "/cg/only-a" ? ["sockops_b"] : [],
  cgroup: ({ config }) => config.cgroup
})

const load = (config: { cgroup?: string }, specs: Array<CgroupSpec>) =>
  Effect.gen(function*() {
    const kernel = yield* FakeKernel
    const scope = yield* Scope.make()
    yield* Layer.build(Sockops.layerWith(config)).pipe(Scope.provide(scope))
    const attached = (yield* kernel.events).flatMap((e) =>
      e._tag === "Attach" ? [`${e.kind} ${e.program}`] : e._tag === "Detach" ? [`detach ${e.program}`] : []
    )
    const live = (yield* kernel.liveLinks).map((l) => l.program)
    yield* Scope.close(scope, Exit.void)
    const after = (yield* kernel.liveLinks).map((l) => l.program)
    return { attached, live, after, dirs: specs.map((s) => `${s.program} ${s.cgroup}`) }
  }).pipe(
    Effect.provide(recording(specs)),
    Effect.scoped
  ) as Effect.Effect<{ attached: Array<string>; live: Array<string>; after: Array<string>; dirs: Array<string> }>

describe("Probe: cgroup programs at load", () => {
  it.effect("attached once at load to the probe's cgroup, detached when its scope closes", () =>
    Effect.gen(function*() {
      const specs: Array<CgroupSpec> = []
      const r = yield* load({ cgroup: "/cg/a" }, specs)
      assert.deepStrictEqual(r.attached, ["cgroup sockops_a", "cgroup sockops_b"])
      assert.deepStrictEqual(r.dirs, ["sockops_a /cg/a", "sockops_b /cg/a"])
      assert.deepStrictEqual(r.live, ["sockops_a", "sockops_b"])
      assert.deepStrictEqual(r.after, [])
    }))

  it.effect("a disabled program is not attached", () =>
    Effect.gen(function*() {
      const specs: Array<CgroupSpec> = []
      const r = yield* load({ cgroup: "/cg/only-a" }, specs)
      assert.deepStrictEqual(r.dirs, ["sockops_a /cg/only-a"])
    }))

  it.effect("no cgroup given: the cgroup v2 mount's root", () =>
    Effect.gen(function*() {
      const specs: Array<CgroupSpec> = []
      const r = yield* load({}, specs)
      const root = cgroup2Mount(fs.readFileSync("/proc/self/mountinfo", "utf8"))
      assert.isDefined(root)
      assert.deepStrictEqual(r.dirs, [`sockops_a ${root}`, `sockops_b ${root}`])
    }))

  it.effect("no cgroup given and no cgroup v2 mounted: the load fails saying so, nothing attached", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const exit = yield* Layer.build(Sockops.layerWith({})).pipe(
        Effect.provideService(Probe.Cgroup2Root, () => undefined),
        Effect.scoped,
        Effect.exit
      )
      const fail = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
      const error = fail?._tag === "Fail" ? fail.error as { _tag: string; reason: string; message: string } : undefined
      assert.deepStrictEqual(error && { tag: error._tag, reason: error.reason, message: error.message }, {
        tag: "ProbeLoadError",
        reason: "NoCgroup2",
        message: "probe test/sockops: cgroup v2 is not mounted (no cgroup2 in /proc/self/mountinfo): its cgroup " +
          "programs (sockops_a, sockops_b) have nowhere to attach"
      })
      assert.deepStrictEqual((yield* kernel.liveLinks).map((l) => l.program), [])
    }).pipe(Effect.provide(ProbeTest.layer)) as Effect.Effect<void>)

  it.effect("an attach that fails fails the load, naming the probe", () =>
    Effect.gen(function*() {
      const kernel = yield* FakeKernel
      yield* kernel.failAttach({ program: "sockops_b" }, attachError("sockops_b", "EPERM", "not permitted"))
      const exit = yield* Layer.build(Sockops.layerWith({ cgroup: "/cg/a" })).pipe(Effect.scoped, Effect.exit)
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
      assert.strictEqual(error?._tag === "Fail" ? (error.error as { _tag: string })._tag : "", "ProbeLoadError")
      assert.strictEqual(error?._tag === "Fail" ? (error.error as { message: string }).message : "",
        "probe test/sockops: not permitted")
      assert.deepStrictEqual((yield* kernel.liveLinks).map((l) => l.program), [])
    }).pipe(Effect.provide(ProbeTest.layer)) as Effect.Effect<void>)
})
