/**
 * `probescope inspect`: what a user checks before attaching — what the program is (Go: its Go and module versions;
 * anything else: its native ELF analysis), which probes apply and why not, and for each that applies its resolved
 * attach points (Go functions, or the symbols of the shared library it instruments) and struct offsets with their
 * source. A Go probe on a program that is not Go, a shared library the process has not mapped (or the binary does not
 * need), a library version outside the probe's range or that the library does not expose, a missing symbol, a
 * tracepoint this kernel lacks: each is a probe that does not apply, with the reason — never a failed inspect.
 * Needs no privileges beyond reading the file (and /proc/<pid> for `--pid`). The JSON is documented in docs/cli.md
 * and stable: fields are only ever added.
 */
import { Effect, Option } from "effect"
import * as KernelFacts from "../kernel/KernelFacts.ts"
import * as Manifest from "../probe/Manifest.ts"
import type { Target } from "../probe/Target.ts"
import type * as GoBinary from "../target/GoBinary.ts"
import * as NativeBinary from "../target/NativeBinary.ts"
import * as ProcessTarget from "../target/ProcessTarget.ts"
import { builtins, type Planned } from "../agent/Agent.ts"

/** What inspect needs of a probe: a definition, or a described probe. */
export interface InspectedProbe {
  readonly name: string
  readonly kind: "instrument" | "daemon"
  readonly manifest: Manifest.Manifest
}

export interface AttachPoint {
  readonly symbol: string
  readonly entryProgram: string | null
  readonly returnProgram: string | null
  readonly optional: boolean
  /** Absent from the binary (only possible for optional symbols of an applicable probe). */
  readonly found: boolean
  readonly address?: string
  readonly fileOffset?: number
  readonly entryOffset?: number
  readonly returnOffsets?: ReadonlyArray<number>
  /**
   * A shared-library probe's symbol: the library file it is in. Its entry program is a uprobe at `fileOffset` of
   * that file, its return program a uretprobe there (`returnOffsets` is then `[fileOffset]`).
   */
  readonly library?: string
}

export interface FieldReport {
  readonly type: string
  readonly field: string
  readonly optional: boolean
  readonly offset: number | null
  readonly source: "dwarf" | "table" | null
}

/** A tracepoint of a tracepoint instrument, and whether this kernel has it (null: its BTF could not be read). */
export interface TracepointReport {
  readonly program: string
  readonly category: string
  readonly name: string
  readonly inKernel: boolean | null
}

/** The shared library a shared-library probe instruments, as found in the process (or the binary's needs). */
export interface LibraryReport {
  readonly sharedObject: string
  /** The file found, or null when the process maps none of that name. */
  readonly path: string | null
  readonly file: string | null
  readonly version: string | null
  readonly versions: string | null
  /** Load address in the process, or null (a binary on disk maps nothing). */
  readonly base: string | null
  readonly stripped: boolean | null
}

export interface ProbeReport {
  readonly name: string
  readonly kind: "instrument" | "daemon"
  /** What the probe attaches to: a Go module, a shared library, tracepoints (for any process), or nothing (global). */
  readonly target?: "go" | "shared-library" | "tracepoints" | "global"
  readonly applies: boolean
  readonly reason: string | null
  readonly attachPoints: ReadonlyArray<AttachPoint>
  readonly fields: Readonly<Record<string, FieldReport>>
  readonly library?: LibraryReport
  readonly tracepoints?: ReadonlyArray<TracepointReport>
}

/** With selectors: whether `run` with them would attach to the inspected process, and which selector picks it. */
export interface SelectionReport {
  readonly selected: boolean
  /** The selectors that pick it, as the command line spells them. */
  readonly selectedBy: ReadonlyArray<string>
  readonly attach: boolean
  /** Why it is not selected or not attached, else null. */
  readonly reason: string | null
}

/** A shared object a process has mapped, as the JSON shows it. */
export interface MappedReport {
  readonly path: string
  readonly device: string
  readonly inode: number
  readonly deleted: boolean
  readonly base: string | null
  readonly executable: ReadonlyArray<{ readonly start: string; readonly end: string; readonly fileOffset: number }>
}

