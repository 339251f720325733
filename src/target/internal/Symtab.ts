/**
 * A Go binary's `.symtab` as the analysis uses it: functions and data objects by name. Tens of thousands of symbols
 * in a large binary, read on the event loop at every cold analysis: the usual table (ASCII names, addresses and sizes
 * below 2^53) is read without a symbol object, a BigInt or a string per entry it does not keep; anything else goes
 * through `readSymbols`, which also names what is wrong with a corrupt table.
 */
import { isAscii } from "node:buffer"
import type { Elf, ElfSymbol, Section } from "./Elf.ts"
import { readSymbols } from "./Elf.ts"

/** A function's or data object's address and size. */
export interface FuncEntry {
  readonly address: bigint
  readonly size: number
}

/**
 * Entries by name, in the order first set (as a Map), without an object or a BigInt per entry until one is asked
 * for: a large binary has tens of thousands, and the analysis keeps them as long as it is cached.
 */
export class Entries {
  private readonly slots = new Map<string, number>()
  private readonly addresses: Array<number | bigint> = []
  private readonly sizes: Array<number> = []
  get size(): number {
    return this.slots.size
  }
  has(name: string): boolean {
    return this.slots.has(name)
  }
  keys(): IterableIterator<string> {
    return this.slots.keys()
  }
  get(name: string): FuncEntry | undefined {
    const i = this.slots.get(name)
    if (i === undefined) return undefined
    const address = this.addresses[i]!
    return { address: typeof address === "bigint" ? address : BigInt(address), size: this.sizes[i]! }
  }
  /** As `Map.set`: a name set again keeps its place and takes the new entry. */
  set(name: string, entry: FuncEntry): void {
    this.add(name, entry.address, entry.size)
  }
  add(name: string, address: number | bigint, size: number): void {
    this.slots.set(name, this.addresses.length)
    this.addresses.push(address)
    this.sizes.push(size)
  }
  /** `name` for the entry of `of` (which must be set). */
  alias(name: string, of: string): void {
    this.slots.set(name, this.slots.get(of)!)
  }
}

export interface GoSymbols {
  /** Functions by name, in symbol table order (the first of a name), then the ".abi0" ones' plain names. */
  readonly funcs: Entries
  /** Data objects (`runtime.firstmoduledata`, ...) by name, the first of a name. */
  readonly objects: Entries
}

const STT_OBJECT = 1
const STT_FUNC = 2
/** Above this high word a u64 is not a safe integer. */
const SAFE_HIGH = 0x1fffff

/** Functions and data objects of the symbol table `s`. Throws Corrupt/OutOfBounds as `readSymbols` does. */
export const goSymbols = (elf: Elf, s: Section): GoSymbols => fast(elf, s) ?? fromSymbols(readSymbols(elf, s))

/** The same maps from symbols already read (the reference the fast path is tested against). */
export const fromSymbols = (symbols: ReadonlyArray<ElfSymbol>): GoSymbols => ({
  funcs: aliasAbi0(toEntries(symtabFunctions(symbols))),
  objects: toEntries(symtabObjects(symbols))
})

const toEntries = (m: ReadonlyMap<string, FuncEntry>): Entries => {
  const out = new Entries()
  for (const [name, f] of m) out.set(name, f)
  return out
}

/**
 * The maps `fromSymbols(readSymbols(elf, s))` gives, read straight from the table, or undefined when the table is
 * not the usual kind (then the reference path reads it, and throws what it finds wrong). The string table is
 * decoded once, as latin1, which is UTF-8 when every byte is ASCII; every symbol's name is still checked as
 * `readSymbols` checks it, so a table it would refuse is left to it.
 */
