/**
 * What a probe sees of a process it attaches to. The probe API consumes this shape; target analysis produces a
 * structurally equal value without importing it (analysis knows nothing of probes), and the Manager joins the two.
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
  /** Go toolchain version without the "go" prefix, e.g. "1.24.3". */
  readonly goVersion: string
  /** Module path to version; the standard library is "std" with the Go version. */
  readonly modules: ReadonlyMap<string, string>
  readonly function: (name: string) => Option.Option<TargetFunction>
  /** A struct field offset, e.g. `field("net/http.Request", "Method")`. */
  readonly field: (type: string, field: string) => Option.Option<TargetField>
}
