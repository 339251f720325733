/**
 * The native addon's JS surface (native/src/*.cc) and its loader. Everything here throws; BpfLive turns throws into
 * typed errors.
 */
import { createRequire } from "node:module"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { ObjectBtf } from "../Bpf.ts"

/** An error thrown by the addon: `op`, positive `errno`, its symbolic `code`, and libbpf's log since the op began. */
export interface NativeError extends Error {
  readonly op: string
  readonly errno: number
  readonly code: string
  readonly log: string
}

export interface NativeProgram {
  readonly name: string
  readonly section: string
  readonly type: string
  readonly autoload: boolean
  readonly fd: number
  readonly id: number
}

export interface NativeMap {
  readonly name: string
  readonly type: string
  readonly keySize: number
  readonly valueSize: number
  readonly maxEntries: number
  readonly internal: boolean
  readonly fd: number
}

export interface NativeLink {
  destroy(): void
  /** Unregisters on a thread of its own; the promise settles when the kernel is done. */
  destroyAsync(): Promise<void>
  id(): number
  fd(): number
}

/** Called once per drained batch: record i is `data.subarray(offsets[2i], offsets[2i] + offsets[2i + 1])`. */
/** One drained batch: `data` and `offsets` are reused for the next batch, valid only during the call. */
export type BatchCallback = (data: Uint8Array, offsets: Uint32Array, count: number) => void

export interface NativeRingBuffer {
  stop(): void
  /** Drains synchronously; returns the number of records handed to the callback. */
  consume(): number
  stats(): NativeRingStats
  /**
   * The producer's forced-wakeup threshold (its `ps_wakeup_bytes`; 256 KiB unless told): a kernel wakeup finding that
   * much unread data is drained at once, any other waits for the drain timer. Infinity: never at once.
   */
  setWakeupBytes(bytes: number): void
}

export interface NativeRingStats {
  readonly received: number
  readonly batches: number
  readonly callbackErrors: number
  /**
   * The drain timer's interval now: the base while records come, doubling on each empty drain up to 1 s; 0 for a
   * ring with no ticks (wakeup threshold 0: each record wakes a caught-up reader, e.g. discovery's).
   */
  readonly drainMs: number
  /** Drains the timer ran. */
  readonly timerWakeups: number
  /** Kernel wakeups of the reader: the forced wakeup at the threshold. */
  readonly ringWakeups: number
}

export interface NativeObject {
  constants(): Record<string, number>
  setConstant(name: string, value: Buffer): void
  setAutoload(program: string, enabled: boolean): void
  reuseMap(map: string, fd: number): void
  setMaxEntries(map: string, entries: number): void
  /** The same load on a thread of the addon's own; the object is not to be used until it settles. */
  loadAsync(): Promise<void>
  load(): void
  programs(): Array<NativeProgram>
  maps(): Array<NativeMap>
  lookup(map: string, key: Buffer): Buffer | null
  update(map: string, key: Buffer, value: Buffer, flags?: number): void
  delete(map: string, key: Buffer): boolean
  /** `retprobe`: a uretprobe (fires when the function returns). */
  attachUprobe(
    program: string,
    binary: string,
    offset: number,
    pid: number,
    symbol?: string,
    retprobe?: boolean
  ): NativeLink
  /** Before load: the program is attached through uprobe_multi links only. */
  setUprobeMulti(program: string): void
  /** One uprobe_multi link, created off the JS thread; pid <= 0 means every process that maps the file. */
  attachUprobeMulti(
    program: string,
    binary: string,
    offsets: ReadonlyArray<number>,
    pid: number,
    retprobe?: boolean
  ): Promise<NativeLink>
  attachTracepoint(program: string, category: string, name: string, tracepointId?: number): NativeLink
  /** A cgroup program (e.g. sock_ops) attached to a cgroup v2 directory as a BPF link. */
  attachCgroup(program: string, cgroupDir: string): NativeLink
  testRun(program: string, ctx: Buffer | null, repeat: number): { readonly retval: number; readonly duration: number }
  ringBuffer(map: string, callback: BatchCallback, drainMs: number, maxBatch: number, batchBytes?: number): NativeRingBuffer
  /** The named structs of the object's BTF and the struct each map's value is; null without BTF. Opened is enough. */
  btf(structs?: ReadonlyArray<string>): ObjectBtf | null
  close(): void
}

export interface Addon {
  readonly BpfObject: new(source: string | Buffer, name: string) => NativeObject
  libbpfVersion(): string
  errnoName(errno: number): string
  /** Whether this kernel creates uprobe_multi links (probed once). */
  uprobeMultiSupported(): boolean
  /** The BPF_LINK_CREATE attr layout the addon writes for uprobe_multi, checked against BTF in tests. */
  uprobeMultiLayout(): { readonly attachType: number; readonly fields: Readonly<Record<string, number>> }
  /**
   * Starts reading, on a thread of its own, the kernel BTF facts objects get at load (the offsets of `PS_TARGETS`'
   * lookup by file, native/src/kernel_btf.cc): read once per process, by this or by the first load needing them.
   */
  readKernelFacts(): void
  /**
   * Every thread but a new guard thread to SCHED_IDLE; the guard (SCHED_OTHER) reads the main thread `mainTid`'s
   * schedstat every `intervalMs` and, when it waited more than `behind` of that time, puts every thread back at
   * SCHED_OTHER and `usualNice` and ends (native/src/sched.cc). Throws the errno (every thread back at SCHED_OTHER).
   */
  schedGiveWay(mainTid: number, behind: number, intervalMs: number, usualNice: number): void
  /** Stops the guard; every thread to SCHED_OTHER at `usualNice`. Throws the errno. */
  schedTakeBack(usualNice: number): void
  /** The sample at which the guard took the usual policy back, once (reading clears it); undefined when it has not. */
  schedGuardFired(): { readonly waitedNs: number; readonly wallNs: number } | undefined
}

/**
 * Directory holding native/binding.gyp; the built addon is <dir>/build/Release/probescope_bpf.node.
 * `PROBESCOPE_NATIVE_DIR` overrides it (a packaged install, or a test of the not-built path).
 */
export const nativeDir = (): string =>
  process.env["PROBESCOPE_NATIVE_DIR"] ??
    path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "native")

/** The command that builds the addon, quoted in the error when it is missing. */
export const buildCommand = "npm rebuild probescope (installed) or npm run build:native (in a checkout)"

let cached: { readonly addon: Addon } | { readonly error: string } | undefined

/** Loads the addon once; returns the reason as a string when it is not built or cannot be loaded. */
export const loadAddon = (): Addon | string => {
  if (cached === undefined) {
    try {
      const require = createRequire(import.meta.url)
      const bindings = require("bindings") as (opts: { bindings: string; module_root: string }) => Addon
      cached = { addon: bindings({ bindings: "probescope_bpf", module_root: nativeDir() }) }
    } catch (cause) {
      const reason = cause instanceof Error ? cause.message.split("\n")[0] : String(cause)
      cached = { error: `the probescope native addon could not be loaded (${reason}); build it with \`${buildCommand}\`` }
    }
  }
  return "addon" in cached ? cached.addon : cached.error
}

/** True when `u` looks like an error thrown by the addon. */
export const isNativeError = (u: unknown): u is NativeError =>
  u instanceof Error && typeof (u as Partial<NativeError>).errno === "number" &&
  typeof (u as Partial<NativeError>).code === "string"
