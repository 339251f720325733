/**
 * Which build of the CLI a command line runs (src/cli/launch.ts asks, before Effect is loaded).
 *
 * The bundled CLI (dist/cli/probescope.mjs) carries its own copies of `effect` and of probescope's modules. A user's
 * probe module imports `probescope/probe` and `effect` from the installed package instead: its probes, schemas and
 * services would be another copy's, which do not mix with the bundle's (a `Context` tag or a `Schema` of one copy is
 * unknown to the other). So a command line that loads such a module runs the unbundled CLI (dist/cli/main.js), which
 * shares those modules with it; every other runs the bundle.
 *
 * Imports nothing but Node's own modules (and `yaml` for a YAML config file): whatever it loads is paid before the
 * command starts.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"

/** A bare name is a built-in probe's (`--probe tcp_metrics`); anything else is a module (ProbeList.setup). */
const isBuiltinName = (name: unknown): boolean => typeof name === "string" && /^\w+$/.test(name)

/** The values of `--name V` and `--name=V` in argv; an absent value (the flag last) is undefined. */
const flagValues = (argv: ReadonlyArray<string>, name: string): Array<string | undefined> => {
  const values: Array<string | undefined> = []
  argv.forEach((arg, i) => {
    if (arg === name) values.push(argv[i + 1])
    else if (arg.startsWith(`${name}=`)) values.push(arg.slice(name.length + 1))
  })
  return values
}

/**
 * Whether the config file names a probe module in `probes.modules`. What cannot be read or parsed answers true: the
 * unbundled CLI then reports it in its own words (ConfigFile.load), exactly as before there was a bundle.
 */
const configLoadsModules = async (file: string): Promise<boolean> => {
  try {
    const text = Fs.readFileSync(file, "utf8")
    // As ConfigFile.load reads it: `.json` as JSON, anything else as YAML.
    const content: unknown = Path.extname(file) === ".json"
      ? JSON.parse(text)
      : (await import("yaml")).parse(text, { prettyErrors: false })
    if (content === null || content === undefined) return false
    if (typeof content !== "object") return true
    const probes = (content as { probes?: unknown }).probes
    if (probes === undefined || probes === null) return false
    if (typeof probes !== "object") return true
    const modules = (probes as { modules?: unknown }).modules
    if (modules === undefined) return false
    return !Array.isArray(modules) || !modules.every(isBuiltinName)
  } catch {
    return true
  }
}

/**
 * Whether `argv` (the arguments after the script) makes the CLI import a module of the user's: a `--probe` that is
 * not a built-in's name, or a `--config` whose `probes.modules` is. Errs towards true: the unbundled CLI runs every
 * command line correctly, only more slowly.
 */
export const loadsUserModules = async (argv: ReadonlyArray<string>): Promise<boolean> => {
  // Past `--` nothing is a flag to effect/cli; a probe module there would be a usage error in either build.
  const end = argv.indexOf("--")
  const args = end < 0 ? argv : argv.slice(0, end)
  if (flagValues(args, "--probe").some((v) => !isBuiltinName(v))) return true
  for (const file of flagValues(args, "--config")) {
    if (file === undefined || await configLoadsModules(file)) return true
  }
  return false
}
