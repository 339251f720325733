/**
 * Where a Go program's type data starts (`runtime.types`, the base every type name's offset is relative to), for
 * per-target values.
 *
 * A Target that offers `symbol(name)` answers for a program with a symbol table. Otherwise (a stripped program, or a
 * Target without symbols: fake targets, targets from before symbols were part of the analysis) the executable is
 * read once per file: its `.symtab` if it has one, else the section the linker puts the type data at the start of —
 * `.go.type` since Go 1.27, `.rodata` before (checked against `runtime.types` on Go 1.25, 1.26 and 1.27).
 */
import * as fs from "node:fs"
import { Option } from "effect"
import type { Target } from "../../probe/Target.ts"
import { parseElf, readSymbols, SHT_SYMTAB } from "../../target/internal/Elf.ts"
import * as Binary from "../../probe/Binary.ts"

/** What a Target offering symbols has; read as optional so both kinds of Target are served. */
interface MaybeSymbols {
  readonly symbol?: (name: string) => Option.Option<{ readonly address: bigint }>
}

/**
 * `runtime.types` of each analysed executable, undefined when not found. Keyed by the analysis (its `function` lookup,
 * one per file version in the analysis cache, which keys on device, inode, mtime and size), not by the file's
 * device:inode alone: a file replaced by another (a rebuild renamed over it) frees its inode for the next file, which
 * would then get the old file's address.
 */
const fromAnalyses = new WeakMap<object, bigint | undefined>()

const readTypes = (exe: string): bigint | undefined => {
  try {
    const elf = parseElf(fs.readFileSync(exe))
    const symtab = elf.sections.find((s) => s.type === SHT_SYMTAB)
    const symbol = symtab === undefined ? undefined : readSymbols(elf, symtab).find((s) => s.name === "runtime.types")
    if (symbol !== undefined) return symbol.value
    return (elf.section(".go.type") ?? elf.section(".rodata"))?.addr
  } catch {
    // Unreadable or not ELF: the probe reads no type names for this file.
    return undefined
  }
}

/** The link-time address of `runtime.types` in the target's executable, when it can be found. */
export const typesAddress = (target: Target): bigint | undefined => {
  // Per executable, once: a per-target value is computed for every process that starts (a burst of short-lived ones
  // included), and a symbol lookup or an ELF read each time would hold the event loop for every one of them.
  const key = target.function
  if (fromAnalyses.has(key)) return fromAnalyses.get(key)
  const found = (target as MaybeSymbols).symbol?.("runtime.types")
  const address = found !== undefined && Option.isSome(found) ? found.value.address : readTypes(target.exe)
  fromAnalyses.set(key, address)
  return address
}

/**
 * `runtime.types` as a distance from the address the entry probe of `fn` sits at, which the BPF program sees as its
 * instruction pointer: a distance, not an address, so a position-independent executable works wherever it is loaded.
 * Undefined when either is not found.
 */
export const typesFrom = (target: Target, fn: string): bigint | undefined => {
  const types = typesAddress(target)
  const f = Option.getOrUndefined(target.function(fn))
  if (types === undefined || f === undefined) return undefined
  return types - (f.address + BigInt(f.entryOffset - f.fileOffset))
}

/**
 * The `internal/abi.Type` fields bpf/include/probescope/go_types.h reads type names with, for a manifest's `fields`.
 * Optional: the layout has not changed since Go 1.21 (`typeValue`'s defaults); DWARF confirms it when a binary has it.
 */
export const typeFields = {
  typeTflag: { type: "internal/abi.Type", field: "TFlag", optional: true },
  typeKind: { type: "internal/abi.Type", field: "Kind_", optional: true },
  typeStr: { type: "internal/abi.Type", field: "Str", optional: true }
} as const

/** The `type` member (`struct go_type_offsets`, go_types.h) of a per-target layout: spread it in place. */
export const typeLayout = {
  typeTflag: Binary.member("type.tflag", Binary.u64n),
  typeKind: Binary.member("type.kind", Binary.u64n),
  typeStr: Binary.member("type.str", Binary.u64n)
}

/**
 * The type offsets of a target: DWARF's, else the layout's (Size_ 8, PtrBytes 8, Hash 4, then TFlag, Align_,
 * FieldAlign_, Kind_; Equal, GCData; Str).
 */
export const typeValue = (o: {
  readonly typeTflag: number | undefined
  readonly typeKind: number | undefined
  readonly typeStr: number | undefined
}) => ({ typeTflag: o.typeTflag ?? 20, typeKind: o.typeKind ?? 23, typeStr: o.typeStr ?? 40 })

/**
 * The runtime name (flags, uvarint length, bytes) at `address` in process `pid`, read through /proc/<pid>/mem; "" when
 * it cannot be read. For a name the BPF side could not read: a uprobe cannot fault a page in, so a name on a page the
 * program never touched is missing there, while a read of /proc/<pid>/mem faults it in. Rare (an error's type, once
 * per RecordError whose name page was cold), so a synchronous read is fine here.
 */
export const runtimeNameAt = (pid: number, address: bigint): string => {
  let fd: number | undefined
  try {
    fd = fs.openSync(`/proc/${pid}/mem`, "r")
    const head = Buffer.alloc(3)
    if (fs.readSync(fd, head, 0, 3, address) !== 3) return ""
    const long = (head[1]! & 0x80) !== 0
    const length = long ? (head[1]! & 0x7f) | ((head[2]! & 0x7f) << 7) : head[1]!
    const name = Buffer.alloc(length)
    const start = address + (long ? 3n : 2n)
    return fs.readSync(fd, name, 0, length, start) === length ? name.toString("utf8") : ""
  } catch {
    return ""
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}
