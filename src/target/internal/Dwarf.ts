/**
 * Struct member offsets from DWARF `.debug_info` (versions 2–5, 32- and 64-bit units), as Go emits it. It reads
 * structure types with a name and their members' `DW_AT_data_member_location`; everything else is skipped by form.
 */
import { Corrupt, cstring, u16, u32, u64n, u8, uleb, sleb, check } from "./Bytes.ts"
import type { ElfSections } from "./Elf.ts"

const DW_TAG_structure_type = 0x13
const DW_TAG_member = 0x0d
const DW_AT_name = 0x03
const DW_AT_byte_size = 0x0b
const DW_AT_data_member_location = 0x38

/** Struct layouts by Go type name, e.g. "net/http.Request" → { size, fields: Map("Method" → 0) }. */
export interface StructLayout {
  readonly size: number
  readonly fields: ReadonlyMap<string, number>
}

interface AttrSpec {
  readonly name: number
  readonly form: number
  readonly implicit: number
}

interface Abbrev {
  readonly tag: number
  readonly children: boolean
  readonly attrs: ReadonlyArray<AttrSpec>
}

/** Which DWARF sections the binary has (plain, `.zdebug_*`, or SHF_COMPRESSED). */
export const hasDwarf = (elf: ElfSections): boolean =>
  elf.section(".debug_info") !== undefined || elf.section(".zdebug_info") !== undefined

const sectionBytes = (elf: ElfSections, name: string): Buffer | undefined => {
  const s = elf.section(`.debug_${name}`) ?? elf.section(`.zdebug_${name}`)
  return s === undefined ? undefined : elf.sectionData(s)
}

/** Whether `readStructs` reads a section: the rest of the DWARF can be dropped after analysis. */
export const isStructSection = (name: string): boolean =>
  /^\.z?debug_(info|abbrev|str|line_str|str_offsets)$/.test(name)

/** More DIEs than this means a corrupt unit, not a big program (Go's own `go` command has a few hundred thousand). */
const MAX_DIES = 50_000_000

const DW_TAG_compile_unit = 0x11

/** `Uint8Array.prototype.indexOf`, not Buffer's (a JavaScript wrapper that checks and converts its arguments). */
const indexOfByte = Uint8Array.prototype.indexOf

interface UnitHeader {
  readonly end: number
  readonly version: number
  readonly offSize: number
  readonly addrSize: number
  readonly abbrevs: Map<number, Abbrev>
  /**
   * The same abbreviations by code (Go's codes are small and dense: an array index, not a hash lookup per entry),
   * each with its skip plan for this unit's address and offset sizes.
   */
  readonly table: ReadonlyArray<Planned | undefined>
  /** Where its first entry (the compile unit's) starts. */
  readonly first: number
}

/**
 * An abbreviation with the unit's skip plan: runs of forms whose size is fixed in this unit (addresses, offsets and
 * references included) merged into one byte count (>= 0), else -form. Most entries are skipped by it alone.
 */
interface Planned {
  readonly abbrev: Abbrev
  readonly plan: Int32Array
}

/** Codes above this are looked up in the map (an array that large would cost more than it saves). */
const DENSE_CODES = 4096

/**
 * Options of `readStructs`. `goLinked`: the binary was linked by the Go linker (it has Go build info), which moves
 * every Go type entry into the compile unit named "runtime" (cmd/link's `movetomodule`): only that unit is walked, a
 * fifth of `.debug_info` or less. Without a "runtime" unit every unit is walked, as without the option.
 */
export interface ReadStructsOptions {
  readonly goLinked?: boolean
}

/**
 * Reads every named struct type. When `wanted` is given, only those types are kept (others are still walked).
 * Throws Corrupt/OutOfBounds on malformed data.
 */
