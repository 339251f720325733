/**
 * A minimal ELF64 little-endian reader: header, section headers (with compressed sections), symbols and program
 * headers. It never trusts a count or an offset from the file: every table is bounds-checked against the buffer.
 */
import * as Zlib from "node:zlib"
import { check, Corrupt, cstring, slice, u16, u32, u64, u64n, u8 } from "./Bytes.ts"

/** Machines recognised by name in errors. */
const machines: Record<number, string> = { 3: "x86", 8: "mips", 20: "ppc", 21: "ppc64", 40: "arm", 62: "x86-64",
  183: "arm64", 243: "riscv64", 22: "s390x", 258: "loong64" }

export const SHT_SYMTAB = 2
export const SHT_STRTAB = 3
export const SHT_NOBITS = 8
export const SHT_DYNSYM = 11
export const SHF_COMPRESSED = 0x800
export const PT_LOAD = 1
export const PF_X = 1

/** Thrown when the file is not ELF at all. */
export class NotElfError extends Error {}

/** Thrown for a valid ELF of a machine we cannot analyse. */
export class ArchError extends Error {
  readonly arch: string
  constructor(arch: string, message: string) {
    super(message)
    this.arch = arch
  }
}

export interface Section {
  readonly index: number
  readonly name: string
  readonly type: number
  readonly flags: bigint
  readonly addr: bigint
  readonly offset: number
  readonly size: number
  readonly link: number
  readonly entsize: number
}

export interface Segment {
  readonly type: number
  readonly flags: number
  readonly offset: number
  readonly vaddr: bigint
  readonly filesz: number
  readonly memsz: number
}

export interface ElfSymbol {
  readonly name: string
  readonly value: bigint
  readonly size: number
  readonly type: number
  /** STB_LOCAL 0, STB_GLOBAL 1, STB_WEAK 2, STB_GNU_UNIQUE 10. */
  readonly bind: number
  readonly section: number
}

/** What reading code and DWARF needs of an ELF: the whole file's (`Elf`) or the few sections `retain` kept. */
export interface ElfSections {
  readonly section: (name: string) => Section | undefined
  /** A section's bytes; compressed sections (SHF_COMPRESSED or `.zdebug_*`) are inflated, up to `maxBytes`. */
  readonly sectionData: (s: Section, maxBytes?: number) => Buffer
  /** File offset of a virtual address through the PT_LOAD segments, or undefined when it is not file-backed. */
  readonly vaddrToOffset: (vaddr: bigint) => number | undefined
  /** Up to `length` bytes from file offset `offset` (to the end of what is held), or undefined when none is held. */
  readonly read: (offset: number, length: number) => Buffer | undefined
}

/**
 * Makes `bytes[offset, offset + length)` (clipped to the file) hold the file's bytes. A whole file's reader needs
 * none; a file read in parts (`Sparse.ts`) loads what a parser is about to read: every read of `bytes` goes after one.
 */
export type Loader = (offset: number, length: number) => void

const loaded: Loader = () => {}

export interface Elf extends ElfSections {
  /** The file's bytes: all of them, or (with a `load`) those loaded so far, the rest zero. */
  readonly bytes: Buffer
  readonly load: Loader
  readonly machine: string
  readonly type: number
  readonly entry: bigint
  readonly sections: ReadonlyArray<Section>
  readonly segments: ReadonlyArray<Segment>
}

/** SHF_EXECINSTR: the section holds code. */
export const SHF_EXECINSTR = 0x4

/** Inflated sections beyond this are treated as corrupt (Go's DWARF for a large binary is well below). */
const MAX_INFLATE = 512 * 1024 * 1024

