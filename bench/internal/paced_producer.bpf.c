/* Producer for bench/ringbuf.ts's paced case: one BPF_PROG_TEST_RUN writes `count` records (given in the run's
 * context) of the net/http server record's size into `events`, so the bench can pace records per second the way
 * traffic would, at sizes the agent really reads. Built by the bench with `probescope bpf build` (the package's
 * headers and flags); events.h gives the default ring (PS_RINGBUF_BYTES), ps_stats counts submitted and dropped. */
#include "common.h"

/* 480 bytes: struct nethttp_server_record, the commonest span record (bpftool btf dump of nethttp_server.bpf.o). */
struct paced_record {
  u64 seq;
  u64 ktime_ns;
  u8 rest[464];
};
PS_RECORD(paced_record);

struct paced_args {
  u32 count;
};

static u64 paced_seq;

static long produce_one(u64 index, void *ctx) {
  /* Reserved in place, as the probes do: no 480-byte copy through the BPF stack. */
  struct paced_record *r = ps_reserve(struct paced_record);
  if (!r)
    return 0; /* ring full: counted in ps_stats; the next ones are tried too, so every record asked for is counted */
  r->seq = __sync_fetch_and_add(&paced_seq, 1);
  r->ktime_ns = bpf_ktime_get_ns();
  ps_commit(r);
  return 0;
}

SEC("syscall")
int paced_produce(struct paced_args *args) {
  return bpf_loop(args->count, produce_one, NULL, 0);
}
