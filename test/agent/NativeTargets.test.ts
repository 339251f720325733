/**
 * The Agent layer on the fake kernel with processes that are not Go: a C program (compiled here) and a python3
 * process that has imported ssl (libssl.so.3 mapped). With a shared-library probe or a tracepoint instrument given,
 * a process a selector names becomes a target through native analysis; one no probe applies to is reported with the
 * reasons, and the agent runs on. With Go probes only, nothing changes: naming a C program is the "not a Go program"
 * error it always was, and `--all-go` never picks one.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { WorkProbe } from "../../examples/custom-probe/WorkProbe.ts"
import * as Agent from "../../src/agent/Agent.ts"
import * as BpfTest from "../../src/kernel/BpfTest.ts"
import * as GoBinary from "../../src/target/GoBinary.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as Binary from "../../src/probe/Binary.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as Telemetry from "../../src/telemetry/Telemetry.ts"

let dir = ""
let cProgram = ""
const children: Array<ChildProcess> = []

/** Starts a process and waits for its first line of output. */
const start = (file: string, args: ReadonlyArray<string>): Promise<number> =>
  new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["ignore", "pipe", "ignore"] })
    children.push(child)
    child.on("error", reject)
    child.stdout!.once("data", () => resolve(child.pid!))
  })

const startC = () => start(cProgram, [])
const startPython = () =>
  start("/usr/bin/python3", ["-c", "import ssl, sys, time\nprint('ready', flush=True)\ntime.sleep(600)"])

/** A python3 process with ssl imported, listening on `port` of 127.0.0.1. */
const startPythonServer = (port: number) =>
  start("/usr/bin/python3", [
    "-c",
    `import socket, ssl, time\ns = socket.socket()\ns.bind(("127.0.0.1", ${port}))\ns.listen()\n` +
    "print('ready', flush=True)\ntime.sleep(600)"
  ])

beforeAll(() => {
  dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-agent-native-"))
  Fs.writeFileSync(
    Path.join(dir, "idle.c"),
    "#include <stdio.h>\n#include <unistd.h>\nint main(void) { puts(\"ready\"); fflush(stdout); for (;;) pause(); }\n"
  )
  cProgram = Path.join(dir, "idle")
  execFileSync("gcc", ["-O1", "-o", cProgram, Path.join(dir, "idle.c")])
}, 60_000)

afterAll(() => {
  for (const c of children) c.kill("SIGKILL")
  if (dir !== "") Fs.rmSync(dir, { recursive: true, force: true })
})

const Record = Binary.schema(Binary.struct({ n: Binary.u64 }))

const GoBinaryLayer = GoBinary.layer

const Ssl = Probe.instrument({
  name: "test/ssl",
  object: "/nonexistent/test_ssl.bpf.o",
  manifest: {
    library: { sharedObject: "libssl.so.3", versions: ">=3.0.0 <4" },
    symbols: [{ name: "SSL_write", entry: "uprobe_SSL_write", return: "uretprobe_SSL_write" }]
  },
  perTarget: { layout: Binary.struct({ on: Binary.u8 }), value: () => ({ on: 1 }) },
  sampling: "none",
  record: Record,
  span: () => undefined
})

const Sched = Probe.instrument({
  name: "test/sched",
  object: "/nonexistent/test_sched.bpf.o",
  manifest: { processes: "any", tracepoints: [{ program: "tp_switch", category: "sched", name: "sched_switch" }] },
  perTarget: { layout: Binary.struct({ on: Binary.u8 }), value: () => ({ on: 1 }) },
  sampling: "none",
  record: Record,
  span: () => undefined
})

const onFakeKernel = (options: Pick<Agent.Options, "selection" | "probes">) =>
  Agent.layer({ ...options, kernel: BpfTest.layer, telemetry: Telemetry.layerTest() })

const readyOf = (options: Pick<Agent.Options, "selection" | "probes">) => {
  // One fake kernel for the agent and the test (a layer is built once per reference): the test reads its events.
  const kernel = BpfTest.layer
  return Effect.gen(function*() {
    const report = yield* Effect.flatMap(Agent.Agent, (agent) => agent.ready)
    const targets = yield* Effect.flatMap(Manager, (m) => m.targets)
    const attaches = (yield* Effect.flatMap(BpfTest.FakeKernel, (k) => k.events)).flatMap((e) =>
      e._tag === "Attach" && e.object.startsWith("test/") ? [e] : []
    )
    return { report, targets, attaches }
  }).pipe(Effect.provide(Layer.merge(
    Agent.layer({ ...options, kernel, telemetry: Telemetry.layerTest() }),
    kernel
  )))
}

