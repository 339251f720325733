/**
 * A process as probes see it, whatever it runs: its executable analysed by the Go analysis when it is a Go program
 * and by the native ELF analysis otherwise (C, C++, Rust, an interpreter such as python3), and the shared
 * libraries it has mapped (from /proc/PID/maps, each analysed once per file by the native analysis, with its load
 * address). The value is structurally a `Target` of src/probe/Target.ts: analysis knows nothing of probes.
 *
 * Which libraries are analysed is the caller's choice (`AnalyzeOptions.libraries`): the agent asks only for those
 * its probes name, so a Go program that no probe of a shared library concerns costs no more than before (not even
 * a read of its maps).
 */
import * as fs from "node:fs"
import * as Fs from "node:fs/promises"
import * as path from "node:path"
import { Effect, Option } from "effect"
import * as Errors from "./Errors.ts"
import type { GoBinary, GoSymbol } from "./GoBinary.ts"
import { TargetAnalysis } from "./GoBinary.ts"
import type { FieldOffset, GoFunction } from "./GoBinary.ts"
import type { MappedObject, NativeBinary, NativeSymbol } from "./NativeBinary.ts"
import { NativeAnalysis, processMaps } from "./NativeBinary.ts"
import * as Loader from "./internal/Loader.ts"

/** A mapped shared library, analysed; structurally a `SharedLibrary` of src/probe/Target.ts. */
export interface MappedLibrary {
  /** The file as seen from here: `mappedPath` when it is the same file, else through /proc/PID/root. */
  readonly path: string
  readonly mappedPath: string
  /** "device:inode" as stat reports them. */
  readonly file: string
  readonly name: string
  readonly soname: string | undefined
  readonly version: string | undefined
  readonly base: bigint | undefined
  readonly stripped: boolean
  readonly symbol: (name: string) => Option.Option<NativeSymbol>
  /** The library's analysis (for `inspect`). */
  readonly analysis: NativeBinary
}

interface Common {
  readonly pid: number
  /** Path to attach to: the executable's path when it is the same file here, else `/proc/<pid>/exe`. */
  readonly exe: string
  /** What `/proc/<pid>/exe` links to. */
  readonly exeLink: string
  readonly file?: string
  readonly stripped: boolean
  readonly libraries: ReadonlyArray<MappedLibrary>
}

/** A Go process. */
export interface GoProcessTarget extends Common {
  readonly language: "go"
  readonly binary: GoBinary
  readonly goVersion: string
  readonly modules: ReadonlyMap<string, string>
  readonly function: (name: string) => Option.Option<GoFunction>
  readonly field: (type: string, field: string) => Option.Option<FieldOffset>
  readonly symbol: (name: string) => Option.Option<GoSymbol>
}

/** Any other process: its executable's ELF analysis, or none when it has no symbols at all. */
export interface NativeProcessTarget extends Common {
  readonly language: "native"
  /** Undefined when the executable has neither `.symtab` nor `.dynsym` (a fully stripped static binary). */
  readonly native: NativeBinary | undefined
  readonly goVersion: ""
  readonly modules: ReadonlyMap<string, string>
  readonly function: (name: string) => Option.Option<never>
  readonly field: (type: string, field: string) => Option.Option<never>
  readonly symbol: (name: string) => Option.Option<NativeSymbol>
}

export type ProcessTarget = GoProcessTarget | NativeProcessTarget

/** What to analyse besides the executable. */
export interface AnalyzeOptions {
  /**
   * Which mapped libraries to analyse, by the name they are mapped under (e.g. `new Set(["libssl.so.3"])`; a file
   * named after it plus a version, libz.so.1.2.13 for libz.so.1, counts too); default "all". With an empty set,
   * /proc/PID/maps is not even read.
   */
  readonly libraries?: ReadonlySet<string> | "all"
}

const none = () => Option.none()

/**
 * The library's version when its ELF exposes one: an embedded version text (OpenSSL's), else OpenSSL's or glibc's
 * newest symbol version, else the newest numeric symbol version of its most used prefix (`ZLIB_1.2.9` -> "1.2.9").
 */
