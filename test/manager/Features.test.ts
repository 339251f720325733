/**
 * Features: a daemon's symbols marked with a `feature` are attached to a process only where a probe attached there
 * `uses` it — go_context's goroutine tracking only in processes whose probes look spans up across goroutines.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Schema } from "effect"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import { TargetEvent } from "../../src/manager/TargetEvent.ts"
import * as Binary from "../../src/probe/Binary.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { fields, functions } from "../probe/fixtures.ts"

const Ctx = Probe.daemon({
  name: "test/ctx-features",
  object: Probe.objectFile("test_goctx"),
  manifest: {
    library: { module: "std" },
    symbols: [{ name: "runtime.newproc1", entry: "uprobe_newproc1", feature: "goroutines" }]
  },
  shares: ["go_spans"]
})

/** What the instruments here share: an 8-byte record they make nothing of, a std manifest of one symbol. */
const recordOnly = { record: Binary.schema(Binary.struct({ n: Binary.u64 })), span: () => undefined }
const std = (symbol: { readonly name: string; readonly entry: string; readonly return?: string }) => ({
  library: { module: "std" },
  symbols: [symbol]
})
const roundTrip = { name: "net/http.(*Transport).roundTrip", entry: "uprobe_rt" }

/** Sets its goroutine's span only: no use for goroutine tracking. */
const Server = Probe.instrument({
  name: "test/server-features",
  object: Probe.objectFile("test_server"),
  manifest: std({ name: "net/http.serverHandler.ServeHTTP", entry: "uprobe_serve", return: "uprobe_serve_ret" }),
  reuseMaps: { go_spans: Ctx.map("go_spans") },
  ...recordOnly
})

/** Looks its parent up on its goroutine, which a `go` in the server's may have started. */
const Client = Probe.instrument({
  name: "test/client-features",
  object: Probe.objectFile("test_client"),
  manifest: std({ ...roundTrip, return: "uprobe_rt_ret" }),
  reuseMaps: { go_spans: Ctx.map("go_spans") },
  uses: [Ctx.feature("goroutines")],
  ...recordOnly
})

/** Uses the feature as its config says (on by default). */
const Choosy = Probe.instrument({
  name: "test/choosy-features",
  object: Probe.objectFile("test_client"),
  manifest: std(roundTrip),
  config: Schema.Struct({ goroutines: Schema.Boolean.pipe(Schema.withDecodingDefault(Effect.succeed(true))) }),
  reuseMaps: { go_spans: Ctx.map("go_spans") },
  uses: ({ config }) => config.goroutines ? [Ctx.feature("goroutines")] : [],
  ...recordOnly
})

const target = ProbeTest.target({ pid: 7, functions, fields })

/** The programs attached to pid 7 by a Manager over `probes`. */
const attachedPrograms = (probes: Layer.Layer<any, any, any>) =>
  Effect.gen(function*() {
    const manager = yield* Manager
    yield* manager.handle(TargetEvent.Started({ target }))
    const kernel = yield* FakeKernel
    return {
      probes: (yield* manager.targets)[0]?.probes ?? [],
      programs: (yield* kernel.liveLinks).map((l) => l.program).sort()
    }
  }).pipe(
    Effect.provide(ManagerM.layerWith(probes).pipe(Layer.provideMerge(ProbeTest.layer))),
    Effect.scoped
  )

describe("Probe features", () => {
  it.effect("a process whose probes use no feature gets none of its symbols; the daemon still attaches", () =>
    Effect.gen(function*() {
      const seen = yield* attachedPrograms(Server.layer)
      assert.deepStrictEqual(seen.probes, ["test/ctx-features", "test/server-features"])
      assert.deepStrictEqual(seen.programs, ["uprobe_serve", "uprobe_serve_ret"])
    }))

  it.effect("a probe using the feature brings its symbols to the process", () =>
    Effect.gen(function*() {
      const seen = yield* attachedPrograms(Layer.mergeAll(Server.layer, Client.layer))
      assert.deepStrictEqual(seen.probes, ["test/ctx-features", "test/client-features", "test/server-features"])
      assert.deepStrictEqual(seen.programs, [
        "uprobe_newproc1",
        "uprobe_rt",
        "uprobe_rt_ret",
        "uprobe_serve",
        "uprobe_serve_ret"
      ])
      assert.deepStrictEqual(Client.uses, [{ probe: "test/ctx-features", feature: "goroutines" }])
      assert.deepStrictEqual(Client.dependsOn, ["test/ctx-features"])
    }))

  it.effect("a daemon nothing depends on, or attached directly, attaches every symbol", () =>
    Effect.gen(function*() {
      const seen = yield* attachedPrograms(Ctx.layer)
      assert.deepStrictEqual(seen.programs, ["uprobe_newproc1"])
    }))

  it.effect("a probe's config can choose the features it uses", () =>
    Effect.gen(function*() {
      const on = yield* attachedPrograms(Choosy.layer)
      assert.deepStrictEqual(on.programs, ["uprobe_newproc1", "uprobe_rt"])
      const off = yield* attachedPrograms(Choosy.layerWith({ goroutines: false }))
      assert.deepStrictEqual(off.programs, ["uprobe_rt"])
      assert.deepStrictEqual(off.probes, ["test/ctx-features", "test/choosy-features"])
    }))

  it.effect("a feature chosen by config must belong to a probe it depends on: a defect naming both", () =>
    Effect.gen(function*() {
      const Stranger = Probe.instrument({
        name: "test/stranger-features",
        object: Probe.objectFile("test_client"),
        manifest: std(roundTrip),
        uses: () => [Ctx.feature("goroutines")],
        ...recordOnly
      })
      const exit = yield* Effect.exit(
        Layer.build(Stranger.layer).pipe(Effect.scoped, Effect.provide(ProbeTest.layer))
      )
      assert.isTrue(Exit.isFailure(exit))
      const defect = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Die") : undefined
      assert.strictEqual(
        defect?._tag === "Die" ? String((defect.defect as Error).message) : "",
        "probe test/stranger-features uses a feature of test/ctx-features, which it does not reuse a map of"
      )
    }))

  it("a feature the manifest does not declare is a definition error", () => {
    assert.throws(() => Ctx.feature("goroutine"), "probe test/ctx-features declares no feature goroutine")
  })
})
