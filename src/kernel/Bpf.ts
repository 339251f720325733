/**
 * The kernel binding as an Effect service. It knows BPF objects, links, maps and ring buffers — nothing of probes.
 *
 * Every kernel resource is acquired in a `Scope`: closing the scope (success, failure or interruption) detaches the
 * link, stops the ring-buffer poll, and closes the object, in reverse order of acquisition.
 */
import type { Effect, Option, Scope, Stream } from "effect"
import { Context, Schema } from "effect"

// ---------------------------------------------------------------------------------------------------------------
// Errors: each carries the operation, errno (0 when libbpf gave none), its symbolic code, and libbpf's message.
// ---------------------------------------------------------------------------------------------------------------

const errorFields = {
  op: Schema.String,
  errno: Schema.Number,
  code: Schema.String,
  message: Schema.String
}

/** The object file is missing, unreadable, or not a BPF ELF object. */
export class BpfOpenError extends Schema.TaggedError<BpfOpenError>()("BpfOpenError", {
  ...errorFields,
  source: Schema.String
}) {}

/** The kernel (usually the verifier) rejected the object; `verifierLog` is the tail of the log. */
export class BpfLoadError extends Schema.TaggedError<BpfLoadError>()("BpfLoadError", {
  ...errorFields,
  object: Schema.String,
  verifierLog: Schema.String
}) {}

/** A uprobe/tracepoint could not be attached: symbol absent, binary missing, PID gone, bad offset. */
export class BpfAttachError extends Schema.TaggedError<BpfAttachError>()("BpfAttachError", {
  ...errorFields,
  program: Schema.String,
  target: Schema.String
}) {}

/** A map operation failed, or the map/constant does not exist, or the value size is wrong. */
export class BpfMapError extends Schema.TaggedError<BpfMapError>()("BpfMapError", {
  ...errorFields,
  map: Schema.String
}) {}

/** The caller lacks CAP_BPF/CAP_PERFMON (or root): EPERM/EACCES from the bpf or perf_event_open syscalls. */
export class BpfPermissionError extends Schema.TaggedError<BpfPermissionError>()("BpfPermissionError", {
  ...errorFields
}) {}

/** Any error of the kernel binding. */
export type BpfError = BpfOpenError | BpfLoadError | BpfAttachError | BpfMapError | BpfPermissionError

// ---------------------------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------------------------

/**
 * A value for a `const volatile` global in the object's `.rodata`, set before load. Numbers and bigints are encoded
 * little-endian to the variable's size; bytes must match the size exactly; booleans are one byte.
 */
export type ConstantValue = number | bigint | boolean | Uint8Array

/** What to load: an object file on disk or its bytes. */
export interface ObjectSpec {
  readonly file?: string
  readonly bytes?: Uint8Array
  /** Name used in errors and listings (defaults to the file's basename). */
  readonly name?: string
  /** `.rodata` constants by variable name; an unknown name fails with BpfMapError. */
  readonly constants?: Readonly<Record<string, ConstantValue>>
  /** Programs not to load (e.g. a header-writing variant the kernel forbids). */
  readonly disablePrograms?: ReadonlyArray<string>
  /**
   * Maps to take from an already loaded object instead of creating them (libbpf `bpf_map__reuse_fd`): this is how a
   * probe shares another probe's map, e.g. the goroutine-to-span-context map. Keyed by this object's map name.
   */
  readonly reuseMaps?: Readonly<Record<string, MapRef>>
  /**
   * Sizes to give maps before load (libbpf `bpf_map__set_max_entries`), by map name; for a ring buffer its bytes (a
   * power of two, at least a page). A map taken through `reuseMaps` keeps its owner's size.
   */
  readonly mapSizes?: Readonly<Record<string, number>>
  /**
   * Load the uprobe programs for `uprobe_multi` links where the kernel has them (>= 6.6; see `Bpf.uprobeMulti`): one
   * link then carries every offset of a program in a file and is unregistered in one batch. Such programs attach
   * by offset only. Where the kernel lacks them this is ignored and `offsets` become one link each.
   */
  readonly uprobeMulti?: boolean
}

