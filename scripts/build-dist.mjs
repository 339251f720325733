// Compiles src/ to dist/ (ES modules + .d.ts) with tsconfig.build.json: `npm run build:ts`, and bin/probescope in a
// checkout whose dist/ is missing or older than src/ (`--if-stale --lenient`). Idempotent: does nothing while
// dist/.build-stamp is newer than every file of src/ and the tsconfigs.
//
// --lenient: type errors are reported but the emitted JavaScript is used anyway (tsc exits 2 when it emitted despite
// them), so a work tree in the middle of an edit still runs; `npm run build:ts` and `npm run typecheck` stay strict.
// The output is built beside dist/ and swapped in, so a CLI already running from dist/ never reads a half-written
// tree; concurrent builds (tests spawning the CLI) wait for one another on a lock directory.
//
// Then the CLI is bundled (esbuild, a devDependency): dist/cli/probescope.mjs, which bin/probescope runs, and the
// chunks beside it that it imports on demand (probescope-*.mjs). Loading ~700 modules was half of the CLI's start-up
// (docs/benchmarks.md, "Start-up"); the bundle is a few files. Then a V8 start-up snapshot of the same modules where
// they allow one (scripts/build-snapshot.mjs): dist/cli/probescope.blob, which bin/probescope prefers. The library
// entries (dist/index.js, dist/runtime/...) stay as tsc emits them: users import those, and probe modules loaded by
// the CLI need the unbundled CLI (src/cli/Route.ts). Without esbuild (an install without devDependencies) there is no
// bundle and bin/probescope runs dist/cli/main.js, as before.
import { spawnSync } from "node:child_process"
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync
} from "node:fs"
import { createRequire } from "node:module"
import { dirname, join, relative, resolve, sep } from "node:path"
import { fileURLToPath } from "node:url"
import { buildSnapshot } from "./build-snapshot.mjs"

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
// A lenient build keeps going without the bundle (bin/probescope then runs dist/cli/main.js), as past type errors.
const bundled = await bundleCli(tmp)
if (!bundled && !lenient) {
  rmSync(tmp, { recursive: true, force: true })
  process.exit(1)
}
// The start-up snapshot of the bundle's modules (scripts/build-snapshot.mjs), for dist/ where it is about to be. Not
// having one is never a failure: bin/probescope runs the bundle. Why there is none is said to a build run by hand.
if (bundled && existsSync(join(tmp, "cli", "probescope.mjs"))) {
  const snapshot = await buildSnapshot(tmp, { dist })
  if (!snapshot.built && (!lenient || process.stderr.isTTY)) {
    console.error(`probescope: no start-up snapshot (bin/probescope runs the bundle): ${snapshot.reason}`)
  }
}
// Stamped with the build's start: a source saved while tsc ran is newer, so the next check rebuilds.
writeFileSync(join(tmp, ".build-stamp"), `${new Date(started).toISOString()}\n`)
utimesSync(join(tmp, ".build-stamp"), started / 1000, started / 1000)
const old = `${dist}.old-${process.pid}`
if (existsSync(dist)) renameSync(dist, old)
renameSync(tmp, dist)
rmSync(old, { recursive: true, force: true })

/**
 * Bundles `<out>/cli/launch.js` and what it imports into `<out>/cli/probescope.mjs` (+ chunks loaded on demand: the
 * OTLP exporters, yaml, the unused commands' dependencies stay out of the start-up). True when bundled, or when
 * esbuild is not installed (then there is no bundle, said unless --lenient); false when esbuild failed (said on
 * stderr).
 */
async function bundleCli(out) {
  let esbuild
  try {
    esbuild = await import(createRequire(join(root, "package.json")).resolve("esbuild"))
  } catch {
    if (!lenient) {
      console.error("probescope: esbuild is not installed: no bundled CLI (bin/probescope runs dist/cli/main.js)")
    }
    return true
  }
  const cli = join(out, "cli")
  const ours = `${out}${sep}`
  try {
    await esbuild.build({
      entryPoints: { probescope: join(cli, "launch.js") },
      outdir: cli,
      // Chunks beside the entry, not in a subdirectory: see importMetaUrl below.
      chunkNames: "probescope-[hash]",
      outExtension: { ".js": ".mjs" },
      bundle: true,
      splitting: true,
      format: "esm",
      platform: "node",
      target: "node22.19",
      // Function and class names as they are in the sources: stack traces (`--log-level debug`) stay readable.
      keepNames: true,
      minifySyntax: true,
      legalComments: "eof",
      // The native addon is found through `bindings` at run time (src/kernel/internal/addon.ts), next to the package.
      external: ["bindings"],
      // CommonJS dependencies (the OpenTelemetry exporters, grpc-js) call require() for Node's modules: in an ES
      // module there is none unless made.
      banner: {
        js: 'import { createRequire as __probescopeCreateRequire } from "node:module";\n' +
          "const require = __probescopeCreateRequire(import.meta.url);"
      },
      plugins: [importMetaUrl(ours, cli), builtinsByRequire(), commonJsDynamicImports()],
      logLevel: "warning"
    })
    return true
  } catch (e) {
    console.error(`probescope: bundling the CLI failed: ${e instanceof Error ? e.message : String(e)}`)
    return false
  }
}

