/**
 * The bundled CLI (dist/cli/probescope.mjs, built by scripts/build-dist.mjs with esbuild), as bin/probescope runs it:
 * it answers as the unbundled CLI (dist/cli/main.js) does, loads nothing of dist/ or node_modules/ but its own files,
 * hands command lines that load a user's probe module to the unbundled CLI (src/cli/Route.ts), and refuses an old
 * Node in one line. Which build ran is read from a module load hook (fixtures/record-loads.mjs), not assumed.
 */
import { assert, beforeAll, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { loadsUserModules } from "../../src/cli/Route.ts"

const root = Path.resolve(import.meta.dirname, "../..")
const bin = Path.join(root, "bin/probescope")
const bundle = Path.join(root, "dist/cli/probescope.mjs")
const userProbe = Path.join(root, "test/cli/fixtures/user-probe.mjs")
const tmp = Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-bundle-"))

interface Ran {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
  /** The file: URLs of every module loaded after Node's own start-up, relative to the checkout. */
  readonly loaded: ReadonlyArray<string>
}

let runs = 0
/** bin/probescope with `args`, recording what it loads; `env` adds to the environment. */
const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}, nodeOptions = ""): Ran => {
  const loads = Path.join(tmp, `loads-${runs++}`)
  const r = spawnSync(bin, args, {
    encoding: "utf8",
    timeout: 120_000,
    env: {
      ...process.env,
      // The bundle itself, not the start-up snapshot bin/probescope prefers when the build made one (Snapshot.test.ts).
      PROBESCOPE_SNAPSHOT: "0",
      ...env,
      PROBESCOPE_TEST_LOADS: loads,
      NODE_OPTIONS: `--import ${Path.join(root, "test/cli/fixtures/record-loads.mjs")} ${nodeOptions}`
    }
  })
  const text = Fs.existsSync(loads) ? Fs.readFileSync(loads, "utf8") : ""
  const loaded = text.split("\n").filter((u) => u.startsWith("file://")).map((u) =>
    Path.relative(root, new URL(u).pathname)
  )
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, loaded }
}

/** Only the bundle's own files (and package.json, read for the version). */
const onlyBundle = (loaded: ReadonlyArray<string>) =>
  loaded.filter((f) => !/^dist\/cli\/probescope(-[A-Z0-9]+)?\.mjs$/.test(f) && f !== "package.json")

beforeAll(() => {
  // bin/probescope builds dist/ (and the bundle) when it is missing or older than src/.
  const r = spawnSync(bin, ["--version"], { encoding: "utf8", timeout: 300_000 })
  assert.strictEqual(r.status, 0, r.stderr)
  assert.isTrue(
    Fs.existsSync(bundle),
    "no dist/cli/probescope.mjs: npm run build:ts bundles the CLI when esbuild (a devDependency) is installed"
  )
}, 300_000)