/** Parses the headers of an ELF64 little-endian x86-64 file. Throws OutOfBounds, Corrupt, NotElfError, ArchError. */
export const parseElf = (b: Buffer, load: Loader = loaded): Elf => {
  load(0, 64)
  if (b.length < 4 || b[0] !== 0x7f || b[1] !== 0x45 || b[2] !== 0x4c || b[3] !== 0x46) {
    throw new NotElfError("no ELF magic (\\x7fELF) at the start of the file")
  }
  const cls = u8(b, 4, "ELF identification")
  const data = u8(b, 5, "ELF identification")
  const machineId = u16(b, 18, "ELF header")
  const machine = machines[machineId] ?? `machine ${machineId}`
  if (machineId === 183) throw new ArchError("arm64", "arm64 is not supported yet")
  if (data !== 1) throw new ArchError(machine, `big-endian ELF (${machine}) is not supported`)
  if (cls !== 2) {
    if (cls === 1) throw new ArchError(machine, `32-bit ELF (${machine}) is not supported`)
    throw new Corrupt("ELF identification", `invalid class ${cls}`)
  }
  if (machineId !== 62) throw new ArchError(machine, `${machine} is not supported (only x86-64)`)
  check(b.length, 0, 64, "ELF header")
  const type = u16(b, 16, "ELF header")
  const entry = u64(b, 24, "ELF header")
  const phoff = u64n(b, 32, "ELF header")
  const shoff = u64n(b, 40, "ELF header")
  const phentsize = u16(b, 54, "ELF header")
  let phnum = u16(b, 56, "ELF header")
  const shentsize = u16(b, 58, "ELF header")
  let shnum = u16(b, 60, "ELF header")
  let shstrndx = u16(b, 62, "ELF header")

  // Extended numbering: the real counts live in section header 0 when the header fields overflow.
  if (shoff !== 0 && (shnum === 0 || shstrndx === 0xffff || phnum === 0xffff)) {
    load(shoff, 64)
    check(b.length, shoff, 64, "section header 0")
    if (shnum === 0) shnum = u64n(b, shoff + 32, "section header 0")
    if (shstrndx === 0xffff) shstrndx = u32(b, shoff + 40, "section header 0")
    if (phnum === 0xffff) phnum = u32(b, shoff + 44, "section header 0")
  }

  const segments: Array<Segment> = []
  if (phoff !== 0 && phnum > 0) {
    if (phentsize !== 56) throw new Corrupt("program headers", `entry size ${phentsize}, expected 56`)
    load(phoff, phnum * 56)
    check(b.length, phoff, phnum * 56, "program headers")
    for (let i = 0; i < phnum; i++) {
      const o = phoff + i * 56
      const what = `program header ${i}`
      segments.push({
        type: u32(b, o, what),
        flags: u32(b, o + 4, what),
        offset: u64n(b, o + 8, what),
        vaddr: u64(b, o + 16, what),
        filesz: u64n(b, o + 32, what),
        memsz: u64n(b, o + 40, what)
      })
    }
  }

  // Without a loadable segment no address maps to the file: every attach point would silently be "absent". A wiped
  // or zeroed table is a corrupt executable, not one with nothing to instrument.
  if (!segments.some((s) => s.type === PT_LOAD)) {
    throw new Corrupt(
      "program headers",
      phoff === 0 || phnum === 0
        ? "none (e_phoff or e_phnum is zero): an executable needs loadable segments"
        : `no PT_LOAD segment among ${phnum} entries (zeroed?): addresses cannot be mapped to the file`
    )
  }

  // Go's linker always writes section headers; everything after this (build info, symbols, pclntab, DWARF) is found
  // through them, so their absence is named here rather than surfacing as "no .symtab and no .gopclntab".
  if (shoff === 0 || shnum === 0) {
    throw new Corrupt("section headers", "none (e_shoff or e_shnum is zero): sections cannot be located")
  }
  if (shentsize !== 64) throw new Corrupt("section headers", `entry size ${shentsize}, expected 64`)
  load(shoff, shnum * 64)
  check(b.length, shoff, shnum * 64, "section headers")
  const raw: Array<Omit<Section, "name"> & { nameOff: number }> = []
  for (let i = 0; i < shnum; i++) {
    const o = shoff + i * 64
    const what = `section header ${i}`
    raw.push({
      index: i,
      nameOff: u32(b, o, what),
      type: u32(b, o + 4, what),
      flags: u64(b, o + 8, what),
      addr: u64(b, o + 16, what),
      offset: u64n(b, o + 24, what),
      size: u64n(b, o + 32, what),
      link: u32(b, o + 40, what),
      entsize: u64n(b, o + 56, what)
    })
  }
  // Entry 0 is SHT_NULL by definition; if every other one is too, the table was wiped.
  if (raw.every((s) => s.type === 0)) {
    throw new Corrupt("section headers", `all ${raw.length} entries are empty (zeroed?): sections cannot be located`)
  }
  const strtab = raw[shstrndx]
  if (strtab === undefined) throw new Corrupt("section header string table", `index ${shstrndx} out of range`)
  if (strtab.type !== SHT_STRTAB) {
    throw new Corrupt("section header string table", `section ${shstrndx} has type ${strtab.type}, not SHT_STRTAB`)
  }
  load(strtab.offset, strtab.size)
  const names = slice(b, strtab.offset, strtab.size, "section header string table")
  const sections: Array<Section> = raw.map(({ nameOff, ...s }) => ({
    ...s,
    name: cstring(names, nameOff, `name of section ${s.index}`)
  }))
  const byName = new Map<string, Section>()
  for (const s of sections) if (!byName.has(s.name)) byName.set(s.name, s)

  const sectionData = (s: Section, maxBytes = MAX_INFLATE): Buffer => {
    if (s.type === SHT_NOBITS) return Buffer.alloc(0)
    load(s.offset, s.size)
    return contents(s, slice(b, s.offset, s.size, `section ${s.name}`), maxBytes)
  }

  const vaddrToOffset = addressMap(segments, b.length)

  const read = (offset: number, length: number): Buffer | undefined => {
    if (!(offset >= 0 && offset < b.length)) return undefined
    load(offset, length)
    return b.subarray(offset, Math.min(b.length, offset + length))
  }

  return { bytes: b, load, machine, type, entry, sections, segments, section: (n) => byName.get(n),
    sectionData, vaddrToOffset, read }
}

