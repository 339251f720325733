/**
 * Facts about the running kernel that decide whether a probe can apply before anything is loaded: which tracepoints
 * it has. A `tp_btf/<name>` program needs the type `btf_trace_<name>` in the kernel's BTF (libbpf resolves it when
 * the object loads), and the kernel defines one for every tracepoint it can attach a raw_tp to; so the names of the
 * BTF types starting with `btf_trace_` are the tracepoints a probe can use. They are read from the string section
 * of /sys/kernel/btf/vmlinux (and of the loaded modules' BTF next to it), without parsing the types.
 *
 * The value is structurally a `KernelFacts` of src/probe/Manifest.ts (the kernel binding knows nothing of probes).
 */
import * as Fs from "node:fs/promises"
import * as path from "node:path"
import { Effect } from "effect"

/** What is known of the kernel's tracepoints. */
export interface Tracepoints {
  /** Whether the kernel has the tracepoint; undefined when its BTF could not be read. */
  readonly tracepoint: (name: string) => boolean | undefined
  /** Where the names come from, for reasons ("/sys/kernel/btf/vmlinux"). */
  readonly source: string
  /** How many tracepoints were found (0 when the BTF could not be read). */
  readonly count: number
}

const BTF_MAGIC = 0xeb9f
const PREFIX = "btf_trace_"

/**
 * The `btf_trace_*` names of one BTF blob (vmlinux's, or a module's split BTF): its header gives where the string
 * section is; every string there is a type or member name. Undefined when the bytes are not BTF.
 */
export const tracepointNames = (bytes: Uint8Array): Array<string> | undefined => {
  if (bytes.length < 24) return undefined
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (view.getUint16(0, true) !== BTF_MAGIC) return undefined
  const headerLength = view.getUint32(4, true)
  const strOff = view.getUint32(16, true)
  const strLen = view.getUint32(20, true)
  const start = headerLength + strOff
  const end = Math.min(bytes.length, start + strLen)
  if (start >= end) return []
  const names: Array<string> = []
  const text = Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString("latin1")
  let from = 0
  for (;;) {
    const at = text.indexOf(PREFIX, from)
    if (at < 0) break
    const stop = text.indexOf("\0", at)
    // Only a whole string counts: one starting right after a NUL (or at the section's start).
    if (at === 0 || text.charCodeAt(at - 1) === 0) {
      names.push(text.slice(at + PREFIX.length, stop < 0 ? undefined : stop))
    }
    from = stop < 0 ? text.length : stop + 1
  }
  return names
}

/** Facts from a known list of tracepoint names (tests, or a kernel described elsewhere). */
export const fromNames = (names: Iterable<string>, source = "the given tracepoint list"): Tracepoints => {
  const set = new Set(names)
  return { tracepoint: (name) => set.has(name), source, count: set.size }
}

/** Facts that know nothing: every tracepoint is "unknown" (the probe's load then finds out). */
export const unknown = (source: string): Tracepoints => ({ tracepoint: () => undefined, source, count: 0 })

/**
 * The running kernel's tracepoints, from its BTF under `dir` (default /sys/kernel/btf): vmlinux and every module's.
 * A kernel without BTF (or a directory that cannot be read) gives facts that know nothing.
 */
export const read = (dir = "/sys/kernel/btf"): Effect.Effect<Tracepoints> =>
  Effect.promise(async () => {
    const vmlinux = path.join(dir, "vmlinux")
    const base = await Fs.readFile(vmlinux).catch(() => undefined)
    const names = base === undefined ? undefined : tracepointNames(base)
    if (names === undefined) return unknown(`${vmlinux} (unreadable)`)
    const modules = await Fs.readdir(dir).catch(() => [] as Array<string>)
    await Promise.all(modules.filter((m) => m !== "vmlinux").map(async (m) => {
      const bytes = await Fs.readFile(path.join(dir, m)).catch(() => undefined)
      if (bytes !== undefined) names.push(...(tracepointNames(bytes) ?? []))
    }))
    return fromNames(names, vmlinux)
  })