export const readStructs = (
  elf: ElfSections,
  wanted?: ReadonlySet<string>,
  options: ReadStructsOptions = {}
): Map<string, StructLayout> => {
  const info = sectionBytes(elf, "info")
  const abbrevSec = sectionBytes(elf, "abbrev")
  if (info === undefined || abbrevSec === undefined) return new Map()
  const str = sectionBytes(elf, "str") ?? Buffer.alloc(0)
  const lineStr = sectionBytes(elf, "line_str") ?? Buffer.alloc(0)
  const strOffsets = sectionBytes(elf, "str_offsets")
  const abbrevCache = new Map<number, Map<number, Abbrev>>()
  const tableCache = new Map<string, ReadonlyArray<Planned | undefined>>()
  const out = new Map<string, StructLayout>()
  let dies = 0
  // The wanted names' lengths in UTF-8 bytes: an inline struct name of another length cannot be one of them (unless
  // a wanted name holds U+FFFD, which bytes that are not UTF-8 of any length decode to).
  const wantedLengths = wanted === undefined || [...wanted].some((n) => n.includes("\ufffd"))
    ? undefined
    : new Set([...wanted].map((n) => Buffer.byteLength(n)))

  const header = (unit: number): UnitHeader => {
    let len = u32(info, unit, "DWARF unit header")
    let hdr = unit + 4
    let offSize = 4
    if (len === 0xffffffff) {
      len = u64n(info, unit + 4, "DWARF unit header")
      hdr = unit + 12
      offSize = 8
    } else if (len >= 0xfffffff0) {
      throw new Corrupt("DWARF unit header", `reserved length 0x${len.toString(16)}`)
    }
    check(info.length, hdr, len, "DWARF unit")
    const version = u16(info, hdr, "DWARF unit header")
    let abbrevOff: number
    let addrSize: number
    let o: number
    if (version >= 5) {
      if (version > 5) throw new Corrupt("DWARF unit header", `version ${version}`)
      const unitType = u8(info, hdr + 2, "DWARF unit header")
      addrSize = u8(info, hdr + 3, "DWARF unit header")
      abbrevOff = offSize === 4 ? u32(info, hdr + 4, "DWARF unit header") : u64n(info, hdr + 4, "DWARF unit header")
      o = hdr + 4 + offSize
      // Skeleton/split/type units carry extra header fields.
      if (unitType === 2 || unitType === 6) o += 8 + offSize
      else if (unitType === 4 || unitType === 5) o += 8
    } else {
      if (version < 2) throw new Corrupt("DWARF unit header", `version ${version}`)
      abbrevOff = offSize === 4 ? u32(info, hdr + 2, "DWARF unit header") : u64n(info, hdr + 2, "DWARF unit header")
      addrSize = u8(info, hdr + 2 + offSize, "DWARF unit header")
      o = hdr + 3 + offSize
    }
    let abbrevs = abbrevCache.get(abbrevOff)
    if (abbrevs === undefined) {
      abbrevs = readAbbrevs(abbrevSec, abbrevOff)
      abbrevCache.set(abbrevOff, abbrevs)
    }
    const tableKey = `${abbrevOff}:${addrSize}:${offSize}:${version}`
    let table = tableCache.get(tableKey)
    if (table === undefined) {
      table = plannedTable(abbrevs, addrSize, offSize, version)
      tableCache.set(tableKey, table)
    }
    return { end: hdr + len, version, offSize, addrSize, abbrevs, table, first: o }
  }

  /** The name of a unit's compile-unit entry, or undefined. */
  const unitName = (h: UnitHeader): string | undefined => {
    if (h.first >= h.end) return undefined
    const [code, start] = uleb(info, h.first, "DWARF entry")
    const ab = h.abbrevs.get(code)
    if (ab === undefined || ab.tag !== DW_TAG_compile_unit) return undefined
    let o = start
    for (const a of ab.attrs) {
      if (a.name === DW_AT_name) return readString(info, o, a.form, h.offSize, str, lineStr, strOffsets)[0]
      o = skipForm(info, o, a.form, h.addrSize, h.offSize, h.version)
    }
    return undefined
  }

  const walk = (h: UnitHeader) => {
    const { abbrevs, table, addrSize, offSize, version } = h
    const unitEnd = h.end
    const length = info.length
    let o = h.first
    // Depth-tracked walk: members of a kept struct are its direct children.
    let depth = 0
    let current: { name: string; size: number; fields: Map<string, number> } | undefined
    let currentDepth = -1
    while (o < unitEnd) {
      if (++dies > MAX_DIES) throw new Corrupt("DWARF", "too many entries")
      let code: number
      const first = info[o]!
      if (first < 0x80) {
        code = first
        o++
      } else {
        ;[code, o] = uleb(info, o, "DWARF entry")
      }
      if (code === 0) {
        depth--
        if (current !== undefined && depth < currentDepth) {
          out.set(current.name, { size: current.size, fields: current.fields })
          current = undefined
        }
        if (depth < 0) depth = 0
        continue
      }
      let planned = code < table.length ? table[code] : undefined
      if (planned === undefined && code >= table.length) {
        const ab = abbrevs.get(code)
        if (ab !== undefined) planned = plan(ab, addrSize, offSize, version)
      }
      if (planned === undefined) throw new Corrupt("DWARF entry", `unknown abbreviation ${code} at ${o}`)
      const ab = planned.abbrev
      const isStruct = ab.tag === DW_TAG_structure_type
      const isMember = ab.tag === DW_TAG_member && current !== undefined && depth === currentDepth
      if (!isStruct && !isMember) {
        // Most entries: skip by the unit's plan. The forms Go uses most are skipped inline here; anything unusual
        // (a long varint, a string or varint running off the section) goes through skipForm, which names the error.
        const steps = planned.plan
        for (let i = 0; i < steps.length; i++) {
          const step = steps[i]!
          if (step >= 0) {
            o += step
            continue
          }
          const form = -step
          if (form === 0x08) {
            // The typed array's own search: a builtin in every tier, where a byte loop is slow until V8 has
            // optimised the walk (a launch analyses its executable once, mostly before that).
            const p = indexOfByte.call(info, 0, o)
            o = p >= 0 ? p + 1 : skipForm(info, o, form, addrSize, offSize, version)
          } else if (form === 0x0f || form === 0x0d || form === 0x1b || form === 0x1a || form === 0x15) {
            // A varint of at most 7 bytes (49 bits) is a safe integer: skipped without decoding.
            let p = o
            while (p < length && p - o < 7 && (info[p]! & 0x80) !== 0) p++
            o = p < length && p - o < 7 ? p + 1 : skipForm(info, o, form, addrSize, offSize, version)
          } else if (form === 0x0a && o < length) {
            o += 1 + info[o]!
          } else {
            o = skipForm(info, o, form, addrSize, offSize, version)
          }
        }
        if (o > unitEnd) throw new Corrupt("DWARF entry", `runs past its unit at ${o}`)
        if (ab.children) depth++
        continue
      }
      let name: string | undefined
      let size = -1
      let loc = -1
      for (const a of ab.attrs) {
        const interesting = a.name === DW_AT_name || a.name === DW_AT_byte_size || a.name === DW_AT_data_member_location
        if (!interesting) {
          o = skipForm(info, o, a.form, addrSize, offSize, version)
          continue
        }
        if (a.name === DW_AT_name) {
          // A struct's name is made a string only when it could be a wanted one (its length in bytes is one of
          // theirs); a member's only when its struct is kept. Most of a binary's structs are neither.
          if (isStruct && wantedLengths !== undefined && a.form === 0x08) {
            let p = o
            while (p < length && info[p] !== 0) p++
            if (p < length && p - o < 1 << 16 && !wantedLengths.has(p - o)) {
              name = undefined
              o = p + 1
              continue
            }
          }
          const r = readString(info, o, a.form, offSize, str, lineStr, strOffsets)
          name = r[0]
          o = r[1]
        } else {
          const r = readConst(info, o, a.form, a.implicit, offSize)
          if (a.name === DW_AT_byte_size) size = r[0]
          else loc = r[0]
          o = r[1]
        }
      }
      if (isStruct && name !== undefined && current === undefined && (wanted === undefined || wanted.has(name))) {
        if (ab.children) {
          current = { name, size, fields: new Map() }
          currentDepth = depth + 1
        } else {
          out.set(name, { size, fields: new Map() })
        }
      } else if (isMember && name !== undefined && loc >= 0) {
        current!.fields.set(name, loc)
      }
      if (ab.children) depth++
    }
    if (current !== undefined) out.set(current.name, { size: current.size, fields: current.fields })
  }

  const headers: Array<UnitHeader> = []
  for (let unit = 0; unit < info.length; unit = headers[headers.length - 1]!.end) headers.push(header(unit))
  // The package's assembly files make units of the same name: the types are in one of them.
  const runtime = options.goLinked === true ? headers.filter((h) => unitName(h) === "runtime") : []
  for (const h of runtime.length === 0 ? headers : runtime) walk(h)
  return out
}

