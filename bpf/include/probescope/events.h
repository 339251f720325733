/* The ring buffer every probe writes its records to, with wakeup batching and kernel-side drop counting.
 *
 * Waking the consumer once per record costs one wakeup per event; instead a record is submitted without a wakeup
 * unless the unread data in the ring reaches `ps_wakeup_bytes` (a constant set at load). The user side also drains
 * on a short timer, so a quiet ring still delivers promptly. A record that does not fit (ring full) is counted in
 * ps_stats[PS_STAT_DROPPED] rather than lost silently. */
#pragma once

/* 1 MiB: at the 256 KiB wakeup threshold and a 50 ms drain, room for a user-space stall of over 100 ms at 10k
 * records per second, and of about 30 ms at 50k. Each ring is mapped into the agent (twice over, for wraparound), so its size is RSS: the agent
 * sizes all rings with PROBESCOPE_RINGBUF_BYTES, a probe its own with `ringBuffer.bytes`. */
#ifndef PS_RINGBUF_BYTES
#define PS_RINGBUF_BYTES (1 << 20)
#endif

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, PS_RINGBUF_BYTES);
} events SEC(".maps");

/* Name a record struct in the object's BTF, so user space checks the layout it decodes records with against it at
 * load. clang only describes types a global, a map or a function signature uses: a record that is only reserved by
 * size (bpf_ringbuf_reserve(sizeof(...))) or built on the stack would otherwise be absent. The anchor is a pointer in
 * a section libbpf does not load (no map, nothing in the kernel but the BTF it already gets). */
#define PS_RECORD(name) struct name *__ps_record_##name __attribute__((unused, section(".ps_btf")))

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

/* 0 wakes the consumer on every record. 256 KiB, a quarter of the default ring: the agent sets it at load to a quarter
 * of the ring it sizes, at most this (src/kernel/BpfLive.ts, wakeupOf). */
const volatile u64 ps_wakeup_bytes = 256 * 1024;

static __always_inline void ps_count(u32 stat) {
  u64 *v = bpf_map_lookup_elem(&ps_stats, &stat);
  if (v)
    *v += 1;
}

/* Bytes a record of `size` takes in the ring: an 8-byte header, rounded up to 8. */
#define PS_RB_FOOTPRINT(size) ((((u64)(size)) + 8 + 7) & ~7ULL)

/* Wake the consumer only when this record makes the unread data cross ps_wakeup_bytes. Forcing a wakeup on every
 * record while the ring stays above the threshold would cost one irq_work per record (measured: ~20x slower
 * producer); a consumer that has not caught up yet is already awake, and the user-side drain timer covers the rest.
 * `queued` is true when the record is already counted in the ring (reserve/commit), false before output. */
static __always_inline u64 ps_wakeup_flag_for(u64 size, bool queued) {
  if (ps_wakeup_bytes == 0)
    return 0;
  u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
  u64 before = queued ? (avail > size ? avail - size : 0) : avail;
  u64 after = queued ? avail : avail + size;
  return before < ps_wakeup_bytes && after >= ps_wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* Wakeup flag for a record about to be output (kept for callers that do not know the size: assumes 64 bytes). */
static __always_inline u64 ps_wakeup_flag(void) {
  return ps_wakeup_flag_for(PS_RB_FOOTPRINT(64), false);
}

/* Copy a record into the ring; counts a drop when the ring is full. Returns 0 on success. */
static __always_inline int ps_submit(void *data, u64 size) {
  long err = bpf_ringbuf_output(&events, data, size, ps_wakeup_flag_for(PS_RB_FOOTPRINT(size), false));
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
#define ps_commit(rec) bpf_ringbuf_submit((rec), ps_wakeup_flag_for(PS_RB_FOOTPRINT(sizeof(*(rec))), true))