/**
 * The report of a program that is not Go: the native analysis (null for an executable with no symbol table at all,
 * `analysisError` then says so), and with --pid the objects the process mapped.
 */
export interface NativeReport {
  readonly pid: number | null
  readonly binary: { readonly path: string }
  readonly native: NativeBinary.NativeBinarySummary | null
  readonly analysisError?: string
  readonly mappedObjects?: ReadonlyArray<MappedReport>
  readonly probes: ReadonlyArray<ProbeReport>
  readonly selection?: SelectionReport
}

export type Report = GoReport | NativeReport

export interface GoReport {
  readonly pid: number | null
  readonly binary: GoBinary.GoBinarySummary
  readonly probes: ReadonlyArray<ProbeReport>
  /** Present only when selectors were given with --pid. */
  readonly selection?: SelectionReport
}

/** `Agent.explain`'s answer as inspect reports it. */
export const selectionReport = (p: Planned): SelectionReport => ({
  selected: p.selectedBy.length > 0,
  selectedBy: p.selectedBy,
  attach: p.attach,
  reason: p.reason
})

const hex = (n: bigint) => `0x${n.toString(16)}`

/** Where a manifest's symbols are in the target: its Go functions, or the shared library's ELF symbols. */
const attachPointsOf = (manifest: Manifest.Manifest, target: Target): ReadonlyArray<AttachPoint> => {
  const library = Manifest.isSharedObject(manifest.library) ?
    Manifest.findLibrary(target, manifest.library.sharedObject) :
    undefined
  return (manifest.symbols ?? []).map((s): AttachPoint => {
    const base = {
      symbol: s.name,
      entryProgram: s.entry ?? null,
      returnProgram: s.return ?? null,
      optional: s.optional === true
    }
    if (Manifest.isSharedObject(manifest.library)) {
      const found = library === undefined ? Option.none() : library.symbol(s.name)
      if (Option.isNone(found) || found.value.fileOffset === undefined) return { ...base, found: false }
      const offset = found.value.fileOffset
      return {
        ...base,
        found: true,
        library: library!.path,
        address: hex(found.value.address),
        fileOffset: offset,
        entryOffset: offset,
        returnOffsets: s.return === undefined ? [] : [offset]
      }
    }
    return Option.match(target.function(s.name), {
      onNone: () => ({ ...base, found: false }),
      onSome: (fn) => ({
        ...base,
        found: true,
        address: hex(fn.address),
        fileOffset: fn.fileOffset,
        entryOffset: fn.entryOffset,
        returnOffsets: fn.returnOffsets
      })
    })
  })
}

/** Where inspect looked: a running process (its mapped libraries) or a binary on disk (the libraries it needs). */
type Scope = { readonly _tag: "process" } | { readonly _tag: "file"; readonly needed: ReadonlyArray<string> }

const probeReport = (
  def: InspectedProbe,
  target: Target,
  kernel: Manifest.KernelFacts,
  scope: Scope
): ProbeReport => {
  const manifest = def.manifest
  const app = Manifest.check(def.name, manifest, target, kernel)
  let reason = app._tag === "NotApplicable" ? app.reason : null
  const fields: Record<string, FieldReport> = {}
  for (const [key, f] of Object.entries(manifest.fields ?? {})) {
    const found = target.field(f.type, f.field)
    fields[key] = {
      type: f.type,
      field: f.field,
      optional: f.optional === true,
      offset: Option.isSome(found) ? found.value.offset : null,
      source: Option.isSome(found) ? found.value.source : null
    }
  }
  const extra: { library?: LibraryReport; tracepoints?: ReadonlyArray<TracepointReport> } = {}
  let kind: ProbeReport["target"] = manifest.library === undefined ? "global" : "go"
  if (Manifest.isSharedObject(manifest.library)) {
    kind = "shared-library"
    const wanted = manifest.library.sharedObject
    const found = Manifest.findLibrary(target, wanted)
    extra.library = {
      sharedObject: wanted,
      path: found?.path ?? null,
      file: found?.file ?? null,
      version: found?.version ?? null,
      versions: manifest.library.versions ?? null,
      base: found?.base === undefined ? null : hex(found.base),
      stripped: found?.stripped ?? null
    }
    // A binary maps nothing: say what it needs instead (a process of it may still load the library later).
    if (found === undefined && scope._tag === "file") {
      reason = `shared library ${wanted} is not among the libraries ${target.exe} needs` +
        `${scope.needed.length === 0 ? " (it needs none)" : ` (${scope.needed.join(", ")})`}; a process of it may ` +
        "still load it (dlopen)"
    }
  }
  if (Manifest.isTracepointInstrument(manifest)) {
    kind = "tracepoints"
    extra.tracepoints = manifest.tracepoints.map((t) => ({
      program: t.program,
      category: t.category,
      name: t.name,
      inKernel: kernel.tracepoint(t.name) ?? null
    }))
  }
  return {
    name: def.name,
    kind: def.kind,
    target: kind,
    applies: app._tag !== "NotApplicable",
    reason,
    attachPoints: attachPointsOf(manifest, target),
    fields,
    ...extra
  }
}

