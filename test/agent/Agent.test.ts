/**
 * The Agent layer on the fake kernel, against a real Go process (no root: analysis and discovery's /proc scan only
 * read what the user may read; nothing is loaded into the kernel). What `ready` reports, that the explicit-target
 * check uses the probes given, and that the agent's logs go to stderr, never stdout.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { WorkProbe } from "../../examples/custom-probe/WorkProbe.ts"
import * as Agent from "../../src/agent/Agent.ts"
import * as BpfTest from "../../src/kernel/BpfTest.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as Binary from "../../src/probe/Binary.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as Telemetry from "../../src/telemetry/Telemetry.ts"

const root = Path.resolve(import.meta.dirname, "../..")
let dir = ""
let exe = ""
let app: ChildProcess | undefined

beforeAll(() => {
  dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-agent-"))
  exe = Path.join(dir, "workapp")
  execFileSync("go", ["build", "-o", exe, "."], { cwd: Path.join(root, "examples/custom-probe/app") })
  app = spawn(exe, [], { stdio: "ignore" })
}, 300_000)

afterAll(() => {
  app?.kill("SIGKILL")
  if (dir !== "") Fs.rmSync(dir, { recursive: true, force: true })
})

/** A probe of one's own that applies to no process here: its symbol is not in the app. */
const elsewhere = Probe.instrument({
  name: "test/elsewhere",
  object: "/nonexistent/elsewhere.bpf.o",
  manifest: { library: { module: "std" }, symbols: [{ name: "main.absent", entry: "uprobe_absent" }] },
  record: Binary.schema(Binary.struct({ n: Binary.u64 })),
  span: () => undefined
})

const onFakeKernel = (options: Pick<Agent.Options, "selection" | "probes" | "load">) =>
  Agent.layer({ ...options, kernel: BpfTest.layer, telemetry: Telemetry.layerTest() })

/** Runs `effect` while recording what is written to stdout and stderr (and still writing it). */
const capturingOutput = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const out: Array<string> = []
      const err: Array<string> = []
      const stdout = process.stdout.write
      const stderr = process.stderr.write
      process.stdout.write = ((chunk: unknown, ...rest: Array<never>) => {
        out.push(String(chunk))
        return stdout.call(process.stdout, chunk as string, ...rest)
      }) as typeof process.stdout.write
      process.stderr.write = ((chunk: unknown, ...rest: Array<never>) => {
        err.push(String(chunk))
        return stderr.call(process.stderr, chunk as string, ...rest)
      }) as typeof process.stderr.write
      const restore = () => {
        process.stdout.write = stdout
        process.stderr.write = stderr
      }
      return { out, err, restore }
    }),
    (captured) => Effect.map(effect, (a) => ({ value: a, out: captured.out, err: captured.err })),
    (captured) => Effect.sync(captured.restore)
  )