/**
 * Virtual address → file offset through the PT_LOAD segments. Built outside `parseElf` so that its closure holds the
 * file's length and not the file: `retain` hands it on, and it must not keep the bytes alive.
 */
const addressMap = (segments: ReadonlyArray<Segment>, fileSize: number) => {
  const loads = segments.filter((s) => s.type === PT_LOAD)
  return (vaddr: bigint): number | undefined => {
    for (const s of loads) {
      if (vaddr >= s.vaddr && vaddr < s.vaddr + BigInt(s.filesz)) {
        const off = s.offset + Number(vaddr - s.vaddr)
        return off <= fileSize ? off : undefined
      }
    }
    return undefined
  }
}

/** A section's contents from its bytes as stored in the file: inflated when compressed. */
const contents = (s: Section, bytes: Buffer, maxBytes: number): Buffer => {
  const what = `section ${s.name}`
  if ((s.flags & BigInt(SHF_COMPRESSED)) !== 0n) {
    const chType = u32(bytes, 0, `${what} compression header`)
    const size = u64n(bytes, 8, `${what} compression header`)
    if (chType !== 1) throw new Corrupt(what, `compression type ${chType} is not zlib`)
    return inflate(bytes.subarray(24), size, maxBytes, what)
  }
  if (s.name.startsWith(".zdebug_")) {
    if (bytes.length < 12 || bytes.toString("latin1", 0, 4) !== "ZLIB") throw new Corrupt(what, "no ZLIB header")
    const size = Number(bytes.readBigUInt64BE(4))
    return inflate(bytes.subarray(12), size, maxBytes, what)
  }
  return bytes
}

/**
 * A compressed section's contents inflated on the thread pool, while the event loop does other work; what
 * `sectionData` would return, or undefined whenever it would throw or the section is not compressed (then
 * `sectionData` runs as before and throws what it finds). Reads only loaded bytes: call it on sections read ahead.
 */
export const inflateAhead = (elf: Elf, s: Section): Promise<Buffer | undefined> => {
  if (s.type === SHT_NOBITS || s.offset + s.size > elf.bytes.length) return Promise.resolve(undefined)
  const raw = elf.bytes.subarray(s.offset, s.offset + s.size)
  let data: Buffer
  let size: number
  if ((s.flags & BigInt(SHF_COMPRESSED)) !== 0n) {
    if (raw.length < 24 || raw.readUInt32LE(0) !== 1) return Promise.resolve(undefined)
    size = Number(raw.readBigUInt64LE(8))
    data = raw.subarray(24)
  } else if (s.name.startsWith(".zdebug_")) {
    if (raw.length < 12 || raw.toString("latin1", 0, 4) !== "ZLIB") return Promise.resolve(undefined)
    size = Number(raw.readBigUInt64BE(4))
    data = raw.subarray(12)
  } else {
    return Promise.resolve(undefined)
  }
  if (!Number.isSafeInteger(size) || size > MAX_INFLATE) return Promise.resolve(undefined)
  const chunkSize = Math.max(64, Math.min(size + 1, MAX_CHUNK))
  return new Promise((resolve) =>
    Zlib.inflate(data, { maxOutputLength: Math.max(1, size), chunkSize }, (error, out) =>
      resolve(error === null && out.length === size ? out : undefined))
  )
}

