// A V8 start-up snapshot of the CLI: dist/cli/probescope.blob, which bin/probescope starts Node from
// (`node --snapshot-blob probescope.blob ...`) instead of loading dist/cli/probescope.mjs. Node then deserialises a
// heap in which every module of the CLI has already been evaluated: the compile and evaluation of Effect, effect/cli,
// the OpenTelemetry SDK and probescope's own modules (~0.1 s of CPU on every launch, bench/startup.ts) are paid
// once, here. scripts/build-dist.mjs calls `buildSnapshot` after bundling; `node scripts/build-snapshot.mjs` builds
// one for the dist/ in place.
//
// What a snapshot freezes is whatever the modules computed while they were evaluated here. So evaluation is watched
// (snapshot-entry.cjs): an environment variable read, a file read (bar the package's own package.json), a process
// property or the clock read at import means no snapshot: the CLI would carry this build's answer into every run.
// The answer is the reason, printed by the build; the launcher then runs the bundle as before. Also frozen: the
// location of dist/ (modules resolve files next to themselves at import) and the Node binary that built it, which
// alone can read the blob (another version refuses it, a damaged blob crashes Node). Both go into the stamp beside
// the blob, which bin/probescope compares before it uses the blob (see there).
//
// Node's snapshot builder runs one CommonJS script that may require only Node's own modules, and some of those hold
// native state it cannot keep (node:http's parser, TLS, zlib, ...): the script is an esbuild bundle of the CLI in
// which those modules load on first use, at run time. The CLI's own dynamic imports (the OTLP exporters, yaml) are
// bundled in and still evaluated only when used; a dynamic import of a file (a user's probe module) cannot work from a
// snapshot, so such command lines keep running the unbundled CLI (src/cli/Route.ts, bin/probescope).
import { spawnSync } from "node:child_process"
import { existsSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs"
import { builtinModules, createRequire } from "node:module"
import { dirname, join, relative, resolve, sep } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))

/** The blob, its stamp and the script it is built from, in `<dist>/cli`. */
export const files = (dist) => ({
  blob: join(dist, "cli", "probescope.blob"),
  stamp: join(dist, "cli", "probescope.blob.stamp"),
  script: join(dist, "cli", "probescope.snapshot.cjs")
})

/**
 * Node's own modules that its snapshot builder has not verified (it warns for each): they load on first use instead
 * of at import, so none of them is in the snapshot unless a module uses it while being evaluated. The entry allows
 * `module` (createRequire at import: pure JavaScript) and `child_process` (functions taken at import, no process
 * started); any other is a reason not to build. The list is what Node 24's builder warns about, and zlib (its
 * streams hold native handles).
 */
export const deferredBuiltins = [
  "async_hooks", "child_process", "cluster", "dgram", "domain", "http", "http2", "https", "inspector", "module",
  "perf_hooks", "readline", "repl", "tls", "trace_events", "tty", "vm", "wasi", "worker_threads", "zlib"
]

/**
 * The stamp's text: one `key value` per line. bin/probescope reads `node`, `node-size`, `node-mtime`, `dist`,
 * `blob-size` and the `env` lines (variables read at import: the launcher uses the blob only while they are unset).
 */
export const stampText = ({ node, dist, blobSize }) => {
  const s = statSync(node)
  return [
    `node ${node}`,
    `node-size ${s.size}`,
    `node-mtime ${Math.floor(s.mtimeMs / 1000)}`,
    `dist ${dist}`,
    `blob-size ${blobSize}`
  ].join("\n") + "\n"
}

/**
 * Builds `<out>/cli/probescope.blob` from `<out>/cli/Commands.js` (or `options.entry`, a module exporting
 * `main(earlySignals, installed)` as Commands.ts does), for a dist/ that will live at `options.dist` (default `out`:
 * build-dist.mjs builds beside dist/ and renames). Returns `{ built: true }`, or `{ built: false, reason }` with the
 * blob and its stamp removed; never throws for a snapshot that cannot be made.
 */
