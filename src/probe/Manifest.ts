/**
 * What a probe instruments and needs from a target. A manifest is one of four shapes, and the types keep them apart
 * (a field of one shape in another does not compile):
 *
 * - **Go library**: `library: { module, package?, versions? }`, `goVersions?`, `symbols` (Go functions: entry just
 *   past the prologue, return on every RET), `fields` (struct offsets). Applies to Go targets with that module.
 * - **Shared library**: `library: { sharedObject: "libssl.so.3", versions? }` and `symbols` (ELF symbols of the
 *   library: `entry` is a uprobe at the symbol, `return` a uretprobe). Applies to any process, Go or not, that has
 *   the library mapped.
 * - **Tracepoint instrument**: `processes: "any"` and `tracepoints` (tp_btf/raw_tp programs). Applies to every
 *   target; its programs are attached while at least one target is attached, and the BPF side filters by the
 *   per-pid entry (`ps_targets`).
 * - **Global**: no library (e.g. a daemon watching exec/exit tracepoints): attached once at load, never per target.
 *   Its `cgroups` programs (sock_ops, ...) are attached once at load too, to one cgroup v2 directory.
 *
 * The Manager checks a manifest against each target before attaching; `check` is also what `probescope inspect`
 * shows, so every "does not apply" carries a human-readable reason.
 */
import type { TracepointSpec } from "../kernel/Bpf.ts"
import type { SharedLibrary, Target, TargetSymbol } from "./Target.ts"
import * as Version from "./internal/version.ts"

/**
 * One function to probe, by its symbol name: a Go function ("net/http.serverHandler.ServeHTTP") or, for a shared
 * library, an ELF symbol ("SSL_write", or a versioned one, "memcpy@GLIBC_2.2.5").
 */
/**
 * Whether a version (Go's "1.26.8", a module's "v1.77.0") is in a range as manifests write them (">=1.60.0 <1.86.0"):
 * for a probe whose per-target value depends on the release it found.
 */
export const versionSatisfies = (version: string, range: string): boolean => Version.satisfies(version, range)

export interface SymbolSpec {
  readonly name: string
  /** Go: the BPF program at the function's entry (just past the stack-check prologue). Library: a uprobe. */
  readonly entry?: string
  /** Go: the BPF program at every RET instruction (never a uretprobe). Library: a uretprobe (`SEC("uretprobe")`). */
  readonly return?: string
  /** An optional symbol missing from the target is skipped; a missing required one makes the probe not apply. */
  readonly optional?: boolean
  /**
   * A capability of this probe that other probes ask for (their `uses`, e.g. `GoContext.goroutines`): the symbol is
   * attached to a process only when a probe attached there uses the feature. A probe nothing depends on attaches all
   * its symbols.
   */
  readonly feature?: string
}

/**
 * A cgroup program of a global probe, attached once at load to one cgroup v2 directory (every socket created in it or
 * below runs it) and detached when the probe's scope closes. Which directory: the probe's `cgroup` option, else the
 * cgroup v2 mount's root.
 */
export interface CgroupProgramSpec {
  /** The BPF program (e.g. `SEC("sockops")`). */
  readonly program: string
  /** The attach point; the program's section must agree (`sock_ops` for `SEC("sockops")`). */
  readonly attach: "sock_ops"
}

/** The cgroup attach points a manifest may name. */
export const cgroupAttachPoints: ReadonlyArray<CgroupProgramSpec["attach"]> = ["sock_ops"]

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

/** A Go library: a module path, or "std" for the standard library (whose version is Go's). */
export interface GoLibrary {
  readonly module: string
  /** The package inside the module (informational, e.g. "net/http"). */
  readonly package?: string
  /** Supported module versions (for "std": Go versions), e.g. ">=1.21 <1.27". Absent: any. */
  readonly versions?: string
  readonly sharedObject?: never
}

/** A shared library, by the basename (or soname) it is mapped under, e.g. "libssl.so.3". */
export interface SharedObjectLibrary {
  readonly sharedObject: string
  /**
   * Supported library versions, e.g. ">=3.0.0 <4". The version is the one the library's ELF exposes (OpenSSL's
   * version text, else its newest symbol version): a library that exposes none does not match a range. Absent: any.
   */
  readonly versions?: string
  readonly module?: never
  readonly package?: never
}

/** The instrumented library. */
export type Library = GoLibrary | SharedObjectLibrary

/** A probe of a Go library. */
export interface GoManifest<F extends FieldSpecs = FieldSpecs> {
  readonly library: GoLibrary
  /** Supported Go toolchain versions, e.g. ">=1.21". Absent: any. */
  readonly goVersions?: string
  readonly symbols?: ReadonlyArray<SymbolSpec>
  readonly fields?: F
  /** Tracepoints attached once at load (global, not per target). */
  readonly tracepoints?: ReadonlyArray<TracepointSpec>
  readonly processes?: never
  readonly cgroups?: never
}