const fast = (elf: Elf, s: Section): GoSymbols | undefined => {
  const b = elf.bytes
  if (s.entsize !== 24 || s.offset + s.size > b.length) return undefined
  const strSec = elf.sections[s.link]
  if (strSec === undefined || strSec.offset + strSec.size > b.length) return undefined
  elf.load(s.offset, s.size)
  elf.load(strSec.offset, strSec.size)
  const strBytes = b.subarray(strSec.offset, strSec.offset + strSec.size)
  if (!isAscii(strBytes)) return undefined
  const strs = strBytes.toString("latin1")
  const n = Math.floor(s.size / 24)
  // The entries as 32-bit words (six each), read with plain indexing: `readUInt32LE` is a call per field, slow until
  // V8 has optimised this loop, and a launch runs it once, mostly before that. ELF aligns the table; a copy otherwise.
  const words = wordsOf(b.subarray(s.offset, s.offset + n * 24))
  if (words === undefined) return undefined
  // Functions and objects as indexes into these, in table order.
  const names: Array<string> = []
  const values: Array<number> = []
  const sizes: Array<number> = []
  const isFunc: Array<boolean> = []
  let unsized = false
  for (let i = 1; i < n; i++) {
    const w = i * 6
    const nameOff = words[w]!
    // st_info, the low byte of the second word: its low four bits are the type.
    const type = words[w + 1]! & 0xf
    const valueHigh = words[w + 3]!
    const sizeHigh = words[w + 5]!
    if (valueHigh > SAFE_HIGH || sizeHigh > SAFE_HIGH) return undefined
    const nul = nameOff < strs.length ? strs.indexOf("\0", nameOff) : -1
    if (nul < 0 || nul - nameOff >= 4096) return undefined
    if (type !== STT_FUNC && type !== STT_OBJECT) continue
    const value = valueHigh * 0x1_0000_0000 + words[w + 2]!
    if (value === 0) continue
    const size = sizeHigh * 0x1_0000_0000 + words[w + 4]!
    names.push(strs.slice(nameOff, nul))
    values.push(value)
    sizes.push(size)
    isFunc.push(type === STT_FUNC)
    if (type === STT_FUNC && size === 0) unsized = true
  }

  // A function without a size reaches to the next greater function address (none after the last): found by a walk
  // of the functions sorted by address, from the top.
  let nextAddr: Float64Array | undefined
  if (unsized) {
    const order: Array<number> = []
    for (let k = 0; k < names.length; k++) if (isFunc[k]) order.push(k)
    order.sort((x, y) => values[x]! - values[y]!)
    nextAddr = new Float64Array(names.length)
    let group = -1
    let above = 0
    for (let j = order.length - 1; j >= 0; j--) {
      const v = values[order[j]!]!
      if (v !== group) {
        above = group < 0 ? 0 : group
        group = v
      }
      nextAddr[order[j]!] = above
    }
  }
  const funcs = new Entries()
  const objects = new Entries()
  for (let k = 0; k < names.length; k++) {
    const name = names[k]!
    if (isFunc[k]) {
      if (funcs.has(name)) continue
      let size = sizes[k]!
      if (size === 0 && nextAddr !== undefined) {
        const next = nextAddr[k]!
        size = next === 0 ? 0 : Math.min(next - values[k]!, 1 << 24)
      }
      funcs.add(name, values[k]!, size)
    } else if (name !== "" && !objects.has(name)) {
      objects.add(name, values[k]!, sizes[k]!)
    }
  }
  return { funcs: aliasAbi0(funcs), objects }
}

/** Little-endian 32-bit words of `bytes` (a multiple of 4 long), or undefined on a big-endian host. */
const wordsOf = (bytes: Buffer): Uint32Array | undefined => {
  if (!littleEndian) return undefined
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : Buffer.from(bytes)
  return new Uint32Array(aligned.buffer, aligned.byteOffset, aligned.length / 4)
}

const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

/**
 * The symtab names assembly functions "x.abi0"; the pclntab (and stripped binaries) name them "x": accept both, for
 * the fast path and the reference alike.
 */
const aliasAbi0 = (funcs: Entries): Entries => {
  for (const name of [...funcs.keys()]) {
    if (name.endsWith(".abi0")) {
      const plain = name.slice(0, -5)
      if (!funcs.has(plain)) funcs.alias(plain, name)
    }
  }
  return funcs
}

const symtabFunctions = (symbols: ReadonlyArray<ElfSymbol>): Map<string, FuncEntry> => {
  const syms = symbols.filter((s) => s.type === STT_FUNC && s.value !== 0n)
  // Some symbols carry no size: derive it from the next function's address (sorted only when one needs it).
  const nextAddr = new Map<bigint, bigint>()
  if (syms.some((s) => s.size === 0)) {
    const sorted = [...syms].sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0))
    for (let i = 0; i + 1 < sorted.length; i++) nextAddr.set(sorted[i]!.value, sorted[i + 1]!.value)
  }
  const out = new Map<string, FuncEntry>()
  for (const s of syms) {
    if (out.has(s.name)) continue
    let size = s.size
    if (size === 0) {
      const n = nextAddr.get(s.value)
      size = n === undefined ? 0 : Math.min(Number(n - s.value), 1 << 24)
    }
    out.set(s.name, { address: s.value, size })
  }
  return out
}

const symtabObjects = (symbols: ReadonlyArray<ElfSymbol>): Map<string, FuncEntry> => {
  const out = new Map<string, FuncEntry>()
  for (const s of symbols) {
    if (s.type !== STT_OBJECT || s.value === 0n || s.name === "" || out.has(s.name)) continue
    out.set(s.name, { address: s.value, size: s.size })
  }
  return out
}
