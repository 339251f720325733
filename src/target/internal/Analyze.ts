/**
 * Pure, synchronous analysis of a Go executable's bytes. Parsers throw `Corrupt`/`OutOfBounds`/`NotElfError`/
 * `ArchError`; this module turns them into the typed errors, stage by stage, so the error names what was being read.
 */
import { Option, Result } from "effect"
import * as Errors from "../Errors.ts"
import { knownFields, knownTypes } from "../Fields.ts"
import { find, shipped, type OffsetsTable } from "../Offsets.ts"
import { readBuildInfo, type BuildInfo } from "./BuildInfo.ts"
import { Corrupt, OutOfBounds } from "./Bytes.ts"
import { hasDwarf, isStructSection, readStructs, type StructLayout } from "./Dwarf.ts"
import {
  ArchError,
  type Elf,
  type ElfSections,
  NotElfError,
  parseElf,
  retain,
  type Section,
  SHF_EXECINSTR,
  SHT_SYMTAB
} from "./Elf.ts"
import { readPclntab } from "./Pclntab.ts"
import { Entries, type FuncEntry, goSymbols, type GoSymbols } from "./Symtab.ts"
import { analyzeCode } from "./X86.ts"
import type { GoBinary, GoFunction, GoBinarySummary, GoSymbol, FieldOffset } from "../GoBinary.ts"

/**
 * Work done before `analyzeElf` runs (while the thread pool inflated the DWARF): the symtab's maps, or what reading
 * them threw (thrown again where the analysis reads them, so a file's errors come in the same order).
 */
export interface Ahead {
  readonly symbols?: () => GoSymbols
  /**
   * How the sections needed after analysis (code, and the DWARF of structs) are kept: `Elf.retain`'s copies by
   * default; a file read in parts reads them from the file when they are read (`SparseElf.keep`).
   */
  readonly keep?: (which: (s: Section) => boolean) => ElfSections
}

/**
 * The symtab's maps read now, for `Ahead`: nothing without a symtab, or without a `.go.buildinfo` section (a file
 * that is most likely not Go is not worth the read: its analysis stops at the build info).
 */
export const symbolsAhead = (elf: Elf): Ahead => {
  const symtab = elf.sections.find((s) => s.type === SHT_SYMTAB)
  if (symtab === undefined || elf.section(".go.buildinfo") === undefined) return {}
  try {
    const symbols = goSymbols(elf, symtab)
    return { symbols: () => symbols }
  } catch (e) {
    return {
      symbols: () => {
        throw e
      }
    }
  }
}

/** Analyses a Go x86-64 executable. Throws one of the typed errors of Errors.ts. */
export const analyzeBytes = (
  path: string,
  bytes: Buffer,
  table: OffsetsTable = shipped,
  types: ReadonlySet<string> = knownTypes
): GoBinary => analyzeElf(path, stage(path, "elf", parseElf, bytes), table, types)

/**
 * Analyses a parsed executable: the whole file's, or one read in parts (Sparse.ts), whose parsers load what they read.
 * Throws one of the typed errors of Errors.ts.
 */
