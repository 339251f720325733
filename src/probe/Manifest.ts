/**
 * What a probe instruments and needs from a target: the library, the supported Go and library versions, the
 * symbols (with entry and/or return programs, required or optional), and the struct fields it needs offsets for.
 *
 * The Manager checks a manifest against each target before attaching; `check` is also what `probescope inspect`
 * shows, so every "does not apply" carries a human-readable reason.
 */
import type { TracepointSpec } from "../kernel/Bpf.ts"
import type { Target } from "./Target.ts"
import * as Version from "./internal/version.ts"

/** One Go function to probe, by its symbol name (e.g. "net/http.serverHandler.ServeHTTP"). */
export interface SymbolSpec {
  readonly name: string
  /** BPF program attached at the function's entry (just past the stack-check prologue). */
  readonly entry?: string
  /** BPF program attached at every RET instruction of the function (never a uretprobe). */
  readonly return?: string
  /** An optional symbol missing from the target is skipped; a missing required one makes the probe not apply. */
  readonly optional?: boolean
}

/** A struct field whose offset the probe needs, e.g. `{ type: "net/http.Request", field: "Method" }`. */
export interface FieldSpec {
  readonly type: string
  readonly field: string
  /** When true, a missing offset does not stop the probe; its value in `offsets` is then undefined. */
  readonly optional?: boolean
}

/** Fields by the name the probe uses for them. */
export type FieldSpecs = Readonly<Record<string, FieldSpec>>

/** Resolved offsets, keyed like the manifest's `fields` (optional fields may be undefined). */
export type Offsets<F extends FieldSpecs> = {
  readonly [K in keyof F]: F[K] extends { readonly optional: true } ? number | undefined : number
}

/** The instrumented library: a Go module path, or "std" for the standard library (whose version is Go's). */
export interface Library {
  readonly module: string
  /** The package inside the module (informational, e.g. "net/http"). */
  readonly package?: string
  /** Supported module versions (for "std": Go versions), e.g. ">=1.21 <1.27". Absent: any. */
  readonly versions?: string
}

/** A probe's manifest. */
export interface Manifest<F extends FieldSpecs = FieldSpecs> {
  /**
   * The library instrumented. Absent for a global probe (e.g. one watching exec/exit tracepoints), which is not
   * attached per target.
   */
  readonly library?: Library
  /** Supported Go toolchain versions, e.g. ">=1.21". Absent: any. */
  readonly goVersions?: string
  readonly symbols?: ReadonlyArray<SymbolSpec>
  readonly fields?: F
  /** Tracepoints attached once at load (global, not per target). */
  readonly tracepoints?: ReadonlyArray<TracepointSpec>
}

/** The probe applies to the target: attach these symbols (missing optional ones listed). */
export interface Applies<F extends FieldSpecs = FieldSpecs> {
  readonly _tag: "Applies"
  readonly probe: string
  readonly symbols: ReadonlyArray<string>
  readonly missingOptional: ReadonlyArray<string>
  readonly offsets: Offsets<F>
}

/** The probe does not apply to the target, and why. */
export interface NotApplicable {
  readonly _tag: "NotApplicable"
  readonly probe: string
  readonly reason: string
}

/** The probe is global (no library): it is attached once at load, never per target. */
export interface Global {
  readonly _tag: "Global"
  readonly probe: string
}

/** Result of checking a manifest against a target. */
export type Applicability<F extends FieldSpecs = FieldSpecs> = Applies<F> | NotApplicable | Global

/** Identity helper that keeps a manifest literal's field names for `Offsets` typing. */
export const make = <const F extends FieldSpecs = {}>(manifest: Manifest<F>): Manifest<F> => manifest

/** Problems in a manifest itself (bad version ranges, programs missing), found when a probe is defined. */
export const validate = (manifest: Manifest<FieldSpecs>): ReadonlyArray<string> => {
  const problems: Array<string> = []
  if (manifest.goVersions !== undefined && !Version.isValidRange(manifest.goVersions)) {
    problems.push(`goVersions "${manifest.goVersions}" is not a version range`)
  }
  const lv = manifest.library?.versions
  if (lv !== undefined && !Version.isValidRange(lv)) problems.push(`library.versions "${lv}" is not a version range`)
  for (const s of manifest.symbols ?? []) {
    if (s.entry === undefined && s.return === undefined) {
      problems.push(`symbol ${s.name} has no entry or return program`)
    }
  }
  if (manifest.library !== undefined && (manifest.symbols ?? []).length === 0) {
    problems.push("a library probe needs at least one symbol")
  }
  return problems
}

/** Check a manifest against a target. Pure: no kernel, no I/O. */
export const check = <F extends FieldSpecs>(probe: string, manifest: Manifest<F>, target: Target): Applicability<F> => {
  const no = (reason: string): NotApplicable => ({ _tag: "NotApplicable", probe, reason })
  const lib = manifest.library
  if (lib === undefined) return { _tag: "Global", probe }
  if (manifest.goVersions !== undefined && !Version.satisfies(target.goVersion, manifest.goVersions)) {
    return no(`Go ${target.goVersion} is outside the supported range ${manifest.goVersions}`)
  }
  const version = lib.module === "std" ? target.modules.get("std") ?? target.goVersion : target.modules.get(lib.module)
  if (version === undefined) return no(`module ${lib.module} is not in the binary`)
  if (lib.versions !== undefined && !Version.satisfies(version, lib.versions)) {
    return no(`${lib.module} ${version} is outside the supported range ${lib.versions}`)
  }
  const symbols: Array<string> = []
  const missingOptional: Array<string> = []
  for (const s of manifest.symbols ?? []) {
    const fn = target.function(s.name)
    if (fn._tag === "Some") {
      if (s.return !== undefined && fn.value.returnOffsets.length === 0) {
        if (s.optional === true) missingOptional.push(s.name)
        else return no(`symbol ${s.name} has no RET instruction to put a return probe on`)
        continue
      }
      symbols.push(s.name)
    } else if (s.optional === true) missingOptional.push(s.name)
    else return no(`required symbol ${s.name} is not in the binary`)
  }
  if (symbols.length === 0) return no("none of the probe's symbols is in the binary")
  const offsets: Record<string, number | undefined> = {}
  for (const [key, f] of Object.entries(manifest.fields ?? {})) {
    const found = target.field(f.type, f.field)
    if (found._tag === "Some") offsets[key] = found.value.offset
    else if (f.optional === true) offsets[key] = undefined
    else return no(`no offset for ${f.type}.${f.field} (Go ${target.goVersion}, ${lib.module} ${version})`)
  }
  return { _tag: "Applies", probe, symbols, missingOptional, offsets: offsets as Offsets<F> }
}
