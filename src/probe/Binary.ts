/**
 * Fixed-layout little-endian records, as BPF programs write them into the ring buffer (and as user space writes
 * per-target config structs into maps).
 *
 * A layout is declared in the C struct's field order; fields are placed at their natural alignment like a C
 * compiler does (pass `{ packed: true }` for `__attribute__((packed))` structs). The result decodes bytes into a
 * plain object, encodes it back, and is usable as an effect `Schema` (`Binary.schema(layout)`).
 *
 * ```ts
 * const Record = Binary.struct({
 *   start: Binary.u64,              // bigint
 *   end: Binary.u64,
 *   traceId: Binary.hex(16),        // "4bf92f35..."
 *   status: Binary.u16,             // number
 *   methodLen: Binary.u8,
 *   method: Binary.string(16, "methodLen")
 * })
 * ```
 */
import { Effect, Schema, SchemaIssue, SchemaTransformation } from "effect"

/** One field of a layout: its size and alignment in bytes, and how it reads and writes its value. */
export interface Field<T> {
  readonly _tag: "Field"
  readonly size: number
  readonly align: number
  /** The sibling field holding this field's byte length (strings with a length field). */
  readonly lengthField?: string
  readonly read: (view: DataView, bytes: Uint8Array, offset: number, length: number) => T
  readonly write: (view: DataView, bytes: Uint8Array, offset: number, value: T) => number
}

/** Padding: occupies bytes, produces no property. */
export interface Pad {
  readonly _tag: "Pad"
  readonly size: number
  readonly align: 1
}

/** Anything a struct field may be. */
export type Member = Field<any> | Pad

/** The decoded type of a field map (padding removed). */
export type Decoded<F extends Readonly<Record<string, Member>>> = {
  readonly [K in keyof F as F[K] extends Pad ? never : K]: F[K] extends Field<infer T> ? T : never
}

/** A struct layout with its computed offsets. */
export interface Layout<T> {
  readonly size: number
  readonly align: number
  readonly offsets: Readonly<Record<string, number>>
  /** Decode; fails (throws a RangeError) when `bytes` is shorter than the layout. Prefer `schema` at boundaries. */
  readonly decode: (bytes: Uint8Array) => T
  readonly encode: (value: T) => Uint8Array
}

const field = <T>(
  size: number,
  align: number,
  read: Field<T>["read"],
  write: Field<T>["write"],
  lengthField?: string
): Field<T> => lengthField === undefined ?
  { _tag: "Field", size, align, read, write } :
  { _tag: "Field", size, align, read, write, lengthField }

/** Unsigned 8-bit integer. */
export const u8: Field<number> = field(1, 1, (v, _b, o) => v.getUint8(o), (v, _b, o, x) => (v.setUint8(o, x), 1))
/** Unsigned 16-bit integer. */
export const u16: Field<number> = field(
  2,
  2,
  (v, _b, o) => v.getUint16(o, true),
  (v, _b, o, x) => (v.setUint16(o, x, true), 2)
)
/** Unsigned 32-bit integer. */
export const u32: Field<number> = field(
  4,
  4,
  (v, _b, o) => v.getUint32(o, true),
  (v, _b, o, x) => (v.setUint32(o, x, true), 4)
)
/** Signed 32-bit integer. */
export const i32: Field<number> = field(
  4,
  4,
  (v, _b, o) => v.getInt32(o, true),
  (v, _b, o, x) => (v.setInt32(o, x, true), 4)
)
/** Unsigned 64-bit integer as a bigint (timestamps, pointers, ids). */
export const u64: Field<bigint> = field(
  8,
  8,
  (v, _b, o) => v.getBigUint64(o, true),
  (v, _b, o, x) => (v.setBigUint64(o, x, true), 8)
)
/** Signed 64-bit integer as a bigint. */
export const i64: Field<bigint> = field(
  8,
  8,
  (v, _b, o) => v.getBigInt64(o, true),
  (v, _b, o, x) => (v.setBigInt64(o, x, true), 8)
)
/** Unsigned 64-bit integer as a number: exact below 2^53 (sizes, durations, counters). */
export const u64n: Field<number> = field(
  8,
  8,
  (v, _b, o) => Number(v.getBigUint64(o, true)),
  (v, _b, o, x) => (v.setBigUint64(o, BigInt(x), true), 8)
)
/** One byte, non-zero is true. */
export const bool: Field<boolean> = field(
  1,
  1,
  (v, _b, o) => v.getUint8(o) !== 0,
  (v, _b, o, x) => (v.setUint8(o, x ? 1 : 0), 1)
)

/** `n` bytes of padding (explicit holes, or `__u8 _pad[n]` in C). */
export const pad = (n: number): Pad => ({ _tag: "Pad", size: n, align: 1 })

/** A fixed byte array, copied out. */
export const bytes = (n: number): Field<Uint8Array> =>
  field<Uint8Array>(n, 1, (_v, b, o) => b.slice(o, o + n), (_v, b, o, x) => {
    b.set(x.subarray(0, n), o)
    return n
  })

/**
 * The record as a Buffer without copying: ring-buffer records already are one (subarrays of the batch), and Buffer's
 * slice-to-string methods skip the view object `subarray` + `TextDecoder` would allocate per field.
 */
const asBuffer = (b: Uint8Array): Buffer => Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength)

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))

/** A fixed byte array as lowercase hex in memory order (trace ids: 16 bytes, span ids: 8 bytes). */
export const hex = (n: number): Field<string> =>
  field(n, 1, (_v, b, o) => {
    if (n >= 8) return asBuffer(b).toString("hex", o, o + n)
    let s = ""
    for (let i = o; i < o + n; i++) s += HEX[b[i]!]
    return s
  }, (_v, b, o, x) => {
    for (let i = 0; i < n; i++) b[o + i] = Number.parseInt(x.slice(i * 2, i * 2 + 2) || "0", 16) || 0
    return n
  })

