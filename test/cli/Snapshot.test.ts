/**
 * The CLI's V8 start-up snapshot: scripts/build-snapshot.mjs builds one only from modules that read nothing of the
 * machine at import (it names what they read otherwise), and bin/probescope starts from it only when this Node built
 * it for this dist/ and the blob is whole, else runs the bundle (a damaged blob with one line saying so). The CLI's
 * own modules are replaced by small fixture entries (test/cli/fixtures/snapshot/), in a package laid out as
 * bin/probescope expects: what is tested is the build's checks and the launcher's choice.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
// @ts-expect-error: a build script in plain JavaScript, without type declarations
import { buildSnapshot, files } from "../../scripts/build-snapshot.mjs"
import { launcherPackage, runLauncher } from "./launcherPackage.ts"

interface Built {
  readonly built: boolean
  readonly reason?: string
}
const build = buildSnapshot as (out: string, options?: { entry?: string; dist?: string }) => Promise<Built>
const snapshotFiles = files as (dist: string) => { blob: string; stamp: string; script: string }

const root = Path.resolve(import.meta.dirname, "../..")
const fixture = (name: string) => Path.join(root, "test/cli/fixtures/snapshot", `${name}.mjs`)
const tmp = Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-snapshot-"))

/**
 * A package as bin/probescope expects one: its launcher, this Node as node_modules/.bin/node, no src/ (so nothing is
 * rebuilt), and a bundle that says it ran; with a snapshot built from `entry` for its dist/.
 */
const makePackage = async (name: string, entry = fixture("plain")) => {
  const pkg = launcherPackage(Path.join(tmp, name), "console.log(`bundle: ${process.argv.slice(2).join(' ')}`)\n")
  const dist = Fs.realpathSync(Path.join(pkg, "dist"))
  const result = await build(dist, { entry })
  return { pkg, dist, result, ...snapshotFiles(dist) }
}

/** bin/probescope of `pkg` with `args`; `env` adds to (or, undefined, removes from) the environment. */
const launch = (pkg: string, args: ReadonlyArray<string>, env: Record<string, string | undefined> = {}) =>
  runLauncher(pkg, args, {
    PROBESCOPE_SNAPSHOT: undefined,
    PROBESCOPE_BUNDLE: undefined,
    NODE_OPTIONS: undefined,
    ...env
  })

/** Rewrites one `key value` line of a stamp. */
const restamp = (stamp: string, key: string, value: string) =>
  Fs.writeFileSync(
    stamp,
    Fs.readFileSync(stamp, "utf8").split("\n").map((l) => l.startsWith(`${key} `) ? `${key} ${value}` : l).join("\n")
  )

describe("scripts/build-snapshot.mjs", { timeout: 120_000 }, () => {
  it("builds a snapshot whose main runs with the launch's arguments, deferring http and Intl to run time", async () => {
    const { blob, dist, pkg, result, script, stamp } = await makePackage("plain")
    assert.deepStrictEqual(result, { built: true })
    assert.isTrue(Fs.existsSync(blob))
    assert.isFalse(Fs.existsSync(script), "the bundled script is not kept")
    const lines = Fs.readFileSync(stamp, "utf8").trim().split("\n")
    assert.deepStrictEqual(lines.map((l) => l.split(" ")[0]), ["node", "node-size", "node-mtime", "dist", "blob-size"])
    assert.include(lines, `node ${Fs.realpathSync(process.execPath)}`)
    assert.include(lines, `dist ${dist}`)
    assert.include(lines, `blob-size ${Fs.statSync(blob).size}`)
    const r = launch(pkg, ["list", "--json"])
    assert.strictEqual(r.status, 0, r.stderr)
    assert.strictEqual(r.stdout, "snapshot main: list --json | Not Found | 2 graphemes\n")
    assert.strictEqual(r.stderr, "")
  })

  it("refuses modules that read a variable, a file or the time zone at import, naming the read", async () => {
    const cases = [
      ["reads-env", "process.env.PROBESCOPE_TEST_LEVEL"],
      ["reads-file", "fs.readFileSync(/proc/sys/kernel/osrelease)"],
      ["reads-zone", "Intl.DateTimeFormat used"],
      ["loads-zlib", "node:zlib loaded"]
    ] as const
    for (const [name, read] of cases) {
      const { blob, pkg, result, script, stamp } = await makePackage(name, fixture(name))
      assert.isFalse(result.built, name)
      assert.strictEqual(
        result.reason,
        `modules read the environment at import, which a snapshot would freeze: ${read}`,
        name
      )
      for (const f of [blob, stamp, script]) assert.isFalse(Fs.existsSync(f), `${name}: ${f} left behind`)
      // Without a snapshot the launcher runs the bundle, saying nothing.
      const r = launch(pkg, ["list"])
      assert.deepStrictEqual(r, { status: 0, stdout: "bundle: list\n", stderr: "" }, name)
    }
  })
})

