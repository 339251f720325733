/**
 * An in-memory kernel: `layer` provides `Bpf` plus `FakeKernel`, its control service. Needs no root.
 *
 * It records every load (with constants and reused maps), attach, detach, map write, ring-buffer subscription and
 * close, in order; keeps maps in memory (an object's maps are created on first use unless the object was `define`d);
 * lets a test push ring-buffer records and count drops (consumer-side and kernel-side in `ps_stats`); and injects
 * failures: a load failing with a verifier log, an attach of a given program/pid failing with a typed error, or an
 * attach that never completes (to test interruption). Operations on a closed object fail with BpfMapError EBADF, so
 * release-order bugs show up as errors.
 *
 * BTF: an object has none unless the test gives it (`defineBtf`, e.g. with `BpfLive.readBtf` of the real object file),
 * so probes' layout checks are skipped by default and run against exactly what the test supplies. A reused map whose
 * reference the fake kernel did not make (a mocked probe's `mapRef`) becomes an in-memory map shared by its name.
 */
import type { Cause } from "effect"
import { Context, Effect, Layer, Option, Queue, Stream } from "effect"
import type * as Scope from "effect/Scope"
import type {
  BpfError,
  BpfObject,
  CgroupSpec,
  ConstantValue,
  Link,
  MapRef,
  ObjectBtf,
  ObjectSpec,
  RingBuffer,
  RingBufferStats,
  TracepointSpec,
  UprobeSpec
} from "./Bpf.ts"
import { batchOf, Bpf, BpfAttachError, BpfLoadError, BpfMapError, BpfPermissionError } from "./Bpf.ts"

/** Something the fake kernel did, in order. */
export type KernelEvent =
  | {
    readonly _tag: "Load"
    readonly object: string
    readonly file: string | undefined
    readonly constants: Readonly<Record<string, ConstantValue>>
    /** This object's map name to "owner/map" of the reused map. */
    readonly reusedMaps: Readonly<Record<string, string>>
    readonly disablePrograms: ReadonlyArray<string>
    /** Sizes given to maps before load, by map name. */
    readonly mapSizes: Readonly<Record<string, number>>
  }
  | {
    readonly _tag: "Attach"
    readonly object: string
    readonly link: number
    readonly program: string
    readonly kind: "uprobe" | "tracepoint" | "cgroup"
    readonly binary?: string
    readonly offset?: number
    readonly offsets?: ReadonlyArray<number>
    readonly symbol?: string
    readonly pid?: number
    /** A uretprobe (present only when true). */
    readonly retprobe?: true
    readonly tracepoint?: string
  }
  | {
    readonly _tag: "Detach"
    readonly object: string
    readonly link: number
    readonly program: string
    readonly pid?: number
  }
  | { readonly _tag: "MapUpdate"; readonly object: string; readonly map: string; readonly key: string }
  | { readonly _tag: "MapDelete"; readonly object: string; readonly map: string; readonly key: string }
  | { readonly _tag: "Subscribe"; readonly object: string; readonly map: string }
  | { readonly _tag: "Unsubscribe"; readonly object: string; readonly map: string }
  | { readonly _tag: "Close"; readonly object: string }

/** Which attaches an injected failure applies to; absent fields match anything. */
export interface AttachMatch {
  readonly object?: string
  readonly program?: string
  readonly pid?: number
  readonly binary?: string
  readonly offset?: number
  readonly symbol?: string
}

/** Which loads an injected failure applies to (object name or file). */
export interface LoadMatch {
  readonly object?: string
  readonly file?: string
}

/** A strict object: only these programs, maps and constants exist (unknown ones fail like libbpf would). */
export interface ObjectDefinition {
  readonly programs: ReadonlyArray<string>
  readonly maps: ReadonlyArray<string>
  readonly constants?: ReadonlyArray<string>
}

