/**
 * A minimal protobuf writer for the OTLP encoders: one growable buffer reused across batches, written forwards.
 *
 * A nested message's length comes before its bytes but is known only after them, so `begin` reserves the bytes a
 * length is expected to take and `end` writes it there, moving the message when the guess was wrong (callers reserve
 * 1 byte for small messages, 2 for a span, 3 for the groups holding a batch's spans, so that what has to move is
 * small). Lengths are always the canonical (shortest) varint: the bytes are what any protobuf library would write.
 */

/** Value of each ASCII hex digit (either case), -1 for anything else. */
const HEX = new Int8Array(128).fill(-1)
for (let i = 0; i < 10; i++) HEX[48 + i] = i
for (let i = 0; i < 6; i++) {
  HEX[97 + i] = 10 + i
  HEX[65 + i] = 10 + i
}

const TWO_32 = 0x1_0000_0000

/** Bytes of the canonical varint of `n` (0 <= n < 2^32). */
export const varintSize = (n: number): number =>
  n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x20_0000 ? 3 : n < 0x1000_0000 ? 4 : 5

const utf8 = new TextEncoder()

/**
 * An id's `bytes` bytes at `p` of `buf`, which has room; returns the position after them. A loop beats `set` for 8
 * or 16 bytes; the telemetry layer has checked the length.
 */
export const putId = (buf: Uint8Array, p: number, id: Uint8Array, bytes: number): number => {
  for (let i = 0; i < bytes; i++) buf[p++] = id[i]!
  return p
}

export class ProtoWriter {
  // A plain Uint8Array, not a Buffer: element access on the Buffer subclass is measurably slower in V8.
  buf: Uint8Array
  view: DataView
  pos = 0

  constructor(initialSize = 64 * 1024) {
    this.buf = new Uint8Array(initialSize)
    this.view = new DataView(this.buf.buffer)
  }

  /** Starts a new message in the same buffer. */
  reset(): void {
    this.pos = 0
  }