/** The ELF with these sections' contents already inflated (`inflateAhead`), by section index. */
export const withInflated = (elf: Elf, inflated: ReadonlyMap<number, Buffer>): Elf =>
  inflated.size === 0 ? elf : {
    ...elf,
    sectionData: (s, maxBytes = MAX_INFLATE) => {
      const ready = inflated.get(s.index)
      return ready !== undefined && elf.sections[s.index] === s && ready.length <= maxBytes
        ? ready
        : elf.sectionData(s, maxBytes)
    }
  }

/**
 * `length` bytes of the file from `offset` (fewer at its end), or undefined when they cannot be read: how `retain`
 * reads kept sections from a file left open instead of copying them.
 */
export type ReadAt = (offset: number, length: number) => Buffer | undefined

/**
 * The sections `keep` selects, at their file offsets as before, so the file's bytes can be let go: an analysed
 * executable is cached for as long as processes run it, and most of the file is not read again. Copies of them, or,
 * with `readAt`, nothing: each read goes to the file (a function's code when it is first decoded, the DWARF of a
 * type asked for later), and memory holds none of it.
 */
export const retain = (elf: Elf, keep: (s: Section) => boolean, readAt?: ReadAt): ElfSections => {
  // A plain loop: no closure here may refer to `elf`, or the ones returned would keep the whole file alive.
  const kept: Array<{ readonly section: Section; readonly length: number; readonly bytes: Buffer | undefined }> = []
  for (const section of elf.sections) {
    if (section.type === SHT_NOBITS || !keep(section)) continue
    // What lies outside the file is cut off here, as reading it from the file would have been.
    const start = Math.min(section.offset, elf.bytes.length)
    const end = Math.min(elf.bytes.length, start + section.size)
    if (readAt !== undefined) {
      kept.push({ section, length: end - start, bytes: undefined })
      continue
    }
    elf.load(start, end - start)
    kept.push({ section, length: end - start, bytes: Buffer.from(elf.bytes.subarray(start, end)) })
  }
  /** `length` bytes from `start` within the kept section `k` (`start + length` at most its length). */
  const bytesOf = (k: (typeof kept)[number], start: number, length: number): Buffer | undefined =>
    k.bytes !== undefined ? k.bytes.subarray(start, start + length) : readAt!(k.section.offset + start, length)
  const byName = new Map<string, (typeof kept)[number]>()
  for (const k of kept) if (!byName.has(k.section.name)) byName.set(k.section.name, k)
  return {
    section: (name) => byName.get(name)?.section,
    sectionData: (s, maxBytes = MAX_INFLATE) => {
      const k = byName.get(s.name)
      if (k === undefined || k.section !== s) throw new Corrupt(`section ${s.name}`, "not retained after analysis")
      const bytes = bytesOf(k, 0, k.length)
      if (bytes === undefined) throw new Corrupt(`section ${s.name}`, "unreadable after analysis")
      return contents(s, bytes, maxBytes)
    },
    vaddrToOffset: elf.vaddrToOffset,
    read: (offset, length) => {
      const k = kept.find((k) => offset >= k.section.offset && offset < k.section.offset + k.length)
      if (k === undefined) return undefined
      const start = offset - k.section.offset
      return bytesOf(k, start, Math.max(0, Math.min(k.length - start, length)))
    }
  }
}

/** The largest output chunk allocated before inflating (larger sections are inflated in chunks of this size). */
const MAX_CHUNK = 64 * 1024 * 1024

const inflate = (data: Buffer, size: number, maxBytes: number, what: string): Buffer => {
  if (size > maxBytes) throw new Corrupt(what, `declared inflated size ${size} exceeds ${maxBytes}`)
  let out: Buffer
  try {
    // One output chunk of the declared size (and a byte, so that zlib's last call finds room and stops): the default
    // 16 KiB chunks cost a concatenation and a third more time on a Go binary's DWARF. Capped: a corrupt header's size
    // must not be allocated up front.
    const chunkSize = Math.max(64, Math.min(size + 1, MAX_CHUNK))
    out = Zlib.inflateSync(data, { maxOutputLength: Math.max(1, size), chunkSize })
  } catch (e) {
    throw new Corrupt(what, `zlib: ${(e as Error).message}`)
  }
  if (out.length !== size) throw new Corrupt(what, `inflated to ${out.length} bytes, header says ${size}`)
  return out
}

