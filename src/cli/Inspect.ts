/**
 * `probescope inspect`: what a user checks before attaching — the binary's Go and module versions, which built-in
 * probes apply (and why not), and for each that applies its resolved attach points and struct offsets with their
 * source. Needs no privileges beyond reading the file (and /proc/<pid>/exe for `--pid`). The JSON is documented in
 * docs/cli.md and stable: fields are only ever added.
 */
import { Effect, Option } from "effect"
import * as Manifest from "../probe/Manifest.ts"
import type { Target } from "../probe/Target.ts"
import * as GoBinary from "../target/GoBinary.ts"
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

export interface Report {
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

const report = (pid: number | null, target: Target, binary: GoBinary.GoBinary): Report => ({
  pid,
  binary: binary.summary([]),
  probes: builtins.map((def) => probeReport(def, target))
})

/** Inspect a binary on disk. */
export const file = (path: string) =>
  Effect.gen(function*() {
    const analysis = yield* GoBinary.TargetAnalysis
    const binary = yield* analysis.analyzeFile(path)
    return report(null, { ...binary, pid: 0, exe: binary.path }, binary)
  })

/** Inspect a running process's executable. */
export const pid = (pid: number) =>
  Effect.gen(function*() {
    const analysis = yield* GoBinary.TargetAnalysis
    const proc = yield* analysis.analyzePid(pid)
    return report(pid, proc, proc.binary)
  })

/** The human form: a few lines per probe. */
export const format = (r: Report): string => {
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
  if (r.selection !== undefined) {
    const sel = r.selection
    lines.push(
      "",
      !sel.selected
        ? `selection: not selected: ${sel.reason}`
        : sel.attach
        ? `selection: run would attach, selected by ${sel.selectedBy.join(", ")}`
        : `selection: selected by ${sel.selectedBy.join(", ")}, but run would not attach: ${sel.reason}`
    )
  }
  return lines.join("\n")
}