/** A live link as the fake kernel sees it. */
export interface FakeLink {
  readonly id: number
  readonly object: string
  readonly program: string
  readonly pid?: number
  readonly offset?: number
  /** A many-offset link (like uprobe_multi): every offset it carries. */
  readonly offsets?: ReadonlyArray<number>
  /** The file a uprobe link is on. */
  readonly binary?: string
  /** A uretprobe (present only when true). */
  readonly retprobe?: true
  /** A tracepoint link: "category/name". */
  readonly tracepoint?: string
}

/** Number of CPUs the fake per-CPU maps (ps_stats) report. */
export const CPUS = 2

/** Control of the fake kernel. */
export class FakeKernel extends Context.Service<FakeKernel, {
  /** Everything that happened, in order. */
  readonly events: Effect.Effect<ReadonlyArray<KernelEvent>>
  readonly clearEvents: Effect.Effect<void>
  /** Make loads of this object name (or file) strict. */
  readonly define: (nameOrFile: string, definition: ObjectDefinition) => Effect.Effect<void>
  /**
   * Give loads of this object name (or file) BTF, so the probe's layouts are checked against it at load (e.g. the
   * real object's, from `BpfLive.readBtf`). Without it an object has no BTF and the check is skipped.
   */
  readonly defineBtf: (nameOrFile: string, btf: ObjectBtf) => Effect.Effect<void>
  /**
   * Write records into an object's ring buffer (default map "events"), counted as submitted in `ps_stats`.
   * Returns how many the consumer dropped (its queue was full). Records pushed before a subscription wait for it.
   */
  readonly push: (object: string, records: ReadonlyArray<Uint8Array>, map?: string) => Effect.Effect<number>
  /** Count records the BPF side could not fit (ps_stats[PS_STAT_DROPPED]). */
  readonly dropInKernel: (object: string, count: number) => Effect.Effect<void>
  /** The entries of an object's map, keyed by the key's hex. */
  readonly map: (object: string, map: string) => Effect.Effect<ReadonlyMap<string, Uint8Array>>
  readonly failLoad: (match: LoadMatch, error: BpfError) => Effect.Effect<void>
  /** The load of a matching object fails with a BpfLoadError carrying this verifier log. */
  readonly failVerifier: (match: LoadMatch, verifierLog: string) => Effect.Effect<void>
  readonly failAttach: (match: AttachMatch, error: BpfAttachError | BpfPermissionError) => Effect.Effect<void>
  /** Matching attaches never complete (until interrupted). */
  readonly hangAttach: (match: AttachMatch) => Effect.Effect<void>
  readonly clearFailures: Effect.Effect<void>
  /** Objects loaded and not closed, in load order. */
  readonly liveObjects: Effect.Effect<ReadonlyArray<string>>
  readonly liveLinks: Effect.Effect<ReadonlyArray<FakeLink>>
}>()("probescope/kernel/FakeKernel") {}

interface FakeMap {
  readonly owner: string
  readonly name: string
  readonly entries: Map<string, Uint8Array>
}

interface Ring {
  pending: Array<Uint8Array>
  queue: Queue.Queue<Uint8Array, Cause.Done> | undefined
  received: number
  dropped: number
  batches: number
}

interface FakeObject {
  readonly name: string
  readonly maps: Map<string, FakeMap>
  readonly rings: Map<string, Ring>
  readonly definition: ObjectDefinition | undefined
  readonly btf: ObjectBtf | undefined
  closed: boolean
}

const isFakeMap = (u: unknown): u is FakeMap =>
  typeof u === "object" && u !== null && "owner" in u && "entries" in u && u.entries instanceof Map

const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex")

const basename = (file: string): string => (file.split("/").pop() ?? file).replace(/\.bpf\.o$|\.o$/, "")

const matchesAttach = (m: AttachMatch, object: string, spec: UprobeSpec | TracepointSpec | CgroupSpec): boolean => {
  const u = spec as Partial<UprobeSpec>
  return (m.object === undefined || m.object === object) &&
    (m.program === undefined || m.program === spec.program) &&
    (m.pid === undefined || m.pid === u.pid) &&
    (m.binary === undefined || m.binary === u.binary) &&
    (m.offset === undefined || m.offset === u.offset || (u.offsets ?? []).includes(m.offset)) &&
    (m.symbol === undefined || m.symbol === u.symbol)
}

