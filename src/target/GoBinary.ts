/**
 * Target analysis: what a Go executable offers to probes — Go and module versions, functions (entry past the
 * stack-check prologue, every RET) and struct field offsets — as file offsets, ready for uprobes.
 *
 * `TargetAnalysis` analyses a file (or a process's executable) once per (device, inode, mtime, size): a fleet of
 * processes running the same binary costs one analysis.
 */
import * as FsSync from "node:fs"
import * as Fs from "node:fs/promises"
import { Context, Effect, Layer, Option, Result } from "effect"
import * as Errors from "./Errors.ts"
import { analyzeBytes, analyzeElf, stageError, symbolsAhead } from "./internal/Analyze.ts"
import { withInflated } from "./internal/Elf.ts"
import * as FileCache from "./internal/Cache.ts"
import { Changed, openGoElf } from "./internal/Sparse.ts"
import { type OffsetsTable, shipped } from "./Offsets.ts"

/** A Go function, structurally a `TargetFunction` of src/probe/Target.ts plus decoding facts. */
export interface GoFunction {
  readonly name: string
  /** Virtual address of the first instruction. */
  readonly address: bigint
  /** File offset of the first instruction. */
  readonly fileOffset: number
  /** Bytes of code (to the next function, padding included). */
  readonly size: number
  /** File offset just past the stack-check prologue (`CMP reg, [R14+0x10]; JBE`), or `fileOffset` without one. */
  readonly entryOffset: number
  /** File offsets of every RET instruction. */
  readonly returnOffsets: ReadonlyArray<number>
  /** False when an undecodable instruction stopped the scan: `returnOffsets` may miss some. */
  readonly complete: boolean
  readonly decodeError?: string
}

/** A struct field offset, structurally a `TargetField` of src/probe/Target.ts. */
export interface FieldOffset {
  readonly offset: number
  readonly source: "dwarf" | "table"
}

/**
 * An ELF symbol of the binary, structurally a `TargetSymbol` of src/probe/Target.ts: a function or a data object
 * (`runtime.firstmoduledata`). `fileOffset` is undefined for what the file holds no bytes of (`.bss`).
 */
export interface GoSymbol {
  readonly name: string
  readonly kind: "function" | "object"
  readonly address: bigint
  readonly size: number
  readonly fileOffset: number | undefined
}

/** One analysed Go executable. */
export interface GoBinary {
  readonly path: string
  readonly arch: "x86-64"
  readonly language: "go"
  /** Without the "go" prefix, e.g. "1.24.13". */
  readonly goVersion: string
  /** As stored in the build info, e.g. "go1.24.13" or "go1.25.0 X:jsonv2". */
  readonly rawGoVersion: string
  /** The main package path. */
  readonly mainPath: string
  readonly mainModule: { readonly path: string; readonly version: string } | undefined
  /** Module path → version (a replacement's version when replaced); "std" → the Go version. */
  readonly modules: ReadonlyMap<string, string>
  /** No `.symtab`. */
  readonly stripped: boolean
  readonly hasDwarf: boolean
  readonly functionSource: "symtab" | "pclntab"
  readonly functionCount: number
  /** A function by its Go symbol name, e.g. "net/http.serverHandler.ServeHTTP"; decoded on first use. */
  readonly function: (name: string) => Option.Option<GoFunction>
  readonly functionNames: () => ReadonlyArray<string>
  /** A `.symtab` symbol by name, function or data object (none in a stripped binary). */
  readonly symbol: (name: string) => Option.Option<GoSymbol>
  /** A struct field offset: DWARF when the binary has it, else the shipped table for the module's version. */
  readonly field: (type: string, field: string) => Option.Option<FieldOffset>
  /**
   * The same offset, or why there is none when neither DWARF nor the shipped table has it: the module's or Go's
   * version is not covered by the table (named, with what it covers), or the field is not in the table.
   */
  readonly fieldOffset: (type: string, field: string) => Result.Result<FieldOffset, Errors.OffsetUnavailable>
  /** Why the DWARF could not be read, if it could not (field offsets then come from the table only). */
  readonly dwarfError: () => Option.Option<Errors.CorruptDwarf>
  /** A JSON-able summary (for `probescope inspect`), with the named functions decoded. */
  readonly summary: (functions?: ReadonlyArray<string>) => GoBinarySummary
}

/** JSON summary of a GoBinary; see docs/targets.md. */
export interface GoBinarySummary {
  readonly path: string
  readonly arch: "x86-64"
  readonly goVersion: string
  readonly rawGoVersion: string
  readonly mainPath: string
  readonly mainModule: { readonly path: string; readonly version: string } | null
  readonly modules: Readonly<Record<string, string>>
  readonly buildSettings: Readonly<Record<string, string>>
  readonly stripped: boolean
  readonly hasDwarf: boolean
  readonly dwarfError?: string
  readonly functionSource: "symtab" | "pclntab"
  readonly pclntabVersion?: string
  readonly functionCount: number
  readonly fields: Readonly<Record<string, Readonly<Record<string, FieldOffset>>>>
  readonly functions: Record<string, {
    readonly address: string
    readonly fileOffset: number
    readonly size: number
    readonly entryOffset: number
    readonly returnOffsets: ReadonlyArray<number>
    readonly complete: boolean
  } | null>
}

