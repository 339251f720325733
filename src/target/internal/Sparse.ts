/**
 * An ELF file read in parts: its headers, then the sections the analysis of a Go executable reads, and nothing else
 * (a Go binary's code, its other DWARF sections and, with a symtab, its pclntab are half of the file or more). Parts
 * are read side by side on the thread pool; a parser that reads anything else loads it first, synchronously
 * (`Elf.load`), so results never depend on what was read ahead. What the analysis needs afterwards (a function's code
 * when it is first decoded, the DWARF of a type asked for later) is read from the file then: `keep`.
 */
import * as Fs from "node:fs"
import type { FileHandle } from "node:fs/promises"
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

/** A header region the parse needs that is not loaded yet: loaded, then the parse runs again. */
class Missing extends Error {
  readonly offset: number
  readonly length: number
  constructor(offset: number, length: number) {
    super("not loaded")
    this.offset = offset
    this.length = length
  }
}

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

/** Closes a file once no kept section can read it any more (`SparseElf.keep`): its reader has been collected. */
const files = new FinalizationRegistry<FileHandle>((fh) => void fh.close().catch(() => undefined))

/**
 * Reads of `fh` on the event loop (a function's code is a few KiB, read once, when a probe first asks for it). Made
 * here, not in `prepare`: a closure there would share its scope, and keep the file's buffer and the inflated DWARF.
 */
const fileReader = (fh: FileHandle): ReadAt => (offset, length) => {
  const out = Buffer.allocUnsafe(length)
  let n = 0
  try {
    while (n < length) {
      const got = Fs.readSync(fh.fd, out, n, length - n, offset + n)
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
  const fh = await Fs.promises.open(path, "r")
  try {
    return await prepare(fh)
  } catch (e) {
    await fh.close()
    throw e
  }
}

const prepare = async (fh: FileHandle): Promise<SparseElf> => {
  const size = (await fh.stat()).size
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
    await Promise.all(wanted.map(async ([start, end]) => {
      const { bytesRead } = await fh.read(bytes, start, end - start, start)
      if (bytesRead !== end - start) throw new Changed(`read ${bytesRead} of ${end - start} bytes at ${start}`)
    }))
    for (const [start, end] of wanted) mark(start, end)
  }

  let ahead = true
  const load = (offset: number, length: number) => {
    for (const [start, end] of gaps(offset, length)) {
      if (ahead) throw new Missing(start, end - start)
      const n = Fs.readSync(fh.fd, bytes, start, end - start, start)
      if (n !== end - start) throw new Changed(`read ${n} of ${end - start} bytes at ${start}`)
      mark(start, end)
    }
  }

  // The headers: parse, load what the parse asked for, again (four rounds at most: header, program and section
  // headers, section names). A parse error of loaded bytes is the file's.
  await readAhead([[0, 4096]])
  let elf: Elf | undefined
  for (let round = 0; elf === undefined; round++) {
    try {
      elf = parseElf(bytes, load)
    } catch (e) {
      if (!(e instanceof Missing) || round > 16) throw e
      await readAhead([[e.offset, e.length]])
    }
  }

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
  ahead = false
  const structSections = elf.sections.filter((s) => go && within(s) && isStructSection(s.name))
  const inflated = Promise.all(structSections.map((s) => inflateAhead(elf!, s))).then((outs) => {
    const m = new Map<number, Buffer>()
    outs.forEach((out, i) => out !== undefined && m.set(structSections[i]!.index, out))
    return m
  })
  let reader: ReadAt | undefined
  const keep = (which: (s: Section) => boolean): ElfSections => {
    if (reader === undefined) {
      // Every kept section reads through this one function: the file is closed when it is unreachable.
      reader = fileReader(fh)
      files.register(reader, fh)
    }
    return retain(elf!, which, reader)
  }
  // Closing lets the file's buffer go at once (the analysis keeps copies or reads the file, never views of it): MB
  // that would otherwise count against V8's external memory until a full collection. Not before the thread pool is
  // done inflating from it.
  const close = async () => {
    await inflated
    ;(bytes.buffer as ArrayBuffer & { transfer: (length: number) => ArrayBuffer }).transfer(0)
    if (reader === undefined) await fh.close()
  }
  return { elf, inflated, bytesRead: () => total, keep, close }
}
