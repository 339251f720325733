/**
 * Go programs' type data for the probes: where it starts (`runtime.types`, the base every type name's offset is
 * relative to), for per-target values; and the readers of what a uprobe could not read (a type, an itab, a string
 * constant on a page not mapped yet), from the process's memory (second half of this file).
 *
 * A Target that offers `symbol(name)` answers for a program with a symbol table. Otherwise (a stripped program, or a
 * Target without symbols: fake targets, targets from before symbols were part of the analysis) the executable is
 * read once per file: its `.symtab` if it has one, else the section the linker puts the type data at the start of —
 * `.go.type` since Go 1.27, `.rodata` before (checked against `runtime.types` on Go 1.25, 1.26 and 1.27).
 */
import * as fs from "node:fs"
import { Option } from "effect"
import type { Target } from "../../probe/Target.ts"
import { uleb } from "../../target/internal/Bytes.ts"
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
 * internal/abi.Type's TFlag, Kind_ and Str (a nameOff) offsets since Go 1.21: Size_ 8, PtrBytes 8, Hash 4, then TFlag,
 * Align_, FieldAlign_, Kind_; Equal, GCData; Str.
 */
const TYPE_TFLAG = 20
const TYPE_KIND = 23
const TYPE_STR = 40

/** The type offsets of a target: DWARF's, else the layout's. */
export const typeValue = (o: {
  readonly typeTflag: number | undefined
  readonly typeKind: number | undefined
  readonly typeStr: number | undefined
}) => ({ typeTflag: o.typeTflag ?? TYPE_TFLAG, typeKind: o.typeKind ?? TYPE_KIND, typeStr: o.typeStr ?? TYPE_STR })

// ---------------------------------------------------------------------------------------------------------------
// Reading what the kernel could not
// ---------------------------------------------------------------------------------------------------------------
//
// A uprobe cannot fault a page in: a type descriptor, an itab, a type name or a string constant on a page the process
// has not touched yet (or that memory pressure took back) cannot be read by the BPF side. Its record then says where
// it is (go_types.h's `describe` helpers, strings.h's `*_or_at`), and user space reads it through /proc/<pid>/mem,
// which faults the page in — for the process too, so the next record finds it. Only read-only file data can be
// missing that way (a running Go program's heap and stacks are resident, swap aside), so what is read here later is
// what was there then. Rare (once per cold page), so synchronous reads are fine here.

/** internal/abi.Kind: the kind is the low five bits of Kind_. */
const KIND_MASK = 0x1f

/** Read `length` bytes at `address` of an open /proc/<pid>/mem; undefined when they are not all there. */
const readAt = (fd: number, length: number, address: bigint): Buffer | undefined => {
  const out = Buffer.alloc(length)
  return fs.readSync(fd, out, 0, length, address) === length ? out : undefined
}