export const buildSnapshot = async (out, options = {}) => {
  const dist = resolve(options.dist ?? out)
  const node = realpathSync(options.node ?? process.execPath)
  const entry = resolve(options.entry ?? join(out, "cli", "Commands.js"))
  const { blob, stamp, script } = files(out)
  const clear = () => {
    for (const f of [blob, stamp, script]) rmSync(f, { force: true })
  }
  clear()
  const fail = (reason) => {
    clear()
    return { built: false, reason }
  }
  let esbuild = options.esbuild
  if (esbuild === undefined) {
    try {
      esbuild = await import(createRequire(join(here, "..", "package.json")).resolve("esbuild"))
    } catch {
      return fail("esbuild is not installed")
    }
  }
  const outResolved = resolve(out)
  try {
    await esbuild.build({
      entryPoints: [join(here, "snapshot-entry.cjs")],
      outfile: script,
      bundle: true,
      format: "cjs",
      platform: "node",
      target: "node22.19",
      // Function names kept for stack traces; whitespace goes: the script is not kept once the blob is built (so line
      // numbers point nowhere either way), and its text is part of the heap every launch reads (22 -> 15.7 MB blob).
      keepNames: true,
      // A package's ES module build before its CommonJS one (esbuild's default for Node is the reverse): the
      // OpenTelemetry packages without an "exports" map (sdk-metrics, core, resources) are tree-shaken then, where
      // their CommonJS builds came whole and were evaluated at import: 2 327 -> 1 922 KiB of script, a 14.0 -> 12.7 MB
      // blob, and a heap that much smaller for every launch to deserialise.
      mainFields: ["module", "main"],
      minifySyntax: true,
      minifyWhitespace: true,
      legalComments: "none",
      // Found at run time next to the package (src/kernel/internal/addon.ts), after deserialisation.
      external: ["bindings"],
      plugins: [entryModule(entry), deferBuiltins(), frozenImportMetaUrl(outResolved, dist)],
      logLevel: "silent"
    })
  } catch (e) {
    return fail(`bundling failed: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`)
  }
  const audit = `${blob}.audit.json`
  const run = spawnSync(node, ["--snapshot-blob", blob, "--build-snapshot", script], {
    cwd: dirname(script),
    env: { ...process.env, PROBESCOPE_SNAPSHOT_AUDIT: audit },
    encoding: "utf8",
    timeout: 120_000
  })
  let report
  try {
    report = JSON.parse(readFileSync(audit, "utf8"))
  } catch {
    report = undefined
  } finally {
    rmSync(audit, { force: true })
  }
  if (report !== undefined && report.reads.length > 0) {
    return fail(`modules read the environment at import, which a snapshot would freeze: ${report.reads.join(", ")}`)
  }
  if (run.status !== 0 || !existsSync(blob)) {
    const why = (run.stderr ?? "").split("\n").find((l) => /Error|error|failed|Fatal/.test(l)) ?? ""
    return fail(`node --build-snapshot exited ${run.status ?? run.signal}${why === "" ? "" : `: ${why.trim()}`}`)
  }
  rmSync(script, { force: true })
  writeFileSync(stamp, stampText({ node, dist, blobSize: statSync(blob).size }))
  return { built: true }
}

/** `probescope-snapshot:main` (what snapshot-entry.cjs requires) is the CLI's module exporting `main`. */
function entryModule(entry) {
  return {
    name: "probescope-snapshot-main",
    setup(build) {
      build.onResolve({ filter: /^probescope-snapshot:main$/ }, () => ({ path: entry }))
    }
  }
}

/**
 * Each of `deferredBuiltins`, imported or required anywhere in the bundle, becomes an object of getters that
 * requires the module on first use. `import * as http` reads no property until the code runs, so nothing loads
 * while the snapshot is built unless it is used then.
 */
function deferBuiltins() {
  const deferred = new Set(deferredBuiltins)
  const require = createRequire(import.meta.url)
  return {
    name: "probescope-snapshot-deferred-builtins",
    setup(build) {
      build.onResolve({ filter: /^(node:)?[a-z_0-9]+(\/[a-z_0-9]+)?$/ }, (args) => {
        const name = args.path.replace(/^node:/, "")
        if (!builtinModules.includes(name)) return undefined
        if (args.namespace === "probescope-deferred") return { path: `node:${name}`, external: true }
        if (!deferred.has(name.split("/")[0])) return { path: `node:${name}`, external: true }
        return { path: `node:${name}`, namespace: "probescope-deferred" }
      })
      build.onLoad({ filter: /.*/, namespace: "probescope-deferred" }, (args) => {
        const names = Object.keys(require(args.path)).filter((n) => n !== "default")
        const getters = names.map((n) => `  ${JSON.stringify(n)}: { get: () => load()[${JSON.stringify(n)}], enumerable: true }`)
        return {
          contents: `let loaded\n` +
            `const load = () => loaded ??= (globalThis.__probescopeSnapshotLoads?.(${JSON.stringify(args.path)}), ` +
            `require(${JSON.stringify(args.path)}))\n` +
            `module.exports = Object.defineProperties({}, {\n${getters.join(",\n")}\n})\n`,
          loader: "js"
        }
      })
    }
  }
}

/**
 * `import.meta.url` of each of our modules becomes the URL it has in the final dist/ (`dist`), as a literal: what a
 * module computes from it at import (the package root, package.json) is frozen into the snapshot, so it must name
 * where the package will be, not the directory built in (build-dist.mjs renames it into place). The stamp records
 * `dist`, and the launcher uses the blob only from there.
 */
function frozenImportMetaUrl(out, dist) {
  const ours = `${out}${sep}`
  return {
    name: "probescope-snapshot-import-meta-url",
    setup(build) {
      build.onLoad({ filter: /\.js$/ }, (args) => {
        if (!args.path.startsWith(ours)) return undefined
        const text = readFileSync(args.path, "utf8")
        if (!text.includes("import.meta.url")) return undefined
        const url = pathToFileURL(join(dist, relative(out, args.path))).href
        return { contents: text.replaceAll("import.meta.url", JSON.stringify(url)), loader: "js" }
      })
    }
  }
}

// `node scripts/build-snapshot.mjs [dist]`: a snapshot for a dist/ already built, in place.
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dist = resolve(process.argv[2] ?? join(here, "..", "dist"))
  const result = await buildSnapshot(dist)
  if (result.built) console.error(`probescope: built ${relative(process.cwd(), files(dist).blob)}`)
  else console.error(`probescope: no start-up snapshot: ${result.reason}`)
}
