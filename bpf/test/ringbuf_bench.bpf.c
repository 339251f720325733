/* Producer for bench/ringbuf.ts: one BPF_PROG_TEST_RUN writes `bench_batch` records into `events` with bpf_loop,
 * so the kernel side is never the limit when measuring how fast records reach JS. */
#include "common.h"

const volatile u32 bench_batch = 1024;

struct bench_event {
  u64 seq;
  u64 ktime_ns;
  u8 pad[48]; /* 64-byte records, about a small span event */
};

static u64 bench_seq;

static long produce_one(u64 index, void *ctx) {
  struct bench_event e = {};
  e.seq = __sync_fetch_and_add(&bench_seq, 1);
  e.ktime_ns = bpf_ktime_get_ns();
  if (ps_submit(&e, sizeof(e)) != 0)
    return 1; /* ring full: stop this run, the drop is counted */
  return 0;
}

SEC("syscall")
int bench_produce(void *ctx) {
  return bpf_loop(bench_batch, produce_one, NULL, 0);
}
