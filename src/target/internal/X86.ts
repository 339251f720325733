/**
 * An x86-64 instruction length decoder, enough for Go-generated code and the Go runtime's assembly (legacy prefixes,
 * REX, maps 0F/0F38/0F3A, VEX, EVEX, x87). It decodes lengths, not semantics, plus the few facts the probes need:
 * the end of the stack-check prologue and the RET instructions.
 */

/** Thrown on bytes that are not a valid 64-bit mode instruction. */
export class DecodeError extends Error {
  readonly at: number
  constructor(at: number, message: string) {
    super(`at +0x${at.toString(16)}: ${message}`)
    this.at = at
  }
}

/** Immediate kinds: none, ib, iw, iz (2 with 0x66), iv (8 with REX.W), moffs, enter (iw+ib), and invalid opcodes. */
const NONE = 0
const IB = 1
const IW = 2
const IZ = 4
const IV = 5
const MOFFS = 6
const ENTER = 7
const BAD = 9

// One-byte map: which opcodes have a ModRM byte, and their immediate kind.
const modrm1 = new Uint8Array(256)
const imm1 = new Uint8Array(256)
for (let op = 0; op < 0x40; op++) {
  const lo = op & 7
  if (lo < 4) modrm1[op] = 1
  else if (lo === 4) imm1[op] = IB
  else if (lo === 5) imm1[op] = IZ
  else imm1[op] = BAD // push/pop seg, DAA..., and prefixes handled before lookup
}
imm1[0x0f] = NONE
for (const op of [0x60, 0x61, 0x82, 0x9a, 0xce, 0xd4, 0xd5, 0xd6, 0xea]) imm1[op] = BAD
modrm1[0x63] = 1
imm1[0x68] = IZ
modrm1[0x69] = 1
imm1[0x69] = IZ
imm1[0x6a] = IB
modrm1[0x6b] = 1
imm1[0x6b] = IB
for (let op = 0x70; op <= 0x7f; op++) imm1[op] = IB
for (let op = 0x80; op <= 0x8f; op++) modrm1[op] = 1
imm1[0x80] = IB
imm1[0x81] = IZ
imm1[0x83] = IB
for (let op = 0xa0; op <= 0xa3; op++) imm1[op] = MOFFS
imm1[0xa8] = IB
imm1[0xa9] = IZ
for (let op = 0xb0; op <= 0xb7; op++) imm1[op] = IB
for (let op = 0xb8; op <= 0xbf; op++) imm1[op] = IV
modrm1[0xc0] = 1
imm1[0xc0] = IB
modrm1[0xc1] = 1
imm1[0xc1] = IB
imm1[0xc2] = IW
modrm1[0xc6] = 1
imm1[0xc6] = IB
modrm1[0xc7] = 1
imm1[0xc7] = IZ
imm1[0xc8] = ENTER
imm1[0xca] = IW
imm1[0xcd] = IB
for (let op = 0xd0; op <= 0xd3; op++) modrm1[op] = 1
for (let op = 0xd8; op <= 0xdf; op++) modrm1[op] = 1
for (let op = 0xe0; op <= 0xe7; op++) imm1[op] = IB
imm1[0xe8] = IZ
imm1[0xe9] = IZ
imm1[0xeb] = IB
for (const op of [0xf6, 0xf7, 0xfe, 0xff]) modrm1[op] = 1

// Two-byte map (0F xx): ModRM unless listed; immediates for a few.
const modrm2 = new Uint8Array(256).fill(1)
const imm2 = new Uint8Array(256)
for (const op of [0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0e, 0x77, 0xa0, 0xa1, 0xa2, 0xa8, 0xa9, 0xaa]) {
  modrm2[op] = 0
}
for (let op = 0x30; op <= 0x37; op++) modrm2[op] = 0
for (let op = 0x80; op <= 0x8f; op++) {
  modrm2[op] = 0
  imm2[op] = IZ
}
for (let op = 0xc8; op <= 0xcf; op++) modrm2[op] = 0
for (const op of [0x70, 0x71, 0x72, 0x73, 0xa4, 0xac, 0xba, 0xc2, 0xc4, 0xc5, 0xc6]) imm2[op] = IB
const invalid2 = [0x04, 0x0a, 0x0c, 0x24, 0x25, 0x26, 0x27, 0x36, 0x39, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x7a, 0x7b, 0xff]
for (const op of invalid2) imm2[op] = BAD
imm2[0xb9] = NONE // UD1 has ModRM

/** One decoded instruction: its start, length, and the facts the analysis needs. */
export interface Instruction {
  readonly offset: number
  readonly length: number
  /** Opcode byte in its map (map 0 = one-byte, 1 = 0F, 2 = 0F38, 3 = 0F3A, >3 = EVEX maps). */
  readonly map: number
  readonly opcode: number
  readonly rex: number
  readonly modrm: number
  readonly disp: number
}

