/**
 * Builds one generated program per (module release, Go toolchain) and reads the wanted fields' offsets from its
 * DWARF with probescope's own reader. Results are cached per build under test/.cache/offsets/ (a later run, or a run
 * for another module, only assembles them), so generation can be stopped and resumed.
 */
import { execFile } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { promisify } from "node:util"
import { readBuildInfo } from "../../src/target/internal/BuildInfo.ts"
import { readStructs } from "../../src/target/internal/Dwarf.ts"
import { parseElf } from "../../src/target/internal/Elf.ts"
import type { ModuleSpec } from "./specs.ts"

const run = promisify(execFile)

/** One build's measurements. */
export interface Measured {
  readonly module: string
  readonly version: string
  readonly go: string
  /** Why nothing was measured (the release does not build with that Go, say). */
  readonly error?: string
  /** Module → version, as the binary's build info lists them. */
  readonly deps: Readonly<Record<string, string>>
  /** Type → field → offset; a type or field absent from the DWARF is absent here. */
  readonly fields: Readonly<Record<string, Readonly<Record<string, number>>>>
}

/** "type.field" of every wanted field: what a cached measurement looked for (redone when more is wanted later). */
const wantedKeys = (wanted: ReadonlyMap<string, ReadonlySet<string>>): Array<string> =>
  [...wanted].flatMap(([t, fs]) => [...fs].map((f) => `${t}.${f}`)).sort()

const safe = (s: string) => s.replace(/[^A-Za-z0-9.@-]+/g, "_")

/** Where one module's measurements are cached. */
export const moduleCacheDir = (cacheDir: string, module: string) => Path.join(cacheDir, safe(module))

export const cachePath = (cacheDir: string, module: string, version: string, go: string) =>
  Path.join(moduleCacheDir(cacheDir, module), `${safe(version)}-go${go}.json`)

const goEnv = (toolchain: string): NodeJS.ProcessEnv => ({
  ...process.env,
  GOTOOLCHAIN: toolchain,
  CGO_ENABLED: "0",
  GOFLAGS: "-mod=mod -buildvcs=false"
})

const text = (e: unknown): string => {
  const err = e as { stderr?: string; message?: string }
  return (err.stderr?.trim() || err.message || String(e)).split("\n").slice(-3).join(" | ")
}

/**
 * A module directory for one release: go.mod requiring it (its own requirements resolved by `go mod tidy` with the
 * newest toolchain), main.go from the spec. Shared by that release's builds.
 */
const prepare = async (work: string, spec: ModuleSpec, version: string): Promise<string> => {
  const dir = Path.join(work, `${safe(spec.module)}@${safe(version)}`)
  if (Fs.existsSync(Path.join(dir, ".ready"))) return dir
  Fs.mkdirSync(dir, { recursive: true })
  // The lowest supported Go line, so that every supported toolchain can build it unless the module needs more.
  const goLine = spec.module === "std" ? "1.22" : "1.25"
  Fs.writeFileSync(Path.join(dir, "go.mod"), `module probescope.offsets/gen\n\ngo ${goLine}\n`)
  Fs.writeFileSync(Path.join(dir, "main.go"), spec.program(version))
  if (spec.module !== "std") {
    const env = goEnv("local")
    await run("go", ["get", `${spec.module}@${version}`], { cwd: dir, env, maxBuffer: 1 << 24 })
    await run("go", ["mod", "tidy"], { cwd: dir, env, maxBuffer: 1 << 24 })
  }
  Fs.writeFileSync(Path.join(dir, ".ready"), "")
  return dir
}

/** Builds and measures one (release, Go) pair, or reads the cached result. */
export const measure = async (
  opts: { readonly work: string; readonly cacheDir: string; readonly wanted: ReadonlyMap<string, ReadonlySet<string>> },
  spec: ModuleSpec,
  version: string,
  go: string
): Promise<Measured & { readonly cached: boolean }> => {
  const file = cachePath(opts.cacheDir, spec.module, version, go)
  if (Fs.existsSync(file)) {
    const m = JSON.parse(Fs.readFileSync(file, "utf8")) as Measured
    // A cached build that lacks a field now wanted is measured again.
    const seen = new Set((m as { seen?: ReadonlyArray<string> }).seen ?? [])
    const complete = m.error !== undefined || wantedKeys(opts.wanted).every((k) => seen.has(k))
    if (complete) return { ...m, cached: true }
  }
  const result = await build(opts, spec, version, go)
  // A failed download may be the network's: not cached. A failed build is the release's (needs a newer Go...).
  if (!result.error?.startsWith("go get")) {
    Fs.mkdirSync(Path.dirname(file), { recursive: true })
    Fs.writeFileSync(file, JSON.stringify(result) + "\n")
  }
  return { ...result, cached: false }
}

const build = async (
  opts: { readonly work: string; readonly wanted: ReadonlyMap<string, ReadonlySet<string>> },
  spec: ModuleSpec,
  version: string,
  go: string
): Promise<Measured & { readonly seen: ReadonlyArray<string> }> => {
  const base = { module: spec.module, version, go, deps: {}, fields: {}, seen: wantedKeys(opts.wanted) }
  let dir: string
  try {
    dir = await prepare(opts.work, spec, version)
  } catch (e) {
    return { ...base, error: `go get ${spec.module}@${version}: ${text(e)}` }
  }
  const out = Path.join(dir, `bin-go${go}`)
  try {
    await run("go", ["build", "-trimpath", "-o", out, "."], { cwd: dir, env: goEnv(`go${go}`), maxBuffer: 1 << 24 })
  } catch (e) {
    return { ...base, error: `go${go} build: ${text(e)}` }
  }
  const elf = parseElf(Fs.readFileSync(out))
  Fs.rmSync(out, { force: true })
  const info = readBuildInfo(elf)
  if (info?.goVersion !== go) throw new Error(`${out}: built by Go ${info?.goVersion}, wanted ${go}`)
  const deps = Object.fromEntries(info.deps.map((d) => [d.path, d.replace?.version ?? d.version]))
  if (spec.module !== "std" && deps[spec.module] !== version) {
    throw new Error(`${out}: links ${spec.module} ${deps[spec.module]}, wanted ${version}`)
  }
  const structs = readStructs(elf, new Set(opts.wanted.keys()))
  const fields: Record<string, Record<string, number>> = {}
  for (const [type, names] of opts.wanted) {
    const layout = structs.get(type)
    if (layout === undefined) continue
    for (const n of names) {
      const off = layout.fields.get(n)
      if (off !== undefined) (fields[type] ??= {})[n] = off
    }
  }
  return { ...base, deps, fields }
}
