/**
 * The runtime checks made before Effect loads: Node's version, and one copy of `effect` in package layouts built on
 * disk as npm and pnpm lay them out.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Requirements from "../../src/runtime/Requirements.ts"

const advice = Requirements.nodeAdvice

describe("checkNode", () => {
  it("refuses Node 20 naming the version, the binary and how to get a newer one", () => {
    const error = Requirements.checkNode("20.20.2", "/usr/bin/node")
    assert.instanceOf(error, Requirements.RuntimeRequirementError)
    assert.strictEqual(error?._tag, "RuntimeRequirementError")
    assert.strictEqual(error?.requirement, "node")
    assert.strictEqual(
      error?.message,
      `probescope needs Node >= 22.19 (Effect 4 does), but this is Node 20.20.2 (/usr/bin/node); ${advice}`
    )
  })

  it("draws the line at 22.19", () => {
    assert.strictEqual(Requirements.checkNode("22.18.1", "node")?.requirement, "node")
    assert.isUndefined(Requirements.checkNode("22.19.0", "node"))
    assert.isUndefined(Requirements.checkNode("24.21.0", "node"))
    assert.isUndefined(Requirements.checkNode("25.0.0-pre", "node"))
  })
})

/** Writes `{dir}/package.json` for a package `name` at `version`. */
const pkg = (dir: string, name: string, version: string) => {
  Fs.mkdirSync(dir, { recursive: true })
  Fs.writeFileSync(Path.join(dir, "package.json"), JSON.stringify({ name, version }))
  return dir
}

const layout = () => Fs.mkdtempSync(Path.join(Fs.realpathSync(Os.tmpdir()), "probescope-req-"))

/** A registry private to one test, standing in for `globalThis`. */
const registry = () => {
  let value: { effectDir: string; packageDir: string } | undefined
  return { get: () => value, set: (r: { effectDir: string; packageDir: string }) => void (value = r) }
}

describe("checkEffect", () => {
  it("accepts one hoisted copy shared with the project", () => {
    const root = layout()
    pkg(Path.join(root, "node_modules/effect"), "effect", "4.1.0")
    const probescope = pkg(Path.join(root, "node_modules/probescope"), "probescope", "0.1.0")
    assert.strictEqual(Requirements.projectDirOf(probescope), root)
    assert.isUndefined(Requirements.checkEffect(probescope, registry()))
  })

  it("refuses a second copy nested under probescope, naming both", () => {
    const root = layout()
    const theirs = pkg(Path.join(root, "node_modules/effect"), "effect", "4.1.0")
    const probescope = pkg(Path.join(root, "node_modules/probescope"), "probescope", "0.1.0")
    const ours = pkg(Path.join(probescope, "node_modules/effect"), "effect", "4.2.0")
    const error = Requirements.checkEffect(probescope, registry())
    assert.strictEqual(error?._tag, "RuntimeRequirementError")
    assert.strictEqual(error?.requirement, "effect-copies")
    assert.strictEqual(
      error?.message,
      `two copies of effect: probescope uses ${ours}, your project (${root}) uses ${theirs}; use one: declare ` +
        "`effect` (and `@effect/platform-node`) once in your package.json with a version in probescope's peer range " +
        "(^4.1.0), then `npm dedupe` (or delete node_modules and reinstall); `npm ls effect` shows every copy"
    )
  })

  it("accepts pnpm's layout, where both resolve to one store directory through symlinks", () => {
    const root = layout()
    const store = pkg(Path.join(root, "node_modules/.pnpm/effect@4.1.0/node_modules/effect"), "effect", "4.1.0")
    const probescope = pkg(
      Path.join(root, "node_modules/.pnpm/probescope@0.1.0/node_modules/probescope"),
      "probescope",
      "0.1.0"
    )
    Fs.symlinkSync(store, Path.join(root, "node_modules/.pnpm/probescope@0.1.0/node_modules/effect"))
    Fs.symlinkSync(store, Path.join(root, "node_modules/effect"))
    assert.strictEqual(Requirements.projectDirOf(probescope), root)
    assert.isUndefined(Requirements.checkEffect(probescope, registry()))
  })

  it("refuses an effect outside the peer range", () => {
    const root = layout()
    const effect = pkg(Path.join(root, "node_modules/effect"), "effect", "3.19.2")
    const probescope = pkg(Path.join(root, "node_modules/probescope"), "probescope", "0.1.0")
    const error = Requirements.checkEffect(probescope, registry())
    assert.strictEqual(error?.requirement, "effect-version")
    assert.strictEqual(
      error?.message,
      `probescope needs effect ^4.1.0, but ${effect} is effect 3.19.2; install a matching one: ` +
        "npm install effect@^4.1.0"
    )
  })

  it("refuses a second probescope in the process that loaded another copy of effect", () => {
    const shared = registry()
    const a = layout()
    const effectA = pkg(Path.join(a, "node_modules/effect"), "effect", "4.1.0")
    const probescopeA = pkg(Path.join(a, "node_modules/probescope"), "probescope", "0.1.0")
    const b = layout()
    const effectB = pkg(Path.join(b, "node_modules/effect"), "effect", "4.1.0")
    const probescopeB = pkg(Path.join(b, "node_modules/probescope"), "probescope", "0.1.0")
    assert.isUndefined(Requirements.checkEffect(probescopeA, shared))
    assert.isUndefined(Requirements.checkEffect(probescopeA, shared))
    const error = Requirements.checkEffect(probescopeB, shared)
    assert.strictEqual(error?.requirement, "effect-copies")
    assert.isTrue(error?.message.startsWith(
      `two copies of effect: probescope at ${probescopeA} uses ${effectA}, ` +
        `probescope at ${probescopeB} uses ${effectB};`
    ))
  })

  it("passes this checkout, which has one copy", () => {
    assert.isUndefined(Requirements.check())
    assert.strictEqual(Requirements.globalRegistry.get()?.packageDir, Requirements.packageDir)
  })
})
