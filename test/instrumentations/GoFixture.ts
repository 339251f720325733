/**
 * One builder for the Go programs under test/fixtures/go/<name>: built with a given Go (through GOTOOLCHAIN) into
 * test/.cache/<name>/<go>/<binary>, reused while newer than the fixture's sources, written under a temporary name and
 * renamed so that test files building the same fixture at once never run a half-written binary.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

const repoRoot = path.resolve(import.meta.dirname, "../..")

export interface GoFixtureOptions {
  /** No symbol table, no DWARF (`-ldflags=-s -w`): binary `<name>-stripped`. */
  readonly stripped?: boolean
  /** A position-independent executable (`-buildmode=pie`): binary `<name>-pie`. */
  readonly pie?: boolean
  /**
   * Built against other module releases (binary `<name>-<tag>`): from a copy of the fixture beside the binary, with
   * `go get` of each of `get` (module@version). With `module`, the copy gets a fresh go.mod of that module path
   * instead of the fixture's, so the releases' own requirements decide the rest.
   */
  readonly release?: { readonly tag: string; readonly get: ReadonlyArray<string>; readonly module?: string }
}

const SOURCES = ["main.go", "go.mod", "go.sum"]

/** The newest modification time of a fixture's Go sources and module files, in every folder of it. */
export const newestSource = (dir: string): number =>
  fs.readdirSync(dir, { withFileTypes: true }).reduce((newest, e) => {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) return Math.max(newest, newestSource(p))
    return /\.go$|^go\.(mod|sum)$/.test(e.name) ? Math.max(newest, fs.statSync(p).mtimeMs) : newest
  }, 0)

/** Builds test/fixtures/go/`name` with Go `goVersion` as `options` say; the binary's path. */
export const buildGoFixture = (name: string, goVersion: string, options: GoFixtureOptions = {}): string => {
  const fixture = path.join(repoRoot, "test", "fixtures", "go", name)
  const binary = options.release !== undefined
    ? `${name}-${options.release.tag}`
    : options.stripped === true
    ? `${name}-stripped`
    : options.pie === true
    ? `${name}-pie`
    : name
  const out = path.join(repoRoot, "test", ".cache", name, goVersion, binary)
  if (fs.existsSync(out) && fs.statSync(out).mtimeMs > newestSource(fixture)) return out
  fs.mkdirSync(path.dirname(out), { recursive: true })
  const env = { ...process.env, GOTOOLCHAIN: `go${goVersion}`, GOFLAGS: "-mod=mod" }
  const go = (args: ReadonlyArray<string>, cwd: string) =>
    execFileSync("go", args, { cwd, env, stdio: ["ignore", "ignore", "pipe"], timeout: 600_000 })
  let src = fixture
  if (options.release !== undefined) {
    src = `${out}.src`
    fs.rmSync(src, { recursive: true, force: true })
    fs.mkdirSync(src, { recursive: true })
    if (options.release.module === undefined) {
      for (const f of SOURCES) if (fs.existsSync(path.join(fixture, f))) fs.copyFileSync(path.join(fixture, f), path.join(src, f))
    } else {
      fs.copyFileSync(path.join(fixture, "main.go"), path.join(src, "main.go"))
      const goLine = goVersion.split(".").slice(0, 2).join(".")
      fs.writeFileSync(path.join(src, "go.mod"), `module ${options.release.module}\n\ngo ${goLine}\n`)
    }
    go(["get", ...options.release.get], src)
  }
  const tmp = `${out}.${process.pid}.tmp`
  const flags = [...(options.stripped === true ? ["-ldflags=-s -w"] : []), ...(options.pie === true ? ["-buildmode=pie"] : [])]
  go(["build", ...flags, "-o", tmp, "."], src)
  fs.renameSync(tmp, out)
  return out
}