export const libraryVersion = (binary: NativeBinary): string | undefined => {
  const text = binary.libraries.find((l) => l.source === "version-text")
  if (text !== undefined) return text.version
  const known = binary.libraries[0]
  if (known !== undefined) return known.version
  const groups = new Map<string, Array<string>>()
  for (const v of binary.versions) {
    const m = /^([A-Za-z][\w+]*?)_(\d+(?:\.\d+)*)$/.exec(v)
    if (m === null) continue
    const list = groups.get(m[1]!) ?? []
    list.push(m[2]!)
    groups.set(m[1]!, list)
  }
  let best: Array<string> | undefined
  for (const list of groups.values()) if (best === undefined || list.length > best.length) best = list
  if (best === undefined) return undefined
  const parts = (v: string) => v.split(".").map(Number)
  return [...best].sort((a, b) => {
    const x = parts(a)
    const y = parts(b)
    for (let i = 0; i < Math.max(x.length, y.length); i++) {
      if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0)
    }
    return 0
  }).at(-1)
}

const statId = (p: string) =>
  Effect.promise(() => Fs.stat(p, { bigint: true }).then((s) => `${s.dev}:${s.ino}`, () => undefined))

/**
 * The path that names the very file a process mapped: its path through /proc/PID/root, unless the file was deleted
 * or replaced since (an upgraded libssl): that path would name the new file, so the mapping's own link in
 * /proc/PID/map_files is used (root only, as attaching is).
 */
const mappedFile = (pid: number, object: MappedObject): string => {
  const first = object.executable[0]
  return object.deleted && first !== undefined ?
    `/proc/${pid}/map_files/${first.start.toString(16)}-${first.end.toString(16)}` :
    object.procPath
}

/** One mapped object analysed as a library; undefined (and a debug line) when it cannot be. */
const analyzeLibrary = (pid: number) => (object: MappedObject) =>
  Effect.gen(function*() {
    const native = yield* NativeAnalysis
    const file = mappedFile(pid, object)
    const [here, there] = yield* Effect.all([statId(object.path), statId(file)], { concurrency: 2 })
    if (there === undefined) return undefined
    const analysis = yield* native.analyzeFile(file).pipe(
      Effect.catch((e) =>
        Effect.as(Effect.logDebug(`${object.path}: not analysed as a library: ${e.message}`), undefined)
      )
    )
    if (analysis === undefined) return undefined
    const library: MappedLibrary = {
      path: here === there && !object.deleted ? object.path : file,
      mappedPath: object.path,
      file: there,
      name: path.basename(object.path),
      soname: analysis.soname,
      version: libraryVersion(analysis),
      base: object.base,
      stripped: analysis.stripped,
      symbol: analysis.symbol,
      analysis
    }
    return library
  })

/** How long a process still being loaded is waited for, at most, and its first and longest pause between looks. */
const LOADER_WAIT_MS = 100
const LOADER_FIRST_POLL_MS = 1
const LOADER_LONGEST_POLL_MS = 16

/** The dynamic loader's mapping (ld-linux-x86-64.so.2, ld-musl-x86_64.so.1), which the kernel maps at exec. */
const isLoader = (o: MappedObject) => /^ld-(linux|musl)[^/]*\.so/.test(path.basename(o.path))

/** How old a process may be and still be waited for. */
const YOUNG_SECONDS = 5

/** Clock ticks per second of /proc's times (USER_HZ, 100 on every Linux ABI this runs on). */
const USER_HZ = 100

/**
 * A process started less than YOUNG_SECONDS ago (its loader may still be at work); false when unreadable. A loader
 * takes milliseconds; the margin is for a loaded machine, and costs only a process of that age whose wanted library,
 * though in its closure, is mapped under another name (then up to LOADER_WAIT_MS once).
 */
const young = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // Field 22, starttime; counted after the command's closing parenthesis, as the command may hold spaces.
    const started = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]) / USER_HZ
    const uptime = Number(fs.readFileSync("/proc/uptime", "utf8").split(" ")[0])
    return uptime - started < YOUNG_SECONDS
  } catch {
    return false
  }
}

