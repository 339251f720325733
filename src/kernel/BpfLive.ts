/**
 * The live kernel binding: the `Bpf` service over the native libbpf addon (native/).
 *
 * Every kernel resource is tied to a Scope: objects close, links detach and ring-buffer polls stop when it closes,
 * whether by success, failure or interruption. Nothing here throws; addon failures become the typed errors of
 * Bpf.ts. If the addon is not built, `load` fails with a BpfOpenError naming the command that builds it.
 */
import * as path from "node:path"
import type { Cause } from "effect"
import { Config, Deferred, Effect, Exit, Layer, Option, Queue, Stream } from "effect"
import {
  Bpf,
  BpfConfigError,
  BpfMapError,
  BpfOpenError,
  type BpfError,
  type BpfObject,
  type CgroupSpec,
  type Link,
  type MapRef,
  type ObjectBtf,
  type ObjectSpec,
  batchOf,
  type RecordBatch,
  type RingBuffer,
  type RingBufferOptions,
  type TracepointSpec,
  type UprobeSpec
} from "./Bpf.ts"
import { type Addon, buildCommand, loadAddon, type NativeLink, type NativeObject } from "./internal/addon.ts"
import { encodeConstant } from "./internal/constants.ts"
import { attachError, loadError, mapError, mapUsageError, openError } from "./internal/errors.ts"
import { tracepointId } from "./internal/tracefs.ts"
import * as KernelFacts from "./KernelFacts.ts"

export { kernelObjects, ownBpfFds } from "./internal/kernelObjects.ts"
export type { KernelLink, KernelProgram, OwnFds } from "./internal/kernelObjects.ts"

const defaultCapacity = 65_536
const maxBatch = 4_096
/** Bytes of one batch handed to JS (the native side's reused buffer, one per ring). */
const batchBytes = 256 * 1024

/** What the live binding keeps in a MapRef's opaque handle. */
interface MapHandle {
  readonly fd: number
}

const isMapHandle = (u: unknown): u is MapHandle =>
  typeof u === "object" && u !== null && typeof (u as MapHandle).fd === "number"

const bytes = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength)

/** A loaded object, and its tp_btf programs left out because the kernel lacks their tracepoint (program -> name). */
interface Loaded {
  readonly _tag: "Loaded"
  readonly obj: NativeObject
  readonly absent: ReadonlyMap<string, string>
}

/** A load the verifier or libbpf refused, with the object's tp_btf programs (to retry without absent ones). */
interface LoadFailed {
  readonly _tag: "LoadFailed"
  readonly error: BpfError
  readonly tpBtf: ReadonlyArray<{ readonly program: string; readonly tracepoint: string }>
}

const describeUprobe = (spec: UprobeSpec): string =>
  `${spec.binary}${spec.symbol === undefined ? "" : `:${spec.symbol}`}` +
  `${spec.offset === undefined ? "" : `+0x${spec.offset.toString(16)}`}` +
  `${spec.offsets === undefined ? "" : ` (${spec.offsets.length} offsets)`}` +
  `${spec.pid === undefined ? "" : ` pid ${spec.pid}`}${spec.retprobe === true ? " (return)" : ""}`

/** Detaching waits for the kernel on a thread of its own; a failure there leaves nothing for us to do. */
const destroy = (link: NativeLink): Effect.Effect<void> =>
  Effect.promise(() => link.destroyAsync().catch(() => undefined))

