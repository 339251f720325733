/**
 * Addresses of a Go program's data symbols (e.g. `runtime.types`), for per-target values.
 *
 * A Target that offers `symbol(name)` answers directly. One that does not (targets from before symbols were part of
 * the analysis, fake targets in tests) is answered from the executable's `.symtab`, read once per file; a stripped
 * executable has none, and the answer is undefined.
 */
import * as fs from "node:fs"
import { Option } from "effect"
import type { Target } from "../../probe/Target.ts"
import { parseElf, readSymbols, SHT_SYMTAB } from "../../target/internal/Elf.ts"

/** What a Target offering symbols has; read as optional so both kinds of Target are served. */
interface MaybeSymbols {
  readonly symbol?: (name: string) => Option.Option<{ readonly address: bigint }>
}

/** Symbol name -> address of each executable read, by file identity (device:inode) or path. */
const tables = new Map<string, ReadonlyMap<string, bigint>>()

/** Only the symbols asked for are kept: a Go program has tens of thousands. */
const WANTED = new Set(["runtime.types", "runtime.etypes", "runtime.firstmoduledata"])

const readTable = (exe: string): ReadonlyMap<string, bigint> => {
  const out = new Map<string, bigint>()
  try {
    const elf = parseElf(fs.readFileSync(exe))
    const symtab = elf.sections.find((s) => s.type === SHT_SYMTAB)
    if (symtab !== undefined) {
      for (const s of readSymbols(elf, symtab)) if (WANTED.has(s.name)) out.set(s.name, s.value)
    }
  } catch {
    // Unreadable or not ELF: no symbols, and the probe reads no type names for this file.
  }
  return out
}

/** The link-time address of `name` (one of runtime.types, runtime.etypes, runtime.firstmoduledata) in the target. */
export const address = (target: Target, name: string): bigint | undefined => {
  const found = (target as MaybeSymbols).symbol?.(name)
  if (found !== undefined) return Option.getOrUndefined(Option.map(found, (s) => s.address))
  const key = target.file ?? target.exe
  let table = tables.get(key)
  if (table === undefined) {
    table = readTable(target.exe)
    tables.set(key, table)
  }
  return table.get(name)
}