/** The picked objects' names, as `wanted` names them. */
const namesOf = (picked: ReadonlyArray<MappedObject>, wanted: ReadonlySet<string>): Set<string> =>
  new Set([...wanted].filter((w) => picked.some((o) => Loader.isNamed(path.basename(o.path), w))))

/** The libraries a process maps (its executable aside) that `wanted` picks, analysed. */
export const mappedLibraries = (
  pid: number,
  exeFile: string | undefined,
  wanted: ReadonlySet<string> | "all"
): Effect.Effect<Array<MappedLibrary>, Errors.MapsError, NativeAnalysis> =>
  Effect.gen(function*() {
    if (wanted !== "all" && wanted.size === 0) return []
    const pick = (objects: ReadonlyArray<MappedObject>) =>
      objects.filter((o) => {
        const name = path.basename(o.path)
        // The executable maps itself too: its inode is the one /proc/PID/exe has.
        if (exeFile !== undefined && exeFile.endsWith(`:${o.inode}`)) return false
        // The file is often the soname's target (libz.so.1 -> libz.so.1.2.13): its basename extends the name.
        return wanted === "all" || [...wanted].some((w) => Loader.isNamed(name, w))
      })
    const objects = yield* processMaps(pid)
    let picked = pick(objects)
    // A process found at exec (as discovery finds every new one) has mapped its executable and its loader; the
    // libraries follow in the next milliseconds. A wanted library the program needs (in its DT_NEEDED closure) and
    // not mapped yet is waited for, so a libssl is not missed for having been looked for too early.
    if (wanted !== "all") {
      const missing = [...wanted].filter((w) => !namesOf(picked, wanted).has(w))
      const expected = missing.length > 0 && objects.some(isLoader) && young(pid)
        ? Loader.willMap(pid, missing)
        : []
      let pause = LOADER_FIRST_POLL_MS
      const deadline = Date.now() + LOADER_WAIT_MS
      while (expected.some((w) => !namesOf(picked, wanted).has(w)) && Date.now() < deadline) {
        yield* Effect.sleep(pause)
        pause = Math.min(pause * 2, LOADER_LONGEST_POLL_MS)
        const again = yield* processMaps(pid).pipe(Effect.option)
        if (Option.isNone(again)) break
        picked = pick(again.value)
      }
    }
    const analysed = yield* Effect.forEach(picked, analyzeLibrary(pid), { concurrency: 4 })
    return analysed.filter((l): l is MappedLibrary => l !== undefined)
  })

/**
 * Analyses a process: Go when its executable is a Go program (what `TargetAnalysis.analyzePid` finds, unchanged),
 * native otherwise; then the mapped libraries `options` asks for. A process whose maps cannot be read (it exited)
 * fails like its executable would.
 */
export const analyzeProcess = Effect.fn("ProcessTarget.analyzeProcess")(function*(
  pid: number,
  options: AnalyzeOptions = {}
) {
  const go = yield* TargetAnalysis
  const wanted = options.libraries ?? "all"
  const goProcess = yield* go.analyzePid(pid).pipe(
    Effect.map(Option.some),
    Effect.catchTag("NotGo", () => Effect.succeed(Option.none()))
  )
  if (Option.isSome(goProcess)) {
    const p = goProcess.value
    // A Go process that exited before its maps were read is still a Go target without libraries: its executable's
    // analysis stands (cached per file), so a short-lived process's file-wide links and entry are still made, and
    // its successors are served from their first instruction.
    const libraries = yield* mappedLibraries(pid, p.file, wanted).pipe(
      Effect.catch(() => Effect.succeed([] as Array<MappedLibrary>))
    )
    const target: GoProcessTarget = { ...p, language: "go", libraries }
    return target as ProcessTarget
  }
  const native = yield* NativeAnalysis
  const procExe = `/proc/${pid}/exe`
  // Go's analysis read this link a moment ago: failing now, the process has just gone (or is out of reach).
  const exeLink = yield* Effect.tryPromise({ try: () => Fs.readlink(procExe), catch: (e) => e }).pipe(
    Effect.catch((e) => {
      const code = (e as NodeJS.ErrnoException).code
      return Effect.fail(
        code === "ENOENT" || code === "ESRCH" ?
          new Errors.ProcessNotFound({ pid, message: `process ${pid} not found` }) :
          new Errors.ProcessUnreadable({ pid, message: `process ${pid}: cannot read ${procExe} (${code ?? e})` })
      )
    })
  )
  const binary = yield* native.analyzeFile(procExe).pipe(
    Effect.map((b): NativeBinary | undefined => b),
    Effect.catchTag("NoSymbols", () => Effect.succeed(undefined)),
    Effect.catchTag("FileUnreadable", (e) => Effect.fail(new Errors.ProcessUnreadable({ pid, message: e.message })))
  )
  const [here, file] = yield* Effect.all([statId(exeLink), statId(procExe)], { concurrency: 2 })
  const libraries = yield* mappedLibraries(pid, file, wanted)
  const target: NativeProcessTarget = {
    pid,
    exe: here !== undefined && here === file ? exeLink : procExe,
    exeLink,
    ...(file === undefined ? {} : { file }),
    language: "native",
    native: binary,
    goVersion: "",
    modules: new Map(),
    function: none,
    field: none,
    symbol: binary?.symbol ?? none,
    stripped: binary?.stripped ?? true,
    libraries
  }
  return target as ProcessTarget
})


