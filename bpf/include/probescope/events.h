/* The ring buffer every probe writes its records to, with wakeup batching and kernel-side drop counting.
 *
 * Waking the consumer once per record costs one wakeup per event; instead a record is submitted without a wakeup
 * unless the unread data in the ring reaches `ps_wakeup_bytes` (a constant set at load). The user side also drains
 * on a short timer, so a quiet ring still delivers promptly. A record that does not fit (ring full) is counted in
 * ps_stats[PS_STAT_DROPPED] rather than lost silently. */
#pragma once

#ifndef PS_RINGBUF_BYTES
#define PS_RINGBUF_BYTES (1 << 22)
#endif

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, PS_RINGBUF_BYTES);
} events SEC(".maps");

enum ps_stat {
  PS_STAT_SUBMITTED = 0,
  PS_STAT_DROPPED = 1,
  PS_STAT_MAX = 2,
};

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, PS_STAT_MAX);
  __type(key, u32);
  __type(value, u64);
} ps_stats SEC(".maps");

/* 0 wakes the consumer on every record. */
const volatile u64 ps_wakeup_bytes = 64 * 1024;

static __always_inline void ps_count(u32 stat) {
  u64 *v = bpf_map_lookup_elem(&ps_stats, &stat);
  if (v)
    *v += 1;
}

static __always_inline u64 ps_wakeup_flag(void) {
  if (ps_wakeup_bytes == 0)
    return 0;
  return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= ps_wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* Copy a record into the ring; counts a drop when the ring is full. Returns 0 on success. */
static __always_inline int ps_submit(void *data, u64 size) {
  long err = bpf_ringbuf_output(&events, data, size, ps_wakeup_flag());
  ps_count(err == 0 ? PS_STAT_SUBMITTED : PS_STAT_DROPPED);
  return err == 0 ? 0 : -1;
}

/* Reserve a record of a fixed type in place (no copy); NULL (and a counted drop) when the ring is full.
 * Pair with ps_commit. */
#define ps_reserve(type)                                                                                               \
  ({                                                                                                                   \
    type *__r = bpf_ringbuf_reserve(&events, sizeof(type), 0);                                                         \
    ps_count(__r ? PS_STAT_SUBMITTED : PS_STAT_DROPPED);                                                               \
    __r;                                                                                                               \
  })
#define ps_commit(rec) bpf_ringbuf_submit((rec), ps_wakeup_flag())
