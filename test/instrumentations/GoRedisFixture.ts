/**
 * The go_redis tests' fixture builder: test/fixtures/go/goredis (an HTTP server whose handlers run go-redis v9
 * commands), per Go version and go-redis release. Kept beside the go_redis tests rather than in fixtures.ts, which
 * several helpers edit at once.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

const repoRoot = path.resolve(import.meta.dirname, "../..")
const fixture = path.join(repoRoot, "test", "fixtures", "go", "goredis")

/** The newest modification time of the fixture's Go sources and module files. */
const newestSource = (): number =>
  Math.max(...["main.go", "go.mod", "go.sum"].map((f) => fs.statSync(path.join(fixture, f)).mtimeMs))

/**
 * Builds the fixture with Go `version` into `test/.cache/goredis/<version>/goredis` (`goredis-stripped` with
 * `stripped`: no symbol table, no DWARF), reused while newer than its sources, and returns the binary's path.
 * `goRedis` (e.g. "9.0.5") builds it against that go-redis release instead of the one its go.mod pins, from a copy of
 * the fixture beside the binary (`goredis-<goRedis>`).
 */
export const buildGoRedis = (
  version: string,
  options: { readonly stripped?: boolean; readonly goRedis?: string } = {}
): string => {
  const name = options.goRedis !== undefined
    ? `goredis-${options.goRedis}`
    : options.stripped === true
    ? "goredis-stripped"
    : "goredis"
  const out = path.join(repoRoot, "test", ".cache", "goredis", version, name)
  if (fs.existsSync(out) && fs.statSync(out).mtimeMs > newestSource()) return out
  fs.mkdirSync(path.dirname(out), { recursive: true })
  const env = { ...process.env, GOTOOLCHAIN: `go${version}`, GOFLAGS: "-mod=mod" }
  const go = (args: ReadonlyArray<string>, cwd: string) =>
    execFileSync("go", args, { cwd, env, stdio: ["ignore", "ignore", "pipe"], timeout: 600_000 })
  let src = fixture
  if (options.goRedis !== undefined) {
    src = `${out}.src`
    fs.rmSync(src, { recursive: true, force: true })
    fs.mkdirSync(src, { recursive: true })
    for (const f of ["main.go", "go.mod", "go.sum"]) fs.copyFileSync(path.join(fixture, f), path.join(src, f))
    go(["get", `github.com/redis/go-redis/v9@v${options.goRedis}`], src)
  }
  const tmp = `${out}.${process.pid}.tmp`
  go(["build", ...(options.stripped === true ? ["-ldflags=-s -w"] : []), "-o", tmp, "."], src)
  fs.renameSync(tmp, out)
  return out
}
