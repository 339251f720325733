/**
 * Functions from `.gopclntab` (the runtime's PC-line table), for binaries without `.symtab`.
 * Formats: Go 1.16–1.17 (magic 0xfffffffa), 1.18–1.19 (0xfffffff0), 1.20+ (0xfffffff1).
 */
import { Corrupt, cstring, slice, u32, u64n, u8 } from "./Bytes.ts"
import type { Elf } from "./Elf.ts"

export interface PclnFunction {
  readonly name: string
  /** funcFlag_ASM (Go >= 1.21): written in assembly, i.e. the ABI0 implementation when a name has two entries. */
  readonly asm: boolean
  /** The runtime's funcID: 0 for ordinary functions, non-zero for special ones and wrappers (ABI wrappers included). */
  readonly funcID: number
  readonly address: bigint
  /** Up to the next function's entry (includes alignment padding). */
  readonly size: number
}

export interface Pclntab {
  readonly version: "1.16" | "1.18" | "1.20"
  readonly textStart: bigint
  readonly functions: ReadonlyArray<PclnFunction>
}

/** More functions than this is not a real Go binary (a large one has ~100k). */
const MAX_FUNCS = 5_000_000

/** Locates and parses the pclntab; returns undefined when there is none. Throws Corrupt/OutOfBounds. */
export const readPclntab = (elf: Elf): Pclntab | undefined => {
  // PIE builds name it ".data.rel.ro.gopclntab".
  const sec = elf.section(".gopclntab") ?? elf.sections.find((s) => s.name.endsWith(".gopclntab"))
  let data: Buffer
  if (sec !== undefined) {
    data = elf.sectionData(sec)
  } else {
    // Some builds keep the table inside .data.rel.ro (PIE/external linking): find its header by magic.
    const host = elf.section(".data.rel.ro") ?? elf.section(".rodata")
    if (host === undefined) return undefined
    const hostData = elf.sectionData(host)
    const at = findHeader(hostData)
    if (at < 0) return undefined
    data = hostData.subarray(at)
  }
  return parse(elf, data)
}

const MAGICS = [0xfffffff1, 0xfffffff0, 0xfffffffa]

const findHeader = (b: Buffer): number => {
  for (const magic of MAGICS) {
    const m = Buffer.alloc(4)
    m.writeUInt32LE(magic)
    let at = b.indexOf(m)
    for (let tries = 0; at >= 0 && tries < 64; tries++) {
      if (at % 8 === 0 && b[at + 4] === 0 && b[at + 5] === 0 && b[at + 6] === 1 && b[at + 7] === 8) return at
      at = b.indexOf(m, at + 1)
    }
  }
  return -1
}

