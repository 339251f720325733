/**
 * Discovery: a stream of processes of interest starting and exiting. It subscribes to the exec/exit tracepoints
 * first and scans /proc second, so a process starting during the scan is not missed (it may be reported twice;
 * consumers key by PID). Kernel events arrive within milliseconds, through the same batched ring buffer as probes.
 * When only given executables can match (`fileNames` of the selector), the kernel sends only the execs of files of their
 * names and the exits of processes followed: the rest of the machine's execs and exits cost the agent nothing.
 */
import { Effect, Layer, Stream } from "effect"
import * as fs from "node:fs"
import type { Scope } from "effect"
import type { BpfMapError } from "../kernel/Bpf.ts"
import * as Binary from "../probe/Binary.ts"
import type { ProbeId } from "../probe/Probe.ts"
import type { ProbeLoadError } from "../probe/ProbeError.ts"
import * as ProbeRegistry from "../probe/ProbeRegistry.ts"
import type { ProcessNotFound, ProcessUnreadable } from "../target/Errors.ts"
import type { ProcessEvent } from "./ProcessEvent.ts"
import { exited, started } from "./ProcessEvent.ts"
import { exeOf, scan } from "./ProcScan.ts"
import { ProcessWatcher } from "./ProcessWatcher.ts"
import type { Selector } from "./Selector.ts"
import { fileNames, matcher } from "./Selector.ts"

const isDefined = <A>(a: A | undefined): a is A => a !== undefined

const EXEC = 1
const EXIT = 2

/** `struct discovery_event` of bpf/discovery.bpf.c (DISCOVERY_PATH_MAX 256). */
export const DiscoveryEvent = Binary.struct({
  kind: Binary.u32,
  /** Thread-group id: the process. */
  pid: Binary.u32,
  ktimeNs: Binary.u64,
  pathLen: Binary.u32,
  _pad: Binary.pad(4),
  path: Binary.string(256, "pathLen")
})

/** What discovery uses of a kernel record. */
export interface DiscoveryRecord {
  readonly kind: number
  readonly pid: number
  readonly path: string
}

/** discovery_mode[0]: send only named execs and followed processes (bpf/discovery.bpf.c). */
const FILTER = 1
const ONE = new Uint8Array([1])
const u32 = (n: number) => new Uint8Array(new Uint32Array([n]).buffer)
/** DISCOVERY_NAME_MAX: the kernel compares a file name's first 63 bytes, NUL-padded to 64. */
const NAME_KEY_BYTES = 64

/** A discovery_names key: the name's UTF-8 bytes, cut at 63 as the kernel's string read cuts it, then NULs. */
export const nameKey = (name: string): Uint8Array => {
  const key = new Uint8Array(NAME_KEY_BYTES)
  key.set(Buffer.from(name, "utf8").subarray(0, NAME_KEY_BYTES - 1))
  return key
}

const at = DiscoveryEvent.offsets as Record<"kind" | "pid" | "pathLen" | "path", number>
const PATH_CAP = 256

/**
 * Decodes one kernel record; a record shorter than the struct is a bug in the object, and is dropped. Read by hand,
 * not through the layout's Schema: this runs for every exec and exit on the machine, most of them of no interest,
 * and an exit needs only its pid (no path string, no u64 time, no Exit per record).
 */
export const decodeRecord = (r: Uint8Array): DiscoveryRecord | undefined => {
  if (r.length < DiscoveryEvent.size) return undefined
  const view = new DataView(r.buffer, r.byteOffset, r.byteLength)
  const kind = view.getUint32(at.kind, true)
  const pid = view.getUint32(at.pid, true)
  if (kind !== EXEC) return { kind, pid, path: "" }
  const length = Math.min(view.getUint32(at.pathLen, true), PATH_CAP)
  return { kind, pid, path: Buffer.from(r.buffer, r.byteOffset + at.path, length).toString("utf8") }
}