const utf8e = new TextEncoder()

/**
 * A `char[cap]` holding a string. With `lengthField`, the named sibling field (declared anywhere in the struct)
 * holds the byte length, clamped to `cap`; without it the string ends at the first NUL. Encoding writes the bytes
 * and, with `lengthField`, sets that field to the written length.
 */
export const string = (cap: number, lengthField?: string): Field<string> =>
  field(cap, 1, (_v, b, o, len) => {
    if (lengthField === undefined) {
      let end = o
      while (end < o + cap && b[end] !== 0) end++
      return asBuffer(b).toString("utf8", o, end)
    }
    return asBuffer(b).toString("utf8", o, o + Math.min(Math.max(len, 0), cap))
  }, (_v, b, o, x) => {
    const enc = utf8e.encode(x).subarray(0, cap)
    b.set(enc, o)
    return enc.length
  }, lengthField)

/** Lay out `fields` in order at C alignment (or packed) and build a codec for the struct. */
export const struct = <const F extends Readonly<Record<string, Member>>>(
  fields: F,
  options?: { readonly packed?: boolean }
): Layout<Decoded<F>> => {
  const packed = options?.packed === true
  const entries = Object.entries(fields)
  const offsets: Record<string, number> = {}
  let offset = 0
  let maxAlign = 1
  const plan: Array<{ name: string; member: Member; offset: number }> = []
  for (const [name, member] of entries) {
    const align = packed ? 1 : member.align
    offset = Math.ceil(offset / align) * align
    maxAlign = Math.max(maxAlign, align)
    offsets[name] = offset
    plan.push({ name, member, offset })
    offset += member.size
  }
  const size = Math.ceil(offset / maxAlign) * maxAlign
  const readers = plan.filter((p): p is { name: string; member: Field<any>; offset: number } =>
    p.member._tag === "Field"
  )
  for (const r of readers) {
    const lf = r.member.lengthField
    if (lf !== undefined && (!(lf in fields) || fields[lf]!._tag !== "Field")) {
      throw new Error(`Binary.struct: length field "${lf}" of "${r.name}" is not a field of the struct`)
    }
  }
  // Length fields are read first so strings can use them; a plain loop keeps decode cheap on the hot path.
  const ordered = [...readers.filter((r) => r.member.lengthField === undefined), ...readers.filter((r) =>
    r.member.lengthField !== undefined
  )]
  // Records are built by copying a template that already has every property, so the stores below only overwrite.
  // Adding 30-odd properties through a computed key instead turns each record into a slow dictionary-mode object
  // (V8 allows few properties added that way); JSON.parse builds the template itself as a fast object.
  const template = JSON.parse(JSON.stringify(Object.fromEntries(readers.map((r) => [r.name, null])))) as object
  const decode = (input: Uint8Array): Decoded<F> => {
    if (input.length < size) throw new RangeError(`record is ${input.length} bytes, layout needs ${size}`)
    const view = new DataView(input.buffer, input.byteOffset, input.byteLength)
    const bytes = asBuffer(input)
    const out: Record<string, unknown> = { ...template }
    for (let i = 0; i < ordered.length; i++) {
      const r = ordered[i]!
      const lf = r.member.lengthField
      out[r.name] = r.member.read(view, bytes, r.offset, lf === undefined ? 0 : Number(out[lf]))
    }
    return out as Decoded<F>
  }
  const encode = (value: Decoded<F>): Uint8Array => {
    const out = new Uint8Array(size)
    const view = new DataView(out.buffer)
    const v = value as Record<string, unknown>
    const lengths: Record<string, number> = {}
    for (const r of readers) {
      if (r.member.lengthField !== undefined) continue
      r.member.write(view, out, r.offset, v[r.name])
    }
    for (const r of readers) {
      if (r.member.lengthField === undefined) continue
      lengths[r.member.lengthField] = r.member.write(view, out, r.offset, v[r.name])
    }
    for (const [name, len] of Object.entries(lengths)) {
      const target = plan.find((p) => p.name === name)!
      // Keep the length field's own representation (bigint for u64/i64, number otherwise).
      const asBigint = typeof v[name] === "bigint" || target.member === u64 || target.member === i64
      ;(target.member as Field<unknown>).write(view, out, target.offset, asBigint ? BigInt(len) : len)
    }
    return out
  }
  return { size, align: maxAlign, offsets, decode, encode }
}

/** A layout as an effect Schema from `Uint8Array` to the decoded struct: short records fail with a SchemaError. */
export const schema = <T>(layout: Layout<T>): Schema.Codec<T, Uint8Array> =>
  Schema.Uint8Array.pipe(
    Schema.decodeTo(
      Schema.declare((u: unknown): u is T => typeof u === "object" && u !== null),
      SchemaTransformation.transformEffect<T, Uint8Array>({
        decode: (input) =>
          input.length < layout.size ?
            Effect.fail(
              new SchemaIssue.InvalidValue({
                message: `record is ${input.length} bytes, expected at least ${layout.size}`
              }, input)
            ) :
            Effect.succeed(layout.decode(input)),
        encode: (value) => Effect.succeed(layout.encode(value))
      })
    )
  )

/** The key of a per-pid map: the pid as a little-endian u32. */
export const pidKey = (pid: number): Uint8Array => {
  const out = new Uint8Array(4)
  new DataView(out.buffer).setUint32(0, pid, true)
  return out
}