/**
 * A process and its analysed executable. Structurally a `Target` of src/probe/Target.ts, with no shared libraries
 * (`TargetAnalysis.analyzePid` reads only the executable; `Process.analyzeProcess` adds the mapped libraries).
 */
export interface GoProcess {
  readonly pid: number
  readonly language: "go"
  /** Path to attach uprobes to: the executable's path when it is the same file here, else `/proc/<pid>/exe`. */
  readonly exe: string
  /** What `/proc/<pid>/exe` links to (may be a path in another mount namespace, or end in " (deleted)"). */
  readonly exeLink: string
  /** The executable's identity, "device:inode" (what probes key links shared by its processes with). */
  readonly file?: string
  readonly binary: GoBinary
  readonly goVersion: string
  readonly modules: ReadonlyMap<string, string>
  readonly function: (name: string) => Option.Option<GoFunction>
  readonly field: (type: string, field: string) => Option.Option<FieldOffset>
  readonly symbol: (name: string) => Option.Option<GoSymbol>
  readonly stripped: boolean
  readonly libraries: ReadonlyArray<never>
}

/** Counters of the analysis cache. */
export type CacheStats = FileCache.Stats

/** The target analysis service. */
export class TargetAnalysis extends Context.Service<TargetAnalysis, {
  readonly analyzeFile: (path: string) => Effect.Effect<GoBinary, Errors.AnalysisError>
  readonly analyzePid: (pid: number) => Effect.Effect<GoProcess, Errors.ProcessAnalysisError>
  readonly cacheStats: Effect.Effect<CacheStats>
}>()("probescope/target/TargetAnalysis") {}

/** Options of `make`. */
export interface AnalysisOptions {
  /**
   * Distinct executables kept analysed (least recently used evicted), including those that failed analysis for a
   * reason that only a new file can change (not Go, unsupported arch...). Default 32 — raise it for hosts with many
   * distinct non-Go executables, or they will be re-read when rescanned.
   */
  readonly maxEntries?: number
  /** The offsets table for binaries without DWARF; default the shipped one (tests give a smaller one). */
  readonly table?: OffsetsTable
  /**
   * Struct types (as DWARF names them) to read with the standard ones in the first DWARF pass: the types the probes'
   * manifests name. A field of a type outside them is still found, by a second pass over every struct of the file
   * (hundreds of milliseconds on a large binary, on the event loop) the first time one is asked for.
   */
  readonly types?: ReadonlySet<string>
}

/** Builds the service: a memo keyed by (device, inode, mtime, size), so renamed or /proc paths share an entry. */
export const make = (options: AnalysisOptions = {}) =>
  Effect.sync(() => {
    const table = options.table ?? shipped
    const cache = FileCache.makeWith(options.maxEntries ?? 32, (path) => analyzeParts(path, table, options.types))
    const analyzeFile = Effect.fn("TargetAnalysis.analyzeFile")(function*(path: string) {
      return yield* cache.get(path)
    })

    const analyzePid = Effect.fn("TargetAnalysis.analyzePid")(function*(pid: number) {
      if (!Number.isInteger(pid) || pid <= 0) {
        return yield* new Errors.ProcessNotFound({ pid, message: `invalid pid ${pid}` })
      }
      const procExe = `/proc/${pid}/exe`
      // The link and the stats below are answered from memory (procfs, the inode cache): done on the caller's turn,
      // as the analysis cache's stat is. Awaited, each was a thread-pool round trip, and at launch the pool is busy
      // with the probes' verification: 8-10 ms between a process found and its attach.
      const exeLink = yield* Effect.try({ try: () => FsSync.readlinkSync(procExe), catch: (e) => e }).pipe(
        Effect.catch((e) => Effect.flatMap(processError(pid, e), Effect.fail))
      )
      const binary = yield* analyzeFile(procExe).pipe(
        Effect.catchTag("FileUnreadable", (e) => Effect.fail(new Errors.ProcessUnreadable({ pid, message: e.message })))
      )
      const { file, same } = yield* identify(exeLink, procExe)
      return {
        pid,
        exe: same ? exeLink : procExe,
        exeLink,
        ...(file === undefined ? {} : { file }),
        language: "go",
        binary,
        goVersion: binary.goVersion,
        modules: binary.modules,
        function: binary.function,
        field: binary.field,
        symbol: binary.symbol,
        stripped: binary.stripped,
        libraries: []
      } satisfies GoProcess
    })

    return TargetAnalysis.of({
      analyzeFile,
      analyzePid,
      cacheStats: cache.stats
    })
  })