const readAbbrevs = (b: Buffer, start: number): Map<number, Abbrev> => {
  const m = new Map<number, Abbrev>()
  let o = start
  for (let n = 0; n < 1_000_000; n++) {
    const [code, o1] = uleb(b, o, "DWARF abbreviation")
    if (code === 0) return m
    const [tag, o2] = uleb(b, o1, "DWARF abbreviation")
    const children = u8(b, o2, "DWARF abbreviation") !== 0
    o = o2 + 1
    const attrs: Array<AttrSpec> = []
    for (let k = 0; k < 10_000; k++) {
      const [name, p1] = uleb(b, o, "DWARF abbreviation attribute")
      const [form, p2] = uleb(b, p1, "DWARF abbreviation attribute")
      o = p2
      let implicit = 0
      if (form === 0x21) {
        const [v, p3] = sleb(b, o, "DWARF implicit constant")
        implicit = v
        o = p3
      }
      if (name === 0 && form === 0) break
      attrs.push({ name, form, implicit })
    }
    m.set(code, { tag, children, attrs })
  }
  throw new Corrupt("DWARF abbreviations", "no terminator")
}

const fixedSizes: Record<number, number> = {
  0x05: 2, 0x06: 4, 0x07: 8, 0x0b: 1, 0x0c: 1, 0x11: 1, 0x12: 2, 0x13: 4, 0x14: 8, 0x19: 0, 0x1c: 4, 0x1e: 16,
  0x20: 8, 0x21: 0, 0x24: 8, 0x25: 1, 0x26: 2, 0x27: 3, 0x28: 4, 0x29: 1, 0x2a: 2, 0x2b: 3, 0x2c: 4
}

