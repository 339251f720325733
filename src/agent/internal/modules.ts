/**
 * Loading probes from modules (`probescope run --probe ./my-probe.js`): a module's default export or its named
 * `probe` / `probes` export, each a probe definition, an array of them, or a layer. Loaded with `import()`, so a
 * module shares this process's `effect` when it resolves to the same copy.
 */
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { ProbeModuleError } from "./errors.ts"
import type { AgentProbe } from "./probes.ts"
import { isAgentProbe } from "./probes.ts"

/** The exports looked at, in this order. */
export const EXPORTS = ["default", "probe", "probes"] as const

/** Whether the running Node strips TypeScript types (Node ≥ 22.18 and 24 do by default). */
export const stripsTypes = (): boolean => {
  const ts = (process.features as { readonly typescript?: unknown }).typescript
  return ts === "strip" || ts === "transform"
}

const firstLine = (e: unknown): string => {
  const text = e instanceof Error ? e.message : String(e)
  return text.split("\n")[0]!.trim()
}

const kindOf = (u: unknown): string =>
  u === null ? "null" : Array.isArray(u) ? "an array" : typeof u === "object" ? "an object" : `a ${typeof u}`

const EXPECTED = "a Probe.instrument/Probe.daemon definition, an array of them, or a Layer"

/** The probes of one export, or why it holds none. */
const probesOf = (value: unknown): ReadonlyArray<AgentProbe> | string => {
  if (isAgentProbe(value)) return [value]
  if (!Array.isArray(value)) return `is ${kindOf(value)}, not ${EXPECTED}`
  if (value.length === 0) return "is an empty array"
  const bad = value.findIndex((v) => !isAgentProbe(v))
  return bad < 0 ? value as ReadonlyArray<AgentProbe> : `[${bad}] is ${kindOf(value[bad])}, not ${EXPECTED}`
}

/**
 * What a module's namespace offers: every probe of its `default`, `probe` and `probes` exports (each once); without
 * any of those, every named export that is a definition or a layer (so a module written for the library, exporting
 * `MyProbe`, loads as it is). Fails naming the module and why when it offers none, or when one of the three exports
 * is not a probe.
 */
export const fromNamespace = (
  module: string,
  namespace: Readonly<Record<string, unknown>>
): Effect.Effect<ReadonlyArray<AgentProbe>, ProbeModuleError> => {
  const fail = (why: string) => Effect.fail(new ProbeModuleError({ module, message: `probe module ${module}: ${why}` }))
  const present = EXPORTS.filter((name) => namespace[name] !== undefined)
  const out: Array<AgentProbe> = []
  for (const name of present) {
    const probes = probesOf(namespace[name])
    if (typeof probes === "string") return fail(`export "${name}" ${probes}`)
    for (const p of probes) if (!out.includes(p)) out.push(p)
  }
  if (present.length === 0) {
    for (const value of Object.values(namespace)) if (isAgentProbe(value) && !out.includes(value)) out.push(value)
  }
  return out.length > 0 ? Effect.succeed(out) : fail(
    `exports no probe (expected a default export, an export named "probe" or "probes", or named exports, holding ` +
      `${EXPECTED})`
  )
}

/**
 * Loads a probe module: `.js` and `.mjs`, and `.ts`/`.mts` when this Node strips types. `specifier` is a path,
 * relative to `base` (the working directory by default); errors name it as given.
 */
export const load = (
  specifier: string,
  base: string = process.cwd()
): Effect.Effect<ReadonlyArray<AgentProbe>, ProbeModuleError> =>
  Effect.gen(function*() {
    const fail = (why: string, cause?: unknown) =>
      new ProbeModuleError({
        module: specifier,
        message: `probe module ${specifier}: ${why}`,
        ...(cause === undefined ? {} : { cause })
      })
    const file = Path.resolve(base, specifier)
    const ext = Path.extname(file)
    if (![".js", ".mjs", ".ts", ".mts"].includes(ext)) {
      return yield* fail(`not a .js, .mjs or .ts module`)
    }
    if ((ext === ".ts" || ext === ".mts") && !stripsTypes()) {
      return yield* fail(`this Node (${process.version}) does not strip TypeScript types: compile it to .js`)
    }
    if (!Fs.existsSync(file)) return yield* fail("no such file")
    const namespace = yield* Effect.tryPromise({
      try: () => import(pathToFileURL(file).href) as Promise<Record<string, unknown>>,
      catch: (e) => fail(`failed to load: ${firstLine(e)}`, e)
    })
    return yield* fromNamespace(specifier, namespace)
  })