/** The shared libraries the probes name: only these are analysed. */
const wantedLibraries = (probes: ReadonlyArray<InspectedProbe>): ReadonlySet<string> =>
  new Set(probes.flatMap((p) => Manifest.isSharedObject(p.manifest.library) ? [p.manifest.library.sharedObject] : []))

const mappedReport = (o: NativeBinary.MappedObject): MappedReport => ({
  path: o.path,
  device: o.device,
  inode: o.inode,
  deleted: o.deleted,
  base: o.base === undefined ? null : hex(o.base),
  executable: o.executable.map((m) => ({ start: hex(m.start), end: hex(m.end), fileOffset: m.fileOffset }))
})

const makeReport = (
  pid: number | null,
  target: ProcessTarget.ProcessTarget,
  probes: ReadonlyArray<InspectedProbe>,
  kernel: Manifest.KernelFacts,
  mapped: ReadonlyArray<NativeBinary.MappedObject> | undefined
): Report => {
  const scope: Scope = pid !== null ?
    { _tag: "process" } :
    { _tag: "file", needed: target.language === "native" ? target.native?.needed ?? [] : [] }
  const reports = probes.map((def) => probeReport(def, target, kernel, scope))
  if (target.language === "go") return { pid, binary: target.binary.summary([]), probes: reports }
  return {
    pid,
    binary: { path: target.exeLink },
    native: target.native?.summary([]) ?? null,
    ...(target.native === undefined ?
      {
        analysisError: `${target.exeLink}: stripped (no .symtab) and no .dynsym: no function has a name to attach to`
      } :
      {}),
    ...(mapped === undefined ? {} : { mappedObjects: mapped.map(mappedReport) }),
    probes: reports
  }
}

/** Inspect a binary on disk against the given probes (the built-in ones by default): a Go program, or a native one. */
export const file = (path: string, probes: ReadonlyArray<InspectedProbe> = builtins) =>
  Effect.gen(function*() {
    const native = yield* NativeBinary.current
    const kernel = yield* KernelFacts.read()
    const target = yield* ProcessTarget.analyzeExecutable(path, { libraries: wantedLibraries(probes) }).pipe(
      Effect.provideService(NativeBinary.NativeAnalysis, native)
    )
    return makeReport(null, target, probes, kernel, undefined)
  })

/**
 * Inspect a running process against the given probes (the built-in ones by default): its Go executable, or its
 * native one and the objects it mapped; the shared libraries the probes name, as the process maps them.
 */
export const pid = (pid: number, probes: ReadonlyArray<InspectedProbe> = builtins) =>
  Effect.gen(function*() {
    const native = yield* NativeBinary.current
    const kernel = yield* KernelFacts.read()
    const target = yield* ProcessTarget.analyzeProcess(pid, { libraries: wantedLibraries(probes) }).pipe(
      Effect.provideService(NativeBinary.NativeAnalysis, native)
    )
    const mapped = target.language === "native" ? yield* NativeBinary.processMaps(pid) : undefined
    return makeReport(pid, target, probes, kernel, mapped)
  })

