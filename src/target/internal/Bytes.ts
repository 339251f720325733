/**
 * Bounds-checked little-endian reads over a file's bytes. Every read checks its range and throws `OutOfBounds`,
 * which the parsers turn into a typed error naming the structure they were reading.
 */

/** Thrown by a read outside the buffer; carries what was being read. */
export class OutOfBounds extends Error {
  readonly structure: string
  constructor(structure: string, offset: number, length: number, size: number) {
    super(`${structure}: bytes ${offset}..${offset + length} outside 0..${size}`)
    this.structure = structure
  }
}

/** Thrown by a parser on inconsistent data; carries the structure. */
export class Corrupt extends Error {
  readonly structure: string
  constructor(structure: string, message: string) {
    super(`${structure}: ${message}`)
    this.structure = structure
  }
}

/** Throws unless [offset, offset+length) lies within a buffer of `size` bytes (and both are safe integers). */
export const check = (size: number, offset: number, length: number, structure: string): void => {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 ||
    offset + length > size) {
    throw new OutOfBounds(structure, offset, length, size)
  }
}

export const u8 = (b: Uint8Array, o: number, what: string): number => {
  check(b.length, o, 1, what)
  return b[o]!
}

export const u16 = (b: Buffer, o: number, what: string): number => {
  check(b.length, o, 2, what)
  return b.readUInt16LE(o)
}

export const u32 = (b: Buffer, o: number, what: string): number => {
  check(b.length, o, 4, what)
  return b.readUInt32LE(o)
}

export const i32 = (b: Buffer, o: number, what: string): number => {
  check(b.length, o, 4, what)
  return b.readInt32LE(o)
}

export const u64 = (b: Buffer, o: number, what: string): bigint => {
  check(b.length, o, 8, what)
  return b.readBigUInt64LE(o)
}

/** A u64 that must fit a JS number (file offsets, sizes): larger values are corrupt for files we can hold. */
export const u64n = (b: Buffer, o: number, what: string): number => {
  const v = u64(b, o, what)
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Corrupt(what, `value ${v} too large`)
  return Number(v)
}

/** A view of [offset, offset+length) without copying. */
export const slice = (b: Buffer, offset: number, length: number, what: string): Buffer => {
  check(b.length, offset, length, what)
  return b.subarray(offset, offset + length)
}

/** A NUL-terminated string starting at `o`, at most `max` bytes long. */
export const cstring = (b: Buffer, o: number, what: string, max = 4096): string => {
  check(b.length, o, 0, what)
  const end = Math.min(b.length, o + max)
  const nul = b.indexOf(0, o)
  if (nul < 0 || nul >= end) throw new Corrupt(what, `unterminated string at ${o}`)
  return b.toString("utf8", o, nul)
}

/** An unsigned LEB128 / Go uvarint at `o`; returns [value, next offset]. At most 10 bytes (64 bits). */
export const uleb = (b: Uint8Array, o: number, what: string): [number, number] => {
  let result = 0
  let mul = 1
  for (let i = 0; i < 10; i++) {
    const byte = u8(b, o + i, what)
    result += (byte & 0x7f) * mul
    if ((byte & 0x80) === 0) {
      if (!Number.isSafeInteger(result)) throw new Corrupt(what, "varint too large")
      return [result, o + i + 1]
    }
    mul *= 128
  }
  throw new Corrupt(what, "varint longer than 10 bytes")
}

/** A signed LEB128 at `o`; returns [value, next offset]. */
export const sleb = (b: Uint8Array, o: number, what: string): [number, number] => {
  let result = 0
  let mul = 1
  for (let i = 0; i < 10; i++) {
    const byte = u8(b, o + i, what)
    result += (byte & 0x7f) * mul
    mul *= 128
    if ((byte & 0x80) === 0) {
      if ((byte & 0x40) !== 0) result -= mul
      return [result, o + i + 1]
    }
  }
  throw new Corrupt(what, "varint longer than 10 bytes")
}