/** The live layer. */
export const layer: Layer.Layer<TargetAnalysis> = Layer.effect(TargetAnalysis, make())

/** The live layer with options (e.g. the probes' struct types, for one DWARF pass per file). */
export const layerWith = (options: AnalysisOptions): Layer.Layer<TargetAnalysis> =>
  Layer.effect(TargetAnalysis, make(options))

/**
 * The identity ("device:inode") of the process's executable (`procExe`), and whether `path` is that same file here
 * (the link may name a path in another mount namespace). One pair of stats serves both.
 */
const identify = (path: string, procExe: string): Effect.Effect<{ readonly file: string | undefined; readonly same: boolean }> =>
  Effect.sync(() => {
    const x = statOrUndefined(path)
    const y = statOrUndefined(procExe)
    return {
      file: y === undefined ? undefined : `${y.dev}:${y.ino}`,
      same: x !== undefined && y !== undefined && x.dev === y.dev && x.ino === y.ino
    }
  })

/** A file's stat, or undefined when it cannot be had (gone, another namespace's path, no permission). */
const statOrUndefined = (path: string): FsSync.BigIntStats | undefined => {
  try {
    return FsSync.statSync(path, { bigint: true, throwIfNoEntry: false })
  } catch {
    return undefined
  }
}

const processError = (pid: number, e: unknown): Effect.Effect<Errors.ProcessNotFound | Errors.ProcessUnreadable> =>
  Effect.promise(async () => {
    const code = (e as NodeJS.ErrnoException).code
    if (code === "ENOENT" || code === "ESRCH") {
      // /proc/<pid> present but no exe link: a kernel thread, or a zombie.
      const exists = await Fs.stat(`/proc/${pid}`).then(() => true, () => false)
      if (exists) {
        return new Errors.ProcessUnreadable({
          pid,
          message: `process ${pid} has no executable (kernel thread or exited)`
        })
      }
      return new Errors.ProcessNotFound({ pid, message: `process ${pid} not found` })
    }
    return new Errors.ProcessUnreadable({ pid, message: `process ${pid}: cannot read /proc/${pid}/exe (${code ?? e})` })
  })

const tags = new Set(["NotElf", "TruncatedElf", "CorruptElf", "UnsupportedArch", "NotGo", "GoTooOld",
  "CorruptBuildInfo", "StrippedNoPclntab", "FileUnreadable"])

const isAnalysisError = (e: unknown): e is Errors.AnalysisError =>
  typeof e === "object" && e !== null && tags.has((e as { _tag?: unknown })._tag as string)

/**
 * Analyses the file at `path` reading only the parts the analysis reads (internal/Sparse.ts: about half of a Go
 * binary with DWARF). A file whose size changes while it is read is read whole, as before.
 */
export const analyzeParts = (
  path: string,
  table: OffsetsTable = shipped,
  types?: ReadonlySet<string>
): Effect.Effect<GoBinary, Errors.AnalysisError | Errors.FileUnreadable> =>
  Effect.acquireUseRelease(
    Effect.tryPromise({ try: () => openGoElf(path), catch: (e) => stageError(path, "elf", e) }),
    (file) =>
      Effect.gen(function*() {
        // The symtab is read while the thread pool inflates the DWARF. Code is read from the file when it is decoded.
        const ahead = { ...symbolsAhead(file.elf), keep: file.keep }
        const inflated = yield* Effect.promise(() => file.inflated)
        return yield* Effect.try({
          try: () => analyzeElf(path, withInflated(file.elf, inflated), table, types, ahead),
          catch: (e) => e
        })
      }),
    (file) => Effect.promise(() => file.close().catch(() => undefined))
  ).pipe(
    Effect.catch((e): Effect.Effect<GoBinary, Errors.AnalysisError | Errors.FileUnreadable> => {
      if (e instanceof Changed) {
        return Effect.tryPromise({ try: () => Fs.readFile(path), catch: FileCache.unreadable(path) }).pipe(
          Effect.flatMap((bytes) => analyzeBuffer(path, bytes, table, types))
        )
      }
      if (isAnalysisError(e)) return Effect.fail(e)
      if (typeof (e as NodeJS.ErrnoException | undefined)?.code === "string") {
        return Effect.fail(FileCache.unreadable(path)(e))
      }
      return Effect.die(e)
    })
  )

/** Analyses bytes already in memory (no cache): for tests, fuzzing, and tools. */
export const analyzeBuffer = (
  path: string,
  bytes: Buffer,
  table: OffsetsTable = shipped,
  types?: ReadonlySet<string>
): Effect.Effect<GoBinary, Errors.AnalysisError> =>
  Effect.try({ try: () => analyzeBytes(path, bytes, table, types), catch: (e) => e }).pipe(
    Effect.catch((e) => isAnalysisError(e) ? Effect.fail(e) : Effect.die(e))
  )
