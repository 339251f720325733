import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { CliOutput, Command } from "effect/cli"
import { spawn, spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { probescope, usageLine } from "../../src/cli/Commands.ts"
import { agentPrivileges, memlockBound, privilegesMessage } from "../../src/cli/Doctor.ts"
import { ExitCode } from "../../src/cli/Lifecycle.ts"
import { startTime } from "../../src/cli/PidWatch.ts"
import { buildFixture } from "../target/helpers.ts"

const root = Path.resolve(import.meta.dirname, "../..")
const node = Path.join(root, "node_modules/.bin/node")

/** Runs the real CLI (no privileges needed for what these tests ask of it). */
const cli = (...args: Array<string>) => {
  const r = spawnSync(Path.join(root, "bin/probescope"), args, { encoding: "utf8", timeout: 60_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** The parse error effect/cli fails with, without printing anything. */
const parseError = (args: ReadonlyArray<string>) =>
  Command.runWith(probescope, { version: "test" })(args).pipe(
    Effect.flip,
    Effect.provide(Layer.merge(NodeServices.layer, CliOutput.layerPresenter({ present: () => Effect.void })))
  )

describe("usage errors are one line and exit 2", { timeout: 120_000 }, () => {
  const cases: ReadonlyArray<{ args: Array<string>; tag: string; line: string }> = [
    {
      args: ["run", "--status-interval", "-5", "--pid", "1"],
      tag: "InvalidValue",
      line: "probescope: Invalid value for flag --status-interval: \"-5\". Expected: a number of seconds, 0 or more " +
        "(see probescope run --help)"
    },
    {
      args: ["run", "--pid", "abc"],
      tag: "InvalidValue",
      line: "probescope: Invalid value for flag --pid: \"abc\". Expected a string representing a finite number " +
        "(see probescope run --help)"
    },
    {
      args: ["run", "--pid", "0"],
      tag: "InvalidValue",
      line: "probescope: Invalid value for flag --pid: \"0\". Expected: a positive process id " +
        "(see probescope run --help)"
    },
    {
      args: ["run", "--bogus"],
      tag: "UnrecognizedOption",
      line: "probescope: Unrecognized flag: --bogus in command probescope run (see probescope run --help)"
    }
  ]
  for (const c of cases) {
    it.effect(c.args.join(" "), () =>
      Effect.gen(function*() {
        const error = yield* parseError(c.args)
        assert.strictEqual(error._tag, "ShowHelp")
        if (error._tag !== "ShowHelp") return
        assert.deepStrictEqual(error.errors.map((e) => e._tag), [c.tag])
        assert.strictEqual(usageLine(error.commandPath, error.errors), c.line)
        const r = cli(...c.args)
        assert.deepStrictEqual([r.status, r.stderr, r.stdout], [ExitCode.usage, `${c.line}\n`, ""])
      }))
  }

  it("the handler's own usage error: one line, exit 2", () => {
    const r = cli("run")
    assert.deepStrictEqual([r.status, r.stderr], [
      ExitCode.usage,
      "probescope: run needs at least one --pid N, --exe PATH, --port N, --container ID, --cgroup PATH or --all-go\n"
    ])
  })
})

describe("inspect of a program that is not Go", { timeout: 120_000 }, () => {
  it("/bin/true: the native analysis, and no Go probe applies", () => {
    const r = cli("inspect", "/bin/true")
    assert.strictEqual(r.status, 0)
    assert.strictEqual(r.stderr, "")
    const lines = r.stdout.split("\n")
    assert.strictEqual(lines[0], "/bin/true")
    assert.match(lines[1]!, /^  native c (pie|executable), (stripped|symbols), \d+ functions/)
    assert.strictEqual(lines[2], "  needs libc.so.6")
    assert.include(lines, "  ✗ nethttp_server (instrument): not a Go program (c)")
  })

  it("--json of libssl.so.3: a native section with its soname and OpenSSL's API level", () => {
    const r = cli("inspect", "--json", "/usr/lib/x86_64-linux-gnu/libssl.so.3")
    assert.strictEqual(r.status, 0)
    const report = JSON.parse(r.stdout)
    assert.strictEqual(report.pid, null)
    assert.strictEqual(report.native.kind, "shared-object")
    assert.strictEqual(report.native.soname, "libssl.so.3")
    assert.strictEqual(report.native.libraries[0].name, "openssl")
    assert.isAbove(report.native.functionCount, 100)
  })

  it("--pid of a process that is not Go: the objects it mapped, libc among them", () => {
    const child = spawn("sleep", ["30"], { stdio: "ignore" })
    try {
      const r = cli("inspect", "--json", "--pid", String(child.pid))
      assert.strictEqual(r.status, 0, r.stderr)
      const report = JSON.parse(r.stdout)
      assert.strictEqual(report.pid, child.pid)
      const libc = report.mappedObjects.find((o: { path: string }) => o.path.endsWith("/libc.so.6"))
      assert.match(libc.base, /^0x[0-9a-f]+000$/)
    } finally {
      child.kill("SIGKILL")
    }
  })
})

describe("inspect of a binary with corrupt headers", { timeout: 300_000 }, () => {
  it("zeroed program headers: CorruptElf's line, exit 1", () => {
    const b = Buffer.from(Fs.readFileSync(buildFixture("1.26.8", true)))
    const phoff = Number(b.readBigUInt64LE(32))
    const phnum = b.readUInt16LE(56)
    b.fill(0, phoff, phoff + phnum * 56)
    const file = Path.join(Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-")), "zeroed-ph")
    Fs.writeFileSync(file, b, { mode: 0o755 })
    const r = cli("inspect", file)
    assert.deepStrictEqual([r.status, r.stderr, r.stdout], [
      ExitCode.error,
      `probescope: ${file}: program headers: no PT_LOAD segment among ${phnum} entries (zeroed?): addresses ` +
      "cannot be mapped to the file\n",
      ""
    ])
  })

  it("zeroed section headers: CorruptElf's line, exit 1", () => {
    const b = Buffer.from(Fs.readFileSync(buildFixture("1.26.8", true)))
    const shoff = Number(b.readBigUInt64LE(40))
    const shnum = b.readUInt16LE(60)
    b.fill(0, shoff, shoff + shnum * 64)
    const file = Path.join(Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-")), "zeroed-sh")
    Fs.writeFileSync(file, b, { mode: 0o755 })
    const r = cli("inspect", "--json", file)
    assert.deepStrictEqual([r.status, r.stderr, r.stdout], [
      ExitCode.error,
      `probescope: ${file}: section headers: all ${shnum} entries are empty (zeroed?): sections cannot be located\n`,
      ""
    ])
  })
})

const capEff = (...bits: Array<bigint>) =>
  `Name:\tnode\nCapEff:\t${bits.reduce((a, b) => a | (1n << b), 0n).toString(16).padStart(16, "0")}\n`

describe("run's privileges, from CapEff", () => {
  it("nothing: every capability is named, and it is fatal", () => {
    const p = agentPrivileges(capEff(), { otherUsers: false, memlock: false })
    assert.deepStrictEqual(p, {
      missing: ["CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"],
      fatal: true
    })
    assert.strictEqual(
      privilegesMessage(p.missing),
      "missing capabilities CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH: run as root (sudo), or grant " +
        "them to the agent (systemd AmbientCapabilities=, docker run --cap-add); `probescope doctor` checks the machine"
    )
  })

  it("CAP_BPF + CAP_PERFMON suffice for one's own processes; another user's needs CAP_SYS_PTRACE", () => {
    assert.deepStrictEqual(agentPrivileges(capEff(38n, 39n), { otherUsers: false, memlock: false }), {
      missing: ["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"],
      fatal: false
    })
    assert.isTrue(agentPrivileges(capEff(38n, 39n), { otherUsers: true, memlock: false }).fatal)
    assert.deepStrictEqual(agentPrivileges(capEff(38n, 39n, 19n), { otherUsers: true, memlock: false }), {
      missing: ["CAP_DAC_READ_SEARCH"],
      fatal: false
    })
  })

  it("CAP_SYS_ADMIN stands in for CAP_BPF + CAP_PERFMON; root has everything", () => {
    assert.deepStrictEqual(agentPrivileges(capEff(21n, 19n, 2n), { otherUsers: true, memlock: false }), {
      missing: [],
      fatal: false
    })
    assert.deepStrictEqual(agentPrivileges("CapEff:\t000001ffffffffff\n", { otherUsers: true, memlock: true }), {
      missing: [],
      fatal: false
    })
  })

  it("CAP_SYS_RESOURCE only where the kernel charges BPF maps to a bounded RLIMIT_MEMLOCK", () => {
    const limits = (v: string) => `Limit Soft Limit Hard Limit Units\nMax locked memory         ${v}  ${v}  bytes\n`
    assert.isTrue(memlockBound("5.10.0-28-amd64", limits("8388608")))
    assert.isFalse(memlockBound("5.10.0-28-amd64", limits("unlimited")))
    assert.isFalse(memlockBound("6.18.44-fc", limits("8388608")))
    const p = agentPrivileges(capEff(38n, 39n, 19n, 2n), { otherUsers: false, memlock: true })
    assert.deepStrictEqual(p, { missing: ["CAP_SYS_RESOURCE"], fatal: true })
  })
})

describe("pid watching", () => {
  it("reads the start time past a command name with spaces and parentheses; zombies have exited", () => {
    const stat = (state: string) =>
      `4242 (a (b) c) ${state} 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 0`
    assert.strictEqual(startTime(stat("S")), "987654")
    assert.strictEqual(startTime(stat("R")), "987654")
    assert.isUndefined(startTime(stat("Z")))
    assert.isUndefined(startTime(undefined))
    assert.isString(startTime(Fs.readFileSync("/proc/self/stat", "utf8")))
  })
})

/** Starts the Lifecycle fixture; resolves once it printed "ready". */
const lifecycle = (...args: Array<string>) => {
  const child = spawn(node, [Path.join(import.meta.dirname, "fixtures/lifecycle.ts"), ...args], {
    stdio: ["ignore", "pipe", "pipe"]
  })
  let stderr = ""
  child.stderr.on("data", (d) => (stderr += d))
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) =>
    child.on("exit", (code) => resolve({ code, stderr }))
  )
  const ready = new Promise<void>((resolve) => child.stdout.on("data", (d) => String(d).includes("ready") && resolve()))
  return { child, exited, ready }
}

describe("Lifecycle: the first signal stops, a second one or the bound exits at once", { timeout: 60_000 }, () => {
  it("a finalizer that finishes: the command's own exit code (0, or 3 when data was lost)", async () => {
    const clean = lifecycle("5000", "10", "0")
    await clean.ready
    clean.child.kill("SIGINT")
    assert.deepStrictEqual(await clean.exited, { code: ExitCode.ok, stderr: "" })
    const lost = lifecycle("5000", "10", String(ExitCode.dataLost))
    await lost.ready
    lost.child.kill("SIGTERM")
    assert.deepStrictEqual(await lost.exited, { code: ExitCode.dataLost, stderr: "" })
  })

  it("a finalizer that hangs: the bound (timeout + 2000 ms margin) exits 4", async () => {
    const p = lifecycle("100", "never")
    await p.ready
    p.child.kill("SIGTERM")
    assert.deepStrictEqual(await p.exited, {
      code: ExitCode.shutdownTimeout,
      stderr: "probescope: shutdown did not finish within 2100 ms: exiting now\n"
    })
  })

  it("a second SIGINT exits 130, a second SIGTERM 143", async () => {
    for (const [signal, code] of [["SIGINT", ExitCode.secondSigint], ["SIGTERM", ExitCode.secondSigterm]] as const) {
      const p = lifecycle("60000", "never")
      await p.ready
      p.child.kill(signal)
      await new Promise((r) => setTimeout(r, 200))
      p.child.kill(signal)
      assert.deepStrictEqual(await p.exited, {
        code,
        stderr: `probescope: second ${signal} during shutdown: exiting now\n`
      })
    }
  })
})