describe("bin/probescope and the snapshot", { timeout: 120_000 }, () => {
  it("runs the bundle when asked to, and for command lines that may load a user's probe module", async () => {
    const { pkg, result } = await makePackage("choice")
    assert.isTrue(result.built)
    assert.strictEqual(launch(pkg, ["list"], { PROBESCOPE_SNAPSHOT: "0" }).stdout, "bundle: list\n")
    assert.strictEqual(launch(pkg, ["list"], { PROBESCOPE_BUNDLE: "0" }).stdout, "bundle: list\n")
    assert.strictEqual(launch(pkg, ["list", "--probe", "tcp_metrics"]).stdout, "bundle: list --probe tcp_metrics\n")
    assert.strictEqual(launch(pkg, ["run", "--config=a.yaml"]).stdout, "bundle: run --config=a.yaml\n")
    // Node would skip an ES module preload when it starts from a snapshot.
    const preload = Path.join(tmp, "preload.mjs")
    Fs.writeFileSync(preload, "console.error('preloaded')\n")
    assert.deepStrictEqual(
      launch(pkg, ["list"], { NODE_OPTIONS: `--import ${preload}` }),
      { status: 0, stdout: "bundle: list\n", stderr: "preloaded\n" }
    )
    // Past `--` nothing is a flag.
    assert.match(launch(pkg, ["list", "--", "--probe"]).stdout, /^snapshot main: list -- --probe \|/)
  })

  it("uses a snapshot only from the Node binary and the dist/ it was built for, silently", async () => {
    const { pkg, result, stamp } = await makePackage("elsewhere")
    assert.isTrue(result.built)
    const original = Fs.readFileSync(stamp, "utf8")
    const changes = [
      ["node", "/usr/local/bin/some-other-node"],
      ["node-size", "1"],
      ["node-mtime", "1"],
      ["dist", Path.join(tmp, "moved/dist")]
    ] as const
    for (const [key, value] of changes) {
      restamp(stamp, key, value)
      assert.deepStrictEqual(launch(pkg, ["list"]), { status: 0, stdout: "bundle: list\n", stderr: "" }, key)
      Fs.writeFileSync(stamp, original)
    }
    assert.match(launch(pkg, ["list"]).stdout, /^snapshot main: list \|/)
  })

  it("runs the bundle with one line on stderr when the blob is not the size its stamp says", async () => {
    const { blob, pkg, result } = await makePackage("damaged")
    assert.isTrue(result.built)
    const size = Fs.statSync(blob).size
    Fs.truncateSync(blob, 4096)
    const r = launch(pkg, ["list"])
    assert.strictEqual(r.status, 0)
    assert.strictEqual(r.stdout, "bundle: list\n")
    assert.strictEqual(
      r.stderr,
      `probescope: ${blob} is damaged (4096 bytes, its stamp says ${size}): running without it ` +
        "(npm run build:ts makes a new one)\n"
    )
  })
})
