/**
 * The otel_trace tests' fixture builder: test/fixtures/go/otelapi (an HTTP server whose handler makes spans by hand
 * with the OpenTelemetry Go API, no SDK), per Go version and go.opentelemetry.io/otel release. Kept beside the
 * otel_trace tests rather than in fixtures.ts, which several helpers edit at once.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

const repoRoot = path.resolve(import.meta.dirname, "../..")
const fixture = path.join(repoRoot, "test", "fixtures", "go", "otelapi")

/** The release the fixture's go.mod pins (it needs Go 1.26: older Go builds take `otel`, e.g. "1.30.0"). */
export const PINNED = "1.47.0"

/** The newest modification time of the fixture's Go sources and module files. */
const newestSource = (): number =>
  Math.max(...["main.go", "go.mod", "go.sum"].map((f) => fs.statSync(path.join(fixture, f)).mtimeMs))

/**
 * Builds the fixture with Go `version` into `test/.cache/otelapi/<version>/otelapi` (`otelapi-stripped` with
 * `stripped`: no symbol table, no DWARF; `otelapi-pie` with `pie`: -buildmode=pie), reused while newer than its
 * sources, and returns the binary's path.
 * `otel` (e.g. "1.30.0") builds it against that release of go.opentelemetry.io/otel (and its trace module) instead,
 * from a copy of main.go beside the binary with a fresh go.mod (`otelapi-<otel>`), so the release's own requirements
 * decide the rest.
 */
export const buildOtelApi = (
  version: string,
  options: { readonly stripped?: boolean; readonly pie?: boolean; readonly otel?: string } = {}
): string => {
  const name = options.otel !== undefined
    ? `otelapi-${options.otel}`
    : options.stripped === true
    ? "otelapi-stripped"
    : options.pie === true
    ? "otelapi-pie"
    : "otelapi"
  const out = path.join(repoRoot, "test", ".cache", "otelapi", version, name)
  if (fs.existsSync(out) && fs.statSync(out).mtimeMs > newestSource()) return out
  fs.mkdirSync(path.dirname(out), { recursive: true })
  const env = { ...process.env, GOTOOLCHAIN: `go${version}`, GOFLAGS: "-mod=mod" }
  const go = (args: ReadonlyArray<string>, cwd: string) =>
    execFileSync("go", args, { cwd, env, stdio: ["ignore", "ignore", "pipe"], timeout: 600_000 })
  let src = fixture
  if (options.otel !== undefined) {
    src = `${out}.src`
    fs.rmSync(src, { recursive: true, force: true })
    fs.mkdirSync(src, { recursive: true })
    fs.copyFileSync(path.join(fixture, "main.go"), path.join(src, "main.go"))
    const goLine = version.split(".").slice(0, 2).join(".")
    fs.writeFileSync(path.join(src, "go.mod"), `module probescope.test/otelapi\n\ngo ${goLine}\n`)
    go(["get", `go.opentelemetry.io/otel@v${options.otel}`, `go.opentelemetry.io/otel/trace@v${options.otel}`], src)
  }
  const tmp = `${out}.${process.pid}.tmp`
  const flags = [
    ...(options.stripped === true ? ["-ldflags=-s -w"] : []),
    ...(options.pie === true ? ["-buildmode=pie"] : [])
  ]
  go(["build", ...flags, "-o", tmp, "."], src)
  fs.renameSync(tmp, out)
  return out
}