const make = (addon: Addon, drainMs: number, ringBytes: number | undefined, wakeup?: number) => {
  const uprobeMulti = addon.uprobeMultiSupported()
  // The probes' objects read a few kernel struct offsets the addon takes from the kernel's BTF at their load (parsing
  // it: 5-10 ms). Read now, beside the rest of the start-up, the first probe load does not wait for it.
  addon.readKernelFacts()
  /**
   * Opens, configures and loads; closes the native object on any failure before load completes. A load that fails
   * while some tp_btf program names a tracepoint this kernel does not have (libbpf cannot resolve its
   * `btf_trace_<name>`) is tried once more without those programs: the object loads, and attaching one of them is a
   * BpfAttachError saying the kernel lacks its tracepoint — a probe of it does not apply, instead of failing to load.
   */
  const open = (spec: ObjectSpec, name: string): Effect.Effect<Loaded, BpfError> =>
    Effect.flatMap(openOnce(spec, name), (first) => {
      if (first._tag === "Loaded") return Effect.succeed(first)
      if (first.tpBtf.length === 0) return Effect.fail(first.error)
      return Effect.flatMap(KernelFacts.read(), (kernel) => {
        const absent = first.tpBtf.filter((p) => kernel.tracepoint(p.tracepoint) === false)
        if (absent.length === 0) return Effect.fail(first.error)
        const retry = { ...spec, disablePrograms: [...(spec.disablePrograms ?? []), ...absent.map((p) => p.program)] }
        return Effect.flatMap(openOnce(retry, name), (second) =>
          second._tag === "Loaded" ?
            Effect.succeed({ ...second, absent: new Map(absent.map((p) => [p.program, p.tracepoint])) }) :
            Effect.fail(second.error))
      })
    })

  const openOnce = (spec: ObjectSpec, name: string): Effect.Effect<Loaded | LoadFailed, BpfError> =>
    Effect.suspend((): Effect.Effect<Loaded | LoadFailed, BpfError> => {
      const source = spec.bytes !== undefined ? bytes(spec.bytes) : spec.file
      if (source === undefined) {
        return Effect.fail(new BpfOpenError({
          op: "open", errno: 22, code: "EINVAL", message: "open: ObjectSpec needs `file` or `bytes`", source: name
        }))
      }
      let obj: NativeObject
      try {
        obj = new addon.BpfObject(source, name)
      } catch (cause) {
        return Effect.fail(openError(spec.file ?? name, cause))
      }
      const step = configure(obj, spec, name)
      if (step !== undefined) {
        obj.close()
        return Effect.fail(step)
      }
      const tpBtf = obj.programs().flatMap((p) => {
        const m = /^tp_btf\/(.+)$/.exec(p.section)
        return p.autoload && m !== null ? [{ program: p.name, tracepoint: m[1]! }] : []
      })
      // Loaded on a thread of the addon's own: the verifier's work stays off the event loop (rings keep draining,
      // signals are handled) and objects load side by side. Interrupted, the object is closed once the load ends.
      return Effect.callback<Loaded | LoadFailed>((resume) => {
        let settled = false
        obj.loadAsync().then(
          () => {
            settled = true
            resume(Effect.succeed({ _tag: "Loaded", obj, absent: new Map() } satisfies Loaded))
          },
          (cause) => {
            settled = true
            obj.close()
            resume(Effect.succeed({ _tag: "LoadFailed", error: loadError(name, cause), tpBtf } satisfies LoadFailed))
          }
        )
        return Effect.sync(() => {
          if (!settled) obj.close()
        })
      })
    })

  const configure = (obj: NativeObject, spec: ObjectSpec, name: string) => {
    const entries = Object.entries(spec.constants ?? {})
    const sizes = obj.constants()
    if (sizes["ps_wakeup_bytes"] !== undefined && spec.constants?.["ps_wakeup_bytes"] === undefined) {
      entries.push(["ps_wakeup_bytes", BigInt(wakeupOf(spec))])
    }
    for (const [constant, value] of entries) {
      const size = sizes[constant]
      if (size === undefined) {
        return new BpfMapError({
          op: "setConstant", errno: 2, code: "ENOENT", message: `setConstant: no constant ${constant} in ${name}`,
          map: constant
        })
      }
      const encoded = encodeConstant(value, size)
      if (typeof encoded === "string") return mapUsageError("setConstant", constant, `constant ${constant} ${encoded}`)
      try {
        obj.setConstant(constant, encoded)
      } catch (cause) {
        return mapError(constant, cause)
      }
    }
    if (spec.uprobeMulti === true && uprobeMulti) {
      for (const p of obj.programs()) {
        // Entry and return uprobes alike: a uretprobe is a uprobe_multi link with the return flag.
        if (p.type !== "kprobe" || !/^u(ret)?probe(\/|$)/.test(p.section)) continue
        try {
          obj.setUprobeMulti(p.name)
        } catch (cause) {
          return loadError(name, cause)
        }
      }
    }
    for (const program of spec.disablePrograms ?? []) {
      try {
        obj.setAutoload(program, false)
      } catch (cause) {
        return loadError(name, cause)
      }
    }
    // Ring buffers: the object's own size (the probe's `mapSizes`), else the agent's (`PROBESCOPE_RINGBUF_BYTES`),
    // else what the C file says. Each is mapped into this process twice over its whole size: its bytes are RSS.
    const mapSizes: Record<string, number> = {}
    if (ringBytes !== undefined) {
      for (const m of obj.maps()) if (m.type === "ringbuf" && !m.internal) mapSizes[m.name] = ringBytes
    }
    Object.assign(mapSizes, spec.mapSizes)
    for (const [map, entries] of Object.entries(mapSizes)) {
      if (spec.reuseMaps?.[map] !== undefined) continue
      try {
        obj.setMaxEntries(map, entries)
      } catch (cause) {
        return mapError(map, cause)
      }
    }
    for (const [map, ref] of Object.entries(spec.reuseMaps ?? {})) {
      if (!isMapHandle(ref.handle)) return mapUsageError("reuseMap", map, `${ref.object}.${ref.map} is not a live map`)
      try {
        obj.reuseMap(map, ref.handle.fd)
      } catch (cause) {
        return mapError(map, cause)
      }
    }
    return undefined
  }

  const wrap = (
    obj: NativeObject,
    name: string,
    multi: boolean,
    absent: ReadonlyMap<string, string>,
    wakeupBytes: number | undefined
  ): BpfObject => {
    const programs = obj.programs().filter((p) => p.autoload).map((p) => p.name)
    const maps = obj.maps().filter((m) => !m.internal).map((m) => m.name)

    const mapOp = <A>(map: string, f: () => A): Effect.Effect<A, BpfMapError> =>
      Effect.try({ try: f, catch: (cause) => mapError(map, cause) as BpfMapError })

    const attachUprobe = Effect.fn("Bpf.attachUprobe")(function*(spec: UprobeSpec) {
      const target = describeUprobe(spec)
      const offsets = spec.offsets ?? (spec.offset === undefined ? [] : [spec.offset])
      if (spec.symbol === undefined && offsets.length === 0) {
        return yield* Effect.fail(attachError(spec.program, target, new Error("attach: set `symbol` or `offset`")))
      }
      if (multi && spec.symbol === undefined) {
        const native = yield* Effect.acquireRelease(
          Effect.tryPromise({
            try: () => obj.attachUprobeMulti(spec.program, spec.binary, offsets, spec.pid ?? 0, spec.retprobe === true),
            catch: (cause) => attachError(spec.program, target, cause, spec)
          }),
          destroy
        )
        const kind = spec.retprobe === true ? "uretprobe_multi" : "uprobe_multi"
        return { id: native.id(), program: spec.program, description: `${kind} ${target}`, kernelLinks: 1 }
      }
      // One perf-event link per offset; all of them detach (concurrently, off the JS thread) with the scope.
      const natives: Array<NativeLink> = []
      yield* Effect.addFinalizer(() => Effect.forEach(natives, destroy, { concurrency: "unbounded", discard: true }))
      for (const offset of spec.symbol !== undefined && offsets.length === 0 ? [0] : offsets) {
        const native = yield* Effect.try({
          try: () =>
            obj.attachUprobe(spec.program, spec.binary, offset, spec.pid ?? -1, spec.symbol, spec.retprobe === true),
          catch: (cause) => attachError(spec.program, target, cause, spec)
        })
        natives.push(native)
      }
      return {
        id: natives[0]!.id(),
        program: spec.program,
        description: `${spec.retprobe === true ? "uretprobe" : "uprobe"} ${target}`,
        kernelLinks: natives.length
      } satisfies Link
    })

    const attachTracepoint = Effect.fn("Bpf.attachTracepoint")(function*(spec: TracepointSpec) {
      const target = `${spec.category}:${spec.name}`
      const missing = absent.get(spec.program)
      if (missing !== undefined) {
        return yield* Effect.fail(attachError(spec.program, target, Object.assign(
          new Error(`attach: ${spec.program} was not loaded: this kernel has no tracepoint ${missing} ` +
            `(no btf_trace_${missing} in its BTF)`),
          { op: "attachTracepoint", errno: 2, code: "ENOENT", log: "" }
        )))
      }
      const info = obj.programs().find((p) => p.name === spec.program)
      let id: number | undefined
      if (info?.type === "tracepoint") {
        const found = tracepointId(spec.category, spec.name)
        if (typeof found === "string") {
          return yield* Effect.fail(attachError(spec.program, target, Object.assign(new Error(`attach: ${found}`), {
            op: "attachTracepoint", errno: 2, code: "ENOENT", log: ""
          })))
        }
        id = found
      }
      const native = yield* Effect.acquireRelease(
        Effect.try({
          try: () => obj.attachTracepoint(spec.program, spec.category, spec.name, id),
          catch: (cause) => attachError(spec.program, target, cause)
        }),
        destroy
      )
      return {
        id: native.id(),
        program: spec.program,
        description: `${info?.type ?? "tracepoint"} ${target}`,
        kernelLinks: 1
      }
    })

    const attachCgroup = Effect.fn("Bpf.attachCgroup")(function*(spec: CgroupSpec) {
      const target = `cgroup ${spec.cgroup}`
      const native = yield* Effect.acquireRelease(
        Effect.try({
          try: () => obj.attachCgroup(spec.program, spec.cgroup),
          catch: (cause) => attachError(spec.program, target, cause)
        }),
        destroy
      )
      return { id: native.id(), program: spec.program, description: target, kernelLinks: 1 } satisfies Link
    })

    const ringBuffer = Effect.fn("Bpf.ringBuffer")(function*(map: string, options?: RingBufferOptions) {
      const capacity = Math.max(1, options?.capacity ?? defaultCapacity)
      const sinks = new Set<Queue.Queue<Uint8Array, Cause.Done>>()
      const handlers = new Set<(batch: RecordBatch) => void>()
      const ended = Deferred.makeUnsafe<void>()
      // Records that arrive before anyone reads them, bounded like the stream's own buffer (copies: the native
      // batch buffer is reused).
      let pending: Array<Uint8Array> = []
      let received = 0
      let dropped = 0
      let batches = 0
      let closed = false

      /** Reads what is left (records below the wakeup threshold wait for a drain), then ends the streams. */
      const finish = (rb: { consume(): number; stop(): void }) =>
        Effect.sync(() => {
          if (closed) return
          try {
            while (rb.consume() > 0) {
              // keep draining: consume() hands over at most a few batches per call
            }
          } catch {
            // a ring that cannot be read any more has nothing left to give
          }
          rb.stop()
          closed = true
          for (const queue of sinks) Queue.endUnsafe(queue)
          sinks.clear()
          Deferred.doneUnsafe(ended, Exit.void)
        })

      // The native batch buffer is the same for every batch: one Buffer view of it, made once (a record larger
      // than the whole buffer comes alone in a buffer of its own, and gets its own view).
      let nativeData: Uint8Array | undefined
      let view: Buffer = Buffer.alloc(0)
      const batch: { data: Uint8Array; offsets: Uint32Array; count: number } = { data: view, offsets: new Uint32Array(0), count: 0 }

      const onBatch = (data: Uint8Array, offsets: Uint32Array, count: number) => {
        try {
          if (data !== nativeData) {
            nativeData = data
            view = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
          }
          received += count
          batches++
          if (handlers.size > 0) {
            batch.data = view
            batch.offsets = offsets
            batch.count = count
            for (const handler of handlers) {
              try {
                handler(batch)
              } catch {
                // A handler is not to throw; what it had not taken of this batch is lost, and counted.
                dropped += count
              }
            }
            if (sinks.size === 0) return
          }
          // Queued records outlive this call: copy the batch once, then hand out views of the copy.
          const last = 2 * (count - 1)
          const copy = Buffer.from(view.subarray(0, offsets[last]! + offsets[last + 1]!))
          const records = new Array<Uint8Array>(count)
          for (let i = 0; i < count; i++) records[i] = copy.subarray(offsets[2 * i]!, offsets[2 * i]! + offsets[2 * i + 1]!)
          if (sinks.size === 0) {
            const room = capacity - pending.length
            if (room >= count) pending.push(...records)
            else {
              pending.push(...records.slice(0, Math.max(0, room)))
              dropped += count - Math.max(0, room)
            }
            return
          }
          for (const queue of sinks) dropped += Queue.offerAllUnsafe(queue, records).length
        } catch {
          // Never let an exception reach libuv; a batch lost here is still counted.
          dropped += count
        }
      }

      const native = yield* Effect.acquireRelease(
        Effect.try({
          try: () => {
            const rb = obj.ringBuffer(map, onBatch, drainMs, maxBatch, batchBytes)
            if (wakeupBytes !== undefined) rb.setWakeupBytes(wakeupBytes)
            return rb
          },
          catch: (cause) => mapError(map, cause) as BpfMapError
        }),
        (rb) => finish(rb)
      )

      /** What arrived before the first reader, handed to a batch handler as one batch. */
      const pendingBatch = (): RecordBatch | undefined => {
        if (pending.length === 0) return undefined
        const out = batchOf(pending)
        pending = []
        return out
      }

      const forEachBatch = (handler: (batch: RecordBatch) => void): Effect.Effect<void> =>
        Effect.suspend(() => {
          const first = pendingBatch()
          if (first !== undefined) {
            try {
              handler(first)
            } catch {
              dropped += first.count
            }
          }
          if (closed) return Effect.void
          handlers.add(handler)
          return Deferred.await(ended).pipe(Effect.ensuring(Effect.sync(() => void handlers.delete(handler))))
        })

      const records = Stream.callback<Uint8Array>((queue) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            if (pending.length > 0) {
              dropped += Queue.offerAllUnsafe(queue, pending).length
              pending = []
            }
            // A ring closed before anyone subscribed still hands over what it had read.
            if (closed) Queue.endUnsafe(queue)
            else sinks.add(queue)
          }),
          () => Effect.sync(() => void sinks.delete(queue))
        ), { bufferSize: capacity, strategy: "dropping" })

      return {
        map,
        records,
        forEachBatch,
        stats: Effect.sync(() => ({ received, dropped, batches })),
        close: finish(native)
      } satisfies RingBuffer
    })

    // All structs, parsed once: the BTF of a loaded object does not change. A restricted read is cheap, not kept.
    let btf: Option.Option<ObjectBtf> | undefined
    return {
      name,
      programs,
      maps,
      btf: (structs) =>
        Effect.sync(() =>
          structs === undefined ? (btf ??= Option.fromNullishOr(obj.btf())) : Option.fromNullishOr(obj.btf(structs))
        ),
      lookup: (map, key) => mapOp(map, () => Option.fromNullishOr(obj.lookup(map, bytes(key)))).pipe(
        Effect.map(Option.map((b): Uint8Array => b))
      ),
      update: (map, key, value) => mapOp(map, () => obj.update(map, bytes(key), bytes(value))),
      delete: (map, key) => mapOp(map, () => obj.delete(map, bytes(key))),
      mapRef: (map) =>
        Effect.suspend(() => {
          const info = obj.maps().find((m) => m.name === map && !m.internal)
          return info === undefined || info.fd < 0
            ? Effect.fail(new BpfMapError({
              op: "mapRef", errno: 2, code: "ENOENT", message: `mapRef: no map ${map} in ${name}`, map
            }))
            : Effect.succeed({ object: name, map, handle: { fd: info.fd } satisfies MapHandle } satisfies MapRef)
        }),
      attachUprobe,
      attachTracepoint,
      attachCgroup,
      ringBuffer
    }
  }

  const load = Effect.fn("Bpf.load")(function*(spec: ObjectSpec) {
    const name = spec.name ?? (spec.file !== undefined ? path.basename(spec.file).replace(/\.bpf\.o$|\.o$/, "") : "bpf")
    const loaded = yield* Effect.acquireRelease(open(spec, name), (o) => Effect.sync(() => o.obj.close()))
    return wrap(loaded.obj, name, spec.uprobeMulti === true && uprobeMulti, loaded.absent, wakeupOf(spec))
  })

  /**
   * The forced-wakeup threshold the object's producers use (ps_wakeup_bytes), and its reader with them: the load's
   * own, else the agent's (PROBESCOPE_RINGBUF_WAKEUP_BYTES), else a quarter of the `events` ring (its size as loaded:
   * the probe's, else PROBESCOPE_RINGBUF_BYTES, else the C file's 1 MiB), at most DEFAULT_WAKEUP_BYTES. A quarter, so
   * that a smaller ring still forces wakeups (a threshold the ring cannot reach never would: every record would wait
   * for the drain timer, and a burst would overflow) with three quarters of it left for the records that come while
   * the reader wakes up and drains.
   */
  const wakeupOf = (spec: ObjectSpec): number => {
    const own = spec.constants?.["ps_wakeup_bytes"]
    if (typeof own === "bigint" || typeof own === "number") return Number(own)
    if (wakeup !== undefined) return wakeup
    const ring = spec.mapSizes?.["events"] ?? ringBytes
    return ring === undefined ? DEFAULT_WAKEUP_BYTES : Math.min(DEFAULT_WAKEUP_BYTES, Math.floor(ring / 4))
  }

  return Bpf.of({ load, libbpfVersion: addon.libbpfVersion(), uprobeMulti })
}