/**
 * The libraries an executable needs (DT_NEEDED, direct ones only) that `wanted` picks, found in the default library
 * directories and analysed: what a process of it would map at start (`base` unknown: nothing is mapped yet).
 */
export const neededLibraries = (
  needed: ReadonlyArray<string>,
  wanted: ReadonlySet<string> | "all"
): Effect.Effect<Array<MappedLibrary>, never, NativeAnalysis> =>
  Effect.gen(function*() {
    const native = yield* NativeAnalysis
    const out: Array<MappedLibrary> = []
    for (const name of needed) {
      if (wanted !== "all" && !wanted.has(name)) continue
      for (const dir of Loader.LIBRARY_DIRS) {
        const file = path.join(dir, name)
        const id = yield* statId(file)
        if (id === undefined) continue
        const analysis = yield* native.analyzeFile(file).pipe(Effect.option)
        if (Option.isNone(analysis)) continue
        const a = analysis.value
        out.push({
          path: file,
          mappedPath: file,
          file: id,
          name,
          soname: a.soname,
          version: libraryVersion(a),
          base: undefined,
          stripped: a.stripped,
          symbol: a.symbol,
          analysis: a
        })
        break
      }
    }
    return out
  })

/**
 * An executable on disk (not a process), for `inspect <binary>`: Go or native. Nothing is mapped, so its libraries
 * are those it needs (DT_NEEDED) that `options.libraries` picks, as the loader would find them.
 */
export const analyzeExecutable = Effect.fn("ProcessTarget.analyzeExecutable")(function*(
  file: string,
  options: AnalyzeOptions = {}
) {
  const go = yield* TargetAnalysis
  const native = yield* NativeAnalysis
  const goBinary = yield* go.analyzeFile(file).pipe(
    Effect.map(Option.some),
    Effect.catchTag("NotGo", () => Effect.succeed(Option.none()))
  )
  const id = yield* statId(file)
  const common = { pid: 0, exe: file, exeLink: file, ...(id === undefined ? {} : { file: id }), libraries: [] }
  if (Option.isSome(goBinary)) {
    const b = goBinary.value
    const target: GoProcessTarget = {
      ...common,
      language: "go",
      binary: b,
      goVersion: b.goVersion,
      modules: b.modules,
      function: b.function,
      field: b.field,
      symbol: b.symbol,
      stripped: b.stripped
    }
    return target as ProcessTarget
  }
  const binary = yield* native.analyzeFile(file).pipe(
    Effect.map((b): NativeBinary | undefined => b),
    Effect.catchTag("NoSymbols", () => Effect.succeed(undefined))
  )
  const libraries = binary === undefined ? [] : yield* neededLibraries(binary.needed, options.libraries ?? "all")
  const target: NativeProcessTarget = {
    ...common,
    libraries,
    language: "native",
    native: binary,
    goVersion: "",
    modules: new Map(),
    function: none,
    field: none,
    symbol: binary?.symbol ?? none,
    stripped: binary?.stripped ?? true
  }
  return target as ProcessTarget
})
