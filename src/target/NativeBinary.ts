/**
 * Native analysis: what a C, C++ or Rust executable or shared library offers to uprobes — its functions from
 * `.symtab` and `.dynsym` (with symbol versions) as file offsets, its kind, soname, needed libraries, build id,
 * language and the versions of well-known libraries — and the shared objects a process has mapped, with the
 * addresses they are loaded at. Pure: knows nothing of probes or the kernel. Go programs are GoBinary's.
 *
 * `NativeAnalysis` analyses a file once per (device, inode, mtime, size), as `TargetAnalysis` does for Go: libc,
 * mapped by every process of a host, costs one analysis.
 */
import * as FsSync from "node:fs"
import { Context, Effect, Layer, Option } from "effect"
import * as Errors from "./Errors.ts"
import * as FileCache from "./internal/Cache.ts"
import { analyzeNativeBytes, type NativeFacts } from "./internal/Native.ts"

export type NativeKind = "executable" | "pie" | "shared-object"
export type NativeLanguage = "c" | "c++" | "rust" | "go"

/** A defined function symbol: what a uprobe on this file takes is `fileOffset`. */
export interface NativeFunction {
  /** The symbol's name, without version. */
  readonly name: string
  /** As `nm -D` and `readelf -s` print it: `SSL_write@@OPENSSL_3.0.0`, `memcpy@GLIBC_2.2.5` (hidden), or the name. */
  readonly qualifiedName: string
  readonly version: string | undefined
  /** False for a hidden (`@`) version: an old ABI kept for old programs, not what new links bind to. */
  readonly defaultVersion: boolean
  readonly address: bigint
  readonly size: number
  /** File offset of the first instruction; undefined when the address is in no file-backed segment. */
  readonly fileOffset: number | undefined
  readonly binding: "local" | "global" | "weak" | "unique"
  readonly table: "dynsym" | "symtab"
}

/** A defined data object (STT_OBJECT), e.g. `stdout@@GLIBC_2.2.5`; the same facts as a function's. */
export type NativeObject = NativeFunction

/**
 * A symbol of either kind, structurally a `TargetSymbol` of src/probe/Target.ts (what probes see): functions and data
 * objects alike, with the version when the file versions its symbols.
 */
export interface NativeSymbol {
  readonly name: string
  readonly kind: "function" | "object"
  readonly address: bigint
  readonly size: number
  readonly fileOffset: number | undefined
  readonly version?: string
}

/**
 * A library version. `version-text` is the exact release the library embeds; `symbol-versions` is the newest symbol
 * version it defines, the API level it offers (a lower bound of its release).
 */
export interface LibraryVersion {
  readonly name: "openssl" | "glibc"
  readonly version: string
  readonly source: "version-text" | "symbol-versions"
}

/** One analysed native ELF file: what the analysis finds (`NativeFacts`), its path, and lookups. */
export interface NativeBinary extends NativeFacts {
  readonly path: string
  readonly arch: "x86-64"
  /**
   * A function by name: `SSL_write` (the default version when versioned; a global one before a local one of the same
   * name), or qualified, `SSL_write@@OPENSSL_3.0.0` / `memcpy@GLIBC_2.2.5`.
   */
  readonly function: (name: string) => Option.Option<NativeFunction>
  /** A function or a data object, looked up like `function` (a function first when both have the name). */
  readonly symbol: (name: string) => Option.Option<NativeSymbol>
  readonly summary: (functions?: ReadonlyArray<string>) => NativeBinarySummary
}

/** JSON summary of a NativeBinary; see docs/targets.md. */
export interface NativeBinarySummary {
  readonly path: string
  readonly arch: "x86-64"
  readonly kind: NativeKind
  readonly language: NativeLanguage
  readonly soname: string | null
  readonly needed: ReadonlyArray<string>
  readonly interpreter: string | null
  readonly buildId: string | null
  readonly stripped: boolean
  readonly versions: ReadonlyArray<string>
  readonly libraries: ReadonlyArray<LibraryVersion>
  readonly functionCount: number
  readonly functions: Record<string, {
    readonly qualifiedName: string
    readonly address: string
    readonly fileOffset: number | null
    readonly size: number
  } | null>
}

const rank = (f: NativeFunction): number =>
  (f.defaultVersion ? 0 : 4) + (f.binding === "local" ? 2 : 0) + (f.table === "dynsym" ? 0 : 1)