/**
 * `await import("pkg")` of a CommonJS module (the OpenTelemetry exporters, yaml, the machine-id readers the
 * OpenTelemetry resources import) gives its exports by name in Node; in a chunk esbuild splits off, only as `default`
 * (`m.OTLPTraceExporter` would be undefined). So each such import goes through a small module that exports the
 * module's names, read by loading it here, at build time.
 */
function commonJsDynamicImports() {
  const reserved = new Set(["default", "delete", "new", "class", "function", "import", "export", "in", "typeof"])
  return {
    name: "probescope-commonjs-dynamic-imports",
    setup(build) {
      build.onResolve({ filter: /.*/ }, async (args) => {
        if (args.kind !== "dynamic-import" || args.path.startsWith("node:") || args.pluginData?.inner) return undefined
        const resolved = await build.resolve(args.path, {
          kind: "import-statement",
          resolveDir: args.resolveDir,
          pluginData: { inner: true }
        })
        if (resolved.errors.length > 0 || resolved.external || !isCommonJs(resolved.path)) return undefined
        return { path: resolved.path, namespace: "probescope-commonjs" }
      })
      build.onLoad({ filter: /.*/, namespace: "probescope-commonjs" }, (args) => {
        const names = Object.keys(createRequire(args.path)(args.path))
          .filter((name) => /^[A-Za-z_$][\w$]*$/.test(name) && !reserved.has(name))
        return {
          contents: `import * as ns from ${JSON.stringify(args.path)}\n` +
            names.map((name, i) => `const e${i} = ns.${name}\n`).join("") +
            `export { ${names.map((name, i) => `e${i} as ${name}`).join(", ")} }\n` +
            "export default ns.default !== undefined ? ns.default : ns\n",
          resolveDir: dirname(args.path),
          loader: "js"
        }
      })
    }
  }
}

/** Whether Node loads a file as CommonJS: `.cjs`, or `.js` where the nearest package.json has no `"type": "module"`. */
function isCommonJs(file) {
  if (file.endsWith(".cjs")) return true
  if (!file.endsWith(".js")) return false
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    const manifest = join(dir, "package.json")
    if (existsSync(manifest)) return JSON.parse(readFileSync(manifest, "utf8")).type !== "module"
    if (dirname(dir) === dir) return true
  }
}

/**
 * Node's own modules, imported by `require` instead of `import`: an ES import of a built-in makes Node build its ES
 * facade, which reads every export, lazy ones included; `node:http`'s include the WebSocket and fetch classes, which
 * load undici (~25 ms of every start-up, for an export nobody uses). esbuild's `__toESM` reads them only when used.
 * Dynamic imports (`await import("node:...")`) stay as they are.
 */
function builtinsByRequire() {
  return {
    name: "probescope-builtins-by-require",
    setup(build) {
      build.onResolve({ filter: /^node:/ }, (args) =>
        args.kind === "import-statement" ? { path: args.path, namespace: "probescope-builtin" } : undefined)
      build.onLoad({ filter: /.*/, namespace: "probescope-builtin" }, (args) => ({
        contents: `module.exports = require(${JSON.stringify(args.path)})`,
        loader: "js"
      }))
    }
  }
}

/**
 * Our modules find files relative to themselves (`new URL("../../", import.meta.url)`: the package root, the native
 * addon, package.json, dist/.compile-cache). Bundled, `import.meta.url` would be the bundle's, at another depth; so in
 * each of our modules it becomes the URL that module has unbundled, computed from the bundle's own at run time
 * (the bundle and its chunks are all in `<out>/cli`, so one relative path per module holds wherever the package is).
 */
function importMetaUrl(ours, cli) {
  return {
    name: "probescope-import-meta-url",
    setup(build) {
      build.onLoad({ filter: /\.js$/ }, async (args) => {
        if (!args.path.startsWith(ours)) return undefined
        const { readFile } = await import("node:fs/promises")
        const text = await readFile(args.path, "utf8")
        if (!text.includes("import.meta.url")) return undefined
        const path = relative(cli, args.path).split(sep).join("/")
        return {
          contents: text.replaceAll("import.meta.url", `new URL(${JSON.stringify(path)}, import.meta.url).href`),
          loader: "js"
        }
      })
    }
  }
}
