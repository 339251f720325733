/* A custom probe: times each call of `main.work(n int)` in a Go program and emits one record per call.
 *
 * Entry (at the function's entryOffset, past the stack-check prologue) starts a record keyed by the goroutine;
 * every RET of the function (never a uretprobe on Go) finishes it and submits it to the shared `events` ring. */
#include "common.h"
#include "sampling.h"

/* Calls with n below this are not recorded (probe-specific config, set at load). */
const volatile u64 min_n = 0;

struct work_record {
  u64 start_ns;
  u64 end_ns;
  u8 trace_id[16];
  u8 span_id[8];
  u64 n;
  u64 goroutine;
  u32 pid;
  u32 _pad;
};
PS_RECORD(work_record);

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 10240);
  __type(key, u64);
  __type(value, struct work_record);
} work_inflight SEC(".maps");

SEC("uprobe")
int uprobe_work(struct pt_regs *ctx) {
  u64 n = GO_ARG1(ctx);
  if (n < min_n)
    return 0;
  struct work_record r = {};
  r.start_ns = bpf_ktime_get_ns();
  r.n = n;
  r.goroutine = GO_G(ctx);
  r.pid = bpf_get_current_pid_tgid() >> 32;
#pragma unroll
  for (int i = 0; i < 16; i += 4)
    *(u32 *)&r.trace_id[i] = bpf_get_prandom_u32();
  *(u32 *)&r.span_id[0] = bpf_get_prandom_u32();
  *(u32 *)&r.span_id[4] = bpf_get_prandom_u32();
  if (!ps_sampled(false, false, r.trace_id))
    return 0;
  u64 g = GO_G(ctx);
  bpf_map_update_elem(&work_inflight, &g, &r, BPF_ANY);
  return 0;
}

SEC("uprobe")
int uprobe_work_ret(struct pt_regs *ctx) {
  u64 g = GO_G(ctx);
  struct work_record *r = bpf_map_lookup_elem(&work_inflight, &g);
  if (!r)
    return 0;
  r->end_ns = bpf_ktime_get_ns();
  ps_submit(r, sizeof(*r));
  bpf_map_delete_elem(&work_inflight, &g);
  return 0;
}
