/**
 * Go build information from `.go.buildinfo`: the toolchain version and the module list (`go version -m`).
 * Go >= 1.18 stores inline varint-prefixed strings (flag bit 2); older toolchains store pointers to string headers.
 */
import { Corrupt, slice, u64, uleb } from "./Bytes.ts"
import type { Elf } from "./Elf.ts"

const MAGIC = Buffer.from("\xff Go buildinf:", "latin1")
const MOD_START = Buffer.from("3077af0c9274080241e1c107e6d618e6", "hex")
const MOD_END = Buffer.from("f932433186182072008242104116d8f2", "hex")

/** A module line of the build info. */
export interface ModuleInfo {
  readonly path: string
  readonly version: string
  readonly sum: string
  readonly replace?: { readonly path: string; readonly version: string }
}

export interface BuildInfo {
  /** As stored, e.g. "go1.24.3". */
  readonly rawGoVersion: string
  /** Without the "go" prefix and any suffix, e.g. "1.24.3". */
  readonly goVersion: string
  /** The main package path, e.g. "example.com/cmd/server". */
  readonly path: string
  readonly main: ModuleInfo | undefined
  readonly deps: ReadonlyArray<ModuleInfo>
  readonly settings: ReadonlyArray<readonly [string, string]>
}

/** Returns undefined when the binary has no build info (not Go); throws Corrupt when it is malformed. */
export const readBuildInfo = (elf: Elf): BuildInfo | undefined => {
  const sec = elf.section(".go.buildinfo")
  let data: Buffer
  if (sec !== undefined) {
    data = elf.sectionData(sec)
  } else {
    // Without section headers, the build info sits at the start of the first writable segment (16-byte aligned).
    const seg = elf.segments.find((s) => s.type === 1 && (s.flags & 2) !== 0)
    if (seg === undefined) return undefined
    elf.load(seg.offset, Math.min(seg.filesz, 64 * 1024))
    data = slice(elf.bytes, seg.offset, Math.min(seg.filesz, 64 * 1024), "writable segment")
  }
  const at = data.indexOf(MAGIC)
  if (at < 0 || at % 16 !== 0) return undefined
  const header = slice(data, at, 32, "build info header")
  const ptrSize = header[14]!
  const flags = header[15]!
  let version: string
  let mod: Buffer
  if ((flags & 2) !== 0) {
    let o = at + 32
    const [vlen, o1] = uleb(data, o, "build info version length")
    version = slice(data, o1, vlen, "build info version").toString("utf8")
    o = o1 + vlen
    const [mlen, o2] = uleb(data, o, "build info modinfo length")
    mod = slice(data, o2, mlen, "build info modinfo")
  } else {
    if (ptrSize !== 8 || (flags & 1) !== 0) throw new Corrupt("build info", `pointer size ${ptrSize}, flags ${flags}`)
    version = readStringAt(elf, u64(header, 16, "build info version pointer")).toString("utf8")
    mod = readStringAt(elf, u64(header, 24, "build info modinfo pointer"))
  }
  if (!version.startsWith("go") && !version.startsWith("devel")) {
    throw new Corrupt("build info", `version ${JSON.stringify(version.slice(0, 40))} does not start with "go"`)
  }
  return { rawGoVersion: version, goVersion: cleanVersion(version), ...parseModInfo(mod) }
}

/** Reads a Go string header (pointer, length) at a virtual address, then its bytes. */
const readStringAt = (elf: Elf, vaddr: bigint): Buffer => {
  const off = elf.vaddrToOffset(vaddr)
  if (off === undefined) throw new Corrupt("build info", `string header address 0x${vaddr.toString(16)} not in file`)
  elf.load(off, 16)
  const ptr = u64(elf.bytes, off, "build info string header")
  const len = u64(elf.bytes, off + 8, "build info string header")
  if (len > 1n << 20n) throw new Corrupt("build info", `string length ${len} too large`)
  const at = elf.vaddrToOffset(ptr)
  if (at === undefined) throw new Corrupt("build info", `string address 0x${ptr.toString(16)} not in file`)
  elf.load(at, Number(len))
  return slice(elf.bytes, at, Number(len), "build info string")
}

/** "go1.24.3 X:nocoverageredesign" → "1.24.3"; "devel go1.27-abc" → "1.27"; "go1.22rc1" → "1.22". */
export const cleanVersion = (raw: string): string => {
  const m = /go(\d+)\.(\d+)(?:\.(\d+))?/.exec(raw)
  if (m === null) return raw
  return m[3] === undefined ? `${m[1]}.${m[2]}` : `${m[1]}.${m[2]}.${m[3]}`
}

const parseModInfo = (b: Buffer): Omit<BuildInfo, "rawGoVersion" | "goVersion"> => {
  // The modinfo string is framed by 16-byte sentinels; tolerate their absence (some tools strip them).
  const framed = b.length >= 32 && b.subarray(0, 16).equals(MOD_START) && b.subarray(b.length - 16).equals(MOD_END)
  const text = framed ? b.toString("utf8", 16, b.length - 16) : b.toString("utf8")
  let path = ""
  let main: ModuleInfo | undefined
  const deps: Array<ModuleInfo> = []
  const settings: Array<readonly [string, string]> = []
  let last: ModuleInfo | undefined
  for (const line of text.split("\n")) {
    const f = line.split("\t")
    switch (f[0]) {
      case "path":
        path = f[1] ?? ""
        break
      case "mod":
        main = { path: f[1] ?? "", version: f[2] ?? "", sum: f[3] ?? "" }
        last = main
        break
      case "dep":
        last = { path: f[1] ?? "", version: f[2] ?? "", sum: f[3] ?? "" }
        deps.push(last)
        break
      case "=>":
        if (last !== undefined) {
          const replaced: ModuleInfo = { ...last, replace: { path: f[1] ?? "", version: f[2] ?? "" } }
          if (last === main) main = replaced
          else deps[deps.length - 1] = replaced
          last = replaced
        }
        break
      case "build": {
        const kv = f[1] ?? ""
        const eq = kv.indexOf("=")
        if (eq > 0) settings.push([kv.slice(0, eq), kv.slice(eq + 1)])
        break
      }
    }
  }
  return { path, main, deps, settings }
}