export const analyzeElf = (
  path: string,
  elf: Elf,
  table: OffsetsTable = shipped,
  types: ReadonlySet<string> = knownTypes,
  ahead: Ahead = {}
): GoBinary => {
  const info = stage(path, "buildinfo", readBuildInfo, elf)
  if (info === undefined) {
    throw new Errors.NotGo({ path, message: `${path}: no Go build information (.go.buildinfo): not a Go program` })
  }
  const [major, minor] = info.goVersion.split(".").map(Number)
  if (major === undefined || minor === undefined || Number.isNaN(minor) || (major === 1 && minor < 17)) {
    throw new Errors.GoTooOld({ path, goVersion: info.goVersion,
      message: `${path}: built by Go ${info.goVersion}; Go >= 1.17 (register ABI) is required` })
  }

  const symtab = elf.sections.find((s) => s.type === SHT_SYMTAB)
  let functionSource: "symtab" | "pclntab" = "symtab"
  let pclntabVersion: string | undefined
  // Functions, and data objects (`runtime.firstmoduledata`, ...): what `symbol` finds besides functions.
  const symbols = symtab === undefined
    ? { funcs: new Entries(), objects: new Entries() }
    : stage(path, "elf", readSymbolsOf, { elf, symtab, read: ahead.symbols })
  let funcs = symbols.funcs
  const objects = symbols.objects
  if (funcs.size === 0) {
    functionSource = "pclntab"
    const pcln = stage(path, "pclntab", readPclntab, elf)
    if (pcln === undefined) {
      throw new Errors.StrippedNoPclntab({ path, message: `${path}: no .symtab and no .gopclntab: functions unknown` })
    }
    pclntabVersion = pcln.version
    // A name listed twice is usually a function and its ABI wrapper. Name them as the symtab does: the assembly one
    // gets the ".abi0" suffix.
    const seen = new Map<string, { address: bigint; size: number; asm: boolean; funcID: number }>()
    for (const pf of pcln.functions) {
      // The linker writes "·" as "." in .symtab but not in the pclntab: name functions the same either way.
      const f = pf.name.includes("\u00b7") ? { ...pf, name: pf.name.replaceAll("\u00b7", ".") } : pf
      const prev = seen.get(f.name)
      if (prev === undefined) {
        seen.set(f.name, f)
        funcs.set(f.name, { address: f.address, size: f.size })
      } else if (f.asm && !prev.asm) {
        funcs.set(`${f.name}.abi0`, { address: f.address, size: f.size })
      } else if (prev.asm && !f.asm) {
        funcs.set(f.name, { address: f.address, size: f.size })
        funcs.set(`${f.name}.abi0`, { address: prev.address, size: prev.size })
      } else if (f.funcID !== 0 && !funcs.has(`${f.name}.abi0`)) {
        // Neither is assembly: the later one is the compiler's ABI0 wrapper. Two plain functions of one name (generic
        // shapes) are true duplicates, and the symtab too resolves the name to the first.
        funcs.set(`${f.name}.abi0`, { address: f.address, size: f.size })
      }
    }
  }

  const modules = new Map<string, string>([["std", info.goVersion]])
  if (info.main !== undefined && info.main.path !== "") modules.set(info.main.path, info.main.version)
  for (const d of info.deps) modules.set(d.path, d.replace?.version || d.version)

  let dwarfError: string | undefined
  let structs = new Map<string, StructLayout>()
  const dwarf = hasDwarf(elf)
  if (dwarf) {
    try {
      const wanted = types === knownTypes ? knownTypes : new Set([...knownTypes, ...types])
      structs = readStructs(elf, wanted, { goLinked: true })
    } catch (e) {
      dwarfError = errorText(e)
    }
  }
  let allStructs: Map<string, StructLayout> | undefined
  // From here on only code (functions are decoded on first use) and, while it may still be read, the DWARF that
  // describes structs are needed: keep those (copies, or the file to read them from) and let the rest of the file go.
  const which = (s: Section) =>
    (s.flags & BigInt(SHF_EXECINSTR)) !== 0n || (dwarf && dwarfError === undefined && isStructSection(s.name))
  const kept = ahead.keep?.(which) ?? retain(elf, which)

  const functionCache = new Map<string, Option.Option<GoFunction>>()
  const fn = (name: string): Option.Option<GoFunction> => {
    const hit = functionCache.get(name)
    if (hit !== undefined) return hit
    const result = decodeFunction(kept, name, funcs.get(name))
    functionCache.set(name, result)
    return result
  }

  const symbol = (name: string): Option.Option<GoSymbol> => {
    const f = funcs.get(name)
    const o = f === undefined ? objects.get(name) : undefined
    const entry = f ?? o
    if (entry === undefined) return Option.none()
    return Option.some({
      name,
      kind: f === undefined ? "object" : "function",
      address: entry.address,
      size: entry.size,
      fileOffset: kept.vaddrToOffset(entry.address)
    })
  }

  const field = (type: string, name: string): Option.Option<FieldOffset> => {
    const r = fieldOffset(type, name)
    return Result.isSuccess(r) ? Option.some(r.success) : Option.none()
  }

  const fieldOffset = (type: string, name: string): Result.Result<FieldOffset, Errors.OffsetUnavailable> => {
    let layout = structs.get(type)
    // A type the first pass did not look for (a probe the analysis was not told about): every struct, once.
    if (layout === undefined && dwarf && dwarfError === undefined && !knownTypes.has(type) && !types.has(type)) {
      if (allStructs === undefined) {
        try {
          allStructs = readStructs(kept, undefined, { goLinked: true })
        } catch (e) {
          dwarfError = errorText(e)
          allStructs = new Map()
        }
      }
      layout = allStructs.get(type)
    }
    const off = layout?.fields.get(name)
    if (off !== undefined) return Result.succeed({ offset: off, source: "dwarf" })
    // No DWARF (or not this type): the shipped table, by the binary's Go and module versions.
    return Result.map(
      find(table, { goVersion: info.goVersion, modules }, type, name),
      (f) => ({ offset: f.offset, source: "table" as const })
    )
  }

  const binary: GoBinary = {
    path,
    arch: "x86-64",
    goVersion: info.goVersion,
    rawGoVersion: info.rawGoVersion,
    mainPath: info.path,
    mainModule: info.main === undefined ? undefined : { path: info.main.path, version: info.main.version },
    modules,
    stripped: symtab === undefined,
    hasDwarf: dwarf,
    functionSource,
    functionCount: funcs.size,
    language: "go",
    function: fn,
    functionNames: () => [...funcs.keys()],
    symbol,
    field,
    fieldOffset,
    dwarfError: () =>
      dwarfError === undefined
        ? Option.none()
        : Option.some(new Errors.CorruptDwarf({ path, message: `${path}: ${dwarfError}` })),
    summary: (functionNames = []) => summarize(binary, info, pclntabVersion, () => dwarfError, functionNames)
  }
  return binary
}

