/**
 * An ELF file read in parts: its headers, then the sections the analysis of a Go executable reads, and nothing else
 * (a Go binary's code, its other DWARF sections and, with a symtab, its pclntab are half of the file or more). The
 * headers are read at once, on the caller's turn (a few KiB: each awaited read would wait for the event loop, busy
 * elsewhere at a launch, and the parts could not be asked for before them); the parts are read side by side on the
 * thread pool; a parser that reads anything else loads it first, synchronously (`Elf.load`), so results never depend
 * on what was read ahead. What the analysis needs afterwards (a function's code
 * when it is first decoded, the DWARF of a type asked for later) is read from the file then: `keep`.
 */
import * as Fs from "node:fs"
import { isStructSection } from "./Dwarf.ts"
import {
  type Elf,
  type ElfSections,
  inflateAhead,
  parseElf,
  type ReadAt,
  retain,
  type Section,
  SHT_NOBITS,
  SHT_SYMTAB
} from "./Elf.ts"

/** The file's size changed while it was read: read it whole instead. */
export class Changed extends Error {}

export interface SparseElf {
  readonly elf: Elf
  /**
   * The compressed DWARF sections of structs, inflating on the thread pool from the moment the file is read: the
   * event loop reads the symtab meanwhile. `withInflated(elf, await inflated)` is the ELF to analyse.
   */
  readonly inflated: Promise<ReadonlyMap<number, Buffer>>
  /** Bytes read from the file, ahead and on demand. */
  readonly bytesRead: () => number
  /**
   * The sections `which` selects (`Elf.retain`), read from the file whenever they are read: the file then stays open
   * after `close`, for as long as they are reachable (a path can be replaced while processes still run the old file,
   * so it is not opened again), and is closed once they are collected.
   */
  readonly keep: (which: (s: Section) => boolean) => ElfSections
  /** Frees `elf.bytes` (views of it are empty after) and closes the file, unless `keep` was called. */
  readonly close: () => Promise<void>
}

/**
 * Closes a file once no kept section can read it any more (`SparseElf.keep`): its reader has been collected. The
 * descriptor is closed here only: `close` leaves it open once it is kept.
 */
const files = new FinalizationRegistry<number>((fd) => Fs.close(fd, () => undefined))

/**
 * Reads of `fd` on the event loop (a function's code is a few KiB, read once, when a probe first asks for it). Made
 * here, not in `prepare`: a closure there would share its scope, and keep the file's buffer and the inflated DWARF.
 */
const fileReader = (fd: number): ReadAt => (offset, length) => {
  const out = Buffer.allocUnsafe(length)
  let n = 0
  try {
    while (n < length) {
      const got = Fs.readSync(fd, out, n, length - n, offset + n)
      if (got === 0) break
      n += got
    }
  } catch {
    return undefined
  }
  return out.subarray(0, n)
}

/**
 * Opens `path` and reads its ELF headers and the sections a Go analysis reads. Throws what `parseElf` throws for a
 * file that is not a readable ELF, fs errors, and `Changed`. The file stays open until `close`, for parts read later.
 */
export const openGoElf = async (path: string): Promise<SparseElf> => {
  const fd = Fs.openSync(path, "r")
  try {
    return await prepare(fd)
  } catch (e) {
    Fs.closeSync(fd)
    throw e
  }
}

/** Reads `bytes[start, end)` from the file on the thread pool; `Changed` when it has fewer bytes. */
const readPart = (fd: number, bytes: Buffer, start: number, end: number): Promise<void> =>
  new Promise((resolve, reject) =>
    Fs.read(fd, bytes, start, end - start, start, (e, n) => {
      if (e !== null) reject(e)
      else if (n !== end - start) reject(new Changed(`read ${n} of ${end - start} bytes at ${start}`))
      else resolve()
    })
  )

