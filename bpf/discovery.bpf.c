/* Process discovery: exec and exit of every process, from BTF-typed raw tracepoints (tp_btf needs no tracefs and
 * no kprobes). The agent's /proc scan sees what already runs; this sees what starts and ends afterwards, within
 * milliseconds. Exec events carry the new executable's path so the agent can match `--exe` without a /proc read. */
#include "common.h"

enum discovery_kind {
  DISCOVERY_EXEC = 1,
  DISCOVERY_EXIT = 2,
};

#define DISCOVERY_PATH_MAX 256

struct discovery_event {
  u32 kind;
  u32 pid; /* thread-group id: the process */
  u64 ktime_ns;
  u32 path_len;
  u32 _pad;
  char path[DISCOVERY_PATH_MAX];
};

SEC("tp_btf/sched_process_exec")
int BPF_PROG(discovery_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm) {
  struct discovery_event *e = ps_reserve(struct discovery_event);
  if (!e)
    return 0;
  e->kind = DISCOVERY_EXEC;
  e->pid = BPF_CORE_READ(p, tgid);
  e->ktime_ns = bpf_ktime_get_ns();
  e->_pad = 0;
  long n = bpf_probe_read_kernel_str(e->path, sizeof(e->path), BPF_CORE_READ(bprm, filename));
  e->path_len = n > 0 ? (u32)n - 1 : 0;
  ps_commit(e);
  return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(discovery_exit, struct task_struct *p) {
  /* Threads exit too; only the thread-group leader's exit ends the process. */
  if (BPF_CORE_READ(p, pid) != BPF_CORE_READ(p, tgid))
    return 0;
  struct discovery_event *e = ps_reserve(struct discovery_event);
  if (!e)
    return 0;
  e->kind = DISCOVERY_EXIT;
  e->pid = BPF_CORE_READ(p, tgid);
  e->ktime_ns = bpf_ktime_get_ns();
  e->path_len = 0;
  e->_pad = 0;
  e->path[0] = 0;
  ps_commit(e);
  return 0;
}
