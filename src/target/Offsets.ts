/**
 * The shipped struct-offset table (`offsets.json`) and its lookup: where a binary without DWARF (built with
 * `-ldflags=-s -w`) gets the field offsets its probes need.
 *
 * `scripts/gen-offsets.ts` builds small programs using each covered module at each covered version with each
 * supported Go, reads their DWARF with probescope's own reader, and stores the offsets as runs (see
 * internal/OffsetTable.ts; docs/offsets.md says what is covered and how to regenerate).
 *
 * A lookup takes the binary's Go version and module versions (from its build info): the module version picks the
 * build of its release line (patch releases keep layouts), the Go version the build of its Go line. Outside what was
 * built, the answer is a typed reason naming the module, its version and what the table covers.
 */
import { Result } from "effect"
import * as Errors from "./Errors.ts"
import {
  compareVersions,
  describeLines,
  type ModuleOffsets,
  offsetAt,
  parseVersion,
  representative
} from "./internal/OffsetTable.ts"
import table from "./offsets.json" with { type: "json" }

export { compareVersions, type ModuleOffsets, type OffsetEntry, parseVersion } from "./internal/OffsetTable.ts"

type Dict<A> = Readonly<Record<string, A>>

/** Shape of `offsets.json`. */
export interface OffsetsTable {
  readonly schema: 2
  /** What the last generation ran with (informational). */
  readonly generated?: {
    readonly go: ReadonlyArray<string>
    /** Per module, the releases the Go module proxy listed from the covered range's start (pre-releases left out). */
    readonly released?: Dict<ReadonlyArray<string>>
  }
  /** "std" (versions are Go versions) or a module path → its builds and offsets. */
  readonly modules: Dict<ModuleOffsets>
}

/** The table shipped with the project. */
export const shipped: OffsetsTable = table as unknown as OffsetsTable

/** What a lookup needs of a binary: its Go version and its modules (path → version), as the build info says. */
export interface BinaryVersions {
  readonly goVersion: string
  readonly modules: ReadonlyMap<string, string>
}

/** A found offset, with the build that stands for the binary's versions. */
export interface Found {
  readonly offset: number
  readonly module: string
  /** The built module version used (for "std": a Go version). */
  readonly version: string
  readonly go: string
}

/** The table module that records `type`: the one the binary has (std first when it records the type). */
const ownerOf = (t: OffsetsTable, binary: BinaryVersions, type: string): string | undefined => {
  let best: string | undefined
  for (const [module, m] of Object.entries(t.modules)) {
    if (m.types[type] === undefined) continue
    if (module === "std") return module
    // Were two modules of the binary to record the type (a shared dependency's), the longest path wins.
    if (binary.modules.has(module) && (best === undefined || module.length > best.length)) best = module
  }
  return best
}

const label = (module: string, version: string): string => (module === "std" ? `Go ${version}` : `${module} ${version}`)

/**
 * The offset of `type.field` for a binary with these versions, or why there is none:
 * `FieldNotInTable` (no module of the binary records the type, or the field is absent at that version),
 * `ModuleVersionNotCovered` (the module's version is in no built release line), `GoVersionNotCovered` (no build
 * with the binary's Go line).
 */
export const find = (
  t: OffsetsTable,
  binary: BinaryVersions,
  type: string,
  field: string
): Result.Result<Found, Errors.OffsetUnavailable> => {
  const module = ownerOf(t, binary, type)
  if (module === undefined) {
    return Result.fail(new Errors.FieldNotInTable({
      type,
      field,
      message: `the offsets table records ${type} for no module of the binary`
    }))
  }
  const m = t.modules[module]!
  const version = module === "std" ? binary.goVersion : binary.modules.get(module)!
  const built = Object.keys(m.builds)
  const v = representative(built, version)
  if (v === undefined) {
    const covered = describeLines(built)
    return Result.fail(new Errors.ModuleVersionNotCovered({
      module,
      version,
      covered,
      message: `${label(module, version)} is not covered by the offsets table (covered: ${
        module === "std" ? "Go " : ""
      }${covered})`
    }))
  }
  const gos = m.builds[v]!
  const g = module === "std" ? v : representative(gos, binary.goVersion)
  if (g === undefined) {
    const covered = describeLines(gos)
    const needs = m.needsGo?.[v]
    const why = needs !== undefined && compareVersions(binary.goVersion, needs) < 0
      ? ` (its go.mod needs Go >= ${needs}; covered with Go ${covered})`
      : ` (covered with Go ${covered})`
    return Result.fail(new Errors.GoVersionNotCovered({
      module,
      version,
      goVersion: binary.goVersion,
      covered,
      message: `${module} ${version} with Go ${binary.goVersion} is not covered by the offsets table${why}`
    }))
  }
  const entries = m.types[type]?.[field]
  const offset = entries === undefined ? undefined : offsetAt(entries, v, g)
  if (offset === undefined) {
    return Result.fail(new Errors.FieldNotInTable({
      type,
      field,
      module,
      version,
      message: entries === undefined
        ? `the offsets table does not record ${type}.${field}`
        : `${type}.${field} does not exist in ${label(module, version)} (offsets table)`
    }))
  }
  return Result.succeed({ offset, module, version: v, go: g })
}

/**
 * The offset recorded for (module, version, type, field), or undefined. For "std" `version` is the Go version; for a
 * module, `goVersion` picks the Go line (default: the newest Go the version was built with).
 */
export const lookup = (
  t: OffsetsTable,
  module: string,
  version: string,
  type: string,
  field: string,
  goVersion?: string
): number | undefined => {
  if (parseVersion(version) === undefined) return undefined
  const m = t.modules[module]
  if (m?.types[type] === undefined) return undefined
  const go = goVersion ?? (module === "std" ? version : newestGo(m, version))
  if (go === undefined) return undefined
  const one: OffsetsTable = { schema: 2, modules: { [module]: m } }
  const r = find(one, { goVersion: go, modules: new Map([[module, version]]) }, type, field)
  return Result.isSuccess(r) ? r.success.offset : undefined
}

const newestGo = (m: ModuleOffsets, version: string): string | undefined => {
  const v = representative(Object.keys(m.builds), version)
  const gos = v === undefined ? [] : m.builds[v]!
  return gos[gos.length - 1]
}
