/**
 * The embedding example runs as documented (fake kernel, no root): it reports the Go process it attached to on
 * stdout, and nothing else goes there — the agent's logs are on stderr.
 */
import { assert, describe, it } from "@effect/vitest"
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"

const root = Path.resolve(import.meta.dirname, "../..")
let dir = ""
let exe = ""
let app: ChildProcess | undefined

beforeAll(async () => {
  dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-embed-"))
  exe = Path.join(dir, "workapp")
  execFileSync("go", ["build", "-o", exe, "."], { cwd: Path.join(root, "examples/custom-probe/app") })
  app = spawn(exe, [], { stdio: ["ignore", "pipe", "ignore"] })
  // Running (and so found by the agent's start-up scan) once it has printed its pid.
  await new Promise((resolve) => app!.stdout!.once("data", resolve))
}, 300_000)

afterAll(() => {
  app?.kill("SIGKILL")
  if (dir !== "") Fs.rmSync(dir, { recursive: true, force: true })
})

describe("examples/embed-agent", { timeout: 120_000 }, () => {
  it("attaches to the running process; its report alone on stdout, the agent's log line on stderr", () => {
    const main = Path.join(root, "examples/embed-agent/main.ts")
    const r = spawnSync(Path.join(root, "node_modules/.bin/node"), [main, exe], { encoding: "utf8", timeout: 60_000 })
    assert.strictEqual(r.status, 0, r.stderr)
    // The service serves no HTTP: none of the built-ins applies beside the example's probe.
    // go_panic, a default built-in, attaches to every Go program.
    assert.strictEqual(r.stdout, `pid ${app!.pid}: example/work, go_panic\n`)
    // go_context attaches too where the Manager attaches a daemon everywhere it applies.
    assert.match(
      r.stderr,
      new RegExp(`pid ${app!.pid}: attached \\d probe\\(s\\): (go_context, )?.*example/work.*$`, "m")
    )
  })
})