/** Analyses bytes already in memory (no cache): for tests, fuzzing, and tools. */
export const analyzeBuffer = (path: string, bytes: Buffer): Effect.Effect<NativeBinary, Errors.NativeAnalysisError> =>
  Effect.try({ try: () => analyzeNativeBytes(path, bytes), catch: (e) => e }).pipe(
    Effect.catch((e) => isNativeError(e) ? Effect.fail(e) : Effect.die(e)),
    Effect.map((facts): NativeBinary => {
      const index = (list: ReadonlyArray<NativeFunction>) => {
        const byName = new Map<string, NativeFunction>()
        for (const f of list) {
          if (f.qualifiedName !== f.name) byName.set(f.qualifiedName, f)
          const prev = byName.get(f.name)
          if (prev === undefined || rank(f) < rank(prev)) byName.set(f.name, f)
        }
        return byName
      }
      const byName = index(facts.functions)
      // Indexed on first use: most files are asked for functions only.
      let objectsByName: Map<string, NativeObject> | undefined
      const fn = (name: string) => Option.fromNullishOr(byName.get(name))
      const symbol = (name: string): Option.Option<NativeSymbol> => {
        const f = byName.get(name)
        const found = f ?? (objectsByName ??= index(facts.objects)).get(name)
        if (found === undefined) return Option.none()
        return Option.some({
          name: found.name,
          kind: f === undefined ? "object" : "function",
          address: found.address,
          size: found.size,
          fileOffset: found.fileOffset,
          ...(found.version === undefined ? {} : { version: found.version })
        })
      }
      return {
        path,
        arch: "x86-64",
        ...facts,
        function: fn,
        symbol,
        summary: (names = []) => ({
          path,
          arch: "x86-64",
          kind: facts.kind,
          language: facts.language,
          soname: facts.soname ?? null,
          needed: facts.needed,
          interpreter: facts.interpreter ?? null,
          buildId: facts.buildId ?? null,
          stripped: facts.stripped,
          versions: facts.versions,
          libraries: facts.libraries,
          functionCount: facts.functions.length,
          functions: Object.fromEntries(names.map((n) => [n, Option.match(fn(n), {
            onNone: () => null,
            onSome: (f) => ({
              qualifiedName: f.qualifiedName,
              address: `0x${f.address.toString(16)}`,
              fileOffset: f.fileOffset ?? null,
              size: f.size
            })
          })]))
        })
      }
    })
  )

const tags = new Set(["NotElf", "TruncatedElf", "CorruptElf", "UnsupportedArch", "NoSymbols"])

const isNativeError = (e: unknown): e is Errors.NativeAnalysisError =>
  typeof e === "object" && e !== null && tags.has((e as { _tag?: unknown })._tag as string)

/** An executable mapping of an object: addresses [start, end) hold the file's bytes from `fileOffset`. */
export interface ExecutableMapping {
  readonly start: bigint
  readonly end: bigint
  readonly fileOffset: number
}

/** A file a process has mapped with code in it: its executable, its shared libraries. */
export interface MappedObject {
  /** As /proc/<pid>/maps names it: a path in the process's mount namespace. */
  readonly path: string
  /** The same file seen from here, through the process's root: what to open or attach to. */
  readonly procPath: string
  /** "major:minor" in hex, as /proc/<pid>/maps prints it. */
  readonly device: string
  readonly inode: number
  /** The file was deleted (or replaced) after it was mapped. */
  readonly deleted: boolean
  /** Start of the first mapping of file offset 0; addresses of a PIE or library are relative to it. */
  readonly base: bigint | undefined
  readonly executable: ReadonlyArray<ExecutableMapping>
}

/** The address in the process of a file offset of `object`'s code, if an executable mapping holds it. */
export const addressOf = (object: MappedObject, fileOffset: number): Option.Option<bigint> => {
  for (const m of object.executable) {
    const len = m.end - m.start
    if (fileOffset >= m.fileOffset && BigInt(fileOffset - m.fileOffset) < len) {
      return Option.some(m.start + BigInt(fileOffset - m.fileOffset))
    }
  }
  return Option.none()
}

// start-end perms offset dev inode [path]; the path keeps its spaces, so it is the rest of the line.
const mapsLine = /^([0-9a-f]+)-([0-9a-f]+) ([r-][w-][x-][ps]) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+)\s*(.*)$/

