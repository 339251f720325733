/**
 * Pure, synchronous analysis of a native (C, C++, Rust) ELF file's bytes: kind, dynamic linking facts, functions of
 * `.symtab` and `.dynsym` with their versions and file offsets, the language and the versions of well-known
 * libraries. Parsers throw; `stage` turns that into the typed errors of Errors.ts.
 */
import * as Errors from "../Errors.ts"
import type { LibraryVersion, NativeFunction, NativeKind, NativeLanguage, NativeObject } from "../NativeBinary.ts"
import { stage } from "./Analyze.ts"
import {
  DF_1_PIE,
  DT_FLAGS_1,
  DT_NEEDED,
  DT_SONAME,
  type Elf,
  ET_EXEC,
  parseElf,
  PT_INTERP,
  readDynamic,
  readNotes,
  readSymbols,
  readSymbolVersions,
  SHT_DYNSYM,
  SHT_SYMTAB
} from "./Elf.ts"

const STT_OBJECT = 1
const STT_FUNC = 2
const STT_GNU_IFUNC = 10
const SHN_UNDEF = 0
const binds: Record<number, NativeFunction["binding"]> = { 0: "local", 1: "global", 2: "weak", 10: "unique" }

/** What the pure analysis finds; NativeBinary.ts adds the path and the lookups. */
export interface NativeFacts {
  readonly kind: NativeKind
  readonly language: NativeLanguage
  readonly soname: string | undefined
  /** DT_NEEDED, in order. */
  readonly needed: ReadonlyArray<string>
  readonly interpreter: string | undefined
  /** `.note.gnu.build-id` as hex. */
  readonly buildId: string | undefined
  /** No `.symtab`: only the exported (`.dynsym`) functions are known. */
  readonly stripped: boolean
  /** Symbol versions this object defines (`.gnu.version_d`), e.g. ["OPENSSL_3.0.0"]. */
  readonly versions: ReadonlyArray<string>
  readonly libraries: ReadonlyArray<LibraryVersion>
  /** Defined functions: `.dynsym` first (they carry versions), then `.symtab` ones not already listed. */
  readonly functions: ReadonlyArray<NativeFunction>
  /** Defined data objects (STT_OBJECT), listed the same way. */
  readonly objects: ReadonlyArray<NativeObject>
}

/** Analyses a native x86-64 ELF file. Throws one of the typed errors of Errors.ts. */
export const analyzeNativeBytes = (path: string, bytes: Buffer): NativeFacts => {
  const elf = stage(path, "elf", parseElf, bytes)
  return stage(path, "elf", (e: Elf) => facts(path, e), elf)
}

const facts = (path: string, elf: Elf): NativeFacts => {
  const dynamic = readDynamic(elf)
  const needed = dynamic.filter((d) => d.tag === DT_NEEDED).map((d) => d.string!)
  const soname = dynamic.find((d) => d.tag === DT_SONAME)?.string
  const flags1 = dynamic.find((d) => d.tag === DT_FLAGS_1)?.value ?? 0n
  const interpSeg = elf.segments.find((s) => s.type === PT_INTERP)
  if (interpSeg !== undefined) elf.load(interpSeg.offset, interpSeg.filesz)
  const interpreter = interpSeg === undefined
    ? undefined
    : elf.bytes.toString("latin1", interpSeg.offset, Math.min(elf.bytes.length, interpSeg.offset + interpSeg.filesz))
      .replace(/\0.*$/s, "")
  // libc.so.6 is ET_DYN with an interpreter (it runs as a program): a soname says "library" unless the linker
  // marked it a PIE.
  const kind: NativeKind = elf.type === ET_EXEC
    ? "executable"
    : (flags1 & BigInt(DF_1_PIE)) !== 0n
    ? "pie"
    : soname !== undefined
    ? "shared-object"
    : interpreter !== undefined
    ? "pie"
    : "shared-object"

  const symtab = elf.sections.find((s) => s.type === SHT_SYMTAB)
  const dynsym = elf.sections.find((s) => s.type === SHT_DYNSYM)
  if (symtab === undefined && dynsym === undefined) {
    throw new Errors.NoSymbols({
      path,
      message: `${path}: stripped (no .symtab) and no .dynsym: no function has a name to attach to`
    })
  }
  const functions: Array<NativeFunction> = []
  const objects: Array<NativeObject> = []
  const seen = new Set<string>()
  const versions = readSymbolVersions(elf)
  const add = (table: "dynsym" | "symtab", withVersions: boolean) => (s: ReturnType<typeof readSymbols>[number],
    i: number) => {
    const isFunction = s.type === STT_FUNC || s.type === STT_GNU_IFUNC
    if ((!isFunction && s.type !== STT_OBJECT) || s.section === SHN_UNDEF || s.name === "") return
    const key = `${s.name}@${s.value}`
    if (table === "symtab" && seen.has(key)) return
    seen.add(key)
    const v = withVersions ? versions?.of(i + 1) : undefined
    ;(isFunction ? functions : objects).push({
      name: s.name,
      qualifiedName: v === undefined ? s.name : `${s.name}${v.hidden ? "@" : "@@"}${v.name}`,
      version: v?.name,
      defaultVersion: v === undefined || !v.hidden,
      address: s.value,
      size: s.size,
      fileOffset: elf.vaddrToOffset(s.value),
      binding: binds[s.bind] ?? "global",
      table
    })
  }
  if (dynsym !== undefined) readSymbols(elf, dynsym).forEach(add("dynsym", true))
  if (symtab !== undefined) readSymbols(elf, symtab).forEach(add("symtab", false))

  const rodata = elf.section(".rodata")
  const rodataBytes = rodata === undefined ? undefined : elf.sectionData(rodata)
  const note = readNotes(elf).find((n) => n.name === "GNU" && n.type === 3)
  return {
    kind,
    language: language(elf, functions, needed, rodataBytes),
    soname,
    needed,
    interpreter,
    buildId: note?.desc.toString("hex"),
    stripped: symtab === undefined,
    versions: versions?.defined ?? [],
    libraries: libraries(versions?.defined ?? [], rodataBytes),
    functions,
    objects
  }
}

