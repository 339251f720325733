/**
 * Trace and span ids in the two forms a probe may give them (`Telemetry.Id`): the bytes a kernel record holds (16 for
 * a trace id, 8 for a span id), or the same as lowercase hex. Probes that decode ring-buffer records keep the bytes:
 * turning them into hex at decode and back into bytes at the OTLP encoder cost about as much per span as the rest of
 * the id handling together (bench/pipeline.ts). Code that reads ids (tests, a custom sink) takes `hex(id)`.
 */
import type { Id } from "./Telemetry.ts"

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))

/** Lowercase hex of an id in either form (hex stays as it is). */
export const hex = (id: Id): string => {
  if (typeof id === "string") return id
  let s = ""
  for (let i = 0; i < id.length; i++) s += HEX[id[i]!]
  return s
}

/** Value of each ASCII hex digit (either case), -1 for anything else. */
const DIGIT = new Int8Array(128).fill(-1)
for (let i = 0; i < 10; i++) DIGIT[48 + i] = i
for (let i = 0; i < 6; i++) {
  DIGIT[97 + i] = 10 + i
  DIGIT[65 + i] = 10 + i
}

/** The bytes of an id given in hex (either case); a string that is not hex of an even length is an error. */
export const fromHex = (hex: string): Uint8Array => {
  if (hex.length % 2 !== 0) throw new TypeError(`an id in hex has an even number of digits: "${hex}"`)
  const out = new Uint8Array(hex.length / 2)
  for (let i = 0; i < out.length; i++) {
    const hi = DIGIT[hex.charCodeAt(2 * i) & 0x7f]!
    const lo = DIGIT[hex.charCodeAt(2 * i + 1) & 0x7f]!
    if (hi < 0 || lo < 0 || hex.charCodeAt(2 * i) > 0x7f || hex.charCodeAt(2 * i + 1) > 0x7f) {
      throw new TypeError(`not a hex id: "${hex}"`)
    }
    out[i] = (hi << 4) | lo
  }
  return out
}

/** Whether the id is absent or empty: a span without a parent (`parentSpanId`), a log without a span. */
export const isEmpty = (id: Id | undefined): boolean => id === undefined || id.length === 0

/**
 * Whether `id` is a W3C-valid id of `bytes` bytes: that many bytes, or twice as many lowercase hex digits; not all
 * zero when `nonZero`. A loop over the bytes or char codes: this runs three times per span.
 */
export const isValid = (id: Id | undefined, bytes: number, nonZero: boolean): boolean => {
  if (id === undefined) return false
  let any = 0
  if (typeof id === "string") {
    if (id.length !== 2 * bytes) return false
    for (let i = 0; i < id.length; i++) {
      const c = id.charCodeAt(i)
      if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false
      any |= c - 48
    }
  } else {
    if (id.length !== bytes) return false
    for (let i = 0; i < bytes; i++) any |= id[i]!
  }
  return !nonZero || any !== 0
}