/** Reads a symbol table section (.symtab or .dynsym). */
export const readSymbols = (elf: Elf, s: Section): Array<ElfSymbol> => {
  const what = `symbols of ${s.name}`
  if (s.entsize !== 24) throw new Corrupt(what, `entry size ${s.entsize}, expected 24`)
  elf.load(s.offset, s.size)
  const data = slice(elf.bytes, s.offset, s.size, what)
  const strSec = elf.sections[s.link]
  if (strSec === undefined) throw new Corrupt(what, `string table index ${s.link} out of range`)
  elf.load(strSec.offset, strSec.size)
  const strs = slice(elf.bytes, strSec.offset, strSec.size, `string table of ${s.name}`)
  const n = Math.floor(data.length / 24)
  const out: Array<ElfSymbol> = []
  for (let i = 1; i < n; i++) {
    const o = i * 24
    const nameOff = data.readUInt32LE(o)
    const info = data[o + 4]!
    const shndx = data.readUInt16LE(o + 6)
    const value = data.readBigUInt64LE(o + 8)
    const size = data.readBigUInt64LE(o + 16)
    if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw new Corrupt(what, `symbol ${i} size too large`)
    // cstring's check, inline: its context string, built per symbol, cost as much as the name (tens of thousands).
    const nul = nameOff < strs.length ? strs.indexOf(0, nameOff) : -1
    if (nul < 0 || nul - nameOff >= 4096) throw new Corrupt(`${what} name ${i}`, `unterminated string at ${nameOff}`)
    out.push({ name: strs.toString("utf8", nameOff, nul), value, size: Number(size), type: info & 0xf,
      bind: info >> 4, section: shndx })
  }
  return out
}

export const SHT_NOTE = 7
export const SHT_DYNAMIC = 6
export const SHT_GNU_VERDEF = 0x6ffffffd
export const SHT_GNU_VERNEED = 0x6ffffffe
export const SHT_GNU_VERSYM = 0x6fffffff
export const PT_DYNAMIC = 2
export const PT_INTERP = 3
export const ET_EXEC = 2
export const ET_DYN = 3
export const DT_NEEDED = 1
export const DT_SONAME = 14
export const DT_FLAGS_1 = 0x6ffffffb
/** DF_1_PIE: set by linkers on position-independent executables (an ET_DYN that is not a library). */
export const DF_1_PIE = 0x08000000

/** One entry of the dynamic section, with string values (DT_NEEDED, DT_SONAME...) resolved through its string table. */
export interface DynamicEntry {
  readonly tag: number
  readonly value: bigint
  readonly string?: string
}

/** The `.dynamic` section (SHT_DYNAMIC), up to DT_NULL; empty for a static executable. */
export const readDynamic = (elf: Elf): Array<DynamicEntry> => {
  const s = elf.sections.find((x) => x.type === SHT_DYNAMIC)
  if (s === undefined) return []
  const what = `dynamic section ${s.name}`
  elf.load(s.offset, s.size)
  const data = slice(elf.bytes, s.offset, s.size, what)
  const strSec = elf.sections[s.link]
  if (strSec !== undefined) elf.load(strSec.offset, strSec.size)
  const strs = strSec === undefined ? undefined : slice(elf.bytes, strSec.offset, strSec.size, `string table of ${what}`)
  const out: Array<DynamicEntry> = []
  for (let o = 0; o + 16 <= data.length; o += 16) {
    const tag = Number(data.readBigInt64LE(o))
    const value = data.readBigUInt64LE(o + 8)
    if (tag === 0) break
    if (tag === DT_NEEDED || tag === DT_SONAME) {
      if (strs === undefined) throw new Corrupt(what, `string table index ${s.link} out of range`)
      if (value > BigInt(strs.length)) throw new Corrupt(what, `string offset ${value} outside its string table`)
      out.push({ tag, value, string: cstring(strs, Number(value), `${what} entry ${o / 16}`) })
    } else {
      out.push({ tag, value })
    }
  }
  return out
}

/** An ELF note: owner name, type and descriptor bytes. */
export interface Note {
  readonly name: string
  readonly type: number
  readonly desc: Buffer
}

/** The notes of every SHT_NOTE section (`.note.gnu.build-id`, `.note.ABI-tag`...). */
export const readNotes = (elf: Elf): Array<Note> => {
  const out: Array<Note> = []
  for (const s of elf.sections) {
    if (s.type !== SHT_NOTE) continue
    const what = `note section ${s.name}`
    elf.load(s.offset, s.size)
    const data = slice(elf.bytes, s.offset, s.size, what)
    let o = 0
    while (o + 12 <= data.length) {
      const namesz = data.readUInt32LE(o)
      const descsz = data.readUInt32LE(o + 4)
      const type = data.readUInt32LE(o + 8)
      const nameAt = o + 12
      const descAt = nameAt + align4(namesz)
      check(data.length, descAt, descsz, what)
      const name = data.toString("latin1", nameAt, nameAt + Math.max(0, namesz - 1))
      out.push({ name, type, desc: data.subarray(descAt, descAt + descsz) })
      o = descAt + align4(descsz)
    }
  }
  return out
}