/** A form's size in a unit of these sizes when it does not depend on the data, else undefined. */
const unitFixedSize = (form: number, addrSize: number, offSize: number, version: number): number | undefined => {
  const fixed = fixedSizes[form]
  if (fixed !== undefined) return fixed
  switch (form) {
    case 0x01:
      return addrSize
    case 0x0e:
    case 0x17:
    case 0x1d:
    case 0x1f:
      return offSize
    case 0x10:
      return version <= 2 ? addrSize : offSize
  }
  return undefined
}

const plan = (abbrev: Abbrev, addrSize: number, offSize: number, version: number): Planned => {
  const steps: Array<number> = []
  for (const a of abbrev.attrs) {
    const fixed = unitFixedSize(a.form, addrSize, offSize, version)
    if (fixed !== undefined) {
      if (steps.length > 0 && steps[steps.length - 1]! >= 0) steps[steps.length - 1]! += fixed
      else steps.push(fixed)
    } else {
      steps.push(-a.form)
    }
  }
  return { abbrev, plan: Int32Array.from(steps) }
}

const plannedTable = (
  abbrevs: ReadonlyMap<number, Abbrev>,
  addrSize: number,
  offSize: number,
  version: number
): Array<Planned | undefined> => {
  const table: Array<Planned | undefined> = []
  for (const [code, ab] of abbrevs) if (code < DENSE_CODES) table[code] = plan(ab, addrSize, offSize, version)
  // Holes read as undefined, codes past the end go to the map: the array is filled to its length.
  for (let i = 0; i < table.length; i++) table[i] ??= undefined
  return table
}