describe("the bundled CLI", { timeout: 120_000 }, () => {
  it("runs --help and list from its own files alone, printing what the unbundled CLI prints", () => {
    for (const args of [["--help"], ["list"], ["list", "--json"], ["inspect", "/bin/true", "--json"]]) {
      const bundled = cli(args)
      const unbundled = cli(args, { PROBESCOPE_BUNDLE: "0" })
      assert.strictEqual(bundled.status, 0, `${args.join(" ")}: ${bundled.stderr}`)
      assert.strictEqual(bundled.stdout, unbundled.stdout, args.join(" "))
      assert.strictEqual(bundled.stderr, unbundled.stderr, args.join(" "))
      assert.include(bundled.loaded, "dist/cli/probescope.mjs")
      assert.deepStrictEqual(onlyBundle(bundled.loaded), [], args.join(" "))
      // The comparison is with the other build: the unbundled one loads dist/ and effect from node_modules.
      assert.include(unbundled.loaded, "dist/cli/main.js")
      assert.isTrue(unbundled.loaded.some((f) => f.startsWith("node_modules/effect/")))
    }
  })

  it("hands a command line that loads a user's probe module to the unbundled CLI, which shares dist/ with it", () => {
    const r = cli(["list", "--no-builtins", "--probe", userProbe])
    assert.strictEqual(r.status, 0, r.stderr)
    assert.match(r.stdout, /^test\/user-probe {2}instrument {2}from /m)
    assert.include(r.loaded, "dist/cli/main.js")
    assert.include(r.loaded, "dist/runtime/entries/probe.js")
    assert.include(r.loaded, "test/cli/fixtures/user-probe.mjs")
    // Nothing of the bundle beyond its entry and the module that decided (no second copy of effect or the agent).
    assert.isAtMost(r.loaded.filter((f) => /^dist\/cli\/probescope-/.test(f)).length, 3)
  })

  it("decides by the config file too: probe modules there run unbundled, built-ins only stay bundled", () => {
    const withModule = Path.join(tmp, "with-module.json")
    Fs.writeFileSync(withModule, JSON.stringify({ probes: { builtins: false, modules: [userProbe] } }))
    const builtinsOnly = Path.join(tmp, "builtins.yaml")
    Fs.writeFileSync(builtinsOnly, "probes:\n  builtins: false\n  modules: [tcp_metrics]\n")
    const a = cli(["list", "--config", withModule])
    assert.strictEqual(a.status, 0, a.stderr)
    assert.match(a.stdout, /^test\/user-probe /m)
    assert.include(a.loaded, "dist/cli/main.js")
    const b = cli(["list", "--config", builtinsOnly])
    assert.strictEqual(b.status, 0, b.stderr)
    assert.match(b.stdout, /^tcp_metrics /m)
    assert.deepStrictEqual(onlyBundle(b.loaded), [])
  })

  it("refuses a Node older than 22.19 in one line, before loading anything else", () => {
    // This Node, made to say it is 22.18.0 before the bundle's first module runs.
    const fake = Path.join(tmp, "old-node.mjs")
    Fs.writeFileSync(
      fake,
      "Object.defineProperty(process, 'versions', { value: { ...process.versions, node: '22.18.0' } })\n" +
        "Object.defineProperty(process, 'version', { value: 'v22.18.0' })\n"
    )
    const r = cli(["list"], {}, `--import ${fake}`)
    assert.strictEqual(r.status, 1)
    assert.strictEqual(r.stdout, "")
    assert.match(
      r.stderr,
      /^probescope: Node >= 22\.19 is needed \(v22\.18\.0 found at \S+\): npm install --save-dev node@24 in your /
    )
    assert.deepStrictEqual(r.loaded.filter((f) => !f.endsWith("old-node.mjs")), ["dist/cli/probescope.mjs"])
  })
})

describe("Route.loadsUserModules", () => {
  const config = (name: string, text: string) => {
    const file = Path.join(tmp, name)
    Fs.writeFileSync(file, text)
    return file
  }

  it("sees probe modules on the command line, not built-in names", async () => {
    assert.isFalse(await loadsUserModules(["run", "--pid", "1"]))
    assert.isFalse(await loadsUserModules(["run", "--probe", "tcp_metrics", "--probe=go_panic", "--pid", "1"]))
    assert.isTrue(await loadsUserModules(["run", "--probe", "./my.ts", "--pid", "1"]))
    assert.isTrue(await loadsUserModules(["list", "--probe=probes/my.js"]))
    // A flag without its value is a usage error, which the unbundled CLI reports as it always did.
    assert.isTrue(await loadsUserModules(["list", "--probe"]))
  })

  it("reads probes.modules of a YAML or JSON config file", async () => {
    assert.isFalse(await loadsUserModules(["run", "--config", config("a.yaml", "selection:\n  pids: [1]\n")]))
    assert.isFalse(await loadsUserModules(["run", "--config", config("b.yaml", "probes:\n  modules: [tcp_metrics]\n")]))
    assert.isTrue(await loadsUserModules(["run", "--config", config("c.yaml", "probes:\n  modules: [./p.ts]\n")]))
    assert.isTrue(await loadsUserModules([`--config=${config("d.json", '{"probes":{"modules":["p.mjs"]}}')}`]))
    assert.isFalse(await loadsUserModules(["run", "--config", config("e.json", '{"probes":{"builtins":true}}')]))
  })

  it("answers true for what it cannot read: the unbundled CLI reports it in its own words", async () => {
    assert.isTrue(await loadsUserModules(["run", "--config", Path.join(tmp, "missing.yaml")]))
    assert.isTrue(await loadsUserModules(["run", "--config", config("bad.yaml", "probes: [\n")]))
    assert.isTrue(await loadsUserModules(["run", "--config", config("odd.yaml", "probes:\n  modules: 3\n")]))
  })
})