/** Decodes the instruction at `o` (relative to `code`); throws DecodeError. */
export const decode = (code: Uint8Array, o: number): Instruction => {
  const start = o
  const end = Math.min(code.length, start + 15)
  const need = (n: number): void => {
    if (o + n > end) throw new DecodeError(start, "instruction runs past the end (or is longer than 15 bytes)")
  }
  let opsize16 = false
  let addr32 = false
  for (;;) {
    need(1)
    const b = code[o]!
    if (b === 0x66) opsize16 = true
    else if (b === 0x67) addr32 = true
    else if (!(b === 0xf0 || b === 0xf2 || b === 0xf3 || b === 0x2e || b === 0x36 || b === 0x3e || b === 0x26 ||
      b === 0x64 || b === 0x65)) break
    o++
  }
  let rex = 0
  need(1)
  if ((code[o]! & 0xf0) === 0x40) {
    rex = code[o]!
    o++
  }
  need(1)
  let op = code[o++]!
  let map = 0
  let hasModrm: boolean
  let imm: number
  if ((op === 0xc4 || op === 0xc5 || op === 0x62) && rex === 0) {
    // VEX (C4 3-byte, C5 2-byte) or EVEX (62): always in 64-bit mode.
    if (op === 0xc5) {
      need(2)
      map = 1
      o += 1
    } else if (op === 0xc4) {
      need(3)
      map = code[o]! & 0x1f
      o += 2
    } else {
      need(4)
      map = code[o]! & 0x07
      o += 3
    }
    op = code[o++]!
    if (map === 0 || map > 7 || map === 4) throw new DecodeError(start, `VEX/EVEX map ${map}`)
    hasModrm = !(map === 1 && op === 0x77)
    imm = map === 3 ? IB : map === 1 && imm2[op] === IB ? IB : NONE
  } else if (op === 0x0f) {
    need(1)
    op = code[o++]!
    if (op === 0x38) {
      need(1)
      map = 2
      op = code[o++]!
      hasModrm = true
      imm = NONE
    } else if (op === 0x3a) {
      need(1)
      map = 3
      op = code[o++]!
      hasModrm = true
      imm = IB
    } else if (op === 0x0f) {
      map = 1
      hasModrm = true
      imm = IB // 3DNow!: the opcode is the trailing byte
    } else {
      map = 1
      hasModrm = modrm2[op] === 1
      imm = imm2[op]!
    }
  } else {
    hasModrm = modrm1[op] === 1
    imm = imm1[op]!
  }
  if (imm === BAD) throw new DecodeError(start, `invalid opcode ${map === 1 ? "0f " : ""}${op.toString(16)}`)

  let modrm = -1
  let disp = 0
  if (hasModrm) {
    need(1)
    modrm = code[o++]!
    const mod = modrm >> 6
    const rm = modrm & 7
    if (mod !== 3) {
      let base = rm
      if (rm === 4) {
        need(1)
        base = code[o++]! & 7
      }
      if (mod === 1) {
        need(1)
        disp = (code[o]! << 24) >> 24
        o += 1
      } else if (mod === 2 || (mod === 0 && (rm === 5 || (rm === 4 && base === 5)))) {
        need(4)
        disp = code[o]! | (code[o + 1]! << 8) | (code[o + 2]! << 16) | (code[o + 3]! << 24)
        o += 4
      }
    }
    // Group 3 TEST takes an immediate only for /0 and /1.
    if (map === 0 && (op === 0xf6 || op === 0xf7)) {
      const reg = (modrm >> 3) & 7
      imm = reg < 2 ? (op === 0xf6 ? IB : IZ) : NONE
    }
  }
  const rexW = (rex & 8) !== 0
  let n = 0
  switch (imm) {
    case IB:
      n = 1
      break
    case IW:
      n = 2
      break
    case IZ:
      n = map === 1 || op === 0xe8 || op === 0xe9 ? 4 : opsize16 ? 2 : 4
      break
    case IV:
      n = rexW ? 8 : opsize16 ? 2 : 4
      break
    case MOFFS:
      n = addr32 ? 4 : 8
      break
    case ENTER:
      n = 3
      break
  }
  need(n)
  o += n
  return { offset: start, length: o - start, map, opcode: op, rex, modrm, disp }
}

/** RET near (C3) or RET imm16 (C2) in the one-byte map. */
export const isRet = (i: Instruction): boolean => i.map === 0 && (i.opcode === 0xc3 || i.opcode === 0xc2)

/** `CMP reg, [R14+0x10]` (3B) or `CMP [R14+0x10], reg` (39): the goroutine's stack guard, g.stackguard0. */
const isStackGuardCmp = (i: Instruction): boolean =>
  i.map === 0 && (i.opcode === 0x3b || i.opcode === 0x39) && (i.rex & 0x9) === 0x9 && (i.modrm & 0xc7) === 0x46 &&
  i.disp === 0x10

/** JBE rel8 (76) or rel32 (0F 86). */
const isJbe = (i: Instruction): boolean => (i.map === 0 && i.opcode === 0x76) || (i.map === 1 && i.opcode === 0x86)

/** What the analysis needs of one function's code. */
export interface FunctionCode {
  /** Offset (relative to the function) just past the stack-check JBE, or 0 when the function has no prologue. */
  readonly entry: number
  /** Offsets (relative to the function) of every RET. */
  readonly returns: ReadonlyArray<number>
  /** False when decoding stopped on an invalid instruction: `returns` may then be incomplete. */
  readonly complete: boolean
  readonly error?: string
}

/** How far into a function the stack check may start (the huge-frame variant has MOV, SUB, JB first). */
const PROLOGUE_WINDOW = 8

/** Decodes a function's bytes once: finds the prologue end and all RETs. Bounded by the code's length. */
export const analyzeCode = (code: Uint8Array): FunctionCode => {
  let entry = 0
  const returns: Array<number> = []
  let o = 0
  let index = 0
  let pendingCmp = -1
  try {
    while (o < code.length) {
      const i = decode(code, o)
      if (index < PROLOGUE_WINDOW && entry === 0) {
        if (isStackGuardCmp(i)) pendingCmp = index
        else if (pendingCmp === index - 1 && pendingCmp >= 0 && isJbe(i)) entry = i.offset + i.length
      }
      if (isRet(i)) returns.push(i.offset)
      o += i.length
      index++
    }
  } catch (e) {
    if (e instanceof DecodeError) return { entry, returns, complete: false, error: e.message }
    throw e
  }
  return { entry, returns, complete: true }
}