const formatNative = (r: NativeReport): Array<string> => {
  const n = r.native
  if (n === null) {
    return [
      `${r.pid === null ? "" : `pid ${r.pid}  `}${r.binary.path}`,
      `  native, stripped: no symbol table at all`
    ]
  }
  const lines = [
    `${r.pid === null ? "" : `pid ${r.pid}  `}${r.binary.path}`,
    `  native ${n.language} ${n.kind}${n.soname === null ? "" : ` ${n.soname}`}, ${n.stripped ? "stripped" : "symbols"}` +
    `, ${n.functionCount} functions${n.buildId === null ? "" : `, build id ${n.buildId}`}`
  ]
  if (n.needed.length > 0) lines.push(`  needs ${n.needed.join(", ")}`)
  for (const l of n.libraries) {
    lines.push(`  ${l.name} ${l.source === "version-text" ? l.version : `>= ${l.version} (symbol versions)`}`)
  }
  return lines
}

const formatMapped = (r: NativeReport): Array<string> => {
  if (r.mappedObjects === undefined) return []
  const lines = ["", "mapped objects:"]
  for (const o of r.mappedObjects) lines.push(`  ${o.base ?? "?"}  ${o.path}${o.deleted ? " (deleted)" : ""}`)
  return lines
}

/** One probe: applies or not (with the reason), and where an applying one attaches. */
const formatProbe = (p: ProbeReport): Array<string> => {
  const lines = [`  ${p.applies ? "✓" : "✗"} ${p.name} (${p.kind})${p.reason ? `: ${p.reason}` : ""}`]
  if (!p.applies) return lines
  if (p.library !== undefined && p.library.path !== null) {
    lines.push(`      ${p.library.path}${p.library.version === null ? "" : ` ${p.library.version}`}` +
      `${p.library.base === null ? "" : ` at ${p.library.base}`}`)
  }
  for (const t of p.tracepoints ?? []) lines.push(`      tracepoint ${t.category}:${t.name}  ${t.program}`)
  for (const a of p.attachPoints) {
    if (!a.found) lines.push(`      ${a.symbol}  (absent, optional)`)
    else if (a.library !== undefined) {
      const ret = a.returnProgram === null ? "" : `  uretprobe @${a.fileOffset}`
      lines.push(`      ${a.symbol}  uprobe @${a.fileOffset}${ret}`)
    } else lines.push(`      ${a.symbol}  entry @${a.entryOffset}  ret @${(a.returnOffsets ?? []).join(",")}`)
  }
  for (const [key, f] of Object.entries(p.fields)) {
    lines.push(`      ${key} = ${f.type}.${f.field}  ${f.offset === null ? "unknown" : `+${f.offset} (${f.source})`}`)
  }
  return lines
}

/** The human form: a few lines per probe. */
export const format = (r: Report): string => {
  if ("native" in r) {
    return [
      ...formatNative(r),
      ...formatMapped(r),
      "",
      "probes:",
      ...r.probes.flatMap(formatProbe),
      ...formatSelection(r.selection)
    ].join("\n")
  }
  const b = r.binary
  const lines = [
    `${r.pid === null ? "" : `pid ${r.pid}  `}${b.path}`,
    `  Go ${b.goVersion}  ${b.mainModule?.path ?? b.mainPath}${b.mainModule ? ` ${b.mainModule.version}` : ""}`,
    `  ${b.stripped ? "stripped" : "symbols"}, functions from ${b.functionSource}, ${b.hasDwarf ? "DWARF" : "no DWARF"}` +
    `, ${Object.keys(b.modules).length - 1} dependencies`
  ]
  for (const [mod, v] of Object.entries(b.modules)) if (mod !== "std") lines.push(`    ${mod} ${v}`)
  lines.push("", "probes:", ...r.probes.flatMap(formatProbe))
  return [...lines, ...formatSelection(r.selection)].join("\n")
}

const formatSelection = (sel: SelectionReport | undefined): Array<string> => {
  const lines: Array<string> = []
  if (sel !== undefined) {
    lines.push(
      "",
      !sel.selected
        ? `selection: not selected: ${sel.reason}`
        : sel.attach
        ? `selection: run would attach, selected by ${sel.selectedBy.join(", ")}`
        : `selection: selected by ${sel.selectedBy.join(", ")}, but run would not attach: ${sel.reason}`
    )
  }
  return lines
}
