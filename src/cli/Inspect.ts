/**
 * `probescope inspect`: what a user checks before attaching — the binary's Go and module versions, which built-in
 * probes apply (and why not), and for each that applies its resolved attach points and struct offsets with their
 * source. Needs no privileges beyond reading the file (and /proc/<pid>/exe for `--pid`). The JSON is documented in
 * docs/cli.md and stable: fields are only ever added.
 */
import { Effect, Option } from "effect"
import * as Fs from "node:fs/promises"
import * as Errors from "../target/Errors.ts"
import * as Manifest from "../probe/Manifest.ts"
import type { Target } from "../probe/Target.ts"
import * as GoBinary from "../target/GoBinary.ts"
import * as NativeBinary from "../target/NativeBinary.ts"
import { builtins, type Planned, type ProbeDefinition } from "../agent/Agent.ts"

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
}

export interface FieldReport {
  readonly type: string
  readonly field: string
  readonly optional: boolean
  readonly offset: number | null
  readonly source: "dwarf" | "table" | null
}

export interface ProbeReport {
  readonly name: string
  readonly kind: "instrument" | "daemon"
  readonly applies: boolean
  readonly reason: string | null
  readonly attachPoints: ReadonlyArray<AttachPoint>
  readonly fields: Readonly<Record<string, FieldReport>>
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

/** The report of a program that is not Go: the native analysis, and with --pid the objects the process mapped. */
export interface NativeReport {
  readonly pid: number | null
  readonly binary: { readonly path: string }
  readonly native: NativeBinary.NativeBinarySummary
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

const probeReport = (def: ProbeDefinition, target: Target): ProbeReport => {
  const manifest = def.manifest
  const app = Manifest.check(def.name, manifest, target)
  const attachPoints = (manifest.symbols ?? []).map((s): AttachPoint => {
    const base = {
      symbol: s.name,
      entryProgram: s.entry ?? null,
      returnProgram: s.return ?? null,
      optional: s.optional === true
    }
    return Option.match(target.function(s.name), {
      onNone: () => ({ ...base, found: false }),
      onSome: (fn) => ({
        ...base,
        found: true,
        address: `0x${fn.address.toString(16)}`,
        fileOffset: fn.fileOffset,
        entryOffset: fn.entryOffset,
        returnOffsets: fn.returnOffsets
      })
    })
  })
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
  return {
    name: def.name,
    kind: def.kind,
    applies: app._tag !== "NotApplicable",
    reason: app._tag === "NotApplicable" ? app.reason : null,
    attachPoints,
    fields
  }
}

const report = (pid: number | null, target: Target, binary: GoBinary.GoBinary): GoReport => ({
  pid,
  binary: binary.summary([]),
  probes: builtins.map((def) => probeReport(def, target))
})

/** The built-in probes all instrument Go programs today: none applies to a native one (issue 10 adds those). */
const nativeReport = (
  pid: number | null,
  native: NativeBinary.NativeBinary,
  mapped?: ReadonlyArray<NativeBinary.MappedObject>
): NativeReport => ({
  pid,
  binary: { path: native.path },
  native: native.summary([]),
  ...(mapped === undefined ? {} : {
    mappedObjects: mapped.map((o) => ({
      path: o.path,
      device: o.device,
      inode: o.inode,
      deleted: o.deleted,
      base: o.base === undefined ? null : `0x${o.base.toString(16)}`,
      executable: o.executable.map((m) => ({
        start: `0x${m.start.toString(16)}`,
        end: `0x${m.end.toString(16)}`,
        fileOffset: m.fileOffset
      }))
    }))
  }),
  probes: builtins.map((def) => ({
    name: def.name,
    kind: def.kind,
    applies: false,
    reason: `not a Go program (${native.language})`,
    attachPoints: [],
    fields: {}
  }))
})

/** Native analysis of a file Go analysis rejected as not Go; its errors are the file's, as Go's would have been. */
const native = (path: string) =>
  Effect.tryPromise({
    try: () => Fs.readFile(path),
    catch: (e) => new Errors.FileUnreadable({ path, message: `${path}: ${(e as Error).message}` })
  }).pipe(Effect.flatMap((bytes) => NativeBinary.analyzeBuffer(path, bytes)))

/** Inspect a binary on disk: a Go program, or else a native one. */
export const file = (path: string) =>
  Effect.gen(function*() {
    const analysis = yield* GoBinary.TargetAnalysis
    return yield* analysis.analyzeFile(path).pipe(
      Effect.map((binary): Report => report(null, { ...binary, pid: 0, exe: binary.path, libraries: [] }, binary)),
      Effect.catchTag("NotGo", () => Effect.map(native(path), (n): Report => nativeReport(null, n)))
    )
  })

/** Inspect a running process: its Go executable, or else its native executable and the objects it mapped. */
export const pid = (pid: number) =>
  Effect.gen(function*() {
    const analysis = yield* GoBinary.TargetAnalysis
    return yield* analysis.analyzePid(pid).pipe(
      Effect.map((proc): Report => report(pid, proc, proc.binary)),
      Effect.catchTag("NotGo", (e) =>
        Effect.gen(function*() {
          const n = yield* native(e.path)
          const mapped = yield* NativeBinary.processMaps(pid)
          return nativeReport(pid, n, mapped) as Report
        }))
    )
  })

const formatNative = (r: NativeReport): Array<string> => {
  const n = r.native
  const lines = [
    `${r.pid === null ? "" : `pid ${r.pid}  `}${n.path}`,
    `  native ${n.language} ${n.kind}${n.soname === null ? "" : ` ${n.soname}`}, ${n.stripped ? "stripped" : "symbols"}` +
    `, ${n.functionCount} functions${n.buildId === null ? "" : `, build id ${n.buildId}`}`
  ]
  if (n.needed.length > 0) lines.push(`  needs ${n.needed.join(", ")}`)
  for (const l of n.libraries) {
    lines.push(`  ${l.name} ${l.source === "version-text" ? l.version : `>= ${l.version} (symbol versions)`}`)
  }
  if (r.mappedObjects !== undefined) {
    lines.push("", "mapped objects:")
    for (const o of r.mappedObjects) lines.push(`  ${o.base ?? "?"}  ${o.path}${o.deleted ? " (deleted)" : ""}`)
  }
  lines.push("", "probes:")
  for (const p of r.probes) lines.push(`  ✗ ${p.name} (${p.kind}): ${p.reason}`)
  return lines
}

/** The human form: a few lines per probe. */
export const format = (r: Report): string => {
  if ("native" in r) return [...formatNative(r), ...formatSelection(r.selection)].join("\n")
  const b = r.binary
  const lines = [
    `${r.pid === null ? "" : `pid ${r.pid}  `}${b.path}`,
    `  Go ${b.goVersion}  ${b.mainModule?.path ?? b.mainPath}${b.mainModule ? ` ${b.mainModule.version}` : ""}`,
    `  ${b.stripped ? "stripped" : "symbols"}, functions from ${b.functionSource}, ${b.hasDwarf ? "DWARF" : "no DWARF"}` +
    `, ${Object.keys(b.modules).length - 1} dependencies`
  ]
  for (const [mod, v] of Object.entries(b.modules)) if (mod !== "std") lines.push(`    ${mod} ${v}`)
  lines.push("", "probes:")
  for (const p of r.probes) {
    lines.push(`  ${p.applies ? "✓" : "✗"} ${p.name} (${p.kind})${p.reason ? `: ${p.reason}` : ""}`)
    if (!p.applies) continue
    for (const a of p.attachPoints) {
      lines.push(
        a.found
          ? `      ${a.symbol}  entry @${a.entryOffset}  ret @${(a.returnOffsets ?? []).join(",")}`
          : `      ${a.symbol}  (absent, optional)`
      )
    }
    for (const [key, f] of Object.entries(p.fields)) {
      lines.push(`      ${key} = ${f.type}.${f.field}  ${f.offset === null ? "unknown" : `+${f.offset} (${f.source})`}`)
    }
  }
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
