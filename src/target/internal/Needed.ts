/**
 * What an ELF file asks the dynamic loader for, read from its dynamic segment alone: DT_NEEDED (the libraries it
 * needs), DT_RUNPATH or DT_RPATH (where to look first). A handful of small reads at the offsets the headers give,
 * not the whole file: the question is asked of every library a new process will map (libcrypto is megabytes).
 *
 * Only what a question "will this process map libssl?" needs: ELF64 little-endian; anything else, a static file or an
 * unreadable one reads as needing nothing.
 */
import * as fs from "node:fs"

/** An ELF file's loader requests. */
export interface Needs {
  /** DT_NEEDED, in order. */
  readonly needed: ReadonlyArray<string>
  /** DT_RUNPATH, else DT_RPATH: colon-separated directories, `$ORIGIN` unexpanded; "" when neither. */
  readonly runpath: string
}

const NONE: Needs = { needed: [], runpath: "" }

const PT_LOAD = 1
const PT_DYNAMIC = 2
const DT_NULL = 0
const DT_NEEDED = 1
const DT_STRTAB = 5
const DT_STRSZ = 10
const DT_RPATH = 15
const DT_RUNPATH = 29
/** At most this many dynamic entries are read (real files have tens). */
const MAX_DYNAMIC = 512
/** Bounds past which a header is taken for corrupt, not read: program headers, and the dynamic string table's size. */
const MAX_PROGRAM_HEADERS = 4096
const MAX_PROGRAM_HEADER_SIZE = 256
const MAX_STRINGS = 1 << 20

/** `length` bytes at `offset` of the open file; undefined when the file is shorter. */
const readAt = (fd: number, offset: number, length: number): Buffer | undefined => {
  const b = Buffer.alloc(length)
  return fs.readSync(fd, b, 0, length, offset) === length ? b : undefined
}

/** The file offset of virtual address `vaddr` through the PT_LOAD segments. */
const offsetOf = (loads: ReadonlyArray<readonly [bigint, bigint, bigint]>, vaddr: bigint): number | undefined => {
  for (const [va, off, size] of loads) if (vaddr >= va && vaddr < va + size) return Number(off + (vaddr - va))
  return undefined
}

/** The loader requests of the ELF file at `file`. */
export const readNeeds = (file: string): Needs => {
  let fd: number | undefined
  try {
    fd = fs.openSync(file, "r")
    const head = readAt(fd, 0, 64)
    // ELF magic, ELFCLASS64, little-endian.
    if (head === undefined || head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2 || head[5] !== 1) return NONE
    const phoff = Number(head.readBigUInt64LE(32))
    const phentsize = head.readUInt16LE(54)
    const phnum = head.readUInt16LE(56)
    if (phentsize < 56 || phentsize > MAX_PROGRAM_HEADER_SIZE || phnum > MAX_PROGRAM_HEADERS) return NONE
    const table = readAt(fd, phoff, phentsize * phnum)
    if (table === undefined) return NONE
    const loads: Array<readonly [bigint, bigint, bigint]> = []
    let dynamic: readonly [number, number] | undefined
    for (let i = 0; i < phnum; i++) {
      const p = i * phentsize
      const type = table.readUInt32LE(p)
      const offset = table.readBigUInt64LE(p + 8)
      const filesz = table.readBigUInt64LE(p + 32)
      if (type === PT_LOAD) loads.push([table.readBigUInt64LE(p + 16), offset, filesz])
      if (type === PT_DYNAMIC) dynamic = [Number(offset), Math.min(Number(filesz), MAX_DYNAMIC * 16)]
    }
    if (dynamic === undefined) return NONE
    const entries = readAt(fd, dynamic[0], dynamic[1] - (dynamic[1] % 16))
    if (entries === undefined) return NONE
    let strtab: bigint | undefined
    let strsz = 0
    const wanted: Array<readonly [number, bigint]> = []
    for (let o = 0; o + 16 <= entries.length; o += 16) {
      const tag = Number(entries.readBigInt64LE(o))
      const value = entries.readBigUInt64LE(o + 8)
      if (tag === DT_NULL) break
      if (tag === DT_STRTAB) strtab = value
      else if (tag === DT_STRSZ) strsz = Number(value)
      else if (tag === DT_NEEDED || tag === DT_RPATH || tag === DT_RUNPATH) wanted.push([tag, value])
    }
    const at = strtab === undefined ? undefined : offsetOf(loads, strtab)
    const strings = at === undefined || strsz <= 0 || strsz > MAX_STRINGS ? undefined : readAt(fd, at, strsz)
    if (strings === undefined) return NONE
    const text = (offset: bigint) => {
      const start = Number(offset)
      const end = strings.indexOf(0, start)
      return start < strings.length ? strings.toString("utf8", start, end < 0 ? strings.length : end) : ""
    }
    const needed = wanted.filter(([tag]) => tag === DT_NEEDED).map(([, v]) => text(v)).filter((n) => n !== "")
    const runpath = wanted.find(([tag]) => tag === DT_RUNPATH) ?? wanted.find(([tag]) => tag === DT_RPATH)
    return { needed, runpath: runpath === undefined ? "" : text(runpath[1]) }
  } catch {
    return NONE
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}