describe("Agent: processes that are not Go", { timeout: 60_000 }, () => {
  it.live("a python3 process with libssl mapped, by pid: the shared-library probe attaches", () =>
    Effect.gen(function*() {
      const pid = yield* Effect.promise(startPython)
      const { attaches, report, targets } = yield* readyOf({ selection: { pids: [pid], exes: [] }, probes: [Ssl] })
      const exe = Fs.realpathSync("/usr/bin/python3")
      assert.deepStrictEqual(report, { attached: [{ pid, exe, probes: ["test/ssl"] }], failed: [], unmatched: [] })
      assert.deepStrictEqual(targets, [{ pid, exe, probes: ["test/ssl"] }])
      // At SSL_write's offset in the library (nm's value: a shared object's addresses are its file offsets), on
      // this process only (a --pid selection), entry and return.
      const lib = "/usr/lib/x86_64-linux-gnu/libssl.so.3"
      const nm = execFileSync("nm", ["-D", "--defined-only", lib]).toString()
      const offset = Number.parseInt(/^([0-9a-f]+) T SSL_write@@/m.exec(nm)![1]!, 16)
      assert.deepStrictEqual(attaches.map((a) => [a.program, a.binary, a.offsets, a.pid, a.retprobe]), [
        ["uprobe_SSL_write", lib, [offset], pid, undefined],
        ["uretprobe_SSL_write", lib, [offset], pid, true]
      ])
    }))

  it.live("a C program without libssl, by pid: the agent refuses it up front, with each probe's reason", () =>
    Effect.gen(function*() {
      const pid = yield* Effect.promise(startC)
      const error = yield* Effect.flip(readyOf({ selection: { pids: [pid], exes: [] }, probes: [Ssl] }))
      assert.strictEqual(error._tag, "UnsupportedTarget")
      assert.strictEqual(
        error.message,
        `pid ${pid}: ${cProgram} (not Go) is not supported: test/ssl: shared library libssl.so.3 is not mapped by ` +
          "the process"
      )
    }))

  it.live("a C program by executable: a tracepoint instrument applies to it", () =>
    Effect.gen(function*() {
      const pid = yield* Effect.promise(startC)
      const { attaches, report } = yield* readyOf({ selection: { pids: [], exes: [cProgram] }, probes: [Sched, Ssl] })
      const mine = report.attached.filter((p) => p.pid === pid)
      assert.deepStrictEqual(mine, [{ pid, exe: cProgram, probes: ["test/sched"] }])
      // Selected by its executable, the tracepoint instrument's program is attached once, not per process.
      assert.deepStrictEqual(attaches.map((a) => [a.program, a.tracepoint]), [["tp_switch", "sched/sched_switch"]])
    }))

  it.live("a python3 server selected by its port: a target, its libssl links on this process only", () =>
    Effect.gen(function*() {
      const port = 20_000 + (process.pid % 20_000)
      const pid = yield* Effect.promise(() => startPythonServer(port))
      const { attaches, report } = yield* readyOf({ selection: { pids: [], exes: [], ports: [port] }, probes: [Ssl] })
      assert.deepStrictEqual(report.attached, [{ pid, exe: Fs.realpathSync("/usr/bin/python3"), probes: ["test/ssl"] }])
      // A port picks this process, not every process of python3: its links carry its pid.
      assert.deepStrictEqual(attaches.map((a) => a.pid), [pid, pid])
    }))

  it.live("Go probes only: naming a C program is the error it always was", () =>
    Effect.gen(function*() {
      const pid = yield* Effect.promise(startC)
      const error = yield* Effect.flip(
        Layer.build(onFakeKernel({ selection: { pids: [pid], exes: [] }, probes: [WorkProbe] })).pipe(Effect.scoped)
      )
      assert.strictEqual(error._tag, "NotGo")
      assert.strictEqual(
        error.message,
        `/proc/${pid}/exe: no Go build information (.go.buildinfo): not a Go program`
      )
    }))

  it.live("--all-go picks Go programs only, whatever probes are given", () =>
    Effect.gen(function*() {
      const pid = yield* Effect.promise(startC)
      const { report } = yield* readyOf({ selection: { pids: [], exes: [], goPredicate: () => true }, probes: [Sched] })
      assert.isFalse([...report.attached, ...report.failed].some((p) => p.pid === pid))
    }))
})

describe("list and inspect plan processes that are not Go the way run does", { timeout: 60_000 }, () => {
  it.live("a python3 process by pid: attach (the shared-library probe applies); a C program: not, with the reason", () =>
    Effect.gen(function*() {
      const probes = yield* Agent.describe([Ssl])
      const python = yield* Effect.promise(startPython)
      const c = yield* Effect.promise(startC)
      const selection = { pids: [python, c], exes: [] }
      const pythonExe = Fs.realpathSync("/usr/bin/python3")
      const planned = yield* Agent.explain(selection, probes, python, pythonExe).pipe(Effect.provide(GoBinaryLayer))
      assert.deepStrictEqual(planned, {
        pid: python,
        exe: pythonExe,
        selectedBy: [`--pid ${python}`],
        attach: true,
        reason: null
      })
      const notPlanned = yield* Agent.explain(selection, probes, c, cProgram).pipe(Effect.provide(GoBinaryLayer))
      assert.deepStrictEqual(notPlanned, {
        pid: c,
        exe: cProgram,
        selectedBy: [`--pid ${c}`],
        attach: false,
        reason: `${cProgram} (not Go) is not supported: test/ssl: shared library libssl.so.3 is not mapped by the process`
      })
    }))
})