const align4 = (n: number) => (n + 3) & ~3

/** Symbol versioning of a dynamic symbol table: the version named by each `.gnu.version` entry. */
export interface SymbolVersions {
  /** Per symbol index (as `readSymbols` numbers them, from 1): version name and whether it is hidden (`@` not `@@`). */
  readonly of: (index: number) => { readonly name: string; readonly hidden: boolean } | undefined
  /** Versions this object defines (`.gnu.version_d`), the base one (its own soname) excluded, in file order. */
  readonly defined: ReadonlyArray<string>
}

/**
 * Reads `.gnu.version` with `.gnu.version_d` (versions defined here) and `.gnu.version_r` (versions needed from
 * other objects), so a dynamic symbol is named as `nm -D` and `readelf` name it: `SSL_write@@OPENSSL_3.0.0`.
 */
export const readSymbolVersions = (elf: Elf): SymbolVersions | undefined => {
  const versym = elf.sections.find((s) => s.type === SHT_GNU_VERSYM)
  if (versym === undefined) return undefined
  const names = new Map<number, string>()
  const defined: Array<string> = []
  const verdef = elf.sections.find((s) => s.type === SHT_GNU_VERDEF)
  if (verdef !== undefined) {
    const what = "version definitions (.gnu.version_d)"
    elf.load(verdef.offset, verdef.size)
    const data = slice(elf.bytes, verdef.offset, verdef.size, what)
    const strs = linkedStrings(elf, verdef, what)
    let o = 0
    // The entry count is in sh_info, which the reader does not keep; the chain's vd_next = 0 ends it, bounded by size.
    for (let i = 0; i < 0x10000 && o + 20 <= data.length; i++) {
      const flags = data.readUInt16LE(o + 2)
      const index = data.readUInt16LE(o + 4)
      const aux = data.readUInt32LE(o + 12)
      const next = data.readUInt32LE(o + 16)
      check(data.length, o + aux, 8, what)
      const name = cstring(strs, data.readUInt32LE(o + aux), `${what} entry ${i}`)
      names.set(index, name)
      if ((flags & 1) === 0) defined.push(name)
      if (next === 0) break
      o += next
    }
  }
  const verneed = elf.sections.find((s) => s.type === SHT_GNU_VERNEED)
  if (verneed !== undefined) {
    const what = "version requirements (.gnu.version_r)"
    elf.load(verneed.offset, verneed.size)
    const data = slice(elf.bytes, verneed.offset, verneed.size, what)
    const strs = linkedStrings(elf, verneed, what)
    let o = 0
    for (let i = 0; i < 0x10000 && o + 16 <= data.length; i++) {
      const cnt = data.readUInt16LE(o + 2)
      const aux = data.readUInt32LE(o + 8)
      const next = data.readUInt32LE(o + 12)
      let a = o + aux
      for (let j = 0; j < cnt; j++) {
        check(data.length, a, 16, what)
        const other = data.readUInt16LE(a + 6)
        names.set(other & 0x7fff, cstring(strs, data.readUInt32LE(a + 8), `${what} entry ${i}.${j}`))
        const anext = data.readUInt32LE(a + 12)
        if (anext === 0) break
        a += anext
      }
      if (next === 0) break
      o += next
    }
  }
  elf.load(versym.offset, versym.size)
  const data = slice(elf.bytes, versym.offset, versym.size, "symbol versions (.gnu.version)")
  return {
    defined,
    of: (index) => {
      if (2 * index + 2 > data.length) return undefined
      const v = data.readUInt16LE(2 * index)
      // 0 is local, 1 is the global base version: neither is printed with the name.
      if ((v & 0x7fff) < 2) return undefined
      const name = names.get(v & 0x7fff)
      return name === undefined ? undefined : { name, hidden: (v & 0x8000) !== 0 }
    }
  }
}

const linkedStrings = (elf: Elf, s: Section, what: string): Buffer => {
  const strSec = elf.sections[s.link]
  if (strSec === undefined) throw new Corrupt(what, `string table index ${s.link} out of range`)
  elf.load(strSec.offset, strSec.size)
  return slice(elf.bytes, strSec.offset, strSec.size, `string table of ${what}`)
}
