/* sched_process_exec in three flavours, for the tracepoint attach tests: a perf-event tracepoint (needs the
 * tracepoint id from tracefs), a raw tracepoint and a BTF tracepoint (both attach by name, no tracefs). */
#include "common.h"

struct exec_event {
  u32 tgid;
  u32 kind; /* 1 tp, 2 raw_tp, 3 tp_btf */
};

static __always_inline int emit(u32 kind) {
  struct exec_event e = {.tgid = bpf_get_current_pid_tgid() >> 32, .kind = kind};
  ps_submit(&e, sizeof(e));
  return 0;
}

SEC("tp/sched/sched_process_exec")
int exec_tp(void *ctx) { return emit(1); }

SEC("raw_tp/sched_process_exec")
int exec_raw_tp(void *ctx) { return emit(2); }

SEC("tp_btf/sched_process_exec")
int exec_tp_btf(void *ctx) { return emit(3); }
