/* go_context: the daemon probe that owns the goroutine -> span context map (go_spans, see go_context.h) and carries
 * a goroutine's context into the goroutines it starts.
 *
 * `go f()` compiles to runtime.newproc, which calls runtime.newproc1(fn, callergp, callerpc, parked, waitreason)
 * on the system stack and gets the new g back in RAX. Entry saves callergp per thread (newproc1 runs on g0 and
 * cannot be rescheduled mid-call, so the thread id pairs entry with return); each RET copies the caller's context
 * to the new g, or deletes a stale entry when the caller has none (g structs are recycled). */
#include "common.h"
#include "go_context.h"

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, u64);
  __type(value, u64);
} ps_newproc_caller SEC(".maps");

SEC("uprobe/runtime_newproc1")
int uprobe_newproc1(struct pt_regs *ctx) {
  u64 tid = bpf_get_current_pid_tgid();
  u64 callergp = GO_ARG2(ctx);
  bpf_map_update_elem(&ps_newproc_caller, &tid, &callergp, BPF_ANY);
  return 0;
}

SEC("uprobe/runtime_newproc1_ret")
int uprobe_newproc1_ret(struct pt_regs *ctx) {
  u64 tid = bpf_get_current_pid_tgid();
  u64 *callergp = bpf_map_lookup_elem(&ps_newproc_caller, &tid);
  if (!callergp)
    return 0;
  u64 parent_g = *callergp;
  bpf_map_delete_elem(&ps_newproc_caller, &tid);
  u64 newg = GO_ARG1(ctx);
  if (newg == 0)
    return 0;
  struct ps_span_ctx *sc = ps_go_ctx_get(parent_g);
  if (sc) {
    struct ps_span_ctx copy = *sc;
    ps_go_ctx_set(newg, &copy);
  } else {
    ps_go_ctx_clear(newg);
  }
  return 0;
}