/**
 * The symtab's maps: read ahead, or now. A function of the module, not a closure in `analyzeElf`: the GoBinary's
 * closures share that scope, and must not keep `ahead` (a file read in parts, with its buffers) alive.
 */
const readSymbolsOf = (
  { elf, read, symtab }: { readonly elf: Elf; readonly symtab: Section; readonly read: (() => GoSymbols) | undefined }
): GoSymbols => read?.() ?? goSymbols(elf, symtab)

/** Functions larger than this are not decoded (no Go function is near it; a corrupt size must not stall us). */
const MAX_FUNCTION = 16 * 1024 * 1024

const decodeFunction = (elf: ElfSections, name: string, f: FuncEntry | undefined): Option.Option<GoFunction> => {
  if (f === undefined) return Option.none()
  const fileOffset = elf.vaddrToOffset(f.address)
  if (fileOffset === undefined) return Option.none()
  const bytes = elf.read(fileOffset, Math.min(f.size, MAX_FUNCTION))
  if (bytes === undefined) return Option.none()
  const size = bytes.length
  const code = analyzeCode(bytes)
  return Option.some({
    name,
    address: f.address,
    fileOffset,
    size,
    entryOffset: fileOffset + code.entry,
    returnOffsets: code.returns.map((r) => fileOffset + r),
    complete: code.complete,
    ...(code.error === undefined ? {} : { decodeError: code.error })
  })
}

const summarize = (
  b: GoBinary,
  info: BuildInfo,
  pclntabVersion: string | undefined,
  dwarfError: () => string | undefined,
  functionNames: ReadonlyArray<string>
): GoBinarySummary => {
  const fields: Record<string, Record<string, FieldOffset>> = {}
  for (const [type, names] of Object.entries(knownFields)) {
    for (const n of names) {
      const f = b.field(type, n)
      if (Option.isSome(f)) (fields[type] ??= {})[n] = f.value
    }
  }
  const functions: GoBinarySummary["functions"] = {}
  for (const n of functionNames) {
    const f = b.function(n)
    functions[n] = Option.isNone(f) ? null : {
      address: `0x${f.value.address.toString(16)}`,
      fileOffset: f.value.fileOffset,
      size: f.value.size,
      entryOffset: f.value.entryOffset,
      returnOffsets: [...f.value.returnOffsets],
      complete: f.value.complete
    }
  }
  const err = dwarfError()
  return {
    path: b.path,
    arch: b.arch,
    goVersion: b.goVersion,
    rawGoVersion: b.rawGoVersion,
    mainPath: b.mainPath,
    mainModule: b.mainModule ?? null,
    modules: Object.fromEntries(b.modules),
    buildSettings: Object.fromEntries(info.settings),
    stripped: b.stripped,
    hasDwarf: b.hasDwarf,
    ...(err === undefined ? {} : { dwarfError: err }),
    functionSource: b.functionSource,
    ...(pclntabVersion === undefined ? {} : { pclntabVersion }),
    functionCount: b.functionCount,
    fields,
    functions
  }
}

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e))

export type Stage = "elf" | "buildinfo" | "pclntab"

/**
 * Runs a parser stage, mapping its internal exceptions to the typed error for that stage. The input is an argument,
 * not captured by a closure: a closure over the file's bytes in `analyzeBytes` would keep them alive as long as the
 * GoBinary's own closures.
 */
export const stage = <I, A>(path: string, which: Stage, f: (input: I) => A, input: I): A => {
  try {
    return f(input)
  } catch (e) {
    throw stageError(path, which, e)
  }
}

/** The typed error for a parser's exception at a stage; anything else unchanged. */
export const stageError = (path: string, which: Stage, e: unknown): unknown => {
  if (e instanceof NotElfError) return new Errors.NotElf({ path, message: `${path}: ${e.message}` })
  if (e instanceof ArchError) return new Errors.UnsupportedArch({ path, arch: e.arch, message: e.message })
  if (e instanceof OutOfBounds || e instanceof Corrupt) {
    const message = `${path}: ${e.message}`
    switch (which) {
      case "elf":
        return e instanceof OutOfBounds
          ? new Errors.TruncatedElf({ path, structure: e.structure, message })
          : new Errors.CorruptElf({ path, structure: e.structure, message })
      case "buildinfo":
        return new Errors.CorruptBuildInfo({ path, message })
      case "pclntab":
        return new Errors.StrippedNoPclntab({
          path,
          message: `${path}: no .symtab and the pclntab is unusable: ${e.message}`
        })
    }
  }
  return e
}