const prepare = async (fd: number): Promise<SparseElf> => {
  const size = Fs.fstatSync(fd).size
  // Zero-filled: pages never read are never touched (and cost no memory).
  const bytes = Buffer.alloc(size)
  /** Loaded ranges, [start, end), sorted and disjoint. */
  const ranges: Array<[number, number]> = []
  let total = 0
  const gaps = (offset: number, length: number): Array<[number, number]> => {
    let start = Math.max(0, offset)
    const end = Math.min(size, offset + Math.max(0, length))
    const out: Array<[number, number]> = []
    for (const [a, b] of ranges) {
      if (b <= start) continue
      if (a >= end) break
      if (a > start) out.push([start, a])
      start = Math.max(start, b)
      if (start >= end) break
    }
    if (start < end) out.push([start, end])
    return out
  }
  const mark = (start: number, end: number) => {
    total += end - start
    ranges.push([start, end])
    ranges.sort((x, y) => x[0] - y[0])
    // Merge neighbours so `gaps` stays short.
    for (let i = ranges.length - 1; i > 0; i--) {
      const prev = ranges[i - 1]!
      const cur = ranges[i]!
      if (cur[0] <= prev[1]) {
        prev[1] = Math.max(prev[1], cur[1])
        ranges.splice(i, 1)
      }
    }
  }
  const readAhead = async (parts: ReadonlyArray<readonly [number, number]>) => {
    const wanted = parts.flatMap(([o, l]) => gaps(o, l))
    await Promise.all(wanted.map(([start, end]) => readPart(fd, bytes, start, end)))
    for (const [start, end] of wanted) mark(start, end)
  }

  const load = (offset: number, length: number) => {
    for (const [start, end] of gaps(offset, length)) {
      const n = Fs.readSync(fd, bytes, start, end - start, start)
      if (n !== end - start) throw new Changed(`read ${n} of ${end - start} bytes at ${start}`)
      mark(start, end)
    }
  }

  // The headers, read as the parse asks for them: the first page (the ELF header and, in a Go binary, the program
  // headers), then the section headers and their names.
  load(0, 4096)
  const elf: Elf = parseElf(bytes, load)

  // What the Go analysis reads: build info, the symtab and its strings (else the pclntab), and the DWARF of structs.
  // Without a .go.buildinfo section the file is most likely not Go (a scan of a host's processes meets many such):
  // nothing is read ahead, and the analysis loads the little it reads before it says so.
  const parts: Array<readonly [number, number]> = []
  const within = (s: Section) => s.type !== SHT_NOBITS && s.offset + s.size <= size
  const go = elf.section(".go.buildinfo") !== undefined
  const symtab = elf.sections.find((s) => s.type === SHT_SYMTAB)
  for (const s of go ? elf.sections : []) {
    if (!within(s)) continue
    const strings = symtab !== undefined && s.index === symtab.link
    if (s.name === ".go.buildinfo" || s === symtab || strings || isStructSection(s.name) ||
      (symtab === undefined && s.name.endsWith(".gopclntab"))) {
      parts.push([s.offset, s.size])
    }
  }
  await readAhead(parts)
  const structSections = elf.sections.filter((s) => go && within(s) && isStructSection(s.name))
  const inflated = Promise.all(structSections.map((s) => inflateAhead(elf, s))).then((outs) => {
    const m = new Map<number, Buffer>()
    outs.forEach((out, i) => out !== undefined && m.set(structSections[i]!.index, out))
    return m
  })
  let reader: ReadAt | undefined
  const keep = (which: (s: Section) => boolean): ElfSections => {
    if (reader === undefined) {
      // Every kept section reads through this one function: the file is closed when it is unreachable.
      reader = fileReader(fd)
      files.register(reader, fd)
    }
    return retain(elf, which, reader)
  }
  // Closing lets the file's buffer go at once (the analysis keeps copies or reads the file, never views of it): MB
  // that would otherwise count against V8's external memory until a full collection. Not before the thread pool is
  // done inflating from it.
  const close = async () => {
    await inflated
    ;(bytes.buffer as ArrayBuffer & { transfer: (length: number) => ArrayBuffer }).transfer(0)
    if (reader === undefined) Fs.closeSync(fd)
  }
  return { elf, inflated, bytesRead: () => total, keep, close }
}