/** A map of a loaded object that another object can reuse; valid while the owning object's scope is open. */
export interface MapRef {
  readonly object: string
  readonly map: string
  /** Opaque to callers; the live binding keeps the fd here. */
  readonly handle: unknown
}

/**
 * Where a uprobe goes: a `symbol`, an `offset` (relative to the symbol when both are set), or many `offsets` of one
 * program in one file, attached and detached together (one uprobe_multi link where the object has them).
 */
export interface UprobeSpec {
  readonly program: string
  readonly binary: string
  readonly symbol?: string
  /** File offset of the instruction (absolute when no symbol is given). */
  readonly offset?: number
  /** File offsets of several instructions, for one program. */
  readonly offsets?: ReadonlyArray<number>
  /**
   * One process, or every process that maps the file when absent (each then pays the trap: filter in BPF, and use
   * this only when every such process is wanted).
   */
  readonly pid?: number
  /**
   * A uretprobe: the program runs when the function returns (the kernel swaps the return address; never on Go
   * code, whose stacks move — Go return probes go on each RET instead). Default false.
   */
  readonly retprobe?: boolean
}

export interface TracepointSpec {
  readonly program: string
  readonly category: string
  readonly name: string
}

/** A cgroup program (sock_ops, ...) attached to one cgroup v2 directory. */
export interface CgroupSpec {
  readonly program: string
  /** The cgroup's directory under the cgroup v2 mount. */
  readonly cgroup: string
}

export interface RingBufferOptions {
  /** Records buffered between the kernel and the consumer before new ones are dropped (and counted). */
  readonly capacity?: number
}

// ---------------------------------------------------------------------------------------------------------------
// Handles
// ---------------------------------------------------------------------------------------------------------------

/**
 * An attached program; detached when its scope closes. The kernel's unregistering runs off the JS thread: closing
 * the scope waits for it without blocking the event loop (ring buffers keep draining meanwhile).
 */
export interface Link {
  readonly id: number
  readonly program: string
  readonly description: string
  /** Kernel links behind this one (1 for a uprobe_multi link; one per offset without). */
  readonly kernelLinks: number
}

/** Counters of a ring-buffer subscription. `dropped` counts records the consumer could not keep up with. */
export interface RingBufferStats {
  readonly received: number
  readonly dropped: number
  readonly batches: number
}

/**
 * One batch of records as read from a ring: record `i` is `data[offsets[2i], offsets[2i] + offsets[2i+1])`. The
 * buffers are reused for the next batch: a handler reads (decodes, copies) what it needs during the call.
 */
export interface RecordBatch {
  readonly data: Uint8Array
  readonly offsets: Uint32Array
  readonly count: number
}

/** Records laid back to back as one batch (what arrived before a batch reader, a fake kernel's push). */
export const batchOf = (records: ReadonlyArray<Uint8Array>): RecordBatch => {
  const offsets = new Uint32Array(2 * records.length)
  let at = 0
  records.forEach((r, i) => {
    offsets[2 * i] = at
    offsets[2 * i + 1] = r.length
    at += r.length
  })
  return { data: Buffer.concat(records), offsets, count: records.length }
}

/** A ring-buffer subscription: a stream of raw records plus its counters. */
export interface RingBuffer {
  readonly map: string
  readonly records: Stream.Stream<Uint8Array>
  /**
   * The cheapest way to read a ring: `handler` gets each batch synchronously, in the drain's own call, with no
   * queue, no copy and no fiber per batch. Runs until `close` has handed over the last records (or until
   * interrupted). For a handler that does its work right away: decoding a record, not waiting on anything.
   */
  readonly forEachBatch: (handler: (batch: RecordBatch) => void) => Effect.Effect<void>
  readonly stats: Effect.Effect<RingBufferStats>
  /**
   * Read what the ring still holds, then end `records` once the consumer has taken it: the last records are
   * delivered, not lost, when a probe stops after its producers are detached.
   */
  readonly close: Effect.Effect<void>
}

// ---------------------------------------------------------------------------------------------------------------
// BTF: the C structs an object was compiled with, to check the layouts user space mirrors them with
// ---------------------------------------------------------------------------------------------------------------

