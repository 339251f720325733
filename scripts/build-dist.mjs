// Compiles src/ to dist/ (ES modules + .d.ts) with tsconfig.build.json: `npm run build:ts`, and bin/probescope in a
// checkout whose dist/ is missing or older than src/ (`--if-stale --lenient`). Idempotent: does nothing while
// dist/.build-stamp is newer than every file of src/ and the tsconfigs.
//
// --lenient: type errors are reported but the emitted JavaScript is used anyway (tsc exits 2 when it emitted despite
// them), so a work tree in the middle of an edit still runs; `npm run build:ts` and `npm run typecheck` stay strict.
// The output is built beside dist/ and swapped in, so a CLI already running from dist/ never reads a half-written
// tree; concurrent builds (tests spawning the CLI) wait for one another on a lock directory.
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const dist = join(root, "dist")
const stamp = join(dist, ".build-stamp")
const lenient = process.argv.includes("--lenient")
const force = process.argv.includes("--force")

const newest = (path) => {
  const stat = statSync(path)
  if (!stat.isDirectory()) return stat.mtimeMs
  return readdirSync(path).reduce((max, entry) => Math.max(max, newest(join(path, entry))), stat.mtimeMs)
}
const newestSource = () =>
  Math.max(newest(join(root, "src")), newest(join(root, "tsconfig.json")), newest(join(root, "tsconfig.build.json")))
const upToDate = () => !force && existsSync(stamp) && statSync(stamp).mtimeMs >= newestSource()

if (upToDate()) process.exit(0)

const lock = join(root, ".dist-build-lock")
const deadline = Date.now() + 120_000
for (;;) {
  try {
    mkdirSync(lock)
    break
  } catch {
    // A lock older than the deadline is left over from a killed build.
    if (Date.now() > deadline || Date.now() - (statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? 0) > 120_000) {
      rmSync(lock, { recursive: true, force: true })
      continue
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200)
  }
}
process.on("exit", () => rmSync(lock, { recursive: true, force: true }))
if (upToDate()) process.exit(0)

const started = Date.now()
const tmp = `${dist}.tmp-${process.pid}`
const tsc = createRequire(join(root, "package.json")).resolve("typescript/bin/tsc")
const result = spawnSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", tmp], {
  cwd: root,
  stdio: ["ignore", "pipe", "inherit"],
  encoding: "utf8"
})
const emitted = result.status === 0 || (lenient && result.status === 2 && existsSync(join(tmp, "index.js")))
// tsc prints its diagnostics on stdout: keep them off the CLI's stdout, which is the console exporter's. A lenient
// build that emitted says only how many there were: the CLI's stderr is its users' (and tests') to read.
const diagnostics = (result.stdout ?? "").split("\n").filter((line) => /error TS\d+/.test(line))
if (!emitted || !lenient) process.stderr.write(result.stdout ?? "")
if (!emitted) {
  rmSync(tmp, { recursive: true, force: true })
  console.error(`probescope: compiling src/ to dist/ failed (tsc exited ${result.status ?? result.signal})`)
  process.exit(1)
}
if (result.status !== 0 && (!lenient || process.stderr.isTTY)) {
  console.error(`probescope: dist/ built despite ${diagnostics.length} type error(s) (npm run typecheck lists them)`)
}
// Stamped with the build's start: a source saved while tsc ran is newer, so the next check rebuilds.
writeFileSync(join(tmp, ".build-stamp"), `${new Date(started).toISOString()}\n`)
utimesSync(join(tmp, ".build-stamp"), started / 1000, started / 1000)
const old = `${dist}.old-${process.pid}`
if (existsSync(dist)) renameSync(dist, old)
renameSync(tmp, dist)
rmSync(old, { recursive: true, force: true })
