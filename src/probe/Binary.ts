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
 *   traceId: Binary.bytes(16),      // Uint8Array (a span's id: Telemetry.Id); Binary.hex(16) for "4bf92f35..."
 *   status: Binary.u16,             // number
 *   methodLen: Binary.u8,
 *   method: Binary.string(16, "methodLen")
 * }, { struct: "my_record" })      // the C struct it mirrors, checked against the object's BTF at load
 * ```
 *
 * Checked against BTF: a layout naming its C struct (`{ struct }`) is compared, when a probe loads, with that struct
 * in the object's BTF: the size, and for each field the offset and width of the C member it mirrors. A field mirrors
 * the member named like it in snake_case (`methodLen` -> `method_len`), found by its path (`head.start_ns`) or, when
 * unique, by its name in any nested struct; `Binary.member("tcp.enabled", Binary.u64n)` names the member
 * explicitly. Every C member must be covered by a field or padding, so a member added in a hole is noticed too.
 */
import { Effect, Schema, SchemaIssue, SchemaTransformation } from "effect"
import type { BtfMember, BtfStruct } from "../kernel/Bpf.ts"

/** One field of a layout: its size and alignment in bytes, and how it reads and writes its value. */
export interface Field<T> {
  readonly _tag: "Field"
  readonly size: number
  readonly align: number
  /** The sibling field holding this field's byte length (strings with a length field). */
  readonly lengthField?: string
  /** The C member this field mirrors, when not its name in snake_case: `"tcp.enabled"`, `"pconn_conn"`. */
  readonly c?: string
  /**
   * Reads the field at `offset` of `bytes` (and of `view`, the same bytes); both may hold more than the record (a
   * whole ring-buffer batch): read only from `offset` on, `size` bytes.
   */
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

/** One member of a layout as placed: what the BTF check compares with the C struct. */
export interface LayoutField {
  readonly name: string
  readonly offset: number
  readonly size: number
  /** Padding covers bytes and mirrors no member. */
  readonly pad: boolean
  /** The C member named explicitly (`Binary.member`). */
  readonly c?: string
}

/** A struct layout with its computed offsets. */
export interface Layout<T> {
  readonly size: number
  readonly align: number
  readonly offsets: Readonly<Record<string, number>>
  /** Every field and padding in order. */
  readonly fields: ReadonlyArray<LayoutField>
  /** The C struct this layout mirrors (checked against the object's BTF at load), when named. */
  readonly struct?: string
  /** Decode; fails (throws a RangeError) when `bytes` is shorter than the layout. Prefer `schema` at boundaries. */
  readonly decode: (bytes: Uint8Array) => T
  /**
   * Decode the record of `length` bytes at `offset` in a larger buffer (a ring-buffer batch), read through `view`
   * (a DataView of all of `bytes`): no view object per record. Throws a RangeError when `length` is short.
   */
  readonly decodeAt?: (view: DataView, bytes: Uint8Array, offset: number, length: number) => T
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

/** A field mirroring the C member `c` (a name, or a dotted path into nested structs), not its snake_case name. */
export const member = <T>(c: string, f: Field<T>): Field<T> => ({ ...f, c })

/** `n` bytes of padding (explicit holes, or `__u8 _pad[n]` in C). */
export const pad = (n: number): Pad => ({ _tag: "Pad", size: n, align: 1 })

/**
 * A fixed byte array, copied out: the record's bytes are a view of a batch buffer that is reused (a Buffer's
 * `slice` would be a view too).
 */
export const bytes = (n: number): Field<Uint8Array> =>
  field<Uint8Array>(n, 1, (_v, b, o) => {
    // Byte by byte into a new array: for ids (8 and 16 bytes, three per span) half the cost of a view plus a copy.
    const out = new Uint8Array(n)
    for (let i = 0; i < n; i++) out[i] = b[o + i]!
    return out
  }, (_v, b, o, x) => {
    b.set(x.subarray(0, n), o)
    return n
  })

/**
 * The record as a Buffer without copying: ring-buffer records already are one (subarrays of the batch), and Buffer's
 * slice-to-string methods skip the view object `subarray` + `TextDecoder` would allocate per field.
 */
const asBuffer = (b: Uint8Array): Slicing => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength)) as Slicing

/**
 * Buffer's own slice-to-string methods (on every Buffer since Node's first releases): `toString(encoding, start,
 * end)` only normalises its arguments and calls one of them, which on the hot path costs as much as the decode.
 */
type Slicing = Buffer & {
  readonly utf8Slice: (start: number, end: number) => string
  readonly hexSlice: (start: number, end: number) => string
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))

/** A fixed byte array as lowercase hex in memory order (trace ids: 16 bytes, span ids: 8 bytes). */
export const hex = (n: number): Field<string> =>
  field(n, 1, (_v, b, o) => {
    if (n >= 8) return asBuffer(b).hexSlice(o, o + n)
    let s = ""
    for (let i = o; i < o + n; i++) s += HEX[b[i]!]
    return s
  }, (_v, b, o, x) => {
    for (let i = 0; i < n; i++) b[o + i] = Number.parseInt(x.slice(i * 2, i * 2 + 2) || "0", 16) || 0
    return n
  })

const utf8e = new TextEncoder()

/** Options of a string field. */
export interface StringOptions {
  /**
   * The field's values repeat (a method, a host, a route, a table): each distinct value is made into a string once
   * and the same string returned while it keeps coming (a table of 256 recent values, one per hash slot). Cheaper
   * than decoding it every time, and so is every later lookup of it (a string's hash is computed once). Not for
   * values that seldom repeat (paths with ids, peer ports, queries): a miss costs a copy of the bytes.
   */
  readonly intern?: boolean
}

interface Interned {
  readonly bytes: Uint8Array
  readonly value: string
}

/** UTF-8 `b[o, o + len)` as a string, through a per-field table of recent values. */
const internTable = () => {
  const table = new Array<Interned | undefined>(256).fill(undefined)
  return (b: Uint8Array, o: number, len: number): string => {
    // FNV-1a over the bytes; the slot from its folded low bits.
    let h = 0x811c9dc5
    for (let i = 0; i < len; i++) h = Math.imul(h ^ b[o + i]!, 0x01000193)
    const slot = (h ^ (h >>> 16)) & 255
    const hit = table[slot]
    if (hit !== undefined && hit.bytes.length === len) {
      const kept = hit.bytes
      let i = 0
      while (i < len && kept[i] === b[o + i]) i++
      if (i === len) return hit.value
    }
    const value = asBuffer(b).utf8Slice(o, o + len)
    const bytes = new Uint8Array(len)
    for (let i = 0; i < len; i++) bytes[i] = b[o + i]!
    table[slot] = { bytes, value }
    return value
  }
}

/**
 * A `char[cap]` holding a string. With `lengthField`, the named sibling field (declared anywhere in the struct)
 * holds the byte length, clamped to `cap`; without it the string ends at the first NUL. Encoding writes the bytes
 * and, with `lengthField`, sets that field to the written length.
 */
export const string = (cap: number, lengthField?: string, options?: StringOptions): Field<string> => {
  const slice = options?.intern === true
    ? internTable()
    : (b: Uint8Array, o: number, len: number) => asBuffer(b).utf8Slice(o, o + len)
  return field(cap, 1, (_v, b, o, len) => {
    if (lengthField === undefined) {
      let end = o
      while (end < o + cap && b[end] !== 0) end++
      return slice(b, o, end - o)
    }
    return slice(b, o, Math.min(Math.max(len, 0), cap))
  }, (_v, b, o, x) => {
    const enc = utf8e.encode(x).subarray(0, cap)
    b.set(enc, o)
    return enc.length
  }, lengthField)
}

interface Reader {
  readonly name: string
  readonly member: Field<any>
  readonly offset: number
}
type DecodeAt = (view: DataView, bytes: Uint8Array, base: number, length: number) => unknown

/**
 * A decoder written for one layout: every field read into a local (length fields first, so strings can use them),
 * then one object literal. V8 gives every record the literal's one fast shape, with no per-field store through a
 * computed key and no loop over the fields; this is the Runner's per-record hot path. Undefined where code cannot be
 * generated (`--disallow-code-generation-from-strings`).
 */
const compileDecoder = (
  size: number,
  readers: ReadonlyArray<Reader>,
  ordered: ReadonlyArray<Reader>
): DecodeAt | undefined => {
  const index = new Map(readers.map((r, i) => [r.name, i]))
  const body = [
    `if (length < ${size}) throw new RangeError("record is " + length + " bytes, layout needs ${size}")`,
    "const b = asBuffer(bytes)",
    ...ordered.map((r) => {
      const lf = r.member.lengthField
      return `const v${index.get(r.name)} = read[${index.get(r.name)}](view, b, base + ${r.offset}, ` +
        `${lf === undefined ? "0" : `Number(v${index.get(lf)})`})`
    }),
    `return { ${readers.map((r, i) => `${JSON.stringify(r.name)}: v${i}`).join(", ")} }`
  ].join("\n")
  try {
    const make = new Function("read", "asBuffer", `return function decodeAt(view, bytes, base, length) {\n${body}\n}`)
    return make(readers.map((r) => r.member.read), asBuffer) as DecodeAt
  } catch {
    return undefined
  }
}

/** The same decoder without generated code: a copy of a template with every property, then a store per field. */
const loopDecoder = (size: number, readers: ReadonlyArray<Reader>, ordered: ReadonlyArray<Reader>): DecodeAt => {
  // Copying a template that already has every property keeps the record a fast object: adding 30-odd properties
  // through a computed key turns it into a slow dictionary-mode one. JSON.parse builds the template as a fast object.
  const template = JSON.parse(JSON.stringify(Object.fromEntries(readers.map((r) => [r.name, null])))) as object
  return (view, bytes, base, length) => {
    if (length < size) throw new RangeError(`record is ${length} bytes, layout needs ${size}`)
    const b = asBuffer(bytes)
    const out: Record<string, unknown> = { ...template }
    for (let i = 0; i < ordered.length; i++) {
      const r = ordered[i]!
      const lf = r.member.lengthField
      out[r.name] = r.member.read(view, b, base + r.offset, lf === undefined ? 0 : Number(out[lf]))
    }
    return out
  }
}

/** Lay out `fields` in order at C alignment (or packed) and build a codec for the struct. */
export const struct = <const F extends Readonly<Record<string, Member>>>(
  fields: F,
  options?: {
    readonly packed?: boolean
    /** The C struct mirrored, checked against the object's BTF when a probe using this layout loads. */
    readonly struct?: string
  }
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
  const decodeAt = (compileDecoder(size, readers, ordered) ?? loopDecoder(size, readers, ordered)) as (
    view: DataView,
    bytes: Uint8Array,
    base: number,
    length: number
  ) => Decoded<F>
  const decode = (input: Uint8Array): Decoded<F> =>
    decodeAt(new DataView(input.buffer, input.byteOffset, input.byteLength), input, 0, input.length) as Decoded<F>
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
  const placed: Array<LayoutField> = plan.map((p) => ({
    name: p.name,
    offset: p.offset,
    size: p.member.size,
    pad: p.member._tag === "Pad",
    ...(p.member._tag === "Field" && p.member.c !== undefined ? { c: p.member.c } : {})
  }))
  return {
    size,
    align: maxAlign,
    offsets,
    fields: placed,
    ...(options?.struct === undefined ? {} : { struct: options.struct }),
    decode,
    decodeAt,
    encode
  }
}

/** The same layout, mirroring the C struct `name` (for layouts built without `{ struct }`). */
export const named = <T>(layout: Layout<T>, name: string): Layout<T> => ({ ...layout, struct: name })

const layouts = new WeakMap<object, Layout<unknown>>()

/** The layout a `schema` was made from, so a probe can check its record against BTF; undefined for other codecs. */
export const layoutOf = (codec: Schema.Codec<unknown, Uint8Array> | object): Layout<unknown> | undefined =>
  layouts.get(codec)

/** A layout as an effect Schema from `Uint8Array` to the decoded struct: short records fail with a SchemaError. */
export const schema = <T>(layout: Layout<T>): Schema.Codec<T, Uint8Array> => {
  const codec = makeSchema(layout)
  layouts.set(codec, layout as Layout<unknown>)
  return codec
}

const makeSchema = <T>(layout: Layout<T>): Schema.Codec<T, Uint8Array> =>
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

// ---------------------------------------------------------------------------------------------------------------
// The check against BTF
// ---------------------------------------------------------------------------------------------------------------

/** One disagreement between a layout and the C struct: `field` is the layout's field, or the C member's path. */
export interface Mismatch {
  readonly field: string
  readonly message: string
}

interface Leaf {
  readonly path: string
  readonly name: string
  readonly offset: number
  readonly size: number
  readonly bitfield: boolean
}

/** The struct's members down to scalars and arrays, with absolute byte offsets; anonymous members add no path. */
const leaves = (members: ReadonlyArray<BtfMember>, base: number, prefix: string): Array<Leaf> =>
  members.flatMap((m) => {
    const offset = base + Math.floor(m.bitOffset / 8)
    const path = m.name === "" ? prefix : prefix === "" ? m.name : `${prefix}.${m.name}`
    if (m.members !== undefined && m.bitSize === 0) return leaves(m.members, offset, path)
    return [{ path, name: m.name, offset, size: m.bitSize > 0 ? m.bitSize / 8 : m.size, bitfield: m.bitSize > 0 }]
  })

const snake = (name: string): string => name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase()

/** The leaf a field mirrors: by path, else by a name unique among the leaves. */
const resolve = (field: LayoutField, all: ReadonlyArray<Leaf>): Leaf | string => {
  const names = field.c !== undefined ? [field.c] : [...new Set([snake(field.name), field.name])]
  for (const n of names) {
    const byPath = all.find((l) => l.path === n)
    if (byPath !== undefined) return byPath
    const byName = all.filter((l) => l.name === n)
    if (byName.length === 1) return byName[0]!
    if (byName.length > 1) return `member "${n}" is ambiguous (${byName.map((l) => l.path).join(", ")}): name its path`
  }
  return `no member ${names.map((n) => `"${n}"`).join(" or ")}`
}

/**
 * Compare a layout with the C struct it mirrors: the size, each field's offset and width, and that every C member
 * is covered by a field or padding. Empty when they agree.
 */
export const check = (
  layout: { readonly size: number; readonly fields: ReadonlyArray<LayoutField> },
  struct: BtfStruct
): ReadonlyArray<Mismatch> => {
  const out: Array<Mismatch> = []
  const all = leaves(struct.members, 0, "")
  const covered = new Uint8Array(Math.max(layout.size, struct.size))
  /** Members a field mirrors: one already named in a mismatch is not reported again as uncovered. */
  const mirrored = new Set<string>()
  for (const f of layout.fields) {
    covered.fill(1, f.offset, f.offset + f.size)
    if (f.pad) continue
    const leaf = resolve(f, all)
    if (typeof leaf === "string") {
      out.push({ field: f.name, message: `field "${f.name}": ${leaf}` })
      continue
    }
    mirrored.add(leaf.path)
    const member = leaf.path === f.name ? "" : ` (member ${leaf.path})`
    if (leaf.bitfield) {
      out.push({ field: f.name, message: `field "${f.name}"${member}: is a bitfield, which a layout cannot mirror` })
    } else if (leaf.offset !== f.offset) {
      out.push({ field: f.name, message: `field "${f.name}"${member}: offset ${f.offset}, BTF says ${leaf.offset}` })
    } else if (leaf.size !== f.size) {
      out.push({ field: f.name, message: `field "${f.name}"${member}: ${f.size} bytes, BTF says ${leaf.size}` })
    }
  }
  if (layout.size !== struct.size) {
    out.push({ field: "", message: `size ${layout.size} bytes, BTF says ${struct.size}` })
  }
  for (const leaf of all) {
    if (leaf.size === 0 || leaf.offset >= covered.length || mirrored.has(leaf.path)) continue
    if (covered.subarray(leaf.offset, leaf.offset + Math.max(1, Math.ceil(leaf.size))).every((b) => b === 1)) continue
    out.push({
      field: leaf.path,
      message: `member ${leaf.path} (offset ${leaf.offset}, ${leaf.size} bytes) is not in the layout`
    })
  }
  return out
}
