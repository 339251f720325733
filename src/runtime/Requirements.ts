/**
 * What probescope needs from the process it runs in, checked before Effect is loaded: a Node new enough for Effect 4,
 * and one copy of `effect` shared with the program that uses probescope.
 *
 * This module imports nothing but Node's own modules and must stay that way: on an old Node, Effect's modules fail
 * later with errors that name neither Node nor its version (`Map.groupBy is not a function`), and two copies of
 * `effect` fail silently (a config default read through one copy's `Schema` is a "Missing key" in the other's).
 * Its errors are therefore plain `Error`s with a `_tag`, not Effect's tagged errors.
 */
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

/** The oldest Node that `effect` 4.1 and `@effect/platform-node` 4.1 declare (their `engines`). */
export const minimumNode = { major: 22, minor: 19 } as const

/** The `effect` versions probescope is built against (its `peerDependencies`). */
export const effectRange = { major: 4, minMinor: 1 } as const

/** How a project gets a new enough Node without changing the system's (README, "Node version"). */
export const nodeAdvice = "install one into your project with `npm install --save-dev node@24` " +
  "(npm scripts and npx then run node_modules/.bin/node), or put Node >= 22.19 first on PATH"

/** A requirement of the running process is not met; `message` says which and what to do. */
export class RuntimeRequirementError extends Error {
  readonly _tag = "RuntimeRequirementError"
  readonly requirement: "node" | "effect-copies" | "effect-version"
  constructor(requirement: RuntimeRequirementError["requirement"], message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = "RuntimeRequirementError"
    this.requirement = requirement
  }
}

const parseVersion = (version: string): ReadonlyArray<number> =>
  version.replace(/^v/, "").split(/[.-]/).slice(0, 3).map((part) => Number.parseInt(part, 10))

/** The problem with running on Node `version` (e.g. "20.20.2"), or undefined when it is new enough. */
export const checkNode = (version: string, execPath: string): RuntimeRequirementError | undefined => {
  const [major = 0, minor = 0] = parseVersion(version)
  if (major > minimumNode.major || (major === minimumNode.major && minor >= minimumNode.minor)) return undefined
  return new RuntimeRequirementError(
    "node",
    `probescope needs Node >= ${minimumNode.major}.${minimumNode.minor} (Effect 4 does), but this is Node ${version} ` +
      `(${execPath}); ${nodeAdvice}`
  )
}

/** The directory of the `effect` package that `fromDir` resolves (symlinks resolved), or undefined when none. */
export const resolveEffect = (fromDir: string): string | undefined => {
  try {
    const manifest = createRequire(Path.join(fromDir, "noop.js")).resolve("effect/package.json")
    return Path.dirname(Fs.realpathSync(manifest))
  } catch {
    return undefined
  }
}

/**
 * The project that installed the package at `packageDir`: the directory above the first `node_modules` of its path
 * (pnpm's `.pnpm/<name>@<version>/node_modules/...` included), or the package itself when run from its own checkout.
 */
export const projectDirOf = (packageDir: string): string => {
  const at = packageDir.split(Path.sep).indexOf("node_modules")
  return at <= 0 ? packageDir : packageDir.split(Path.sep).slice(0, at).join(Path.sep) || Path.sep
}

const readVersion = (effectDir: string): string | undefined => {
  try {
    return (JSON.parse(Fs.readFileSync(Path.join(effectDir, "package.json"), "utf8")) as { version?: string }).version
  } catch {
    return undefined
  }
}

/** What a loaded probescope records on `globalThis`, so a second copy of probescope can tell which `effect` it used. */
export const registryKey = Symbol.for("probescope/runtime/effect")

interface Registry {
  readonly effectDir: string
  readonly packageDir: string
}

const copiesAdvice = "use one: declare `effect` (and `@effect/platform-node`) once in your package.json with a " +
  "version in probescope's peer range (^4.1.0), then `npm dedupe` (or delete node_modules and reinstall); " +
  "`npm ls effect` shows every copy"

/**
 * The problem with the `effect` package probescope (at `packageDir`) would use, or undefined when there is none:
 * - its version is outside the peer range;
 * - the project that installed probescope resolves another copy of `effect` (their values would not mix);
 * - another probescope already loaded in this process uses another copy (`registry`, shared through `globalThis`).
 */
export const checkEffect = (
  packageDir: string,
  registry: { get(): Registry | undefined; set(r: Registry): void }
): RuntimeRequirementError | undefined => {
  const ours = resolveEffect(packageDir)
  // Without `effect` at all the first import of it fails with Node's own clear "Cannot find package 'effect'".
  if (ours === undefined) return undefined
  const version = readVersion(ours)
  const [major = 0, minor = 0] = parseVersion(version ?? "0")
  if (major !== effectRange.major || minor < effectRange.minMinor) {
    return new RuntimeRequirementError(
      "effect-version",
      `probescope needs effect ^${effectRange.major}.${effectRange.minMinor}.0, but ${ours} is effect ${version}; ` +
        `install a matching one: npm install effect@^${effectRange.major}.${effectRange.minMinor}.0`
    )
  }
  const project = projectDirOf(packageDir)
  const theirs = resolveEffect(project)
  if (theirs !== undefined && theirs !== ours) {
    return new RuntimeRequirementError(
      "effect-copies",
      `two copies of effect: probescope uses ${ours}, your project (${project}) uses ${theirs}; ${copiesAdvice}`
    )
  }
  const first = registry.get()
  if (first === undefined) registry.set({ effectDir: ours, packageDir })
  else if (first.effectDir !== ours) {
    return new RuntimeRequirementError(
      "effect-copies",
      `two copies of effect: probescope at ${first.packageDir} uses ${first.effectDir}, probescope at ${packageDir} ` +
        `uses ${ours}; ${copiesAdvice}`
    )
  }
  return undefined
}

/** The `globalThis` registry used by `check`. */
export const globalRegistry = {
  get: (): Registry | undefined => (globalThis as Record<symbol, Registry | undefined>)[registryKey],
  set: (r: Registry): void => void Reflect.set(globalThis, registryKey, r)
}

/** This package's root: the directory two levels above this module (src/runtime or dist/runtime). */
export const packageDir: string = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..", "..")

/** Every requirement of the running process, first problem first (Node before `effect`). */
export const check = (): RuntimeRequirementError | undefined =>
  checkNode(process.versions.node, process.execPath) ?? checkEffect(packageDir, globalRegistry)