const make = Effect.sync(() => {
  const log: Array<KernelEvent> = []
  const objects = new Map<string, FakeObject>()
  const definitions = new Map<string, ObjectDefinition>()
  const btfs = new Map<string, ObjectBtf>()
  /** Maps of objects the fake kernel did not load (a mocked probe's `mapRef`), shared by every object reusing one. */
  const foreignMaps = new Map<string, FakeMap>()
  const links = new Map<number, FakeLink>()
  let loadFailures: Array<{ match: LoadMatch; error: BpfError }> = []
  let attachFailures: Array<{ match: AttachMatch; error: BpfAttachError | BpfPermissionError | "hang" }> = []
  let nextLink = 1

  const closedError = (object: string, map: string, op: string) =>
    new BpfMapError({ op, errno: 9, code: "EBADF", message: `object ${object} is closed`, map })

  const getMap = (obj: FakeObject, map: string, op: string): Effect.Effect<FakeMap, BpfMapError> => {
    if (obj.closed) return Effect.fail(closedError(obj.name, map, op))
    const existing = obj.maps.get(map)
    if (existing !== undefined) {
      if (existing.owner !== obj.name && objects.get(existing.owner)?.closed === true) {
        return Effect.fail(closedError(existing.owner, map, op))
      }
      return Effect.succeed(existing)
    }
    if (obj.definition !== undefined && !obj.definition.maps.includes(map)) {
      return Effect.fail(
        new BpfMapError({ op, errno: 2, code: "ENOENT", message: `object ${obj.name} has no map ${map}`, map })
      )
    }
    const created: FakeMap = { owner: obj.name, name: map, entries: new Map() }
    obj.maps.set(map, created)
    return Effect.succeed(created)
  }

  const ring = (obj: FakeObject, map: string): Ring => {
    let r = obj.rings.get(map)
    if (r === undefined) {
      r = { pending: [], queue: undefined, received: 0, dropped: 0, batches: 0 }
      obj.rings.set(map, r)
    }
    return r
  }

  const bumpStat = (obj: FakeObject, index: number, by: number) => {
    const map = obj.maps.get("ps_stats") ?? { owner: obj.name, name: "ps_stats", entries: new Map() }
    obj.maps.set("ps_stats", map)
    const key = toHex(new Uint8Array([index, 0, 0, 0]))
    const value = map.entries.get(key) ?? new Uint8Array(8 * CPUS)
    const view = new DataView(value.buffer, value.byteOffset, value.byteLength)
    view.setBigUint64(0, view.getBigUint64(0, true) + BigInt(by), true)
    map.entries.set(key, value)
  }

  const attachLink = (
    obj: FakeObject,
    spec: UprobeSpec | TracepointSpec | CgroupSpec,
    kind: "uprobe" | "tracepoint" | "cgroup"
  ): Effect.Effect<Link, BpfAttachError | BpfPermissionError, Scope.Scope> =>
    Effect.suspend(() => {
      const target = kind === "uprobe" ?
        `${(spec as UprobeSpec).binary}:${(spec as UprobeSpec).offset ?? (spec as UprobeSpec).symbol}` :
        kind === "cgroup" ?
        `cgroup ${(spec as CgroupSpec).cgroup}` :
        `${(spec as TracepointSpec).category}/${(spec as TracepointSpec).name}`
      if (obj.closed) {
        return Effect.fail(
          new BpfAttachError({
            op: "attach",
            errno: 9,
            code: "EBADF",
            message: `object ${obj.name} is closed`,
            program: spec.program,
            target
          })
        )
      }
      if (obj.definition !== undefined && !obj.definition.programs.includes(spec.program)) {
        return Effect.fail(
          new BpfAttachError({
            op: "attach",
            errno: 2,
            code: "ENOENT",
            message: `object ${obj.name} has no program ${spec.program}`,
            program: spec.program,
            target
          })
        )
      }
      if (kind === "uprobe") {
        const u = spec as UprobeSpec
        if (u.symbol === undefined && u.offset === undefined && (u.offsets ?? []).length === 0) {
          return Effect.fail(
            new BpfAttachError({
              op: "attach",
              errno: 22,
              code: "EINVAL",
              message: "a uprobe needs a symbol or an offset",
              program: spec.program,
              target
            })
          )
        }
      }
      const failure = attachFailures.find((f) => matchesAttach(f.match, obj.name, spec))
      if (failure !== undefined) return failure.error === "hang" ? Effect.never : Effect.fail(failure.error)
      const u = spec as Partial<UprobeSpec>
      const tp = spec as Partial<TracepointSpec>
      return Effect.acquireRelease(
        Effect.sync(() => {
          const id = nextLink++
          const fake: FakeLink = {
            id,
            object: obj.name,
            program: spec.program,
            ...(u.pid === undefined ? {} : { pid: u.pid }),
            ...(u.offset === undefined ? {} : { offset: u.offset }),
            ...(u.offsets === undefined ? {} : { offsets: [...u.offsets] }),
            ...(u.binary === undefined ? {} : { binary: u.binary }),
            ...(u.retprobe === true ? { retprobe: true as const } : {}),
            ...(kind === "tracepoint" ? { tracepoint: `${tp.category}/${tp.name}` } : {})
          }
          links.set(id, fake)
          log.push({
            _tag: "Attach",
            object: obj.name,
            link: id,
            program: spec.program,
            kind,
            ...(u.binary === undefined ? {} : { binary: u.binary }),
            ...(u.offset === undefined ? {} : { offset: u.offset }),
            ...(u.offsets === undefined ? {} : { offsets: [...u.offsets] }),
            ...(u.symbol === undefined ? {} : { symbol: u.symbol }),
            ...(u.pid === undefined ? {} : { pid: u.pid }),
            ...(u.retprobe === true ? { retprobe: true as const } : {}),
            ...(kind === "tracepoint" ? { tracepoint: `${tp.category}/${tp.name}` } : {})
          })
          const link: Link = { id, program: spec.program, description: `${kind} ${target}`, kernelLinks: 1 }
          return link
        }),
        (link) =>
          Effect.sync(() => {
            const fake = links.get(link.id)
            links.delete(link.id)
            log.push({
              _tag: "Detach",
              object: obj.name,
              link: link.id,
              program: link.program,
              ...(fake?.pid === undefined ? {} : { pid: fake.pid })
            })
          })
      )
    })

  const makeObject = (obj: FakeObject): BpfObject => ({
    name: obj.name,
    btf: (structs) =>
      Effect.sync(() =>
        Option.map(Option.fromNullishOr(obj.btf), (btf) =>
          structs === undefined ? btf : {
            ...btf,
            structs: Object.fromEntries(Object.entries(btf.structs).filter(([name]) => structs.includes(name)))
          }
        )
      ),
    programs: obj.definition?.programs ?? [],
    maps: obj.definition?.maps ?? [],
    lookup: (map, key) =>
      Effect.map(getMap(obj, map, "lookup"), (m) => Option.fromNullishOr(m.entries.get(toHex(key))?.slice())),
    update: (map, key, value) =>
      Effect.map(getMap(obj, map, "update"), (m) => {
        m.entries.set(toHex(key), value.slice())
        log.push({ _tag: "MapUpdate", object: obj.name, map, key: toHex(key) })
      }),
    delete: (map, key) =>
      Effect.map(getMap(obj, map, "delete"), (m) => {
        const had = m.entries.delete(toHex(key))
        log.push({ _tag: "MapDelete", object: obj.name, map, key: toHex(key) })
        return had
      }),
    mapRef: (map) =>
      Effect.map(getMap(obj, map, "mapRef"), (m): MapRef => ({ object: m.owner, map: m.name, handle: m })),
    attachUprobe: (spec) => attachLink(obj, spec, "uprobe"),
    attachTracepoint: (spec) => attachLink(obj, spec, "tracepoint"),
    attachCgroup: (spec) => attachLink(obj, spec, "cgroup"),
    ringBuffer: (map, options) =>
      Effect.gen(function*() {
        yield* getMap(obj, map, "ring_buffer__new")
        const r = ring(obj, map)
        const queue = yield* Effect.acquireRelease(
          Queue.dropping<Uint8Array, Cause.Done>(options?.capacity ?? 65_536),
          (q) =>
            Effect.andThen(
              Queue.shutdown(q),
              Effect.sync(() => {
                if (r.queue === q) r.queue = undefined
                log.push({ _tag: "Unsubscribe", object: obj.name, map })
              })
            )
        )
        r.queue = queue
        log.push({ _tag: "Subscribe", object: obj.name, map })
        for (const record of r.pending) {
          if (Queue.offerUnsafe(queue, record)) r.received++
          else r.dropped++
        }
        if (r.pending.length > 0) r.batches++
        r.pending = []
        const rb: RingBuffer = {
          map,
          records: Stream.fromQueue(queue),
          // The fake's batches are what one `push` wrote (as far as the queue took them), handed over in one call.
          forEachBatch: (handler) =>
            Stream.runForEachArray(Stream.fromQueue(queue), (records) => Effect.sync(() => handler(batchOf(records)))),
          stats: Effect.sync((): RingBufferStats => ({ received: r.received, dropped: r.dropped, batches: r.batches })),
          // Everything pushed is already in the queue: ending it lets the consumer take the rest, then stop.
          close: Effect.sync(() => {
            if (r.queue === queue) r.queue = undefined
            Queue.endUnsafe(queue)
          })
        }
        return rb
      })
  })

  const load = (spec: ObjectSpec): Effect.Effect<BpfObject, BpfError, Scope.Scope> =>
    Effect.suspend(() => {
      const name = spec.name ?? (spec.file === undefined ? "object" : basename(spec.file))
      const failure = loadFailures.find((f) =>
        (f.match.object === undefined || f.match.object === name) &&
        (f.match.file === undefined || f.match.file === spec.file)
      )
      if (failure !== undefined) return Effect.fail(failure.error)
      if (spec.file === undefined && spec.bytes === undefined) {
        return Effect.fail(
          new BpfLoadError({
            op: "open",
            errno: 22,
            code: "EINVAL",
            message: "neither file nor bytes given",
            object: name,
            verifierLog: ""
          })
        )
      }
      const existing = objects.get(name)
      if (existing !== undefined && !existing.closed) {
        return Effect.fail(
          new BpfLoadError({
            op: "load",
            errno: 17,
            code: "EEXIST",
            message: `fake kernel: object ${name} is already loaded (a probe loaded twice?)`,
            object: name,
            verifierLog: ""
          })
        )
      }
      const definition = definitions.get(name) ?? (spec.file === undefined ? undefined : definitions.get(spec.file))
      for (const key of Object.keys(spec.constants ?? {})) {
        if (definition?.constants !== undefined && !definition.constants.includes(key)) {
          return Effect.fail(
            new BpfMapError({
              op: "set_constant",
              errno: 2,
              code: "ENOENT",
              message: `object ${name} has no constant ${key}`,
              map: ".rodata"
            })
          )
        }
      }
      const btf = btfs.get(name) ?? (spec.file === undefined ? undefined : btfs.get(spec.file))
      const obj: FakeObject = { name, maps: new Map(), rings: new Map(), definition, btf, closed: false }
      const reused: Record<string, string> = {}
      for (const [mine, ref] of Object.entries(spec.reuseMaps ?? {})) {
        if (!isFakeMap(ref.handle)) {
          // Not one of ours: a mocked probe's map. It lives as long as the fake kernel, shared by name.
          const key = `${ref.object}/${ref.map}`
          let foreign = foreignMaps.get(key)
          if (foreign === undefined) {
            foreign = { owner: ref.object, name: ref.map, entries: new Map() }
            foreignMaps.set(key, foreign)
          }
          obj.maps.set(mine, foreign)
          reused[mine] = key
          continue
        }
        const shared = ref.handle
        if (objects.get(shared.owner)?.closed !== false) {
          return Effect.fail(closedError(shared.owner, shared.name, "reuse_fd"))
        }
        obj.maps.set(mine, shared)
        reused[mine] = `${shared.owner}/${shared.name}`
      }
      return Effect.acquireRelease(
        Effect.sync(() => {
          objects.set(name, obj)
          log.push({
            _tag: "Load",
            object: name,
            file: spec.file,
            constants: { ...spec.constants },
            reusedMaps: reused,
            disablePrograms: [...(spec.disablePrograms ?? [])],
            mapSizes: { ...spec.mapSizes }
          })
          return makeObject(obj)
        }),
        () =>
          Effect.sync(() => {
            obj.closed = true
            for (const r of obj.rings.values()) if (r.queue !== undefined) Queue.shutdown(r.queue)
            log.push({ _tag: "Close", object: name })
          })
      )
    })

  const findObject = (name: string): FakeObject => {
    const obj = objects.get(name)
    if (obj === undefined) throw new Error(`fake kernel: no object named ${name}`)
    return obj
  }

  const control = FakeKernel.of({
    events: Effect.sync(() => [...log]),
    clearEvents: Effect.sync(() => {
      log.length = 0
    }),
    define: (nameOrFile, definition) => Effect.sync(() => void definitions.set(nameOrFile, definition)),
    defineBtf: (nameOrFile, btf) => Effect.sync(() => void btfs.set(nameOrFile, btf)),
    push: (object, records, map = "events") =>
      Effect.sync(() => {
        const obj = findObject(object)
        const r = ring(obj, map)
        bumpStat(obj, 0, records.length)
        let dropped = 0
        if (r.queue === undefined) {
          r.pending.push(...records)
          return 0
        }
        for (const record of records) {
          if (Queue.offerUnsafe(r.queue, record)) r.received++
          else dropped++
        }
        r.dropped += dropped
        r.batches++
        return dropped
      }),
    dropInKernel: (object, count) => Effect.sync(() => bumpStat(findObject(object), 1, count)),
    map: (object, map) => Effect.sync(() => new Map(findObject(object).maps.get(map)?.entries ?? [])),
    failLoad: (match, error) => Effect.sync(() => void loadFailures.push({ match, error })),
    failVerifier: (match, verifierLog) =>
      Effect.sync(() =>
        void loadFailures.push({
          match,
          error: new BpfLoadError({
            op: "load",
            errno: 13,
            code: "EACCES",
            message: "program rejected by the verifier",
            object: match.object ?? match.file ?? "object",
            verifierLog
          })
        })
      ),
    failAttach: (match, error) => Effect.sync(() => void attachFailures.push({ match, error })),
    hangAttach: (match) => Effect.sync(() => void attachFailures.push({ match, error: "hang" })),
    clearFailures: Effect.sync(() => {
      loadFailures = []
      attachFailures = []
    }),
    liveObjects: Effect.sync(() => [...objects.values()].filter((o) => !o.closed).map((o) => o.name)),
    liveLinks: Effect.sync(() => [...links.values()])
  })

  return { bpf: Bpf.of({ load, libbpfVersion: "fake", uprobeMulti: true }), control }
})

/** The fake kernel: `Bpf` and its `FakeKernel` control, sharing one in-memory state. */
export const layer: Layer.Layer<Bpf | FakeKernel> = Layer.effectContext(
  Effect.map(make, ({ bpf, control }) => Context.make(Bpf, bpf).pipe(Context.add(FakeKernel, control)))
)

/** A BpfAttachError for injecting, e.g. `attachError("uprobe_ServeHTTP", "ESRCH")`. */
export const attachError = (program: string, code = "ENOENT", message = `fake attach failure (${code})`) =>
  new BpfAttachError({ op: "attach", errno: 0, code, message, program, target: "fake" })

/** A BpfPermissionError for injecting. */
export const permissionError = (op = "bpf") =>
  new BpfPermissionError({ op, errno: 1, code: "EPERM", message: "operation not permitted" })
