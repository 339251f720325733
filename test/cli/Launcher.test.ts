/**
 * What bin/probescope starts Node with, besides the choice of snapshot or bundle (Snapshot.test.ts): its default V8
 * flags and glibc allocator settings, each replaced by the caller's own. The package is a copy of the launcher beside
 * this Node and a bundle that prints what its process was given.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { launcherPackage, runLauncher } from "./launcherPackage.ts"

// A bundle that prints what its process was given.
const pkg = launcherPackage(
  Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-launcher-")),
  "console.log(JSON.stringify({ execArgv: process.execArgv, arenas: process.env.MALLOC_ARENA_MAX ?? null, " +
    "trim: process.env.MALLOC_TRIM_THRESHOLD_ ?? null, args: process.argv.slice(2) }))\n"
)

interface Seen {
  readonly execArgv: ReadonlyArray<string>
  readonly arenas: string | null
  readonly trim: string | null
  readonly args: ReadonlyArray<string>
}

/** The launcher with `env` added to (or, undefined, removed from) this environment; what its Node saw. */
const launch = (env: Record<string, string | undefined>): Seen => {
  const clean = { PROBESCOPE_NODE_FLAGS: undefined, MALLOC_ARENA_MAX: undefined, MALLOC_TRIM_THRESHOLD_: undefined }
  const r = runLauncher(pkg, ["list", "--json"], { ...clean, ...env })
  assert.strictEqual(r.status, 0, r.stderr)
  return JSON.parse(r.stdout) as Seen
}

describe("bin/probescope's start-up settings", () => {
  afterAll(() => Fs.rmSync(pkg, { recursive: true, force: true }))

  it("starts Node with 8 MiB semi-spaces, two malloc arenas and a fixed 128 KiB trim threshold by default", () => {
    assert.deepStrictEqual(launch({}), {
      execArgv: ["--max-semi-space-size=8"],
      arenas: "2",
      trim: "131072",
      args: ["list", "--json"]
    })
  })

  it("keeps the caller's allocator settings and flags, an empty PROBESCOPE_NODE_FLAGS meaning none", () => {
    assert.deepStrictEqual(
      launch({ MALLOC_ARENA_MAX: "8", MALLOC_TRIM_THRESHOLD_: "4194304", PROBESCOPE_NODE_FLAGS: "" }),
      { execArgv: [], arenas: "8", trim: "4194304", args: ["list", "--json"] }
    )
    assert.deepStrictEqual(launch({ PROBESCOPE_NODE_FLAGS: "--max-semi-space-size=4 --stack-size=2000" }).execArgv, [
      "--max-semi-space-size=4",
      "--stack-size=2000"
    ])
  })
})

// Installed in a project: the package under node_modules/probescope with no Node of its own, the project's Node in
// node_modules/.bin (a wrapper that marks what it runs), and npm's relative symlink to the launcher beside it.
describe("bin/probescope in a project", () => {
  const project = Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-project-"))
  const bin = Path.join(project, "node_modules/.bin")
  const installed = launcherPackage(
    Path.join(project, "node_modules/probescope"),
    "console.log(JSON.stringify({ node: process.env.PROJECT_NODE ?? null, args: process.argv.slice(2) }))\n"
  )
  Fs.rmSync(Path.join(installed, "node_modules"), { recursive: true })
  Fs.mkdirSync(bin, { recursive: true })
  Fs.writeFileSync(Path.join(bin, "node"), `#!/bin/sh\nPROJECT_NODE=project exec ${process.execPath} "$@"\n`)
  Fs.chmodSync(Path.join(bin, "node"), 0o755)
  Fs.symlinkSync("../probescope/bin/probescope", Path.join(bin, "probescope"))
  afterAll(() => Fs.rmSync(project, { recursive: true, force: true }))

  /** `command` run from `cwd` as a shell would run it (a relative command is the launcher's $0 as typed). */
  const run = (cwd: string, command: string) => {
    const r = spawnSync(command, ["list"], { cwd, encoding: "utf8", timeout: 60_000 })
    assert.strictEqual(r.status, 0, r.stderr)
    return JSON.parse(r.stdout) as { readonly node: string | null; readonly args: ReadonlyArray<string> }
  }

  it("finds its package and the project's Node through npm's symlink, a relative path, and a path with . or ..", () => {
    const expected = { node: "project", args: ["list"] }
    assert.deepStrictEqual(run(project, Path.join(bin, "probescope")), expected, "the symlink, absolute")
    assert.deepStrictEqual(run(project, "node_modules/.bin/probescope"), expected, "the symlink, relative")
    assert.deepStrictEqual(run(installed, "./bin/probescope"), expected, "./bin/probescope in the package")
    assert.deepStrictEqual(run(Path.join(installed, "bin"), "../bin/probescope"), expected, "../bin/probescope")
    assert.deepStrictEqual(run(project, "node_modules/probescope/bin/probescope"), expected, "the file, relative")
  })
})