const parse = (elf: Elf, d: Buffer): Pclntab => {
  const magic = u32(d, 0, "pclntab header")
  if (u8(d, 4, "pclntab header") !== 0 || u8(d, 5, "pclntab header") !== 0) {
    throw new Corrupt("pclntab header", "non-zero padding")
  }
  const ptrSize = u8(d, 7, "pclntab header")
  if (ptrSize !== 8) throw new Corrupt("pclntab header", `pointer size ${ptrSize}, expected 8`)
  const nfunc = u64n(d, 8, "pclntab header")
  if (nfunc > MAX_FUNCS) throw new Corrupt("pclntab header", `${nfunc} functions`)
  let version: Pclntab["version"]
  let textStart: bigint
  let funcnameOff: number
  let pclnOff: number
  /** Where the name table ends (the compile-unit table follows it), if the header says so plausibly. */
  let cuOff: bigint
  if (magic === 0xfffffff0 || magic === 0xfffffff1) {
    version = magic === 0xfffffff1 ? "1.20" : "1.18"
    textStart = BigInt(u64n(d, 24, "pclntab header"))
    funcnameOff = u64n(d, 32, "pclntab header")
    pclnOff = u64n(d, 64, "pclntab header")
    cuOff = d.readBigUInt64LE(40)
    // Go 1.26 leaves textStart zero in the file (the runtime fills it in from moduledata): use the text section.
    if (textStart === 0n) textStart = textBase(elf)
  } else if (magic === 0xfffffffa) {
    version = "1.16"
    textStart = 0n
    funcnameOff = u64n(d, 24, "pclntab header")
    pclnOff = u64n(d, 56, "pclntab header")
    cuOff = d.readBigUInt64LE(32)
  } else {
    throw new Corrupt("pclntab header", `unknown magic 0x${magic.toString(16)}`)
  }
  const names = d.subarray(Math.min(funcnameOff, d.length))
  const name = nameReader(names, cuOff - BigInt(funcnameOff))
  const ftab = d.subarray(Math.min(pclnOff, d.length))
  const functions: Array<PclnFunction> = []
  if (version === "1.16") {
    slice(ftab, 0, (nfunc + 1) * 16, "pclntab function table")
    for (let i = 0; i < nfunc; i++) {
      const entry = ftab.readBigUInt64LE(i * 16)
      const funcOff = u64n(ftab, i * 16 + 8, "pclntab function table")
      const next = ftab.readBigUInt64LE((i + 1) * 16)
      const nameOff = u32(ftab, funcOff + 8, `pclntab _func ${i}`)
      functions.push({ name: name(nameOff, i), address: entry, asm: false, funcID: 0,
        size: next > entry ? Number(next - entry) : 0 })
    }
  } else {
    slice(ftab, 0, (nfunc + 1) * 8, "pclntab function table")
    // _func: entryOff, nameOff, args, deferreturn, pcsp, pcfile, pcln, npcdata, cuOffset, [startLine], funcID, flag.
    const flagOffset = version === "1.20" ? 41 : 37
    const base = textStart <= BigInt(Number.MAX_SAFE_INTEGER) - 0xffffffffn ? Number(textStart) : undefined
    for (let i = 0; i < nfunc; i++) {
      const entryOff = ftab.readUInt32LE(i * 8)
      const funcOff = ftab.readUInt32LE(i * 8 + 4)
      const next = ftab.readUInt32LE((i + 1) * 8)
      if (funcOff + flagOffset < ftab.length) {
        // The whole _func is in the table: read without a bounds check (and its message) per field.
        if (ftab.readUInt32LE(funcOff) !== entryOff) {
          throw new Corrupt(`pclntab _func ${i}`, "entry offset disagrees with the function table")
        }
        const flag = ftab[funcOff + flagOffset]!
        functions.push({
          name: name(ftab.readUInt32LE(funcOff + 4), i),
          address: base === undefined ? textStart + BigInt(entryOff) : BigInt(base + entryOff),
          asm: (flag & 4) !== 0,
          funcID: ftab[funcOff + flagOffset - 1]!,
          size: next > entryOff ? next - entryOff : 0
        })
        continue
      }
      if (u32(ftab, funcOff, `pclntab _func ${i}`) !== entryOff) {
        throw new Corrupt(`pclntab _func ${i}`, "entry offset disagrees with the function table")
      }
      const nameOff = u32(ftab, funcOff + 4, `pclntab _func ${i}`)
      const flag = u8(ftab, funcOff + flagOffset, `pclntab _func ${i}`)
      const funcID = u8(ftab, funcOff + flagOffset - 1, `pclntab _func ${i}`)
      functions.push({ name: name(nameOff, i), address: textStart + BigInt(entryOff),
        asm: (flag & 4) !== 0, funcID, size: next > entryOff ? next - entryOff : 0 })
    }
  }
  return { version, textStart, functions }
}

/**
 * Reads function names as `cstring` does, from one decode of the name table (up to `tableLength`) as latin1:
 * tens of thousands of small decodes cost more. A name with a byte that is not ASCII (a few, like "type:.eq.T·1")
 * is decoded on its own, as UTF-8; one not terminated inside the table (a corrupt offset) is read by `cstring`,
 * which says what is wrong.
 */
const nameReader = (names: Buffer, tableLength: bigint): (offset: number, i: number) => string => {
  const slow = (offset: number, i: number) => cstring(names, offset, `pclntab name ${i}`)
  if (tableLength <= 0n || tableLength > BigInt(names.length)) return slow
  const text = names.toString("latin1", 0, Number(tableLength))
  /** Where the bytes that are not ASCII are, ascending. */
  const wide: Array<number> = []
  for (const m of text.matchAll(/[\x80-\xff]/g)) wide.push(m.index)
  const wideIn = (start: number, end: number): boolean => {
    let lo = 0
    let hi = wide.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (wide[mid]! < start) lo = mid + 1
      else hi = mid
    }
    return lo < wide.length && wide[lo]! < end
  }
  return (offset, i) => {
    if (offset < text.length) {
      const nul = text.indexOf("\0", offset)
      if (nul >= 0 && nul - offset < 4096) return wideIn(offset, nul) ? slow(offset, i) : text.slice(offset, nul)
    }
    return slow(offset, i)
  }
}

/** The Go text base: runtime.text is the start of `.text`, or of the first executable segment without sections. */
const textBase = (elf: Elf): bigint => {
  const text = elf.section(".text")
  if (text !== undefined) return text.addr
  const seg = elf.segments.find((s) => s.type === 1 && (s.flags & 1) !== 0)
  if (seg === undefined) throw new Corrupt("pclntab", "no text section or executable segment")
  return seg.vaddr
}