/** A probe of a shared library's ELF symbols (uprobes and uretprobes). */
export interface SharedLibraryManifest {
  readonly library: SharedObjectLibrary
  readonly symbols: ReadonlyArray<SymbolSpec>
  /** Go concepts: not for a shared library. */
  readonly goVersions?: never
  readonly fields?: never
  readonly tracepoints?: never
  readonly processes?: never
  readonly cgroups?: never
}

/**
 * An instrument on tracepoints, filtered in the kernel to the target processes: every target applies. The programs
 * (SEC("tp_btf/<name>") or SEC("raw_tp/<name>")) are attached while at least one target is attached.
 */
export interface TracepointManifest {
  readonly processes: "any"
  readonly tracepoints: readonly [TracepointSpec, ...Array<TracepointSpec>]
  readonly library?: never
  readonly symbols?: never
  readonly fields?: never
  readonly goVersions?: never
  readonly cgroups?: never
}

/** A global probe: no library, attached once at load (its tracepoints with it), never per target. */
export interface GlobalManifest {
  readonly library?: undefined
  readonly processes?: never
  readonly goVersions?: string
  readonly symbols?: ReadonlyArray<SymbolSpec>
  readonly fields?: FieldSpecs
  /** Tracepoints attached once at load. */
  readonly tracepoints?: ReadonlyArray<TracepointSpec>
  /** Cgroup programs attached once at load (see `CgroupProgramSpec`). */
  readonly cgroups?: ReadonlyArray<CgroupProgramSpec>
}

/** A probe's manifest: one of the shapes above. */
export type Manifest<F extends FieldSpecs = FieldSpecs> =
  | GoManifest<F>
  | SharedLibraryManifest
  | TracepointManifest
  | GlobalManifest

/** Whether a library is a shared object (rather than a Go module). */
export const isSharedObject = (library: Library | undefined): library is SharedObjectLibrary =>
  library !== undefined && typeof (library as SharedObjectLibrary).sharedObject === "string"

/** Whether a manifest is a tracepoint instrument (`processes: "any"`). */
export const isTracepointInstrument = (manifest: Manifest): manifest is TracepointManifest =>
  (manifest as TracepointManifest).processes === "any"

/** The shared library a manifest's `sharedObject` resolves to in a target: found by basename, else by soname. */
export interface AppliedLibrary {
  readonly name: string
  readonly path: string
  readonly file: string
  readonly version: string | undefined
}

/** The probe applies to the target: attach these symbols (missing optional ones listed). */
export interface Applies<F extends FieldSpecs = FieldSpecs> {
  readonly _tag: "Applies"
  readonly probe: string
  readonly symbols: ReadonlyArray<string>
  readonly missingOptional: ReadonlyArray<string>
  readonly offsets: Offsets<F>
  /** A shared-library probe: the library in this process its symbols are in. */
  readonly library?: AppliedLibrary
  /** A tracepoint instrument: its tracepoints, as "category:name". */
  readonly tracepoints?: ReadonlyArray<string>
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

/**
 * What the running kernel offers, for the checks that depend on it (tracepoints). `check` stays pure: the caller
 * reads the facts (`src/kernel/KernelFacts.ts`) and passes them in; without them, tracepoints are assumed present
 * (loading the probe is then what finds out).
 */
export interface KernelFacts {
  /**
   * Whether the kernel has the tracepoint (a `btf_trace_<name>` type in its BTF, which tp_btf and raw_tp programs
   * need); undefined when unknown.
   */
  readonly tracepoint: (name: string) => boolean | undefined
  /** Where the facts come from, for reasons ("/sys/kernel/btf/vmlinux"). */
  readonly source: string
}

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
  // The types forbid these mixes; a manifest built untyped (JSON, a cast) is checked here too.
  const m = manifest as {
    readonly processes?: unknown
    readonly library?: { readonly module?: unknown; readonly sharedObject?: unknown }
    readonly fields?: unknown
    readonly goVersions?: unknown
    readonly tracepoints?: ReadonlyArray<unknown>
    readonly cgroups?: ReadonlyArray<{ readonly program?: unknown; readonly attach?: unknown }>
  }
  const cgroups = m.cgroups ?? []
  if (cgroups.length > 0 && (m.library !== undefined || m.processes !== undefined)) {
    problems.push("cgroup programs belong to a global probe (no library, no processes): they are attached once at load")
  }
  for (const c of cgroups) {
    if (typeof c.program !== "string" || c.program === "") problems.push("a cgroup program needs a program name")
    if (!cgroupAttachPoints.includes(c.attach as CgroupProgramSpec["attach"])) {
      problems.push(`cgroup program ${String(c.program)}: attach must be one of ${cgroupAttachPoints.join(", ")} ` +
        `(got ${JSON.stringify(c.attach)})`)
    }
  }
  if (m.processes !== undefined) {
    if (m.processes !== "any") problems.push(`processes must be "any" (got ${JSON.stringify(m.processes)})`)
    if (m.library !== undefined) problems.push('a tracepoint instrument (processes: "any") names no library')
    if ((m.tracepoints ?? []).length === 0) {
      problems.push('a tracepoint instrument (processes: "any") needs tracepoints')
    }
    if ((manifest.symbols ?? []).length > 0) problems.push('a tracepoint instrument (processes: "any") has no symbols')
  }
  if (m.library !== undefined && m.library.sharedObject !== undefined) {
    if (typeof m.library.sharedObject !== "string" || m.library.sharedObject === "") {
      problems.push("library.sharedObject must be a file name, e.g. libssl.so.3")
    }
    if (m.library.module !== undefined) problems.push("a library is a Go module or a shared object, not both")
    if (m.fields !== undefined) problems.push("a shared-library probe has no Go struct fields")
    if (m.goVersions !== undefined) problems.push("a shared-library probe has no Go versions")
    if ((m.tracepoints ?? []).length > 0) problems.push("a shared-library probe attaches no tracepoints")
  }
  return problems
}

