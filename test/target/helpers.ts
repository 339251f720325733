/**
 * Builds the Go fixtures with several toolchains (through GOTOOLCHAIN and the module cache) and runs `go tool nm` /
 * `go tool objdump` / the dwarfdump oracle on them. Results are cached under test/.cache/ (git-ignored).
 */
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../..")
const cacheDir = Path.join(root, "test/.cache/target")
const fixtureDir = Path.join(root, "test/fixtures/go/targets")

/** Toolchains the tests build with; the installed Go is one of them. */
export const goVersions = (process.env.PROBESCOPE_TEST_GO_VERSIONS ?? "1.22.12,1.24.13,1.26.8").split(",")

const goEnv = (version: string): NodeJS.ProcessEnv => ({
  ...process.env,
  GOTOOLCHAIN: `go${version}`,
  GOFLAGS: "-buildvcs=false",
  CGO_ENABLED: "0"
})

/** Builds (once) the fixture `pkg` ("." or "empty") with Go `version`, stripped or not; returns the binary path. */
export const buildFixture = (version: string, stripped: boolean, pkg = ".", pie = false): string => {
  const name = `${pkg === "." ? "server" : pkg}-${version}${pie ? "-pie" : ""}${stripped ? "-s" : ""}`
  const out = Path.join(cacheDir, name)
  if (Fs.existsSync(out)) return out
  Fs.mkdirSync(cacheDir, { recursive: true })
  // Test files run in parallel workers: build to a private name, then rename atomically.
  const tmp = `${out}.${process.pid}.tmp`
  const args = ["build", "-trimpath", "-o", tmp]
  if (stripped) args.push("-ldflags=-s -w")
  if (pie) args.push("-buildmode=pie")
  args.push(pkg === "." ? "." : `./${pkg}`)
  execFileSync("go", args, { cwd: fixtureDir, env: goEnv(version), stdio: ["ignore", "ignore", "inherit"] })
  Fs.renameSync(tmp, out)
  return out
}

/** Builds an arm64 binary (cross-compiled, cheap) for the unsupported-arch error. */
export const buildArm64 = (): string => {
  const out = Path.join(cacheDir, "empty-arm64")
  if (Fs.existsSync(out)) return out
  Fs.mkdirSync(cacheDir, { recursive: true })
  const tmp = `${out}.${process.pid}.tmp`
  execFileSync("go", ["build", "-o", tmp, "./empty"], {
    cwd: fixtureDir,
    env: { ...process.env, GOARCH: "arm64", CGO_ENABLED: "0", GOFLAGS: "-buildvcs=false" },
    stdio: ["ignore", "ignore", "inherit"]
  })
  Fs.renameSync(tmp, out)
  return out
}

/**
 * `go tool nm` text symbols: name → address. Names defined more than once (local closures of generic shapes) are
 * ambiguous: they are left out and listed in `ambiguous`.
 */
export const goNm = (binary: string): Map<string, bigint> & { readonly ambiguous: ReadonlySet<string> } => {
  const out = execFileSync("go", ["tool", "nm", binary], { maxBuffer: 256 << 20 }).toString()
  const m = new Map<string, bigint>()
  const ambiguous = new Set<string>()
  for (const line of out.split("\n")) {
    const f = /^\s*([0-9a-f]+) [Tt] (.+)$/.exec(line)
    if (f === null) continue
    if (m.has(f[2]!) || ambiguous.has(f[2]!)) {
      m.delete(f[2]!)
      ambiguous.add(f[2]!)
    } else {
      m.set(f[2]!, BigInt("0x" + f[1]))
    }
  }
  return Object.assign(m, { ambiguous })
}

export interface ObjdumpInstruction {
  readonly address: number
  readonly hex: string
  readonly text: string
}

/** `go tool objdump` of the whole binary, grouped by function (cached as JSON). */
export const goObjdump = (binary: string): Map<string, Array<ObjdumpInstruction>> => {
  const cached = binary + ".objdump.json"
  if (Fs.existsSync(cached)) return new Map(JSON.parse(Fs.readFileSync(cached, "utf8")))
  const out = execFileSync("go", ["tool", "objdump", binary], { maxBuffer: 1 << 30 }).toString()
  const m = new Map<string, Array<ObjdumpInstruction>>()
  let current: Array<ObjdumpInstruction> | undefined
  for (const line of out.split("\n")) {
    if (line.startsWith("TEXT ")) {
      const name = /^TEXT (.+)\(SB\)/.exec(line)?.[1]
      current = []
      if (name !== undefined && !m.has(name)) m.set(name, current)
      continue
    }
    const f = line.split("\t").filter((s) => s !== "")
    if (current === undefined || f.length < 3 || !f[1]!.startsWith("0x")) continue
    current.push({ address: Number(f[1]), hex: f[2]!, text: (f[3] ?? "").trim() })
  }
  Fs.writeFileSync(`${cached}.${process.pid}`, JSON.stringify([...m]))
  Fs.renameSync(`${cached}.${process.pid}`, cached)
  return m
}

/** Struct member offsets from the standard library's DWARF reader (test/fixtures/go/targets/dwarfdump). */
export const dwarfOracle = (binary: string, types: ReadonlyArray<string>): Record<string, Record<string, number>> => {
  const tool = Path.join(cacheDir, "dwarfdump")
  if (!Fs.existsSync(tool)) {
    Fs.mkdirSync(cacheDir, { recursive: true })
    const tmp = `${tool}.${process.pid}.tmp`
    execFileSync("go", ["build", "-o", tmp, "."], { cwd: Path.join(fixtureDir, "dwarfdump"),
      env: { ...process.env, GOFLAGS: "-buildvcs=false" } })
    Fs.renameSync(tmp, tool)
  }
  return JSON.parse(execFileSync(tool, [binary, ...types], { maxBuffer: 64 << 20 }).toString())
}
