/**
 * The kafka_go tests' fixture builder: test/fixtures/go/kafkago (one program, `-mode produce` serving HTTP requests
 * that write through a kafka.Writer, `-mode consume` serving requests that read through a kafka.Reader), per Go
 * version, built against the kafka-go release its go.mod pins (v0.4.51).
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

const repoRoot = path.resolve(import.meta.dirname, "../..")
const fixture = path.join(repoRoot, "test", "fixtures", "go", "kafkago")

/** The kafka-go release the fixture's go.mod pins. */
export const KAFKA_GO_VERSION = "v0.4.51"

/** The newest modification time of the fixture's Go sources and module files. */
const newestSource = (): number =>
  Math.max(...["main.go", "go.mod", "go.sum"].map((f) => fs.statSync(path.join(fixture, f)).mtimeMs))

/**
 * Builds the fixture with Go `version` into `test/.cache/kafkago/<version>/kafkago` (`kafkago-stripped` with
 * `stripped`: no symbol table, no DWARF), reused while newer than its sources, and returns the binary's path.
 * `kafkaGo` (e.g. "v0.4.30") builds it against that kafka-go release instead of the pinned one, from a copy of the
 * fixture beside the binary (`kafkago-<kafkaGo>`).
 */
export const buildKafkaGo = (
  version: string,
  options: { readonly stripped?: boolean; readonly kafkaGo?: string } = {}
): string => {
  const name = options.kafkaGo !== undefined
    ? `kafkago-${options.kafkaGo}`
    : options.stripped === true
    ? "kafkago-stripped"
    : "kafkago"
  const out = path.join(repoRoot, "test", ".cache", "kafkago", version, name)
  if (fs.existsSync(out) && fs.statSync(out).mtimeMs > newestSource()) return out
  fs.mkdirSync(path.dirname(out), { recursive: true })
  const env = { ...process.env, GOTOOLCHAIN: `go${version}`, GOFLAGS: "-mod=mod" }
  const go = (args: ReadonlyArray<string>, cwd: string) =>
    execFileSync("go", args, { cwd, env, stdio: ["ignore", "ignore", "pipe"], timeout: 600_000 })
  let src = fixture
  if (options.kafkaGo !== undefined) {
    src = `${out}.src`
    fs.rmSync(src, { recursive: true, force: true })
    fs.mkdirSync(src, { recursive: true })
    for (const f of ["main.go", "go.mod", "go.sum"]) fs.copyFileSync(path.join(fixture, f), path.join(src, f))
    go(["get", `github.com/segmentio/kafka-go@${options.kafkaGo}`], src)
  }
  const tmp = `${out}.${process.pid}.tmp`
  go(["build", ...(options.stripped === true ? ["-ldflags=-s -w"] : []), "-o", tmp, "."], src)
  fs.renameSync(tmp, out)
  return out
}
