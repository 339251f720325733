/**
 * The custom example probe on the real kernel (root): load once, attach to a live Go process at the analysed entry
 * and RET offsets, read spans through the Runner, detach on exit, and sampling decided in BPF.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Layer } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import * as TargetEvent from "../../src/manager/TargetEvent.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedSpans } from "../../src/probe/ProbeTest.ts"
import * as TracingConfig from "../../src/probe/TracingConfig.ts"
import * as GoBinary from "../../src/target/GoBinary.ts"
import { TargetAnalysis } from "../../src/target/GoBinary.ts"
import { WorkProbe } from "../../examples/custom-probe/WorkProbe.ts"

const root = path.resolve(import.meta.dirname, "../..")
let dir = ""
let app: ReturnType<typeof spawn> | undefined

beforeAll(() => {
  execFileSync("make", ["-C", path.join(root, "bpf"), "out/custom_work.bpf.o"], { stdio: "ignore" })
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "probescope-work-"))
  execFileSync("go", ["build", "-o", path.join(dir, "workapp"), "."], { cwd: path.join(root, "examples/custom-probe/app") })
  app = spawn(path.join(dir, "workapp"), [], { stdio: "ignore" })
}, 300_000)

afterAll(() => {
  app?.kill("SIGKILL")
  if (dir !== "") fs.rmSync(dir, { recursive: true, force: true })
})

const agent = (sampler: TracingConfig.Sampler) =>
  ManagerM.layer.pipe(
    Layer.provide(WorkProbe.layer),
    Layer.provideMerge(Layer.mergeAll(
      BpfLive.layer,
      ProbeTest.layerSink,
      ProbeTest.layerTargets,
      TracingConfig.layer(sampler),
      GoBinary.layer
    ))
  )

const startAndWait = Effect.gen(function*() {
  const analysis = yield* TargetAnalysis
  const manager = yield* Manager
  const target = yield* analysis.analyzePid(app!.pid!)
  yield* manager.handle(TargetEvent.TargetEvent.Started({ target }))
  return { manager, target }
})

describe("WorkProbe on the kernel", () => {
  it.live("attaches to a live Go process, emits spans, detaches on exit", () =>
    Effect.gen(function*() {
      const { manager, target } = yield* startAndWait
      assert.deepStrictEqual((yield* manager.targets).map((t) => t.probes), [["example/work"]])
      const spans = yield* (yield* CapturedSpans).take(3).pipe(Effect.timeout("10 seconds"))
      for (const s of spans) {
        assert.strictEqual(s.pid, target.pid)
        assert.strictEqual(s.name, "main.work")
        assert.isTrue(s.endMonoNs > s.startMonoNs)
        const n = s.attributes["work.n"] as number
        assert.isTrue(n >= 1000 && n <= 1900, `n=${n}`)
        assert.match(s.traceId, /^[0-9a-f]{32}$/)
      }
      yield* manager.handle(TargetEvent.TargetEvent.Exited({ pid: target.pid }))
      const stats = (yield* manager.stats)[0]!
      assert.strictEqual(stats.targets, 0)
      assert.isTrue(stats.kernelSubmitted >= 3n)
      assert.strictEqual(stats.decodeErrors, 0)
    }).pipe(Effect.provide(agent({ root: "always_on", ratio: 1, parentBased: true }))))

  it.live("always_off: BPF submits nothing", () =>
    Effect.gen(function*() {
      const { manager } = yield* startAndWait
      yield* Effect.sleep("1 second")
      const stats = (yield* manager.stats)[0]!
      assert.strictEqual(stats.targets, 1)
      assert.strictEqual(stats.kernelSubmitted, 0n)
      assert.strictEqual(stats.records, 0)
    }).pipe(Effect.provide(agent({ root: "always_off", ratio: 1, parentBased: true }))))
})