const skipForm = (b: Buffer, o: number, form: number, addrSize: number, offSize: number, version: number): number => {
  const fixed = fixedSizes[form]
  if (fixed !== undefined) return o + fixed
  switch (form) {
    case 0x01:
      return o + addrSize
    case 0x03:
      return o + 2 + u16(b, o, "DWARF block2")
    case 0x04:
      return o + 4 + u32(b, o, "DWARF block4")
    case 0x08: {
      const nul = b.indexOf(0, o)
      if (nul < 0) throw new Corrupt("DWARF string", "unterminated")
      return nul + 1
    }
    case 0x09:
    case 0x18: {
      const [n, p] = uleb(b, o, "DWARF block")
      return p + n
    }
    case 0x0a:
      return o + 1 + u8(b, o, "DWARF block1")
    case 0x0d:
      return sleb(b, o, "DWARF sdata")[1]
    case 0x0f:
    case 0x15:
    case 0x1a:
    case 0x1b:
    case 0x22:
    case 0x23:
      return uleb(b, o, "DWARF udata")[1]
    case 0x0e:
    case 0x17:
    case 0x1d:
    case 0x1f:
      return o + offSize
    case 0x10:
      return o + (version <= 2 ? addrSize : offSize)
    case 0x16: {
      const [f, p] = uleb(b, o, "DWARF indirect form")
      if (f === 0x16) throw new Corrupt("DWARF", "nested indirect form")
      return skipForm(b, p, f, addrSize, offSize, version)
    }
  }
  throw new Corrupt("DWARF", `unknown form 0x${form.toString(16)}`)
}

const readConst = (b: Buffer, o: number, form: number, implicit: number, offSize: number): [number, number] => {
  switch (form) {
    case 0x0b:
      return [u8(b, o, "DWARF data1"), o + 1]
    case 0x05:
      return [u16(b, o, "DWARF data2"), o + 2]
    case 0x06:
      return [u32(b, o, "DWARF data4"), o + 4]
    case 0x07:
      return [u64n(b, o, "DWARF data8"), o + 8]
    case 0x0f:
      return uleb(b, o, "DWARF udata")
    case 0x0d:
      return sleb(b, o, "DWARF sdata")
    case 0x21:
      return [implicit, o]
  }
  // Location expressions (DW_OP_plus_uconst) are how old producers encode member offsets.
  if (form === 0x0a || form === 0x09 || form === 0x18) {
    const [len, p] = form === 0x0a ? [u8(b, o, "DWARF block1"), o + 1] : uleb(b, o, "DWARF block")
    check(b.length, p, len, "DWARF block")
    if (len >= 2 && b[p] === 0x23) return [uleb(b, p + 1, "DWARF plus_uconst")[0], p + len]
    return [-1, p + len]
  }
  return [-1, skipForm(b, o, form, 8, offSize, 4)]
}

const readString = (
  b: Buffer,
  o: number,
  form: number,
  offSize: number,
  str: Buffer,
  lineStr: Buffer,
  strOffsets: Buffer | undefined
): [string, number] => {
  switch (form) {
    case 0x08: {
      const s = cstring(b, o, "DWARF string", 1 << 16)
      return [s, b.indexOf(0, o) + 1]
    }
    case 0x0e: {
      const off = offSize === 4 ? u32(b, o, "DWARF strp") : u64n(b, o, "DWARF strp")
      return [cstring(str, off, "DWARF .debug_str", 1 << 16), o + offSize]
    }
    case 0x1f: {
      const off = offSize === 4 ? u32(b, o, "DWARF line_strp") : u64n(b, o, "DWARF line_strp")
      return [cstring(lineStr, off, "DWARF .debug_line_str", 1 << 16), o + offSize]
    }
  }
  if (strOffsets !== undefined && (form === 0x1a || (form >= 0x25 && form <= 0x28))) {
    // No DW_AT_str_offsets_base tracking: Go does not emit strx; assume the first table (header of 8 bytes).
    let idx: number
    let next: number
    if (form === 0x1a) [idx, next] = uleb(b, o, "DWARF strx")
    else {
      const n = form - 0x24
      idx = 0
      for (let i = 0; i < n; i++) idx |= u8(b, o + i, "DWARF strx") << (8 * i)
      next = o + n
    }
    const off = u32(strOffsets, 8 + idx * 4, "DWARF .debug_str_offsets")
    return [cstring(str, off, "DWARF .debug_str", 1 << 16), next]
  }
  return ["", skipForm(b, o, form, 8, offSize, 4)]
}
