/**
 * The context-parent tests' fixture builder: test/fixtures/go/workerpool (an HTTP and gRPC server whose handlers
 * hand their context to worker goroutines over a channel), per Go version. Kept beside its tests rather than in
 * fixtures.ts, which several helpers edit at once.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

const repoRoot = path.resolve(import.meta.dirname, "../..")
const fixture = path.join(repoRoot, "test", "fixtures", "go", "workerpool")

/** The newest modification time of the fixture's sources. */
const newestSource = (): number =>
  Math.max(...["main.go", "go.mod", "go.sum"].map((f) => fs.statSync(path.join(fixture, f)).mtimeMs))

/**
 * Builds the fixture with Go `version` into `test/.cache/workerpool/<version>/workerpool` (`workerpool-stripped` with
 * `stripped`: no symbol table, no DWARF), reused while newer than its sources, and returns the binary's path. It pins grpc v1.83.2, the newest release the grpc probe supports that
 * still builds with Go 1.25.
 */
export const buildWorkerPool = (version: string, options: { readonly stripped?: boolean } = {}): string => {
  const name = options.stripped === true ? "workerpool-stripped" : "workerpool"
  const out = path.join(repoRoot, "test", ".cache", "workerpool", version, name)
  if (fs.existsSync(out) && fs.statSync(out).mtimeMs > newestSource()) return out
  fs.mkdirSync(path.dirname(out), { recursive: true })
  const tmp = `${out}.${process.pid}.tmp`
  execFileSync("go", ["build", ...(options.stripped === true ? ["-ldflags=-s -w"] : []), "-o", tmp, "."], {
    cwd: fixture,
    env: { ...process.env, GOTOOLCHAIN: `go${version}`, GOFLAGS: "-mod=mod" },
    stdio: ["ignore", "ignore", "pipe"],
    timeout: 600_000
  })
  fs.renameSync(tmp, out)
  return out
}
