/**
 * What a probe sees of a process it attaches to. The probe API consumes this shape; target analysis produces a
 * structurally equal value without importing it (analysis knows nothing of probes), and the Manager joins the two.
 *
 * A target is a process and its executable, of one of two kinds (`language`):
 * - "go": a Go program, analysed by the Go analysis (versions, modules, functions past their prologue, every RET,
 *   struct field offsets);
 * - "native": anything else with an ELF executable — C, C++, Rust, or an interpreter such as python3 — analysed by
 *   the native ELF analysis. Its Go fields are empty: `goVersion` is "", `modules` is empty, and `function` and
 *   `field` find nothing.
 * Either kind lists the shared libraries the process has mapped (those analysis was asked for), which is what a
 * shared-library probe (`library: { sharedObject }`) attaches to.
 */
import type { Option } from "effect"

/** A Go function resolved in the binary. All offsets are file offsets, which is what uprobes take. */
export interface TargetFunction {
  readonly name: string
  /** Virtual address of the function's first instruction. */
  readonly address: bigint
  /** File offset of the first instruction. */
  readonly fileOffset: number
  /** File offset just past the stack-check prologue: attach entry uprobes here (offset 0 fires twice on growth). */
  readonly entryOffset: number
  /** File offsets of every RET instruction: return probes go on each (never uretprobes on Go). */
  readonly returnOffsets: ReadonlyArray<number>
}

/** Where a struct field's offset came from. */
export type OffsetSource = "dwarf" | "table"

export interface TargetField {
  readonly offset: number
  readonly source: OffsetSource
}

/**
 * An ELF symbol of a file (`.symtab`, else `.dynsym`): a function or a data object. `address` is the link-time
 * virtual address: in a process, add the load bias (`SharedLibrary.base` for a library or a PIE; 0 for a fixed
 * executable such as a Go program).
 */
export interface TargetSymbol {
  readonly name: string
  readonly kind: "function" | "object"
  readonly address: bigint
  readonly size: number
  /** Where its bytes are in the file (a function's first instruction); undefined when in no file-backed segment. */
  readonly fileOffset: number | undefined
  /** The symbol version (`OPENSSL_3.0.0`), when the file versions its symbols. */
  readonly version?: string
}

/** Which analysis produced the target. */
export type Language = "go" | "native"

/**
 * A shared object the process has mapped (from /proc/PID/maps), analysed. Uprobes on it go at file offsets, on
 * `path` (uprobes are keyed by inode, so any path to the file works).
 */
export interface SharedLibrary {
  /** Path to attach to: the mapped file as seen from here (through /proc/PID/root when namespaces differ). */
  readonly path: string
  /** As /proc/PID/maps names it, in the process's mount namespace. */
  readonly mappedPath: string
  /** Identity of the file, "device:inode" (as stat reports them): the key of links shared by its processes. */
  readonly file: string
  /** The file's basename, e.g. "libssl.so.3" (what a manifest's `sharedObject` matches, as does the soname). */
  readonly name: string
  readonly soname: string | undefined
  /**
   * The library's version, when its ELF exposes one: OpenSSL's version text, else the newest symbol version it
   * defines (`OPENSSL_3.0.0` -> "3.0.0", `GLIBC_2.36` -> "2.36"). Undefined when it has none.
   */
  readonly version: string | undefined
  /** Address the file's offset 0 is mapped at (the load bias of a shared object). */
  readonly base: bigint | undefined
  /** No `.symtab`: only its exported (`.dynsym`) symbols are known. */
  readonly stripped: boolean
  /** A symbol of the library: a name (`SSL_write`, the default version) or a qualified one (`memcpy@GLIBC_2.2.5`). */
  readonly symbol: (name: string) => Option.Option<TargetSymbol>
}

/**
 * How widely a process was selected, which decides how a probe's uprobes are attached:
 * - "executable": every process of its executable is wanted (`--exe`, a predicate on the binary). The probe's links
 *   are made once per file and shared by all its processes (a new process only needs its per-pid entry; the BPF side
 *   ignores pids without one), and go when the last process has gone, after a grace for restarts.
 * - "process": only this process is wanted (`--pid`). Its links carry its pid, so the kernel traps no other process
 *   that maps the file.
 */
export type Selection = "executable" | "process"

/** One analysed process. */
export interface Target {
  readonly pid: number
  /** Path of the executable to attach uprobes to (uprobes are keyed by inode, so any path to the file works). */
  readonly exe: string
  /** "process" when absent. */
  readonly selection?: Selection
  /** Identity of the executable file (e.g. "device:inode"), the key of shared links; `exe` when absent. */
  readonly file?: string
  /** "go" for a Go program; "native" for any other ELF program. */
  readonly language: Language
  /** Go toolchain version without the "go" prefix, e.g. "1.24.3"; "" for a native target. */
  readonly goVersion: string
  /** Module path to version; the standard library is "std" with the Go version. Empty for a native target. */
  readonly modules: ReadonlyMap<string, string>
  /** A Go function (none for a native target). */
  readonly function: (name: string) => Option.Option<TargetFunction>
  /** A struct field offset, e.g. `field("net/http.Request", "Method")` (none for a native target). */
  readonly field: (type: string, field: string) => Option.Option<TargetField>
  /** An ELF symbol of the executable, function or data object (e.g. Go's `runtime.firstmoduledata`). */
  readonly symbol: (name: string) => Option.Option<TargetSymbol>
  /** The executable has no `.symtab` (only exported symbols, if any, are known). */
  readonly stripped: boolean
  /**
   * A native target's executable, as the native analysis found it (what built it); absent for a Go target, and for
   * an executable without any symbol table.
   */
  readonly native?: { readonly language: "c" | "c++" | "rust" | "go" } | undefined
  /**
   * Shared objects the process has mapped, in order of first mapping, each analysed. Analysis may be limited to the
   * libraries some probe names: a library absent here is not mapped, or no probe asked for it.
   */
  readonly libraries: ReadonlyArray<SharedLibrary>
}
