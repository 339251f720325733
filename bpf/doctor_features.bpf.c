/* Feature probes for `probescope doctor`: one tiny program per kernel feature the probes use. Doctor loads the object
 * once per feature with every other program disabled, so the verifier's verdict on each program is the answer for
 * that feature alone (a helper the kernel lacks or forbids fails the load of the program calling it). None of them
 * does anything when run: the uprobe-type ones are never attached, the others return at once. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

/* Created by every load of this object: a kernel without BPF_MAP_TYPE_RINGBUF (before 5.8) fails them all. */
struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 4096);
} feature_ring SEC(".maps");

static long feature_loop_step(u32 index, void *ctx) {
  return 0;
}

/* bpf_loop (5.17): the HTTP probes scan header maps with it. */
SEC("uprobe")
int feature_bpf_loop(struct pt_regs *ctx) {
  bpf_loop(4, feature_loop_step, NULL, 0);
  return 0;
}

/* bpf_probe_write_user: the client probe writes `traceparent` with it. Kernel lockdown makes the verifier refuse any
 * program calling it. Never attached, so it never writes; the branch also keeps it from writing if it ever ran. */
SEC("uprobe")
int feature_write_user(struct pt_regs *ctx) {
  u64 zero = 0;
  if (PT_REGS_RC(ctx) == 0xdeadbeefdeadbeefULL)
    bpf_probe_write_user((void *)PT_REGS_RC(ctx), &zero, sizeof(zero));
  return 0;
}

/* BTF-typed tracepoints (tp_btf): process discovery watches exec and exit with them. Attached and detached at once. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(feature_tp_btf, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm) {
  return 0;
}

/* cgroup hooks: a sock_ops program attached to a cgroup doctor creates and removes. Returns 1: let everything pass. */
SEC("sockops")
int feature_sock_ops(struct bpf_sock_ops *skops) {
  return 1;
}
