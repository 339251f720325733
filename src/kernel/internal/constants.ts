/** Encoding of `.rodata` constants to the byte size the object's BTF gives them. */
import type { ConstantValue } from "../Bpf.ts"

/** Little-endian bytes of `value` for a variable of `size` bytes, or a reason why it does not fit. */
export const encodeConstant = (value: ConstantValue, size: number): Buffer | string => {
  if (value instanceof Uint8Array) {
    return value.byteLength === size
      ? Buffer.from(value.buffer, value.byteOffset, value.byteLength)
      : `is ${size} bytes, got ${value.byteLength} bytes`
  }
  const n = typeof value === "boolean" ? (value ? 1n : 0n) : typeof value === "number" ? toBigInt(value) : value
  if (n === undefined) return `needs an integer, got ${String(value)}`
  if (size < 1 || size > 8) return `is ${size} bytes: pass a Uint8Array`
  const bits = BigInt(size * 8)
  const min = -(1n << (bits - 1n))
  const max = (1n << bits) - 1n
  if (n < min || n > max) return `is ${size} bytes, ${n} does not fit`
  const out = Buffer.alloc(size)
  let u = BigInt.asUintN(size * 8, n)
  for (let i = 0; i < size; i++) {
    out[i] = Number(u & 0xffn)
    u >>= 8n
  }
  return out
}

const toBigInt = (n: number): bigint | undefined => Number.isSafeInteger(n) ? BigInt(n) : undefined