/** Parses the text of /proc/<pid>/maps into the file-backed objects with code, in order of first mapping. */
export const parseMaps = (pid: number, text: string): Array<MappedObject> => {
  const objects = new Map<string, {
    path: string
    device: string
    inode: number
    base: bigint | undefined
    executable: Array<ExecutableMapping>
  }>()
  for (const line of text.split("\n")) {
    const m = mapsLine.exec(line)
    // Anonymous mappings ([heap], [stack], [vdso]...) have inode 0: no file to attach to.
    if (m === null || m[6] === "0" || m[7] === "") continue
    const [, start, end, perms, offset, device, inode, path] = m
    const key = `${device}:${inode}:${path}`
    let o = objects.get(key)
    if (o === undefined) {
      o = { path: path!, device: device!, inode: Number(inode), base: undefined, executable: [] }
      objects.set(key, o)
    }
    const off = Number.parseInt(offset!, 16)
    if (off === 0 && o.base === undefined) o.base = BigInt(`0x${start}`)
    if (perms![2] === "x") o.executable.push({ start: BigInt(`0x${start}`), end: BigInt(`0x${end}`), fileOffset: off })
  }
  return [...objects.values()].filter((o) => o.executable.length > 0).map((o) => {
    const deleted = o.path.endsWith(" (deleted)")
    const path = deleted ? o.path.slice(0, -" (deleted)".length) : o.path
    return { ...o, path, deleted, procPath: `/proc/${pid}/root${path}` }
  })
}

/** The objects with code a process has mapped, from /proc/<pid>/maps. */
export const processMaps = Effect.fn("NativeBinary.processMaps")(function*(pid: number) {
  if (!Number.isInteger(pid) || pid <= 0) {
    return yield* new Errors.ProcessNotFound({ pid, message: `invalid pid ${pid}` })
  }
  // Read on the caller's turn: the kernel writes the text from memory. `Fs.readFile` would be four thread-pool round
  // trips (open, stat, read, close) between a process found and its attach, with the pool busy verifying probes.
  const text = yield* Effect.try({ try: () => FsSync.readFileSync(`/proc/${pid}/maps`, "utf8"), catch: (e) => e }).pipe(
    Effect.catch((e): Effect.Effect<never, Errors.MapsError> => {
      const code = (e as NodeJS.ErrnoException).code
      return Effect.fail(
        code === "ENOENT" || code === "ESRCH"
          ? new Errors.ProcessNotFound({ pid, message: `process ${pid} not found` })
          : new Errors.ProcessUnreadable({ pid, message: `process ${pid}: cannot read /proc/${pid}/maps (${code ?? e})` })
      )
    })
  )
  const objects = parseMaps(pid, text)
  if (objects.length === 0) {
    // A kernel thread maps nothing; an exited process not yet reaped (a zombie) neither.
    return yield* new Errors.ProcessUnreadable({
      pid,
      message: `process ${pid} has no mapped files (kernel thread or exited)`
    })
  }
  return objects
})

/** The native analysis service: `analyzeFile` cached per file identity. */
export class NativeAnalysis extends Context.Service<NativeAnalysis, {
  readonly analyzeFile: (path: string) => Effect.Effect<NativeBinary, Errors.NativeAnalysisError>
  readonly cacheStats: Effect.Effect<FileCache.Stats>
}>()("probescope/target/NativeAnalysis") {}

/** Builds the service; `maxEntries` distinct files are kept analysed (least recently used evicted). Default 64. */
export const make = (options: { readonly maxEntries?: number } = {}) =>
  Effect.sync(() => {
    const cache = FileCache.make(options.maxEntries ?? 64, analyzeBuffer)
    return NativeAnalysis.of({
      analyzeFile: Effect.fn("NativeAnalysis.analyzeFile")(function*(path: string) {
        return yield* cache.get(path)
      }),
      cacheStats: cache.stats
    })
  })

/** The live layer. */
export const layer: Layer.Layer<NativeAnalysis> = Layer.effect(NativeAnalysis, make())

/** The native analysis in the context, or else a fresh one (with a cache of its own). */
export const current: Effect.Effect<NativeAnalysis["Service"]> = Effect.flatMap(
  Effect.serviceOption(NativeAnalysis),
  Option.match({ onSome: Effect.succeed, onNone: () => make() })
)
