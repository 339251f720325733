/**
 * Loading probe modules (`probescope run --probe`): each export form the docs promise, and each way a module can
 * fail, with the exact line the CLI prints.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import * as Agent from "../../src/agent/Agent.ts"

const probeApi = pathToFileURL(Path.resolve(import.meta.dirname, "../../src/probe/Probe.ts")).href
const effect = pathToFileURL(Path.resolve(import.meta.dirname, "../../node_modules/effect/dist/index.js")).href
const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-modules-"))

/** Two probe definitions any module below can build. */
const defs = `
import * as Probe from ${JSON.stringify(probeApi)}
const manifest = (fn) => ({ library: { module: "std" }, symbols: [{ name: fn, entry: "uprobe_x" }] })
export const make = (name) => Probe.daemon({ name, object: "/nonexistent/x.bpf.o", manifest: manifest("main." + name) })
`

/** Writes a module and returns its path relative to `dir`. */
const write = (name: string, body: string) => {
  Fs.writeFileSync(Path.join(dir, name), body)
  return `./${name}`
}
write("defs.mjs", defs)

const load = (module: string) => Agent.loadProbeModule(module, dir)
const names = (probes: ReadonlyArray<Agent.AgentProbe>) =>
  Effect.map(Agent.describe(probes), (infos) => infos.map((i) => i.name))

describe("probe modules", () => {
  it.effect("a default export holding one definition", () =>
    Effect.gen(function*() {
      const module = write("one.mjs", `import { make } from "./defs.mjs"\nexport default make("t/one")\n`)
      const probes = yield* load(module)
      assert.strictEqual(probes.length, 1)
      assert.deepStrictEqual(yield* names(probes), ["t/one"])
    }))

  it.effect("an array under `probes`, and `probe` beside it; the same definition twice counts once", () =>
    Effect.gen(function*() {
      const module = write(
        "array.mjs",
        `import { make } from "./defs.mjs"\nconst a = make("t/a")\nexport const probes = [a, make("t/b")]\n` +
          `export const probe = a\n`
      )
      const probes = yield* load(module)
      assert.strictEqual(probes.length, 2)
      assert.deepStrictEqual(yield* names(probes), ["t/a", "t/b"])
    }))

  it.effect("a Layer: its probes are found by building it", () =>
    Effect.gen(function*() {
      const module = write(
        "layer.mjs",
        `import { Layer } from ${JSON.stringify(effect)}\nimport { make } from "./defs.mjs"\n` +
          `export default Layer.mergeAll(make("t/l1").layer, make("t/l2").layer)\n`
      )
      const probes = yield* load(module)
      assert.strictEqual(probes.length, 1)
      assert.isTrue(Layer.isLayer(probes[0]))
      assert.deepStrictEqual(yield* names(probes), ["t/l1", "t/l2"])
    }))

  it.effect("without default/probe/probes: every named export that is a probe (a .ts module)", () =>
    Effect.gen(function*() {
      const module = write(
        "named.ts",
        `import { make } from "./defs.mjs"\nexport const First: unknown = make("t/first")\nexport const n: number = 1\n`
      )
      assert.deepStrictEqual(yield* names(yield* load(module)), ["t/first"])
    }))

  it.effect("a module exporting nothing usable: ProbeModuleError naming it", () =>
    Effect.gen(function*() {
      const module = write("nothing.mjs", `export const x = 1\n`)
      const error = yield* Effect.flip(load(module))
      assert.strictEqual(error._tag, "ProbeModuleError")
      assert.strictEqual(error.module, module)
      assert.strictEqual(
        error.message,
        `probe module ${module}: exports no probe (expected a default export, an export named "probe" or "probes", ` +
          "or named exports, holding a Probe.instrument/Probe.daemon definition, an array of them, or a Layer)"
      )
    }))

  it.effect("a default export that is not a probe, and an array with a stranger", () =>
    Effect.gen(function*() {
      const number = write("number.mjs", `export default 42\n`)
      const e1 = yield* Effect.flip(load(number))
      assert.strictEqual(e1._tag, "ProbeModuleError")
      assert.strictEqual(
        e1.message,
        `probe module ${number}: export "default" is a number, not a Probe.instrument/Probe.daemon definition, an ` +
          "array of them, or a Layer"
      )
      const mixed = write("mixed.mjs", `import { make } from "./defs.mjs"\nexport const probes = [make("t/m"), {}]\n`)
      const e2 = yield* Effect.flip(load(mixed))
      assert.strictEqual(
        e2.message,
        `probe module ${mixed}: export "probes" [1] is an object, not a Probe.instrument/Probe.daemon definition, an ` +
          "array of them, or a Layer"
      )
    }))

  it.effect("a module that throws while loading: the error's first line, the error kept as the cause", () =>
    Effect.gen(function*() {
      const module = write("throws.mjs", `throw new Error("boom\\nsecond line")\n`)
      const error = yield* Effect.flip(load(module))
      assert.strictEqual(error._tag, "ProbeModuleError")
      assert.strictEqual(error.message, `probe module ${module}: failed to load: boom`)
      assert.instanceOf(error.cause, Error)
    }))

  it.effect("a missing file and a file that is not a module", () =>
    Effect.gen(function*() {
      const missing = yield* Effect.flip(load("./absent.js"))
      assert.strictEqual(missing.message, "probe module ./absent.js: no such file")
      const text = write("notes.txt", "hello\n")
      const wrong = yield* Effect.flip(load(text))
      assert.strictEqual(wrong.message, `probe module ${text}: not a .js, .mjs or .ts module`)
    }))
})
