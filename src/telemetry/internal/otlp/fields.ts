/** What both OTLP encodings share: the types they take, enum numbers, the span flags, the int64 rule. */
import type { HrTime } from "@opentelemetry/api"
import * as Ids from "../../../probe/Ids.ts"
import type { SpanData } from "../../../probe/Telemetry.ts"

/** What a resource must offer: its attributes (an OpenTelemetry JS `Resource` is one). Cached by identity. */
export interface ResourceLike {
  readonly attributes: Readonly<Record<string, unknown>>
}

/** What the encoders read of a span: all of `SpanData` but the probe's name, which an `OtlpSpan` carries beside it. */
export type SpanFields = Omit<SpanData, "probe">

/**
 * One span to export: the probe's record, the probe that made it (the instrumentation scope), the resource of its
 * process, and the kernel clock's offset to epoch.
 */
export interface OtlpSpan {
  readonly span: SpanFields
  readonly probe: string
  readonly resource: ResourceLike
  /** Epoch ns = kernel monotonic ns + offsetNs (`KernelClock.toEpochNs(0n)` when the span was accepted). */
  readonly offsetNs: bigint
}

/** `Span.SpanKind` numbers. */
export const KIND = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 } as const
/** `Status.StatusCode` numbers. */
export const STATUS = { unset: 0, ok: 1, error: 2 } as const

/** OTLP span flags: W3C flags, "is-remote known", and "parent is remote" when there is a remote parent. */
export const spanFlags = (span: SpanFields): number =>
  (span.traceFlags & 0xff) | 0x100 |
  (span.parentIsRemote === true && !Ids.isEmpty(span.parentSpanId) ? 0x200 : 0)

/** Whether the span has a parent (an empty id is none, as the telemetry layer reads it). */
export const hasParent = (span: SpanFields): boolean => !Ids.isEmpty(span.parentSpanId)

/** The end time: a probe that saw the end before the start still yields a zero-length span (as readableSpan.ts). */
export const endMonoNs = (span: SpanFields): bigint =>
  span.endMonoNs >= span.startMonoNs ? span.endMonoNs : span.startMonoNs

const MIN_INT64 = -(2 ** 63)
const MAX_INT64 = 2 ** 63

/** Whether a number goes out as `int_value` (else `double_value`): the SDK's rule. */
export const isInt64 = (n: number): boolean => Number.isInteger(n) && n >= MIN_INT64 && n < MAX_INT64

/** Whether a value can be cached as a whole encoded KeyValue (scalars; arrays and the rest are encoded each time). */
export const isScalar = (v: unknown): v is string | number | boolean => {
  const t = typeof v
  return t === "string" || t === "number" || t === "boolean"
}

/**
 * Per attribute name: the encoded name (and what follows it), made once, and whole encoded KeyValues by scalar value
 * until the name shows more distinct values than are worth keeping (a path, a port: then `values` is undefined and
 * that name's values are encoded every time). Names repeat in every span, and many values do too (a method, a
 * scheme, a host, a status code), so most attributes become one copy of bytes made before.
 */
export interface KeyEntry<B> {
  readonly key: B
  values: Map<unknown, B> | undefined
}

/** Attribute names remembered (a probe that made up names per span must not grow the map without end). */
const KEY_LIMIT = 1024
/** Distinct values kept per name before the name counts as high-cardinality. */
const VALUES_PER_KEY = 32
/** Longer KeyValues are not kept (long values rarely repeat); with the limits above, at most 4 MiB per encoding. */
const MAX_KEPT_BYTES = 128

/** A cache of `KeyEntry`s for one encoding. */
export const keyCache = <B extends { readonly length: number }>(encodeKey: (key: string) => B) => {
  const keys = new Map<string, KeyEntry<B>>()
  const entry = (key: string): KeyEntry<B> => {
    let e = keys.get(key)
    if (e === undefined) {
      e = { key: encodeKey(key), values: new Map() }
      if (keys.size < KEY_LIMIT) keys.set(key, e)
    }
    return e
  }
  /** Keeps the encoded KeyValue of a scalar `v` under `e`, while the name is not high-cardinality. */
  const keep = (e: KeyEntry<B>, v: unknown, bytes: B): void => {
    const values = e.values
    if (values === undefined) return
    if (values.size >= VALUES_PER_KEY) e.values = undefined
    else if (bytes.length <= MAX_KEPT_BYTES) values.set(v, bytes)
  }
  return { entry, keep }
}

/**
 * The attributes of the span encoded last, by position: name, value and that whole KeyValue's bytes (one entry of a
 * `keyCache`'s values). A probe builds its spans' attribute objects with the same names in the same order, and
 * consecutive spans repeat most values (a method, a route, a host, a status code), so an attribute equal by position
 * to the last span's is its cached bytes after two comparisons, without the key cache's two map lookups. Only scalar
 * values are kept (an array compared by identity may have changed); a position whose value is not cached forgets
 * it, so that the next span's value there is not compared with a stale one.
 */
export interface LastAttributes<B> {
  readonly keys: Array<string | undefined>
  readonly values: Array<unknown>
  readonly bytes: Array<B | undefined>
}

/** Positions remembered: more than any built-in probe's span has attributes. */
export const LAST_POSITIONS = 24

export const lastAttributes = <B>(): LastAttributes<B> => ({
  keys: new Array<string | undefined>(LAST_POSITIONS).fill(undefined),
  values: new Array<unknown>(LAST_POSITIONS).fill(undefined),
  bytes: new Array<B | undefined>(LAST_POSITIONS).fill(undefined)
})

/** The cached bytes of the attribute at `at` when the last span had the same name and value there. */
export const recall = <B>(last: LastAttributes<B> | undefined, at: number, key: string, value: unknown): B | undefined =>
  last !== undefined && at < LAST_POSITIONS && last.keys[at] === key && last.values[at] === value
    ? last.bytes[at]
    : undefined

/** Keeps the attribute at `at` for the next span; `bytes` undefined (a value not cached) forgets the position. */
export const remember = <B>(
  last: LastAttributes<B> | undefined,
  at: number,
  key: string,
  value: unknown,
  bytes: B | undefined
): void => {
  if (last === undefined || at >= LAST_POSITIONS) return
  last.keys[at] = bytes === undefined ? undefined : key
  last.values[at] = value
  last.bytes[at] = bytes
}

/** Epoch nanoseconds of an OpenTelemetry `HrTime` (seconds, nanoseconds), as a fixed64 or a JSON string takes it. */
export const hrTimeNanos = (t: HrTime): bigint => BigInt(t[0]) * 1_000_000_000n + BigInt(t[1])
