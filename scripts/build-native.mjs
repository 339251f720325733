// Builds the N-API addon in native/ with node-gyp (`npm run build:native`). Idempotent: does nothing when the
// built addon is newer than every source. node-gyp cannot download Node headers here, so we point it at local ones.
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const native = join(root, "native")
const output = join(native, "build", "Release", "probescope_bpf.node")
const require = createRequire(join(root, "package.json"))

const hasHeaders = (dir) => existsSync(join(dir, "include", "node", "node_api.h"))

// Node headers for node-gyp's --nodedir: the npm `node` package's platform package when it ships them, the running
// Node's install prefix, then the system's /usr. N-API (NAPI_VERSION 8) makes any recent headers good enough.
function findNodeDir() {
  const candidates = []
  if (process.env.PROBESCOPE_NODEDIR) candidates.push(process.env.PROBESCOPE_NODEDIR)
  const platformPackage = `node-${process.platform}-${process.arch}`
  try {
    const nodePackage = dirname(require.resolve("node/package.json"))
    candidates.push(join(nodePackage, "node_modules", platformPackage), join(dirname(nodePackage), platformPackage))
  } catch {
    // the npm `node` package is optional here
  }
  candidates.push(resolve(dirname(process.execPath), ".."), "/usr", "/usr/local")
  return candidates.find(hasHeaders)
}

function newestSource() {
  let newest = statSync(join(native, "binding.gyp")).mtimeMs
  for (const file of readdirSync(join(native, "src"))) {
    newest = Math.max(newest, statSync(join(native, "src", file)).mtimeMs)
  }
  return Math.max(newest, statSync(fileURLToPath(import.meta.url)).mtimeMs)
}

const upToDate = () => existsSync(output) && statSync(output).mtimeMs >= newestSource() && !process.argv.includes("--force")
if (upToDate()) process.exit(0)

// Several test runs may start at once in one checkout: one builds, the others wait for it (mkdir is atomic).
const lock = join(native, ".build-lock")
const deadline = Date.now() + 300_000
for (;;) {
  try {
    mkdirSync(lock)
    break
  } catch {
    // A lock older than the deadline is left over from a killed build.
    if (Date.now() > deadline || Date.now() - statSync(lock, { throwIfNoEntry: false })?.mtimeMs > 300_000) {
      rmSync(lock, { recursive: true, force: true })
      continue
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200)
  }
}
process.on("exit", () => rmSync(lock, { recursive: true, force: true }))
if (upToDate()) process.exit(0)

const nodedir = findNodeDir()
if (nodedir === undefined) {
  console.error("build-native: no Node headers found (looked for include/node/node_api.h); set PROBESCOPE_NODEDIR")
  process.exit(1)
}
const gyp = require.resolve("node-gyp/bin/node-gyp.js")
const needsConfigure = !existsSync(join(native, "build", "Makefile")) ||
  statSync(join(native, "build", "Makefile")).mtimeMs < statSync(join(native, "binding.gyp")).mtimeMs
const steps = needsConfigure ? [["configure"], ["build"]] : [["build"]]
for (const step of steps) {
  const args = [gyp, ...step, `--nodedir=${nodedir}`, "--release", "-j", "max"]
  const result = spawnSync(process.execPath, args, {
    cwd: native,
    stdio: "inherit",
    env: { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ""}` }
  })
  if (result.status !== 0) {
    console.error(`build-native: node-gyp ${step[0]} failed (nodedir ${nodedir})`)
    process.exit(result.status ?? 1)
  }
}