describe("Agent", { timeout: 120_000 }, () => {
  it.live("ready: the process selected at start is attached, with the probes given; logs on stderr only", () =>
    Effect.gen(function*() {
      const pid = app!.pid!
      const { err, out, value } = yield* capturingOutput(
        Effect.gen(function*() {
          const agent = yield* Agent.Agent
          const report = yield* agent.ready
          const targets = yield* (yield* Manager).targets
          return { report, probes: agent.probes.map((p) => p.name), targets }
        }).pipe(Effect.provide(onFakeKernel({ selection: { pids: [pid], exes: [] }, probes: [WorkProbe] })))
      )
      assert.deepStrictEqual(value.report, {
        attached: [{ pid, exe: Fs.realpathSync(exe), probes: ["example/work"] }],
        failed: [],
        unmatched: []
      })
      assert.deepStrictEqual(value.probes, ["example/work"])
      assert.deepStrictEqual(value.targets.map((t) => t.pid), [pid])
      const line = `pid ${pid}: attached 1 probe(s): example/work`
      assert.isTrue(err.some((chunk) => chunk.includes(line)), `stderr: ${err.join("")}`)
      assert.isFalse(out.some((chunk) => chunk.includes(line)), "the attach line went to stdout")
    }))

  it.live("loads only the probes its processes need, or every probe with load: eager", () =>
    Effect.gen(function*() {
      const pid = app!.pid!
      const run = (load: "eager" | "onAttach") =>
        Effect.gen(function*() {
          const agent = yield* Agent.Agent
          yield* agent.ready
          const manager = yield* Manager
          const attached = (yield* manager.targets).find((t) => t.pid === pid)?.probes ?? []
          // A probe's dependencies are loaded with it (their maps are its), attached or not.
          const needed = new Set(
            attached.flatMap((name) => manager.probes.find((p) => p.name === name)?.dependsOn ?? [])
          )
          return { attached, needed, stats: yield* manager.stats }
        }).pipe(
          Effect.provide(
            onFakeKernel({ selection: { pids: [pid], exes: [] }, probes: [...Agent.builtins, WorkProbe], load })
          )
        )
      const lazy = yield* run("onAttach")
      assert.includeMembers([...lazy.attached], ["go_context", "example/work"])
      for (const s of lazy.stats) {
        // Loaded only for this process: attached, a dependency of one attached, or its attach failed after the load.
        if (s.load === "loaded") {
          assert.isTrue(lazy.attached.includes(s.probe) || lazy.needed.has(s.probe) || s.attachFailures > 0, s.probe)
        }
        if (lazy.attached.includes(s.probe)) assert.strictEqual(s.load, "loaded", s.probe)
      }
      // Their libraries are not in the program: described and listed, never verified.
      for (const name of ["otel_trace", "grpc", "kafka_go", "go_redis", "openssl_http"]) {
        assert.strictEqual(lazy.stats.find((s) => s.probe === name)?.load, "unloaded", name)
      }
      const eager = yield* run("eager")
      assert.deepStrictEqual([...eager.attached].sort(), [...lazy.attached].sort())
      assert.deepStrictEqual([...new Set(eager.stats.map((s) => s.load))], ["loaded"])
    }))

  it.live("by default the built-ins load on attach and other probes at start", () =>
    Effect.gen(function*() {
      const pid = app!.pid!
      // A probe of one's own that applies to nothing here: loaded anyway, so its errors show at start.
      const load = yield* Effect.gen(function*() {
        yield* (yield* Agent.Agent).ready
        return Object.fromEntries((yield* (yield* Manager).stats).map((s) => [s.probe, s.load]))
      }).pipe(
        Effect.provide(
          onFakeKernel({ selection: { pids: [pid], exes: [] }, probes: [...Agent.builtins, WorkProbe, elsewhere] })
        )
      )
      assert.strictEqual(load["test/elsewhere"], "loaded")
      assert.strictEqual(load["example/work"], "loaded")
      assert.strictEqual(load["otel_trace"], "unloaded")
      assert.strictEqual(load["grpc"], "unloaded")
      assert.strictEqual(load["go_context"], "loaded")
    }))

  it.live("selected by executable with nothing running: ready at once, with nothing attached", () =>
    Effect.gen(function*() {
      const other = Path.join(dir, "not-running")
      Fs.copyFileSync(exe, other)
      const report = yield* Effect.flatMap(Agent.Agent, (agent) => agent.ready).pipe(
        Effect.provide(onFakeKernel({ selection: { pids: [], exes: [other] }, probes: [WorkProbe] }))
      )
      assert.deepStrictEqual(report, {
        attached: [],
        failed: [],
        unmatched: [{ selector: `--exe ${other}`, reason: "no running process matches; watching for one" }]
      })
    }))

  it.live("an executable named with nothing running: what its processes need is loaded before ready", () =>
    Effect.gen(function*() {
      const other = Path.join(dir, "not-running-yet")
      Fs.copyFileSync(exe, other)
      const load = yield* Effect.gen(function*() {
        const report = yield* (yield* Agent.Agent).ready
        assert.deepStrictEqual(report.attached, [])
        return Object.fromEntries((yield* (yield* Manager).stats).map((s) => [s.probe, s.load]))
      }).pipe(
        Effect.provide(onFakeKernel({
          selection: { pids: [], exes: [other] },
          probes: [...Agent.builtins, WorkProbe],
          load: "onAttach"
        }))
      )
      // The app's probes, though no process of it runs: its first one is attached without a load.
      assert.strictEqual(load["example/work"], "loaded")
      assert.strictEqual(load["go_context"], "loaded")
      assert.strictEqual(load["otel_trace"], "unloaded")
      assert.strictEqual(load["grpc"], "unloaded")
    }))

  it.live("a named executable's probes go into the kernel before telemetry is built, and are not loaded again", () =>
    Effect.gen(function*() {
      const other = Path.join(dir, "preloaded")
      Fs.copyFileSync(exe, other)
      // One fake kernel for the agent, read by the telemetry layer when the agent builds it.
      const kernel = yield* Layer.build(BpfTest.layer)
      const fake = Context.get(kernel, BpfTest.FakeKernel)
      const loads = Effect.map(fake.events, (events) =>
        // Discovery's object loads at its build either way.
        events.flatMap((e) => e._tag === "Load" && e.object !== "discovery/process" ? [e.object] : []))
      let atTelemetry: ReadonlyArray<string> | undefined
      const telemetry = Layer.unwrap(Effect.map(loads, (seen) => {
        atTelemetry = seen
        return Telemetry.layerTest()
      }))
      const stats = yield* Effect.gen(function*() {
        yield* (yield* Agent.Agent).ready
        return yield* (yield* Manager).stats
      }).pipe(
        Effect.provide(Agent.layer({
          selection: { pids: [], exes: [other] },
          probes: [...Agent.builtins, WorkProbe],
          load: "onAttach",
          kernel: Layer.succeedContext(kernel),
          telemetry
        }))
      )
      const loaded = stats.filter((s) => s.load === "loaded").map((s) => s.probe).sort()
      assert.includeMembers(loaded, ["example/work", "go_context"])
      assert.deepStrictEqual([...(atTelemetry ?? [])].sort(), loaded)
      // Each once: the driver's preload and the attach found them loaded.
      assert.deepStrictEqual([...(yield* loads)].sort(), loaded)
    }).pipe(Effect.scoped))

  it.live("a bad setting is reported before a named file that is not Go, though the file is analysed meanwhile", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Layer.build(Agent.layer({
          selection: { pids: [], exes: ["/bin/true"] },
          probes: [Agent.builtin("go_context")!, Agent.builtin("go_panic")!],
          settings: { go_panic: { goroutines: "sometimes" } },
          kernel: BpfTest.layer,
          telemetry: Telemetry.layerTest()
        })).pipe(Effect.scoped)
      )
      assert.strictEqual(error._tag, "ProbeConfigError")
      assert.match(error.message, /^probe go_panic: config field "goroutines": /)
    }))

  it.live("an explicit pid none of the given probes supports: UnsupportedTarget with each one's reason", () =>
    Effect.gen(function*() {
      const pid = app!.pid!
      const error = yield* Effect.flip(
        Layer.build(onFakeKernel({ selection: { pids: [pid], exes: [] }, probes: [elsewhere] })).pipe(Effect.scoped)
      )
      assert.strictEqual(error._tag, "UnsupportedTarget")
      const go = execFileSync("go", ["env", "GOVERSION"]).toString().trim().replace(/^go/, "")
      assert.strictEqual(
        error.message,
        `pid ${pid}: ${Fs.realpathSync(exe)} (Go ${go}) is not supported: test/elsewhere: required symbol ` +
          "main.absent is not in the binary"
      )
    }))
})
