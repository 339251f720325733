/**
 * `probescope run` at its edges, as root (the kernel project): without privileges, with a named process that exits,
 * and stopped by a signal before it is ready.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn, spawnSync } from "node:child_process"
import * as Path from "node:path"
import { ExitCode } from "../../src/cli/Lifecycle.ts"
import { buildFixture } from "../target/helpers.ts"

const root = Path.resolve(import.meta.dirname, "../..")
const node = Path.join(root, "node_modules/.bin/node")
const main = Path.join(root, "src/cli/main.ts")
const quiet = { ...process.env, OTEL_TRACES_EXPORTER: "none", OTEL_METRICS_EXPORTER: "none" }

/** The agent as its own process (node directly: a signal must not land on bin/probescope's shell before exec). */
const agent = (...args: Array<string>) => {
  const child = spawn(node, ["--disable-warning=ExperimentalWarning", main, ...args], {
    env: quiet,
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
    const run = agent("run", "--pid", String(sleeper.pid))
    await run.ready
    sleeper.kill("SIGKILL")
    const { code, stderr } = await run.exited
    assert.strictEqual(code, ExitCode.ok, stderr)
    assert.include(stderr.split("\n"), "probescope: every selected process has exited")
  })

  it("SIGINT before ready is a normal stop: exit 0, nothing started", async () => {
    const sleeper = goSleeper()
    try {
      const run = agent("run", "--pid", String(sleeper.pid))
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
})