/**
 * Subscribes first (the watcher probe's ring buffer), then checks explicit PIDs and scans /proc, so a process
 * starting during the scan is not missed (nor reported twice). The returned stream cannot fail: every error
 * happens here, up front. One subscription at a time per watcher: it reads the watcher's one ring, and sets its filter.
 */
export const subscribe = (
  selector: Selector
): Effect.Effect<
  Stream.Stream<ProcessEvent>,
  BpfMapError | ProbeLoadError | ProcessNotFound | ProcessUnreadable,
  Scope.Scope | ProbeId<typeof ProcessWatcher.name>
> =>
  Effect.gen(function*() {
    const matches = matcher(selector)
    const watcher = yield* ProcessWatcher.tag
    // Loaded when the watcher's layer was built (it attaches its tracepoints at load): this only hands it over.
    const { object } = yield* watcher.loader.load
    // The names first: from here on a named exec is remembered in the kernel, so its exit is sent once filtering
    // starts (below, after the scan), even for a process that started before.
    const names = fileNames(selector)
    if (names !== undefined) {
      for (const name of names) yield* object.update("discovery_names", nameKey(name), ONE)
    }
    const rb = yield* object.ringBuffer("events", { capacity: 65_536 })
    const explicit = yield* Effect.forEach(selector.pids, (pid) => Effect.map(exeOf(pid), (exe) => ({ pid, exe })))
    const running = (yield* scan).filter((p) => !selector.pids.includes(p.pid) && matches(p.pid, p.exe))
    const initial = [...explicit, ...running]
    if (names !== undefined) {
      // Followed before filtering starts: an exit until then is sent anyway, and after it, as one of these.
      for (const p of initial) yield* object.update("discovery_pids", Binary.pidKey(p.pid), ONE)
      yield* object.update("discovery_mode", u32(0), u32(FILTER))
    } else {
      yield* object.update("discovery_mode", u32(0), u32(0))
    }
    // pid -> exe of what was reported started; the ring may still hold the exec of a process the scan found
    const tracked = new Map<number, string>(initial.map((p) => [p.pid, p.exe]))

    const follow = rb.records.pipe(
      Stream.map(decodeRecord),
      Stream.filter(isDefined),
      Stream.map((rec): ProcessEvent | undefined => {
        if (rec.kind === EXIT) return tracked.delete(rec.pid) ? exited(rec.pid) : undefined
        if (rec.kind !== EXEC) return undefined
        // The event's own path says what was exec'd; /proc may already show a later exec of the same pid.
        const exe = resolveExe(rec.pid, rec.path)
        if (!matches(rec.pid, exe)) {
          // An exec replacing the image of a process we followed ends that process as far as probes go.
          return tracked.delete(rec.pid) ? exited(rec.pid) : undefined
        }
        if (tracked.get(rec.pid) === exe) return undefined
        tracked.set(rec.pid, exe)
        return started(rec.pid, exe)
      }),
      Stream.filter(isDefined)
    )
    return Stream.concat(Stream.fromIterable(initial.map((p) => started(p.pid, p.exe))), follow)
  })

/** `subscribe` as a stream whose subscription lives as long as the stream. */
export const events = (selector: Selector) => Stream.unwrap(subscribe(selector))

/** An absolute exec path resolved through symlinks; a relative one is relative to the caller's cwd, so ask /proc. */
const resolveExe = (pid: number, path: string): string => {
  if (path.startsWith("/")) {
    try {
      // libc's realpath: one call, where Node's JS one walks the path an lstat and a string at a time — this runs for
      // every exec on the machine (what the idle agent of a busy host spends most on).
      return fs.realpathSync.native(path)
    } catch {
      // deleted since: fall through to /proc
    }
  }
  return Effect.runSync(exeOf(pid).pipe(Effect.orElseSucceed(() => path)))
}

/** The watcher probe with a private registry: discovery's own daemon, not one the Manager attaches per target. */
export const layer = ProcessWatcher.layer.pipe(Layer.provide(ProbeRegistry.layer))

export { ProcessWatcher }
