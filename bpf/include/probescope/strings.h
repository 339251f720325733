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

/* Read a Go string header at `addr` (e.g. a struct field), then its bytes. */
static __always_inline u32 ps_read_go_str_at(void *dst, u32 cap, u64 addr) {
  struct go_string s = {};
  if (bpf_probe_read_user(&s, sizeof(s), (const void *)addr) != 0)
    return 0;
  return ps_read_go_str(dst, cap, s.ptr, s.len);
}

/* Read one u64 of user memory, 0 on a fault. */
static __always_inline u64 ps_read_u64(u64 addr) {
  u64 v = 0;
  bpf_probe_read_user(&v, sizeof(v), (const void *)addr);
  return v;
}