/** A Bpf whose every load fails with the reason the addon could not be loaded (and how to build it). */
const unavailable = (reason: string) =>
  Bpf.of({
    load: (spec) =>
      Effect.fail(new BpfOpenError({
        op: "addon", errno: 0, code: "ENOADDON", message: reason, source: spec.file ?? spec.name ?? "addon"
      })),
    libbpfVersion: "unavailable",
    uprobeMulti: false
  })

/**
 * The wakeup threshold of a 1 MiB ring (the C file's, bpf/include/probescope/events.h) and the most any ring gets
 * unless told: about 540 net/http server records per wakeup. 256 KiB rather than 64 KiB, with the 50 ms drain below:
 * the agent's CPU per span 0.77-0.83x at 10k spans/s over ten processes (docs/benchmarks.md, "Fewer, larger drains
 * (session 23)"): each wakeup of the agent's thread costs a context switch and cold caches on top of its records.
 */
export const DEFAULT_WAKEUP_BYTES = 256 * 1024

/**
 * Ring-buffer drain interval in ms (`PROBESCOPE_RINGBUF_DRAIN_MS`, 1–1000, default 50): the longest a record submitted
 * without a wakeup waits before JS sees it. 50 rather than 20 (and 20 rather than 5 before it): fewer, larger batches
 * cost the agent less CPU per span (docs/benchmarks.md), and a busy ring wakes the reader at the threshold anyway
 * (DEFAULT_WAKEUP_BYTES), so a filling ring does not wait for the timer. The spans wait far longer in the export
 * batch (its schedule delay, 5 s by default) than here. On an empty ring the timer backs off,
 * doubling up to 1 s (native/src/ringbuf.cc): an idle ring wakes the agent once a second. It cannot be 0: records
 * below the wakeup threshold are only ever read by this drain, so without it a quiet ring would keep them until
 * shutdown.
 */
