/* Process discovery: exec and exit of every process, from BTF-typed raw tracepoints (tp_btf needs no tracefs and
 * no kprobes). The agent's /proc scan sees what already runs; this sees what starts and ends afterwards, within
 * milliseconds. Exec events carry the new executable's path so the agent can match `--exe` without a /proc read.
 *
 * Filtering (discovery_mode[0] == 1, set by the agent when its selector is executables only, no predicate): an exec
 * is sent only when the executable's file name (its directory entry: symlinks resolved, as realpath's last
 * component) is in discovery_names, or when the process is one the agent follows (discovery_pids), whose new image
 * ends it as far as probes go; an exit only for a followed process. A name is a filter, not the match: the agent still
 * compares the whole resolved path. Everything else, the machine's other execs and exits, never reaches the ring nor
 * wakes the agent. Named execs are added to discovery_pids in either mode, so a process that started before the mode
 * was set still has its exit sent. */
#include "common.h"

enum discovery_kind {
  DISCOVERY_EXEC = 1,
  DISCOVERY_EXIT = 2,
};

#define DISCOVERY_PATH_MAX 256
/* File names compared by their first 63 bytes (a longer one matches on them; the agent checks the rest). */
#define DISCOVERY_NAME_MAX 64

struct discovery_event {
  u32 kind;
  u32 pid; /* thread-group id: the process */
  u64 ktime_ns;
  u32 path_len;
  u32 _pad;
  char path[DISCOVERY_PATH_MAX];
};

struct discovery_name {
  char name[DISCOVERY_NAME_MAX];
};

/* [0]: 0 sends every exec and exit (the default, and a selector with a predicate), 1 filters as above. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, u32);
  __type(value, u32);
} discovery_mode SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 256);
  __type(key, struct discovery_name);
  __type(value, u8);
} discovery_names SEC(".maps");

/* Processes the agent follows, or may: named execs (added here) and what its scan found (added by the agent). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, u32);
  __type(value, u8);
} discovery_pids SEC(".maps");

static __always_inline bool filtering(void) {
  u32 zero = 0;
  u32 *mode = bpf_map_lookup_elem(&discovery_mode, &zero);
  return mode && *mode == 1;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(discovery_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm) {
  u32 pid = BPF_CORE_READ(p, tgid);
  struct discovery_name key = {};
  bpf_probe_read_kernel_str(key.name, sizeof(key.name), BPF_CORE_READ(bprm, file, f_path.dentry, d_name.name));
  bool named = bpf_map_lookup_elem(&discovery_names, &key) != NULL;
  bool followed = bpf_map_lookup_elem(&discovery_pids, &pid) != NULL;
  /* A script (or binfmt_misc): bprm->file is the interpreter by now, and the name the agent matches is the script's
   * path. Rare enough to send unfiltered. */
  bool interpreted = BPF_CORE_READ(bprm, interp) != BPF_CORE_READ(bprm, filename);
  if (named) {
    u8 one = 1;
    bpf_map_update_elem(&discovery_pids, &pid, &one, BPF_ANY);
  } else if (followed) {
    bpf_map_delete_elem(&discovery_pids, &pid);
  }
  if (filtering() && !named && !followed && !interpreted)
    return 0;
  struct discovery_event *e = ps_reserve(struct discovery_event);
  if (!e)
    return 0;
  e->kind = DISCOVERY_EXEC;
  e->pid = pid;
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
  u32 pid = BPF_CORE_READ(p, tgid);
  bool followed = bpf_map_delete_elem(&discovery_pids, &pid) == 0;
  if (filtering() && !followed)
    return 0;
  struct discovery_event *e = ps_reserve(struct discovery_event);
  if (!e)
    return 0;
  e->kind = DISCOVERY_EXIT;
  e->pid = pid;
  e->ktime_ns = bpf_ktime_get_ns();
  e->path_len = 0;
  e->_pad = 0;
  e->path[0] = 0;
  ps_commit(e);
  return 0;
}