/** The library of a target a `sharedObject` names: basename first, then soname (a symlinked or renamed file). */
export const findLibrary = (target: Target, sharedObject: string): SharedLibrary | undefined =>
  target.libraries.find((l) => l.name === sharedObject) ?? target.libraries.find((l) => l.soname === sharedObject)

/** Check a manifest against a target. Pure: no kernel, no I/O (kernel facts, when wanted, are passed in). */
export const check = <F extends FieldSpecs>(
  probe: string,
  manifest: Manifest<F>,
  target: Target,
  kernel?: KernelFacts
): Applicability<F> => {
  const no = (reason: string): NotApplicable => ({ _tag: "NotApplicable", probe, reason })
  if (isTracepointInstrument(manifest)) return checkTracepoints(probe, manifest, kernel, no) as Applicability<F>
  const lib = manifest.library
  if (lib === undefined) return { _tag: "Global", probe }
  if (isSharedObject(lib)) return checkSharedLibrary(probe, manifest as SharedLibraryManifest, target, no) as never
  return checkGo(probe, manifest as GoManifest<F>, lib, target, no)
}

const checkTracepoints = (
  probe: string,
  manifest: TracepointManifest,
  kernel: KernelFacts | undefined,
  no: (reason: string) => NotApplicable
): Applicability => {
  if (kernel !== undefined) {
    for (const tp of manifest.tracepoints) {
      if (kernel.tracepoint(tp.name) === false) {
        return no(`tracepoint ${tp.category}:${tp.name} is not in this kernel (no btf_trace_${tp.name} in ` +
          `${kernel.source})`)
      }
    }
  }
  return {
    _tag: "Applies",
    probe,
    symbols: [],
    missingOptional: [],
    offsets: {},
    tracepoints: manifest.tracepoints.map((t) => `${t.category}:${t.name}`)
  }
}

const checkSharedLibrary = (
  probe: string,
  manifest: SharedLibraryManifest,
  target: Target,
  no: (reason: string) => NotApplicable
): Applicability => {
  const wanted = manifest.library.sharedObject
  const library = findLibrary(target, wanted)
  if (library === undefined) return no(`shared library ${wanted} is not mapped by the process`)
  const range = manifest.library.versions
  if (range !== undefined) {
    if (library.version === undefined) {
      return no(`${library.name} exposes no version (no version text, no symbol versions): cannot check the ` +
        `supported range ${range}`)
    }
    if (!Version.satisfies(library.version, range)) {
      return no(`${library.name} ${library.version} is outside the supported range ${range}`)
    }
  }
  const stripped = library.stripped ? ", stripped: only exported symbols known" : ""
  const where = `${library.name} (${library.mappedPath}${stripped})`
  const symbols: Array<string> = []
  const missingOptional: Array<string> = []
  for (const s of manifest.symbols) {
    const found = library.symbol(s.name)
    const usable = found._tag === "Some" && isAttachable(found.value)
    if (usable) symbols.push(s.name)
    else if (s.optional === true) missingOptional.push(s.name)
    else if (found._tag === "Some") return no(`symbol ${s.name} of ${where} is not a function in a file-backed segment`)
    else return no(`required symbol ${s.name} is not in ${where}`)
  }
  if (symbols.length === 0) return no(`none of the probe's symbols is in ${where}`)
  return {
    _tag: "Applies",
    probe,
    symbols,
    missingOptional,
    offsets: {},
    library: { name: library.name, path: library.path, file: library.file, version: library.version }
  }
}

const isAttachable = (s: TargetSymbol): boolean => s.kind === "function" && s.fileOffset !== undefined

const checkGo = <F extends FieldSpecs>(
  probe: string,
  manifest: GoManifest<F>,
  lib: GoLibrary,
  target: Target,
  no: (reason: string) => NotApplicable
): Applicability<F> => {
  if (target.language !== "go") {
    // The wording `inspect` always had for a program that is not Go: its language, when its symbols tell.
    return no(`not a Go program (${target.native?.language ?? (target.stripped ? "no symbols" : "native")})`)
  }
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