const drainInterval: Effect.Effect<number, BpfConfigError> = Config.String("PROBESCOPE_RINGBUF_DRAIN_MS").pipe(
  Config.option,
  Effect.mapError((e) => new BpfConfigError({ variable: "PROBESCOPE_RINGBUF_DRAIN_MS", message: e.message })),
  Effect.flatMap((value) => {
    if (value._tag === "None" || value.value.trim() === "") return Effect.succeed(50)
    const text = value.value.trim()
    const n = Number(text)
    return /^\d+$/.test(text) && n >= 1 && n <= 1000 ? Effect.succeed(n) : Effect.fail(
      new BpfConfigError({
        variable: "PROBESCOPE_RINGBUF_DRAIN_MS",
        message: `Invalid PROBESCOPE_RINGBUF_DRAIN_MS=${JSON.stringify(value.value)}: expected whole milliseconds ` +
          `from 1 to 1000`
      })
    )
  })
)

/**
 * A byte count from the environment (`K` and `M` suffixes allowed), checked by `valid`; undefined when unset or
 * empty, a BpfConfigError saying what was `expected` otherwise.
 */
const bytesVariable = (
  variable: string,
  valid: (n: number) => boolean,
  expected: string
): Effect.Effect<number | undefined, BpfConfigError> =>
  Config.String(variable).pipe(
    Config.option,
    Effect.mapError((e) => new BpfConfigError({ variable, message: e.message })),
    Effect.flatMap((value) => {
      if (value._tag === "None" || value.value.trim() === "") return Effect.succeed(undefined)
      const m = /^(\d+)([KkMm]?)$/.exec(value.value.trim())
      const n = m === null ? NaN : Number(m[1]) * (m[2] === "" ? 1 : /[Kk]/.test(m[2]!) ? 1024 : 1024 * 1024)
      return Number.isSafeInteger(n) && valid(n) ? Effect.succeed(n) : Effect.fail(
        new BpfConfigError({
          variable,
          message: `Invalid ${variable}=${JSON.stringify(value.value)}: expected ${expected}`
        })
      )
    })
  )

