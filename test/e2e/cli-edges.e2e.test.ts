/**
 * `probescope run` at its edges, as root (the kernel project): without privileges, with a named process that exits,
 * stopped by a signal before it is ready, and its scheduling priority (PROBESCOPE_NICE).
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn, spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { ExitCode } from "../../src/cli/Lifecycle.ts"
import { buildFixture } from "../target/helpers.ts"

const root = Path.resolve(import.meta.dirname, "../..")
const node = Path.join(root, "node_modules/.bin/node")
const main = Path.join(root, "src/cli/main.ts")
const quiet = { ...process.env, OTEL_TRACES_EXPORTER: "none", OTEL_METRICS_EXPORTER: "none" }

/** The agent as its own process (node directly: a signal must not land on bin/probescope's shell before exec). */
const agent = (args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const child = spawn(node, ["--disable-warning=ExperimentalWarning", main, ...args], {
    env: { ...quiet, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let stderr = ""
  child.stderr.on("data", (d) => (stderr += d))
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) =>
    child.on("exit", (code) => resolve({ code, stderr }))
  )
  const ready = new Promise<void>((resolve) =>
    child.stderr.on("data", () => stderr.includes("probescope: ready:") && resolve())
  )
  return { child, exited, ready }
}

/** A Go process the built-in probes support, sleeping until killed. */
const goSleeper = () => spawn(buildFixture("1.26.8", false), ["sleep"], { stdio: "ignore" })

/** The nice value of each thread of a process (/proc/<pid>/task/<tid>/stat, field 19). */
const threadNices = (pid: number): Array<number> =>
  Fs.readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
    try {
      const stat = Fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8")
      // Fields after the command name, which is in parentheses and may hold spaces: state is field 3, nice 19.
      return [Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16])]
    } catch {
      return [] // the thread exited meanwhile
    }
  })

describe("run at its edges", { timeout: 300_000 }, () => {
  it("as an unprivileged user: one line naming the missing capabilities, exit 1", () => {
    const sleeper = goSleeper()
    try {
      const r = spawnSync(
        "setpriv",
        ["--reuid=65534", "--regid=65534", "--clear-groups", Path.join(root, "bin/probescope"), "run", "--pid",
          String(sleeper.pid)],
        { encoding: "utf8", env: quiet, timeout: 60_000 }
      )
      assert.deepStrictEqual([r.status, r.stderr], [
        ExitCode.error,
        "probescope: missing capabilities CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH: run as root " +
        "(sudo), or grant them to the agent (systemd AmbientCapabilities=, docker run --cap-add); `probescope doctor` " +
        "checks the machine\n"
      ])
    } finally {
      sleeper.kill("SIGKILL")
    }
  })

  it("--pid only: once the process exits the agent says so and stops normally", async () => {
    const sleeper = goSleeper()
    const run = agent(["run", "--pid", String(sleeper.pid)])
    await run.ready
    sleeper.kill("SIGKILL")
    const { code, stderr } = await run.exited
    assert.strictEqual(code, ExitCode.ok, stderr)
    assert.include(stderr.split("\n"), "probescope: every selected process has exited")
  })

  it("SIGINT before ready is a normal stop: exit 0, nothing started", async () => {
    const sleeper = goSleeper()
    try {
      const run = agent(["run", "--pid", String(sleeper.pid)])
      // Node is up and loading the CLI (its modules take over a second): well before `ready`.
      await new Promise((r) => setTimeout(r, 300))
      run.child.kill("SIGINT")
      const { code, stderr } = await run.exited
      assert.strictEqual(code, ExitCode.ok, stderr)
      assert.notInclude(stderr, "probescope: ready:")
    } finally {
      sleeper.kill("SIGKILL")
    }
  })

  it("PROBESCOPE_NICE sets every thread of the agent; unset, an idle agent keeps its usual priority; not the target", async () => {
    const sleeper = goSleeper()
    try {
      // Unset, the agent gives way only while busy (test/cli/Priority.*): this one has nothing to read.
      for (const [env, expected] of [[{ PROBESCOPE_NICE: "4" }, 4], [{}, 0]] as const) {
        const run = agent(["run", "--pid", String(sleeper.pid)], env)
        await run.ready
        await new Promise((r) => setTimeout(r, 1_200))
        const nices = threadNices(run.child.pid!)
        run.child.kill("SIGINT")
        const { code, stderr } = await run.exited
        assert.strictEqual(code, ExitCode.ok, stderr)
        // V8's and libuv's workers and the agent's own threads: more than the main thread alone.
        assert.isAbove(nices.length, 4)
        assert.deepStrictEqual([...new Set(nices)], [expected], `threads' nice values ${nices.join(" ")}`)
      }
      assert.deepStrictEqual([...new Set(threadNices(sleeper.pid!))], [0])
    } finally {
      sleeper.kill("SIGKILL")
    }
  })

  it("a bad PROBESCOPE_NICE, or a raise without CAP_SYS_NICE, stops run at once with the reason", () => {
    const sleeper = goSleeper()
    try {
      const bad = spawnSync(node, ["--disable-warning=ExperimentalWarning", main, "run", "--pid", String(sleeper.pid)], {
        encoding: "utf8",
        env: { ...quiet, PROBESCOPE_NICE: "-30" },
        timeout: 60_000
      })
      assert.deepStrictEqual([bad.status, bad.stderr], [
        ExitCode.error,
        "probescope: Invalid PROBESCOPE_NICE=\"-30\": expected a whole number from -20 to 19\n"
      ])
      const raise = spawnSync(
        "setpriv",
        ["--reuid=65534", "--regid=65534", "--clear-groups", node, "--disable-warning=ExperimentalWarning", main, "run",
          "--pid", String(sleeper.pid)],
        { encoding: "utf8", env: { ...quiet, PROBESCOPE_NICE: "-5" }, timeout: 60_000 }
      )
      assert.deepStrictEqual([raise.status, raise.stderr], [
        ExitCode.error,
        "probescope: Cannot set the agent's nice value to -5 (PROBESCOPE_NICE): A system error occurred: " +
        "uv_os_setpriority returned EACCES (permission denied); raising a priority needs CAP_SYS_NICE (root)\n"
      ])
    } finally {
      sleeper.kill("SIGKILL")
    }
  })
})
