import { assert, describe, it } from "@effect/vitest"
import { analyzeCode, decode, DecodeError } from "../../src/target/internal/X86.ts"

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex")

describe("x86-64 length decoder", () => {
  const cases: Array<[string, string]> = [
    ["ret", "c3"],
    ["ret imm16", "c2 0800"],
    ["cmp rsp,[r14+0x10]", "49 3b 66 10"],
    ["jbe rel32", "0f 86 32010000"],
    ["lea r12,[rsp-0x200]", "4c 8d a4 24 00feffff"],
    ["movabs rax,imm64", "48 b8 0102030405060708"],
    ["mov word [rax+8],imm16", "66 c7 40 08 0000"],
    ["mov dword [rax+8],imm32", "c7 40 08 00000000"],
    ["mov rax,[rip+disp32]", "48 8b 05 00000000"],
    ["mov rax,[rbp+rcx*8]", "48 8b 44 cd 00"],
    ["mov rax,[disp32+rcx*8] (SIB base 5, mod 0)", "48 8b 04 cd 00000000"],
    ["test al,1", "f6 c0 01"],
    ["test eax,imm32", "f7 c0 00010000"],
    ["neg eax", "f7 d8"],
    ["call rel32", "e8 00000000"],
    ["ud2", "0f 0b"],
    ["endbr64", "f3 0f 1e fa"],
    ["pshufd xmm0,xmm1,0", "66 0f 70 c1 00"],
    ["pshufb xmm0,xmm1 (0F38)", "66 0f 38 00 c1"],
    ["palignr xmm0,xmm1,8 (0F3A)", "66 0f 3a 0f c1 08"],
    ["adcx r8,rbx", "66 4c 0f 38 f6 c3"],
    ["vpxor ymm0 (VEX2)", "c5 fd ef c0"],
    ["vinserti128 (VEX3 map 0F3A)", "c4 e3 7d 38 c1 01"],
    ["vzeroupper", "c5 f8 77"],
    ["vmovdqu64 zmm0,[rip+d] (EVEX)", "62 f1 fe 48 6f 05 f6d33500"],
    ["vpternlogd (EVEX map 0F3A, imm8)", "62 f3 75 48 25 c2 96"],
    ["fld qword [rax] (x87)", "dd 00"],
    ["enter", "c8 1000 00"],
    ["mov al,[moffs64]", "a0 0102030405060708"],
    ["lock cmpxchg [rdi],rcx", "f0 48 0f b1 0f"],
    ["nop word [rax+rax+0]", "66 0f 1f 44 00 00"],
    ["mov fs:[rax],rcx", "64 48 89 08"]
  ]
  for (const [name, bytes] of cases) {
    it(name, () => {
      const b = hex(bytes)
      assert.strictEqual(decode(b, 0).length, b.length)
    })
  }

  it("rejects invalid and truncated instructions", () => {
    assert.throws(() => decode(hex("06"), 0), DecodeError, "invalid opcode 6")
    assert.throws(() => decode(hex("48"), 0), DecodeError, "runs past the end")
    assert.throws(() => decode(hex("0f 86 0000"), 0), DecodeError, "runs past the end")
    assert.throws(() => decode(hex("66".repeat(15) + "90"), 0), DecodeError, "longer than 15 bytes")
  })

  it("finds the prologue end and every RET", () => {
    // cmp rsp,[r14+0x10]; jbe +x; push rbp; ret; nop; ret
    const code = hex("493b6610 7605 55 c3 90 c3 e8 00000000 ebf0")
    const r = analyzeCode(code)
    assert.deepStrictEqual(r, { entry: 6, returns: [7, 9], complete: true })
    // Huge frame: mov r12,rsp; sub r12,imm32; jb; cmp r12,[r14+0x10]; jbe; push rbp.
    const big = hex("4989e4 4981ec887f0000 7278 4d3b6610 7672 55 c3")
    assert.strictEqual(analyzeCode(big).entry, 18)
    // No stack check (leaf): entry 0.
    assert.strictEqual(analyzeCode(hex("488d0408 c3")).entry, 0)
    // A CMP against [R14+0x10] not followed by JBE is not a prologue.
    assert.strictEqual(analyzeCode(hex("493b6610 90 7605 c3")).entry, 0)
  })

  it("reports an incomplete decode instead of throwing", () => {
    const r = analyzeCode(hex("c3 06 c3"))
    assert.isFalse(r.complete)
    assert.deepStrictEqual(r.returns, [0])
    assert.include(r.error, "invalid opcode")
  })

  it("never throws anything but DecodeError on random bytes", () => {
    let s = 12345
    for (let i = 0; i < 20000; i++) {
      const b = Buffer.alloc(1 + (i % 64))
      for (let k = 0; k < b.length; k++) {
        s = (s * 1103515245 + 12345) >>> 0
        b[k] = s >>> 24
      }
      const r = analyzeCode(b)
      assert.isTrue(r.complete || typeof r.error === "string")
    }
  })
})