/**
 * Ring-buffer size in bytes (`PROBESCOPE_RINGBUF_BYTES`: a power of two from 4096 to 1 GiB, with a `K`/`M` suffix
 * allowed), for every ring buffer an object is loaded with unless its probe sizes it: by default each keeps the size
 * its C file gives (1 MiB for the probes' `events`, bpf/include/probescope/events.h).
 */
const ringBufferBytes = bytesVariable(
  "PROBESCOPE_RINGBUF_BYTES",
  (n) => n >= 4096 && n <= 2 ** 30 && (n & (n - 1)) === 0,
  "a power of two from 4096 to 1073741824 bytes (K and M suffixes allowed, e.g. 512K, 4M)"
)

/**
 * The wakeup threshold of the probes' rings (`PROBESCOPE_RINGBUF_WAKEUP_BYTES`, 0 to 2^30, K and M suffixes): a record
 * that makes the unread data cross it wakes the reader at once; below it, records wait for the drain timer. 0 wakes
 * the reader on every record. Unset: a quarter of each object's ring, at most DEFAULT_WAKEUP_BYTES (`wakeupOf`). Set
 * on every object with a `ps_wakeup_bytes` constant, unless the load itself sets it.
 */
const wakeupBytes = bytesVariable(
  "PROBESCOPE_RINGBUF_WAKEUP_BYTES",
  (n) => n <= 2 ** 30,
  "bytes from 0 to 1073741824 (K and M suffixes allowed, e.g. 64K)"
)