  /** Makes room for `n` more bytes. */
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.pos + n) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.pos))
    this.buf = next
    this.view = new DataView(next.buffer)
  }

  /** A copy of what was written: the buffer itself is reused by the next message. */
  finish(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos))
  }

  /** One byte: a tag of a field numbered up to 15, or any byte under 0x80. */
  byte(b: number): void {
    this.ensure(1)
    this.buf[this.pos++] = b
  }

  /** Bytes as they are (pre-encoded fields, e.g. a cached resource). */
  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length)
    this.buf.set(bytes, this.pos)
    this.pos += bytes.length
  }

  /** A one-byte tag and bytes after it (a cached field's value): one bounds check for both. */
  field(tag: number, bytes: Uint8Array): void {
    this.ensure(1 + bytes.length)
    this.buf[this.pos] = tag
    this.buf.set(bytes, this.pos + 1)
    this.pos += 1 + bytes.length
  }

  /** A varint of 0 <= n < 2^32. */
  uint32(n: number): void {
    this.ensure(5)
    const buf = this.buf
    let p = this.pos
    while (n >= 0x80) {
      buf[p++] = (n & 0x7f) | 0x80
      n >>>= 7
    }
    buf[p++] = n
    this.pos = p
  }

  /** The int64 varint of an integer in [-2^63, 2^63): negative numbers take ten bytes (two's complement). */
  int64(n: number): void {
    if (n >= 0 && n < TWO_32) return this.uint32(n)
    // Exact for every integer double: dividing by 2^32 and flooring are exact, and so is the remainder.
    const high = Math.floor(n / TWO_32)
    let lo = n - high * TWO_32
    let hi = high >>> 0
    this.ensure(10)
    const buf = this.buf
    let p = this.pos
    while (hi !== 0) {
      buf[p++] = (lo & 0x7f) | 0x80
      lo = ((lo >>> 7) | (hi << 25)) >>> 0
      hi >>>= 7
    }
    while (lo >= 0x80) {
      buf[p++] = (lo & 0x7f) | 0x80
      lo >>>= 7
    }
    buf[p++] = lo
    this.pos = p
  }

  fixed32(n: number): void {
    this.ensure(4)
    this.view.setUint32(this.pos, n, true)
    this.pos += 4
  }

  /** A fixed64 of a non-negative bigint below 2^64 (epoch nanoseconds). */
  fixed64(n: bigint): void {
    this.ensure(8)
    this.view.setBigUint64(this.pos, n, true)
    this.pos += 8
  }

  double(n: number): void {
    this.ensure(8)
    this.view.setFloat64(this.pos, n, true)
    this.pos += 8
  }

  /** A length-delimited string: its UTF-8 bytes, written without an intermediate buffer. */
  string(s: string): void {
    const n = s.length
    if (n < 0x80) {
      // Optimistically ASCII: then the byte length is the string's length and fits the one length byte.
      this.ensure(1 + n)
      const buf = this.buf
      const start = this.pos
      let p = start + 1
      let i = 0
      for (; i < n; i++) {
        const c = s.charCodeAt(i)
        if (c >= 0x80) break
        buf[p++] = c
      }
      if (i === n) {
        buf[start] = n
        this.pos = p
        return
      }
    }
    const len = Buffer.byteLength(s, "utf8")
    this.uint32(len)
    this.ensure(len)
    utf8.encodeInto(s, this.buf.subarray(this.pos, this.pos + len))
    this.pos += len
  }

  /**
   * A length-delimited bytes field from `bytes` hex digits' worth of an id (32 for a trace id, 16 for a span id),
   * decoded straight into the buffer. The telemetry layer refuses ids that are not lowercase hex before they get here.
   */
  hexId(hex: string, bytes: number): void {
    this.ensure(1 + bytes)
    const buf = this.buf
    let p = this.pos
    buf[p++] = bytes
    for (let i = 0; i < 2 * bytes; i += 2) {
      buf[p++] = (HEX[hex.charCodeAt(i) & 0x7f]! << 4) | HEX[hex.charCodeAt(i + 1) & 0x7f]!
    }
    this.pos = p
  }

  /** A length-delimited bytes field of an id in either form (`Telemetry.Id`) of `bytes` bytes (16 or 8). */
  id(id: Uint8Array | string, bytes: number): void {
    if (typeof id === "string") return this.hexId(id, bytes)
    this.ensure(1 + bytes)
    const buf = this.buf
    let p = this.pos
    buf[p++] = bytes
    this.pos = putId(buf, p, id, bytes)
  }

  /** Starts a length-delimited message (its tag already written), reserving `reserve` bytes for its length. */
  begin(reserve = 1): number {
    this.ensure(reserve)
    const start = this.pos
    this.pos += reserve
    return start
  }

  /** Ends the message `begin` started at `start`: writes its length there, moving the message if it must. */
  end(start: number, reserve = 1): void {
    const len = this.pos - start - reserve
    const need = varintSize(len)
    if (need !== reserve) {
      this.ensure(need - reserve)
      this.buf.copyWithin(start + need, start + reserve, this.pos)
      this.pos += need - reserve
    }
    const buf = this.buf
    let p = start
    let n = len
    while (n >= 0x80) {
      buf[p++] = (n & 0x7f) | 0x80
      n >>>= 7
    }
    buf[p] = n
  }
}

/**
 * The same growable buffer for OTLP/JSON: text is written as UTF-8 bytes as it is produced, so a request of
 * thousands of spans never becomes one long JavaScript string to flatten and encode at the end.
 */
export class JsonWriter extends ProtoWriter {
  /** Text known to be ASCII and to need no escaping: punctuation, field names, numbers, hex ids. */
  ascii(s: string): void {
    const n = s.length
    this.ensure(n)
    const buf = this.buf
    let p = this.pos
    for (let i = 0; i < n; i++) buf[p++] = s.charCodeAt(i)
    this.pos = p
  }

  /** A JSON string literal (quoted, escaped). */
  quoted(s: string): void {
    const n = s.length
    this.ensure(n + 2)
    const buf = this.buf
    const start = this.pos
    let p = start
    buf[p++] = 0x22
    let i = 0
    for (; i < n; i++) {
      const c = s.charCodeAt(i)
      // Printable ASCII other than '"' and '\': as it is. Anything else takes the slow path below.
      if (c < 0x20 || c >= 0x7f || c === 0x22 || c === 0x5c) break
      buf[p++] = c
    }
    if (i === n) {
      buf[p++] = 0x22
      this.pos = p
      return
    }
    this.pos = start
    this.text(JSON.stringify(s))
  }

  /** Any text, as UTF-8. */
  text(s: string): void {
    const len = Buffer.byteLength(s, "utf8")
    this.ensure(len)
    utf8.encodeInto(s, this.buf.subarray(this.pos, this.pos + len))
    this.pos += len
  }
}
