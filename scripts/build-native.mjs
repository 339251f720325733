// Builds the N-API addon in native/ with node-gyp (`npm run build:native`, and the package's `install` script, with
// `--install`, when probescope is installed into a project). Idempotent: does nothing when the built addon is newer
// than every source. node-gyp cannot download Node headers here, so we point it at local ones.
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

const installing = process.argv.includes("--install")
const say = (line) => console.error(`probescope: ${line}`)

// A project that only runs probes on the fake kernel (unit tests) can install without a C toolchain or libbpf.
if (installing && process.env.PROBESCOPE_SKIP_NATIVE === "1") {
  say("PROBESCOPE_SKIP_NATIVE=1: the native addon is not built; only the fake kernel (BpfTest) works until " +
    "`npm rebuild probescope`")
  process.exit(0)
}

const upToDate = () =>
  existsSync(output) && statSync(output).mtimeMs >= newestSource() && !process.argv.includes("--force")
if (upToDate()) process.exit(0)

// What the build needs from the system, named up front: npm shows an install script's output only when it fails, and
// a compiler's "libbpf.h: No such file" deep in node-gyp's log says less than the package to install.
const prerequisites = [
  ["/usr/include/bpf/libbpf.h", "libbpf-dev"],
  ["/usr/include/libelf.h", "libelf-dev"],
  ["/usr/include/zlib.h", "zlib1g-dev"]
]
const onPath = (cmd) => (process.env.PATH ?? "").split(":").some((dir) => dir !== "" && existsSync(join(dir, cmd)))
const missing = [
  ...prerequisites.filter(([file]) => !existsSync(file)).map(([, pkg]) => pkg),
  ...[["make", "make"], ["g++", "g++"], ["python3", "python3"]].filter(([cmd]) => !onPath(cmd)).map(([, pkg]) => pkg)
]
if (missing.length > 0) {
  say(`cannot build the native addon: missing ${missing.join(", ")}; on Debian/Ubuntu, as root: ` +
    `apt-get install -y ${missing.join(" ")}, then \`npm rebuild probescope\` (PROBESCOPE_SKIP_NATIVE=1 installs ` +
    "without the addon: only the fake kernel then works)")
  process.exit(1)
}

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
  say("cannot build the native addon: no Node headers found (include/node/node_api.h and uv.h) in the npm `node` " +
    "package, the running Node's prefix, /usr or /usr/local; install them (Debian: apt-get install -y nodejs, which " +
    "ships /usr/include/node) or set PROBESCOPE_NODEDIR to a Node install that has include/node")
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
    say(`building the native addon failed: node-gyp ${step[0]} exited ${result.status} (Node headers from ` +
      `${nodedir}); its output is above`)
    process.exit(result.status ?? 1)
  }
}
