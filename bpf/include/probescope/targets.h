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

/* Where the fields the lookup by file reads lie in this kernel's structs (bytes from each struct's start):
 * task_struct.mm, mm_struct.exe_file, file.f_inode, inode.i_sb, super_block.s_dev, inode.i_ino. The kernel binding
 * fills them in from the kernel's BTF before the object loads (native/src/kernel_btf.cc), once per agent, instead of
 * CO-RE relocations: a single relocation makes libbpf parse the kernel's whole BTF at every object's load (5-10 ms,
 * 126 000 types here) and scan it once per struct (~1.2 ms each). Same offsets, same reads (bpf_probe_read_kernel is
 * what BPF_CORE_READ does), one parse per agent. The load fails if the kernel has no BTF or lacks a field, as CO-RE's
 * did. */
struct ps_exe_offsets {
  u32 task_mm;
  u32 mm_exe_file;
  u32 file_inode;
  u32 inode_sb;
  u32 sb_dev;
  u32 inode_ino;
};

/* Declares both maps for a probe whose per-target value is `value_type`, and the offsets its lookup by file reads
 * through. */
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
  } ps_target_files SEC(".maps");                                                                                      \
  const volatile struct ps_exe_offsets ps_exe_offsets = {}

/* The pointer at `base + offset` in kernel memory (0 when unreadable, as bpf_probe_read_kernel leaves it). */
static __always_inline u64 ps_kernel_ptr(u64 base, u32 offset) {
  u64 p = 0;
  bpf_probe_read_kernel(&p, sizeof(p), (const void *)(base + offset));
  return p;
}

/* The current process's value: by its tgid, else by its executable file; NULL when it is not a target. */
static __always_inline void *ps_target_lookup(void *targets, void *target_files,
                                              const volatile struct ps_exe_offsets *off) {
  u32 pid = bpf_get_current_pid_tgid() >> 32;
  void *v = bpf_map_lookup_elem(targets, &pid);
  if (v)
    return v;
  u64 task = bpf_get_current_task();
  u64 mm = ps_kernel_ptr(task, off->task_mm);
  u64 exe = ps_kernel_ptr(mm, off->mm_exe_file);
  u64 inode = ps_kernel_ptr(exe, off->file_inode);
  u64 sb = ps_kernel_ptr(inode, off->inode_sb);
  u32 dev = 0;
  bpf_probe_read_kernel(&dev, sizeof(dev), (const void *)(sb + off->sb_dev));
  struct ps_file_key key = {};
  key.dev = dev;
  key.ino = ps_kernel_ptr(inode, off->inode_ino);
  return bpf_map_lookup_elem(target_files, &key);
}

/* The current process's value of a probe declared with PS_TARGETS. */
#define ps_target() ps_target_lookup(&ps_targets, &ps_target_files, &ps_exe_offsets)
