/**
 * Discovery: a stream of processes of interest starting and exiting. It subscribes to the exec/exit tracepoints
 * first and scans /proc second, so a process starting during the scan is not missed (it may be reported twice;
 * consumers key by PID). Kernel events arrive within milliseconds, through the same batched ring buffer as probes.
 */
import { Effect, Schema, Stream } from "effect"
import * as fs from "node:fs"
import type { BpfError } from "../kernel/Bpf.ts"
import { Bpf } from "../kernel/Bpf.ts"
import { bpfObjectPath } from "../kernel/Objects.ts"
import type { ProcessEvent } from "./ProcessEvent.ts"
import { exited, started } from "./ProcessEvent.ts"
import type { ProcessUnreadable } from "./ProcScan.ts"
import { exeOf, ProcessNotFound, scan } from "./ProcScan.ts"
import type { Selector } from "./Selector.ts"
import { matcher, watchesNewProcesses } from "./Selector.ts"

const isDefined = <A>(a: A | undefined): a is A => a !== undefined

const EXEC = 1
const EXIT = 2

/** `struct discovery_event` of bpf/discovery.bpf.c. */
const DiscoveryRecord = Schema.Struct({ kind: Schema.Number, pid: Schema.Number, path: Schema.String })
type DiscoveryRecord = typeof DiscoveryRecord.Type

const PATH_OFFSET = 24
const decoder = new TextDecoder()

/** Decodes one kernel record; a record of the wrong size is a bug in the object, reported as a decode failure. */
export const decodeRecord = (r: Uint8Array): DiscoveryRecord | undefined => {
  if (r.byteLength < PATH_OFFSET) return undefined
  const v = new DataView(r.buffer, r.byteOffset, r.byteLength)
  const len = Math.min(v.getUint32(16, true), r.byteLength - PATH_OFFSET)
  return {
    kind: v.getUint32(0, true),
    pid: v.getUint32(4, true),
    path: decoder.decode(r.subarray(PATH_OFFSET, PATH_OFFSET + len))
  }
}

/**
 * Start/exit events for the processes the selector picks. An explicitly requested PID that does not exist fails
 * the stream with ProcessNotFound before anything else happens.
 */
export const events = (
  selector: Selector
): Stream.Stream<ProcessEvent, BpfError | ProcessNotFound | ProcessUnreadable, Bpf> =>
  Stream.unwrap(Effect.gen(function*() {
    const matches = matcher(selector)
    const explicit = yield* Effect.forEach(selector.pids, (pid) => Effect.map(exeOf(pid), (exe) => started(pid, exe)))

    const live = watchesNewProcesses(selector) || selector.pids.length > 0
      ? yield* kernelEvents
      : Stream.empty
    const running = (yield* scan).filter((p) => !selector.pids.includes(p.pid) && matches(p.pid, p.exe))
    const tracked = new Set<number>([...selector.pids, ...running.map((p) => p.pid)])

    const follow = live.pipe(
      Stream.map((rec): ProcessEvent | undefined => {
        if (rec.kind === EXIT) {
          return tracked.delete(rec.pid) ? exited(rec.pid) : undefined
        }
        if (rec.kind !== EXEC) return undefined
        // The event's own path says what was exec'd; /proc may already show a later exec of the same pid.
        const exe = resolveExe(rec.pid, rec.path)
        if (!matches(rec.pid, exe)) {
          // An exec replacing the image of a process we followed ends that process as far as probes go.
          return tracked.delete(rec.pid) ? exited(rec.pid) : undefined
        }
        tracked.add(rec.pid)
        return started(rec.pid, exe)
      }),
      Stream.filter(isDefined)
    )
    return Stream.concat(Stream.fromIterable([...explicit, ...running.map((p) => started(p.pid, p.exe))]), follow)
  }))

/** An absolute exec path resolved through symlinks; a relative one is relative to the caller's cwd, so ask /proc. */
const resolveExe = (pid: number, path: string): string => {
  if (path.startsWith("/")) {
    try {
      return fs.realpathSync(path)
    } catch {
      // deleted since: fall through to /proc
    }
  }
  return Effect.runSync(exeOf(pid).pipe(Effect.orElseSucceed(() => path)))
}

/** The exec/exit tracepoint records, decoded; the object and links live as long as the stream. */
const kernelEvents = Effect.gen(function*() {
  const bpf = yield* Bpf
  const obj = yield* bpf.load({ file: bpfObjectPath("discovery"), name: "discovery" })
  yield* obj.attachTracepoint({ program: "discovery_exec", category: "sched", name: "sched_process_exec" })
  yield* obj.attachTracepoint({ program: "discovery_exit", category: "sched", name: "sched_process_exit" })
  const rb = yield* obj.ringBuffer("events", { capacity: 65_536 })
  return rb.records.pipe(Stream.map(decodeRecord), Stream.filter(isDefined))
})

export { ProcessNotFound }