/** The live `Bpf` layer over the native addon. Build the addon with `npm run build:native`. */
export const layer: Layer.Layer<Bpf, BpfConfigError> = Layer.effect(
  Bpf,
  Effect.gen(function*() {
    const drainMs = yield* drainInterval
    const ringBytes = yield* ringBufferBytes
    const wakeup = yield* wakeupBytes
    const addon = loadAddon()
    return typeof addon === "string" ? unavailable(addon) : make(addon, drainMs, ringBytes, wakeup)
  })
)

/**
 * The BTF structs of an object file, read without loading it (no privileges needed): what a test hands the fake
 * kernel (`FakeKernel.defineBtf`) so probe layouts are checked against the real object without root.
 */
export const readBtf = (file: string): Effect.Effect<Option.Option<ObjectBtf>, BpfError> =>
  Effect.suspend(() => {
    const addon = loadAddon()
    if (typeof addon === "string") {
      return Effect.fail(new BpfOpenError({ op: "addon", errno: 0, code: "ENOADDON", message: addon, source: file }))
    }
    return Effect.acquireUseRelease(
      Effect.try({
        try: () => new addon.BpfObject(file, path.basename(file)),
        catch: (cause) => openError(file, cause)
      }),
      (obj) => Effect.sync(() => Option.fromNullishOr(obj.btf())),
      (obj) => Effect.sync(() => obj.close())
    )
  })

/** The command that builds the native addon, for messages elsewhere (doctor). */
export const addonBuildCommand = buildCommand