/** One member of a BTF struct or union; typedefs and qualifiers resolved. */
export interface BtfMember {
  /** "" for an anonymous struct or union member (its members are accessed as the parent's). */
  readonly name: string
  readonly bitOffset: number
  /** 0 unless the member is a bitfield. */
  readonly bitSize: number
  /** Bytes (`btf__resolve_size`): a whole array's, a nested struct's. */
  readonly size: number
  readonly kind: "int" | "ptr" | "array" | "struct" | "union" | "enum" | "float" | "other"
  /** The resolved type's name ("" when anonymous), e.g. "unsigned char" or "ps_http_head". */
  readonly type: string
  /** Arrays: the number of elements. */
  readonly elements?: number
  /** Nested structs and unions: their members. */
  readonly members?: ReadonlyArray<BtfMember>
}

/** A named struct of an object's BTF. */
export interface BtfStruct {
  readonly name: string
  readonly size: number
  readonly kind: "struct" | "union"
  readonly members: ReadonlyArray<BtfMember>
}

/** What an object's BTF says of its structs: every named struct, and which struct each map's value is. */
export interface ObjectBtf {
  readonly structs: Readonly<Record<string, BtfStruct>>
  /** Map name to the name of its value's struct (maps declared with `__type(value, struct x)`). */
  readonly mapValues: Readonly<Record<string, string>>
}

/** A loaded BPF object. */
export interface BpfObject {
  readonly name: string
  readonly programs: ReadonlyArray<string>
  readonly maps: ReadonlyArray<string>
  readonly lookup: (map: string, key: Uint8Array) => Effect.Effect<Option.Option<Uint8Array>, BpfMapError>
  readonly update: (map: string, key: Uint8Array, value: Uint8Array) => Effect.Effect<void, BpfMapError>
  /** A reference to one of this object's maps, for `ObjectSpec.reuseMaps` of another object. */
  readonly mapRef: (map: string) => Effect.Effect<MapRef, BpfMapError>
  /** Returns false when the key was absent. */
  readonly delete: (map: string, key: Uint8Array) => Effect.Effect<boolean, BpfMapError>
  readonly attachUprobe: (
    spec: UprobeSpec
  ) => Effect.Effect<Link, BpfAttachError | BpfPermissionError, Scope.Scope>
  readonly attachTracepoint: (
    spec: TracepointSpec
  ) => Effect.Effect<Link, BpfAttachError | BpfPermissionError, Scope.Scope>
  /** Attach a cgroup program (a BPF link); detached when the scope closes. */
  readonly attachCgroup: (
    spec: CgroupSpec
  ) => Effect.Effect<Link, BpfAttachError | BpfPermissionError, Scope.Scope>
  /** Subscribe to a BPF_MAP_TYPE_RINGBUF map; polling stops when the scope closes. */
  readonly ringBuffer: (
    map: string,
    options?: RingBufferOptions
  ) => Effect.Effect<RingBuffer, BpfMapError, Scope.Scope>
  /**
   * The object's BTF structs — only those named, when `structs` is given (describing every struct of an object costs
   * more than its load's JS side) — and every map's value struct; or None when there is nothing to check against: an
   * object compiled without `-g`, or a fake-kernel object the test gave no BTF for (`FakeKernel.defineBtf`).
   */
  readonly btf: (structs?: ReadonlyArray<string>) => Effect.Effect<Option.Option<ObjectBtf>>
}

/** The kernel binding. */
export class Bpf extends Context.Service<Bpf, {
  /** Open, set constants, and load an object; closed when the scope closes. */
  readonly load: (spec: ObjectSpec) => Effect.Effect<BpfObject, BpfError, Scope.Scope>
  /** libbpf's version, e.g. "1.1". */
  readonly libbpfVersion: string
  /** Whether the kernel creates uprobe_multi links (then `ObjectSpec.uprobeMulti` takes effect). */
  readonly uprobeMulti: boolean
}>()("probescope/kernel/Bpf") {}

/** A setting of the kernel binding (an environment variable) is unusable. */
export class BpfConfigError extends Schema.TaggedError<BpfConfigError>()("BpfConfigError", {
  variable: Schema.String,
  message: Schema.String
}) {}
