/**
 * What the launcher tests share: a package laid out as bin/probescope expects one (a copy of the launcher, this Node
 * as node_modules/.bin/node, no src/ so that nothing is rebuilt, and a bundle of the test's own), and running its
 * launcher with an environment of the test's making.
 */
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../..")

/** Lays the package out in `dir` (made if missing), its bundle `dist/cli/probescope.mjs` holding `bundle`. */
export const launcherPackage = (dir: string, bundle: string): string => {
  Fs.mkdirSync(Path.join(dir, "bin"), { recursive: true })
  Fs.mkdirSync(Path.join(dir, "node_modules/.bin"), { recursive: true })
  Fs.mkdirSync(Path.join(dir, "dist/cli"), { recursive: true })
  Fs.copyFileSync(Path.join(root, "bin/probescope"), Path.join(dir, "bin/probescope"))
  Fs.chmodSync(Path.join(dir, "bin/probescope"), 0o755)
  Fs.symlinkSync(process.execPath, Path.join(dir, "node_modules/.bin/node"))
  Fs.writeFileSync(Path.join(dir, "dist/cli/probescope.mjs"), bundle)
  return dir
}

/** The package's bin/probescope with `args`; `env` adds to (or, undefined, removes from) this environment. */
export const runLauncher = (
  pkg: string,
  args: ReadonlyArray<string>,
  env: Record<string, string | undefined> = {}
) => {
  const merged: Record<string, string> = {}
  for (const [k, v] of Object.entries({ ...process.env, ...env })) {
    if (v !== undefined) merged[k] = v
  }
  const r = spawnSync(Path.join(pkg, "bin/probescope"), args, { encoding: "utf8", env: merged, timeout: 60_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}
