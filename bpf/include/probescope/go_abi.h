/* Go's register ABI on x86-64 (Go >= 1.17), read from a uprobe's pt_regs.
 * Integer arguments and results go in RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11; a string or interface takes two
 * consecutive registers. The running goroutine's g is kept in R14. Read through regs.h's `struct ps_pt_regs` (no CO-RE). */
#pragma once

#define GO_ARG1(ctx) ((u64)__PT_REGS_CAST(ctx)->ax)
#define GO_ARG2(ctx) ((u64)__PT_REGS_CAST(ctx)->bx)
#define GO_ARG3(ctx) ((u64)__PT_REGS_CAST(ctx)->cx)
#define GO_ARG4(ctx) ((u64)__PT_REGS_CAST(ctx)->di)
#define GO_ARG5(ctx) ((u64)__PT_REGS_CAST(ctx)->si)
#define GO_ARG6(ctx) ((u64)__PT_REGS_CAST(ctx)->r8)
#define GO_ARG7(ctx) ((u64)__PT_REGS_CAST(ctx)->r9)
#define GO_ARG8(ctx) ((u64)__PT_REGS_CAST(ctx)->r10)
#define GO_ARG9(ctx) ((u64)__PT_REGS_CAST(ctx)->r11)

/* The current goroutine's g pointer: stable for the goroutine's life, so it keys per-goroutine state. */
#define GO_G(ctx) ((u64)__PT_REGS_CAST(ctx)->r14)
#define GO_SP(ctx) ((u64)__PT_REGS_CAST(ctx)->sp)

/* A Go string header as laid out in memory. */
struct go_string {
  u64 ptr;
  u64 len;
};

/* A Go slice header as laid out in memory. */
struct go_slice {
  u64 ptr;
  u64 len;
  u64 cap;
};

/* A Go interface value (itab or type, then data). */
struct go_iface {
  u64 tab;
  u64 data;
};
