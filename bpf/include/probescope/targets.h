/* Per-target values (struct field offsets and the like) that user space writes for the processes a probe serves.
 *
 * `ps_targets` is keyed by the process (tgid): written when the agent attaches to that process. When every process of
 * an executable is selected, the probe's links are shared by the whole file and user space also writes the value
 * under the file's identity in `ps_target_files` (device and inode: offsets are a property of the binary): a process
 * of that file is then served from its first instruction, before the agent has even seen it start — a short-lived
 * process or a restart loses nothing to the agent's reaction time. A process of any other file, or of a file
 * selected process by process, has neither entry and is ignored. */
#pragma once

/* The executable's identity as the kernel has it: `s_dev` in the kernel's encoding (major << 20 | minor). */
struct ps_file_key {
  u64 dev;
  u64 ino;
};

/* Declares both maps for a probe whose per-target value is `value_type`. */
#define PS_TARGETS(value_type)                                                                                         \
  struct {                                                                                                             \
    __uint(type, BPF_MAP_TYPE_HASH);                                                                                   \
    __uint(max_entries, 1024);                                                                                         \
    __type(key, u32);                                                                                                  \
    __type(value, value_type);                                                                                         \
  } ps_targets SEC(".maps");                                                                                           \
  struct {                                                                                                             \
    __uint(type, BPF_MAP_TYPE_HASH);                                                                                   \
    __uint(max_entries, 256);                                                                                          \
    __type(key, struct ps_file_key);                                                                                   \
    __type(value, value_type);                                                                                         \
  } ps_target_files SEC(".maps")

/* The current process's value: by its tgid, else by its executable file; NULL when it is not a target. */
static __always_inline void *ps_target_lookup(void *targets, void *target_files) {
  u32 pid = bpf_get_current_pid_tgid() >> 32;
  void *v = bpf_map_lookup_elem(targets, &pid);
  if (v)
    return v;
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  struct ps_file_key key = {};
  key.dev = BPF_CORE_READ(task, mm, exe_file, f_inode, i_sb, s_dev);
  key.ino = BPF_CORE_READ(task, mm, exe_file, f_inode, i_ino);
  return bpf_map_lookup_elem(target_files, &key);
}

/* The current process's value of a probe declared with PS_TARGETS. */
#define ps_target() ps_target_lookup(&ps_targets, &ps_target_files)