/** `read` with /proc/<pid>/mem open; undefined when it cannot be opened or a read fails. */
const withMemory = <A>(pid: number, read: (fd: number) => A | undefined): A | undefined => {
  let fd: number | undefined
  try {
    fd = fs.openSync(`/proc/${pid}/mem`, "r")
    return read(fd)
  } catch {
    return undefined
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}

/** The runtime name (flags, uvarint length, bytes) at `address`. */
const nameAt = (fd: number, address: bigint): string | undefined => {
  // Names shorter than 16 KiB have a length of one or two bytes (a name read near its page's end needs no more).
  const head = readAt(fd, 3, address)
  if (head === undefined) return undefined
  const [length, start] = uleb(head, 1, "runtime name")
  return readAt(fd, length, address + BigInt(start))?.toString("utf8")
}

/** The Go string whose header (pointer, length) is at `address`, at most `cap` bytes of it. */
const stringAt = (fd: number, address: bigint, cap: number): string | undefined => {
  const header = readAt(fd, 16, address)
  if (header === undefined) return undefined
  const length = Math.min(Number(header.readBigUInt64LE(8)), cap)
  return readAt(fd, length, header.readBigUInt64LE(0))?.toString("utf8")
}

/** internal/abi.Kind values (Kind_ & 0x1f) the probes look at, by Go's names for them. */
export const GoKind = {
  bool: 1,
  int: 2,
  int8: 3,
  int16: 4,
  int32: 5,
  int64: 6,
  uint: 7,
  uint8: 8,
  uint16: 9,
  uint32: 10,
  uint64: 11,
  uintptr: 12,
  float32: 13,
  float64: 14,
  func: 19,
  pointer: 22,
  slice: 23,
  string: 24
} as const

/** A Go type as a record carries it: its name as stored (maybe with TFlagExtraStar's '*'), flags and kind. */
export interface GoType {
  readonly name: string
  readonly tflag: number
  readonly kind: number
}

const typeAt = (fd: number, type: bigint, types: bigint): GoType | undefined => {
  const head = readAt(fd, TYPE_STR + 4, type)
  if (head === undefined) return undefined
  const nameOff = head.readInt32LE(TYPE_STR)
  const name = nameOff <= 0 ? undefined : nameAt(fd, types + BigInt(nameOff))
  return name === undefined || name === "" ? undefined : {
    name,
    tflag: head[TYPE_TFLAG]!,
    kind: head[TYPE_KIND]! & KIND_MASK
  }
}

/**
 * The type at `cold` in process `pid`, read from its memory: what a record gives when the kernel could not read it
 * (go_types.h `ps_go_type_describe`; `itab`: an interface's itab, `ps_go_itab_describe`, whose second word is the
 * type). `types` is the process's runtime.types, as the record has it. Undefined when it cannot be read here either.
 */
export const coldType = (pid: number, cold: bigint, types: bigint, via: "type" | "itab"): GoType | undefined =>
  cold === 0n || types === 0n ? undefined : withMemory(pid, (fd) => {
    const type = via === "type" ? cold : readAt(fd, 8, cold + 8n)?.readBigUInt64LE(0)
    return type === undefined || type === 0n ? undefined : typeAt(fd, type, types)
  })

/** `length` bytes at `address` in process `pid`; undefined when they are not all readable. */
export const rawAt = (pid: number, address: bigint, length: number): Uint8Array | undefined =>
  withMemory(pid, (fd) => readAt(fd, length, address))

/** `length` bytes at `address` in process `pid` as UTF-8 (a string's bytes: `ps_read_go_str_or_at`); "" if none. */
export const bytesAt = (pid: number, address: bigint, length: number): string =>
  Buffer.from(rawAt(pid, address, length) ?? []).toString("utf8")

/** The little-endian int64 at `address` in process `pid`; undefined when unreadable. */
export const int64At = (pid: number, address: bigint): bigint | undefined =>
  withMemory(pid, (fd) => readAt(fd, 8, address)?.readBigInt64LE(0))

/** The Go string (pointer, length) at `address` in process `pid`, at most `cap` bytes of it; "" when unreadable. */
export const goStringAt = (pid: number, address: bigint, cap: number): string =>
  withMemory(pid, (fd) => stringAt(fd, address, cap)) ?? ""

/**
 * A string the kernel could not read, as `ps_read_go_str_at_or_at` left it: its bytes at `at` (`length` of them), or
 * with `length` 0 its header at `at`; at most `cap` bytes. "" when unreadable here too.
 */
export const coldString = (pid: number, at: bigint, length: number, cap: number): string =>
  length === 0 ? goStringAt(pid, at, cap) : bytesAt(pid, at, length)

/**
 * The string held by the `interface{}` at `address` in process `pid` (its type word, then its data word pointing at
 * the string's header), at most `cap` bytes; undefined when it is not a string or cannot be read.
 */
export const coldStringValue = (pid: number, address: bigint, types: bigint, cap: number): string | undefined =>
  types === 0n ? undefined : withMemory(pid, (fd) => {
    const value = readAt(fd, 16, address)
    const type = value === undefined ? undefined : typeAt(fd, value.readBigUInt64LE(0), types)
    return value === undefined || type?.kind !== GoKind.string ? undefined : stringAt(fd, value.readBigUInt64LE(8), cap)
  })
