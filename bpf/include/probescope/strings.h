/* Bounded reads of Go strings from user memory. */
#pragma once

/* Copy at most `cap` bytes (cap a compile-time constant) of the Go string (ptr, len) into dst.
 * Returns the number of bytes copied, 0 on a fault or an empty string. The verifier needs the size masked to a
 * power-of-two bound, so `cap` must be a power of two. */
static __always_inline u32 ps_read_go_str(void *dst, u32 cap, u64 ptr, u64 len) {
  if (ptr == 0 || len == 0)
    return 0;
  u32 n = len > cap ? cap : (u32)len;
  n &= (cap - 1) | cap;
  if (n > cap)
    return 0;
  if (bpf_probe_read_user(dst, n, (const void *)ptr) != 0)
    return 0;
  return n;
}

/* ps_read_go_str, and when the bytes are there but could not be read (their page not mapped in the process yet, which
 * a uprobe cannot fault in: a string constant the program has not touched), *cold gets `ptr` for user space to read
 * them through /proc/<pid>/mem (GoSymbols.ts `bytesAt`). */
static __always_inline u32 ps_read_go_str_or_at(void *dst, u32 cap, u64 ptr, u64 len, u64 *cold) {
  u32 n = ps_read_go_str(dst, cap, ptr, len);
  if (n == 0 && ptr != 0 && len != 0)
    *cold = ptr;
  return n;
}

/* Read a Go string header at `addr` (e.g. a struct field), then its bytes. */
static __always_inline u32 ps_read_go_str_at(void *dst, u32 cap, u64 addr) {
  struct go_string s = {};
  if (bpf_probe_read_user(&s, sizeof(s), (const void *)addr) != 0)
    return 0;
  return ps_read_go_str(dst, cap, s.ptr, s.len);
}

/* ps_read_go_str_at, and what could not be read for user space (GoSymbols.ts `coldString`): the bytes' address in
 * *cold and their length (at most cap) in *cold_len when the header was read; the header's address `addr` with
 * *cold_len 0 when the header itself could not be (`cap` at most 255). A read fails only on a page not mapped yet,
 * which is read-only file data (a constant), so what user space reads later is what was there now. */
static __always_inline u32 ps_read_go_str_at_or_at(void *dst, u32 cap, u64 addr, u64 *cold, u8 *cold_len) {
  struct go_string s = {};
  if (bpf_probe_read_user(&s, sizeof(s), (const void *)addr) != 0) {
    *cold = addr;
    *cold_len = 0;
    return 0;
  }
  u32 n = ps_read_go_str(dst, cap, s.ptr, s.len);
  if (n == 0 && s.ptr != 0 && s.len != 0) {
    *cold = s.ptr;
    *cold_len = s.len > cap ? cap : s.len;
  }
  return n;
}

/* Read one u64 of user memory, 0 on a fault. */
static __always_inline u64 ps_read_u64(u64 addr) {
  u64 v = 0;
  bpf_probe_read_user(&v, sizeof(v), (const void *)addr);
  return v;
}
