/* The registers a uprobe sees, read without CO-RE.
 *
 * vmlinux.h declares `struct pt_regs` with preserve_access_index, so every `ctx->ax` would be a CO-RE relocation, and
 * one relocation is enough for libbpf to read and parse the kernel's whole BTF (~6 MB, 5-10 ms) at every object load.
 * The layout needs no relocating: a uprobe's context is `bpf_user_pt_regs_t`, on x86-64 the UAPI `struct pt_regs`
 * (arch/x86/include/uapi/asm/ptrace.h, the verifier checks context reads against it), fixed since the ABI began. These
 * programs are x86-64 only anyway (Go's register ABI, go_abi.h). Included before bpf_tracing.h, whose PT_REGS_*
 * macros then read through it too. */
#pragma once

struct ps_pt_regs {
  u64 r15;
  u64 r14;
  u64 r13;
  u64 r12;
  u64 bp;
  u64 bx;
  u64 r11;
  u64 r10;
  u64 r9;
  u64 r8;
  u64 ax;
  u64 cx;
  u64 dx;
  u64 si;
  u64 di;
  u64 orig_ax;
  u64 ip;
  u64 cs;
  u64 flags;
  u64 sp;
  u64 ss;
};

#define __PT_REGS_CAST(x) ((const struct ps_pt_regs *)(x))