const language = (
  elf: Elf,
  functions: ReadonlyArray<NativeFunction>,
  needed: ReadonlyArray<string>,
  rodata: Buffer | undefined
): NativeLanguage => {
  if (elf.section(".go.buildinfo") !== undefined) return "go"
  // Rust before C++: Rust's legacy mangling also starts with _Z. A stripped Rust program keeps the panic locations
  // of its standard library, which name the toolchain's source as /rustc/<commit>/library/...
  if (
    elf.section(".rustc") !== undefined ||
    functions.some((f) => f.name === "rust_begin_unwind" || f.name.startsWith("__rust_") || f.name.startsWith("_R")) ||
    (rodata !== undefined && rodata.indexOf("/rustc/") >= 0)
  ) return "rust"
  if (
    functions.some((f) => f.name.startsWith("_Z")) ||
    needed.some((n) => n.startsWith("libstdc++.so") || n.startsWith("libc++.so"))
  ) return "c++"
  return "c"
}

/** OpenSSL's version text, as `OpenSSL_version(OPENSSL_VERSION)` returns it: "OpenSSL 3.0.19 27 Jan 2026". */
const opensslText = /OpenSSL (\d+\.\d+\.\d+[a-z]?)(?:[-+][\w.~]*)? +\d{1,2} [A-Z][a-z]{2} \d{4}\0/

const newest = (versions: ReadonlyArray<string>, prefix: string): string | undefined => {
  const nums = versions.filter((v) => v.startsWith(prefix) && /^\d+(\.\d+)*$/.test(v.slice(prefix.length)))
    .map((v) => v.slice(prefix.length))
  const cmp = (a: string, b: string) => {
    const x = a.split(".").map(Number)
    const y = b.split(".").map(Number)
    for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0)
    return 0
  }
  return nums.sort(cmp).at(-1)
}

/**
 * Library versions. The exact one where the library embeds it (libcrypto, and programs linking OpenSSL statically,
 * hold OpenSSL's version text); else the newest symbol version the library defines, which is the API level it
 * offers, not its patch release (libssl.so.3 of OpenSSL 3.0.19 defines only OPENSSL_3.0.0).
 */
const libraries = (defined: ReadonlyArray<string>, rodata: Buffer | undefined): Array<LibraryVersion> => {
  const out: Array<LibraryVersion> = []
  const text = rodata === undefined ? null : opensslText.exec(rodata.toString("latin1"))
  const api = newest(defined, "OPENSSL_")
  if (text !== null) out.push({ name: "openssl", version: text[1]!, source: "version-text" })
  else if (api !== undefined) out.push({ name: "openssl", version: api, source: "symbol-versions" })
  const glibc = newest(defined, "GLIBC_")
  if (glibc !== undefined) out.push({ name: "glibc", version: glibc, source: "symbol-versions" })
  return out
}
